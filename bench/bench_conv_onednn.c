/* cnn2d's two convolutions (Conv 2→16 3×3 pad 1 on 64×64, Conv 16→32 3×3 pad 1 on 32×32, each + bias
 * + relu, NCHW float32) at batch 1, 16 and 128, 1 thread, timed side by side in one run:
 *   direct   InLoop's direct kernel (ilk_conv2d_direct, Sources/InLoopKernelsC/conv_body.h) at the
 *            CPU's level, called directly (what Conv.forward calls for these shapes)
 *   im2col   the previous path written out in C: per image, im2col + cblas_sgemm + a bias/relu pass
 *   dnnl     oneDNN's convolution with a relu post-op on plain nchw/oihw memory (a drop-in for
 *            InLoop's layout), and
 *   dnnl-any the same with the layouts oneDNN picks (blocked), input reordered once outside the
 *            timing: its best case, reachable only if every layer kept oneDNN's layout.
 * Each row prints µs per call (best of 7 interleaved rounds) and the ratios to `direct`; the direct
 * kernel is first checked against a float64 reference (max relative error printed).
 *
 * Not part of `make test` or `make bench`. Build (clang: the kernels use per-function targets), with
 * oneDNN when dnnl.h exists (Debian: apt-get install libdnnl-dev):
 *   clang -O2 -ffp-contract=off -fno-math-errno -ISources/InLoopKernelsC/include -c \
 *     Sources/InLoopKernelsC/kernels.c -o build/ilk_kernels.o
 *   clang -O2 -std=c99 -Wall -Wextra -Werror -ISources/InLoopKernelsC/include -DHAVE_DNNL \
 *     bench/bench_conv_onednn.c build/ilk_kernels.o -lopenblas -ldnnl -lm -o build/bench_conv_onednn
 *   OMP_NUM_THREADS=1 build/bench_conv_onednn      (the three steps: make bench-conv) */
#define _POSIX_C_SOURCE 200112L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
#include "inloop_kernels.h"
#include "bench_common.h"
#ifdef HAVE_DNNL
#include <dnnl.h>
#endif

void openblas_set_num_threads(int);

typedef struct {
    int n, cin, h, w, cout, k, pad;
    float *x, *wt, *b, *y, *work, *col;
#ifdef HAVE_DNNL
    dnnl_stream_t stream;
    dnnl_primitive_t prim[2];
    dnnl_exec_arg_t args[2][4];
#endif
} problem;

static float frand(uint64_t *s) {
    *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17;
    return (float)(*s >> 40) / (float)(1 << 24) * 2.0f - 1.0f;
}

static void run_direct(problem *p) {
    ilk_conv2d_direct(p->x, p->n, p->cin, p->h, p->w, p->wt, p->b, p->cout, p->k, p->k, p->pad, p->pad, p->h, p->w,
                      ILK_RELU, 0.0f, p->y, p->work);
}

static void run_im2col(problem *p) {
    int oh = p->h, ow = p->w, P = oh * ow, K = p->cin * p->k * p->k;
    for (int n = 0; n < p->n; n++) {
        const float *xn = p->x + (size_t)n * p->cin * p->h * p->w;
        float *yn = p->y + (size_t)n * p->cout * P;
        for (int c = 0; c < p->cin; c++)
            for (int i = 0; i < p->k; i++)
                for (int j = 0; j < p->k; j++) {
                    float *row = p->col + (size_t)((c * p->k + i) * p->k + j) * P;
                    for (int r = 0; r < oh; r++) {
                        int ir = r + i - p->pad;
                        for (int q = 0; q < ow; q++) {
                            int iq = q + j - p->pad;
                            row[r * ow + q] = ir >= 0 && ir < p->h && iq >= 0 && iq < p->w
                                                  ? xn[(c * p->h + ir) * p->w + iq] : 0.0f;
                        }
                    }
                }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->cout, P, K, 1.0f, p->wt, K, p->col, P, 0.0f, yn, P);
        for (int o = 0; o < p->cout; o++)
            for (int i = 0; i < P; i++) {
                float v = yn[o * P + i] + p->b[o];
                yn[o * P + i] = v > 0.0f ? v : 0.0f;
            }
    }
}

#ifdef HAVE_DNNL
#define DN(call)                                                                      \
    do {                                                                              \
        dnnl_status_t st_ = (call);                                                   \
        if (st_ != dnnl_success) { fprintf(stderr, "%s: %d\n", #call, (int)st_); exit(1); } \
    } while (0)

static dnnl_engine_t engine;

/* variant 0: nchw/oihw memory (user buffers); 1: the layouts oneDNN picks (own buffers). */
static void dnnl_setup(problem *p, int variant) {
    dnnl_dims_t sd = {p->n, p->cin, p->h, p->w}, wd = {p->cout, p->cin, p->k, p->k}, bd = {p->cout},
                dd = {p->n, p->cout, p->h, p->w}, strides = {1, 1}, pads = {p->pad, p->pad};
    dnnl_format_tag_t act = variant ? dnnl_format_tag_any : dnnl_nchw, wtag = variant ? dnnl_format_tag_any : dnnl_oihw;
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    DN(dnnl_memory_desc_init_by_tag(&smd, 4, sd, dnnl_f32, act));
    DN(dnnl_memory_desc_init_by_tag(&wmd, 4, wd, dnnl_f32, wtag));
    DN(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x));
    DN(dnnl_memory_desc_init_by_tag(&dmd, 4, dd, dnnl_f32, act));
    dnnl_convolution_desc_t cd;
    DN(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, &smd, &wmd, &bmd, &dmd,
                                          strides, pads, pads));
    dnnl_post_ops_t po;
    DN(dnnl_post_ops_create(&po));
    DN(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    dnnl_primitive_attr_t attr;
    DN(dnnl_primitive_attr_create(&attr));
    DN(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_primitive_desc_t pd;
    DN(dnnl_primitive_desc_create(&pd, &cd, attr, engine, NULL));
    const dnnl_query_t q[4] = {dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_weights_md, dnnl_query_dst_md};
    const int argk[4] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_BIAS, DNNL_ARG_DST};
    float *user[4] = {p->x, p->wt, p->b, p->y};
    for (int a = 0; a < 4; a++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, q[a], a == 2 ? 1 : 0);
        dnnl_memory_t m;
        DN(dnnl_memory_create(&m, md, engine, variant ? DNNL_MEMORY_ALLOCATE : (void *)user[a]));
        if (variant) {   /* blocked buffers: any finite values will do for timing */
            void *h;
            DN(dnnl_memory_get_data_handle(m, &h));
            size_t bytes = dnnl_memory_desc_get_size(md);
            uint64_t s = 99 + (uint64_t)a;
            for (size_t i = 0; i < bytes / sizeof(float); i++) ((float *)h)[i] = frand(&s);
        }
        p->args[variant][a].arg = argk[a];
        p->args[variant][a].memory = m;
    }
    DN(dnnl_primitive_create(&p->prim[variant], pd));
    const char *impl = NULL;
    DN(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    printf("  oneDNN %s: %s\n", variant ? "any " : "nchw", impl);
}

static void run_dnnl(problem *p, int variant) {
    DN(dnnl_primitive_execute(p->prim[variant], p->stream, 4, p->args[variant]));
    DN(dnnl_stream_wait(p->stream));
}
#define NCOL 4
#else
#define NCOL 2
#endif

static void run(int k, long count, void *ctx) {
    problem *p = ctx;
    for (long i = 0; i < count; i++) {
        switch (k) {
        case 0: run_direct(p); break;
        case 1: run_im2col(p); break;
#ifdef HAVE_DNNL
        default: run_dnnl(p, k - 2); break;
#endif
        }
    }
}

/* max |direct - ref| / max(1, |ref|) over y, ref in float64. */
static double check(problem *p) {
    double worst = 0;
    run_direct(p);
    for (int n = 0; n < p->n; n++)
        for (int o = 0; o < p->cout; o++)
            for (int r = 0; r < p->h; r++)
                for (int q = 0; q < p->w; q++) {
                    double acc = p->b[o];
                    for (int c = 0; c < p->cin; c++)
                        for (int i = 0; i < p->k; i++)
                            for (int j = 0; j < p->k; j++) {
                                int ir = r + i - p->pad, iq = q + j - p->pad;
                                if (ir < 0 || ir >= p->h || iq < 0 || iq >= p->w) continue;
                                acc += (double)p->wt[((o * p->cin + c) * p->k + i) * p->k + j] *
                                       (double)p->x[((size_t)(n * p->cin + c) * p->h + ir) * p->w + iq];
                            }
                    if (acc < 0) acc = 0;
                    double got = p->y[((size_t)(n * p->cout + o) * p->h + r) * p->w + q];
                    double e = fabs(got - acc) / fmax(1.0, fabs(acc));
                    if (e > worst) worst = e;
                }
    return worst;
}

int main(void) {
    (void)bench_row;   /* this table has its own layout */
    setenv("OMP_NUM_THREADS", "1", 0);
    openblas_set_num_threads(1);
    printf("cnn2d convolutions, 1 thread, InLoop kernels at level %s; µs per call (ratio to direct)\n",
           ilk_cpu_level_name(ilk_cpu_level()));
#ifdef HAVE_DNNL
    DN(dnnl_engine_create(&engine, dnnl_cpu, 0));
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d (%s)\n", v->major, v->minor, v->patch, v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : "other runtime");
#else
    printf("oneDNN: not built in (no dnnl.h / -DHAVE_DNNL)\n");
#endif
    const int shapes[2][5] = {{2, 64, 64, 16, 3}, {16, 32, 32, 32, 3}};
    const int batches[3] = {1, 16, 128};
    for (int s = 0; s < 2; s++) {
        for (int bi = 0; bi < 3; bi++) {
            problem p = {.n = batches[bi], .cin = shapes[s][0], .h = shapes[s][1], .w = shapes[s][2],
                         .cout = shapes[s][3], .k = shapes[s][4], .pad = 1};
            size_t nx = (size_t)p.n * p.cin * p.h * p.w, ny = (size_t)p.n * p.cout * p.h * p.w;
            size_t nw = (size_t)p.cout * p.cin * p.k * p.k;
            size_t wp = (size_t)((p.w + ILK_CONV_SPAN - 1) / ILK_CONV_SPAN * ILK_CONV_SPAN + p.k - 1);
            p.x = malloc(nx * sizeof(float)); p.y = malloc(ny * sizeof(float));
            p.wt = malloc(nw * sizeof(float)); p.b = malloc((size_t)p.cout * sizeof(float));
            p.work = malloc((size_t)p.cin * (size_t)(p.h + p.k - 1) * wp * sizeof(float));
            p.col = malloc((size_t)p.cin * p.k * p.k * (size_t)p.h * p.w * sizeof(float));
            if (!p.x || !p.y || !p.wt || !p.b || !p.work || !p.col) return 1;
            uint64_t seed = 12345;
            for (size_t i = 0; i < nx; i++) p.x[i] = frand(&seed);
            for (size_t i = 0; i < nw; i++) p.wt[i] = frand(&seed) * 0.3f;
            for (int i = 0; i < p.cout; i++) p.b[i] = frand(&seed) * 0.1f;
            printf("Conv %d→%d %dx%d pad %d on %dx%d, batch %d (%.1f MFLOP)\n", p.cin, p.cout, p.k, p.k, p.pad, p.h,
                   p.w, p.n, 2e-6 * (double)ny * p.cin * p.k * p.k);
            if (p.n <= 16) printf("  direct vs float64 reference: max rel. error %.2e\n", check(&p));
#ifdef HAVE_DNNL
            DN(dnnl_stream_create(&p.stream, engine, dnnl_stream_default_flags));
            dnnl_setup(&p, 0);
            dnnl_setup(&p, 1);
            run_dnnl(&p, 0);
            double worst = 0;
            float *yd = malloc(ny * sizeof(float));
            if (!yd) return 1;
            memcpy(yd, p.y, ny * sizeof(float));
            run_direct(&p);
            for (size_t i = 0; i < ny; i++) {
                double e = fabs((double)yd[i] - p.y[i]) / fmax(1.0, fabs((double)p.y[i]));
                if (e > worst) worst = e;
            }
            printf("  oneDNN nchw vs direct: max rel. difference %.2e\n", worst);
            free(yd);
#endif
            long calls[NCOL];
            double best[NCOL];
            for (int k = 0; k < NCOL; k++) calls[k] = calls_for_50ms(run, k, &p) + 1;
            bench_rounds(NCOL, calls, run, &p, best);
            printf("  %-10s %12s %18s", "", "direct µs", "im2col+sgemm µs");
#ifdef HAVE_DNNL
            printf(" %18s %18s", "oneDNN nchw µs", "oneDNN any µs");
#endif
            printf("\n  %-10s %12.1f", "", best[0] * 1e6);
            for (int k = 1; k < NCOL; k++) printf(" %10.1f (%.2fx)", best[k] * 1e6, best[k] / best[0]);
            printf("   direct: %.1f GFLOP/s\n", 2e-9 * (double)ny * p.cin * p.k * p.k / best[0]);
            free(p.x); free(p.y); free(p.wt); free(p.b); free(p.work); free(p.col);
        }
    }
    return 0;
}

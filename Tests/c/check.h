/* PASS/FAIL reporting for the C test programs: report(name, ok, fmt, ...) prints "PASS <name>" or
 * "FAIL <name>: <detail>" and counts it in n_pass / n_fail; expect(name, got, want) checks a status
 * (a failure must also leave a message in inloop_last_error()). The program ends with
 * printf("%d passed, %d failed\n", n_pass, n_fail). Include in exactly one translation unit. */
#ifndef INLOOP_TEST_CHECK_H
#define INLOOP_TEST_CHECK_H

#include <stdarg.h>
#include <stdio.h>

#include "inloop.h"

static int n_pass, n_fail;

static void report(const char *name, int ok, const char *fmt, ...) {
    va_list ap;
    if (ok) { printf("PASS %s\n", name); n_pass++; return; }
    printf("FAIL %s: ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    n_fail++;
}

static void expect(const char *name, inloop_status got, inloop_status want) {
    const char *msg = inloop_last_error();
    report(name, got == want && (want == INLOOP_OK || (msg && msg[0])), "got %s, expected %s (last error: \"%s\")",
           inloop_status_string(got), inloop_status_string(want), msg ? msg : "(NULL)");
}

#endif

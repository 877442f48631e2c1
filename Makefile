# InLoop — build, test, benchmark.
#   make test    install missing system packages (as root on Debian/Ubuntu), build, run every test suite
#   make demo    build and run the example programs on a small model, then the Lorenz '96 demo
#                (a Fortran MPI model that learns its sub-grid parameterization online; 2 ranks)
#   make demo-radiation  a Fortran column radiation scheme replaced in the loop by its InLoop emulator,
#                trained online over 2 MPI ranks: scorecard, speed-up, verdict (examples/radiation)
#   make bench   forward-pass benchmark against bare cblas_sgemm (needs ../shared/models)
#   make sanitize the Swift, C, Fortran and MPI tests against AddressSanitizer (+UBSan for C) and the
#                threaded ones against ThreadSanitizer builds (tools/sanitize.py; run by .ci/run)
#   make node-tests  ONNX's backend node tests through `inloop run`: the per-op pass-rate table
#                (Tests/onnx/node_tests.py; NODE_ARGS=--update rewrites Tests/onnx/node_passing.txt)
#   make fuzz    libFuzzer campaigns over the model/config/checkpoint/npy readers, FUZZ_SECONDS each
#                (Tests/fuzz/README.md); `make fuzz-smoke` is the short run `make test` does
SHELL      := /bin/bash
ROOT       := $(CURDIR)
# The site's MPI: Open MPI (default) or `MPI=mpich` (Debian libmpich-dev), which builds in its own
# scratch directory with MPICH's explicitly named wrappers, so both MPIs coexist (see "Install on a cluster").
# (an MPI variable from the environment that is neither, as some sites set, is ignored)
ifeq ($(origin MPI)$(filter openmpi mpich,$(MPI)),environment)
MPI        := openmpi
endif
MPI        ?= openmpi
ifeq ($(MPI),mpich)
SCRATCH    := .build-mpich
else ifeq ($(MPI),openmpi)
SCRATCH    := .build
else
$(error MPI=$(MPI): choose openmpi or mpich)
endif
LIBDIR     := $(ROOT)/$(SCRATCH)/release
BUILD      := $(ROOT)/build
SHARED     ?= $(ROOT)/../shared/models
MPIFC      ?= mpifort
# make predefines FC=f77 and CC=cc, so `?=` would never apply: set them unless given by the user.
ifeq ($(origin FC),default)
FC := gfortran
endif
ifeq ($(origin CC),default)
CC := gcc
endif
MPIRUN     ?= mpirun
FFLAGS     := -O2 -std=f2018 -Wall -Wextra -ffree-line-length-none
CFLAGS     := -O2 -std=c99 -Wall -Wextra -pedantic -Werror
LINK       := -L$(LIBDIR) -lInLoop -Wl,-rpath,$(LIBDIR)
APT_PKGS   := gfortran libopenblas-dev libopenmpi-dev openmpi-bin pkg-config libyaml-dev
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
ifeq ($(MPI),mpich)
ifeq ($(origin MPIFC),file)
MPIFC      := mpifort.mpich
endif
ifeq ($(origin MPIRUN),file)
MPIRUN     := mpirun.mpich
endif
MPICC      ?= mpicc.mpich
APT_PKGS   += libmpich-dev mpich
export INLOOP_MPI := mpich
endif
MPICC      ?= mpicc
# tools/run_tests.py builds and runs against the same library and MPI
export INLOOP_SCRATCH := $(SCRATCH)
export INLOOP_MPIRUN := $(MPIRUN)
# A second Fortran compiler: `make ... FC=flang-22` (LLVM flang) takes no gfortran options. The MPI
# programs stay with MPIFC (gfortran underneath: Debian's MPI Fortran modules are gfortran's), which
# then gets gfortran's warnings and line length itself.
# flang links OpenMP programs (test_openmp) with LLVM's runtime, libomp-N-dev.
ifneq ($(findstring flang,$(notdir $(FC))),)
FFLAGS     := -O2 -std=f2018
APT_PKGS   += $(shell echo '$(notdir $(FC))' | sed -n -E 's/^flang-(new-)?([0-9]+)$$/flang-\2 libomp-\2-dev/p')
MPIFC      := $(MPIFC) -Wall -Wextra -ffree-line-length-none
endif
# build/mod and build/mpimod hold one compiler's modules: a change of FC, MPIFC or MPI rebuilds them.
FORTRAN_ID := $(FC) | $(MPIFC) | $(MPI)
ifneq ($(FORTRAN_ID),$(shell cat $(BUILD)/.fortran-id 2>/dev/null))
$(shell rm -rf $(BUILD)/mod $(BUILD)/mpimod $(BUILD)/lorenz96/obj $(BUILD)/lorenz96/lorenz96 $(BUILD)/radiation/obj $(BUILD)/radiation/obj-serial $(BUILD)/radiation/radiation $(BUILD)/radiation/rad_checks; mkdir -p $(BUILD); echo '$(FORTRAN_ID)' > $(BUILD)/.fortran-id)
endif

.PHONY: all deps lib header models test demo bench bench-conv clean fortran c-programs snippets lorenz96 plot-deps sanitize
.PHONY: radiation demo-radiation
.PHONY: static-lib stage install install-debug uninstall dist test-install install-test-deps footprint
.PHONY: fuzz fuzz-build fuzz-smoke node-tests

all: lib

# System packages: installed when missing and we are root on Debian/Ubuntu, else the command is printed.
deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	  else \
	    echo "missing system packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
	@python3 -c "import numpy" 2>/dev/null || python3 -m pip install -q numpy
	@python3 -c "import fypp" 2>/dev/null || python3 -m pip install -q fypp || \
	  echo "fypp not installable: the header suite's template check will be skipped"
	@python3 -c "import onnx, onnxruntime" 2>/dev/null || python3 -m pip install -q onnx onnxruntime || \
	  echo "onnx/onnxruntime not installable: the onnx test suite will be skipped"

lib: deps
	swift build -c release --scratch-path $(SCRATCH)

# Regenerate the committed C header from the Swift @c functions, then the Fortran module inloop_c
# (fortran-bindings/inloop_c.inc) from the header and inloop.f90 from its fypp template (pip install fypp;
# without fypp the template step is skipped with a message).
header: lib
	python3 tools/gen_header.py
	python3 tools/gen_fortran.py; test $$? -ne 1

# Benchmark/reference models of ../shared converted to the native format (skipped when absent).
models:
	@if [ -d "$(SHARED)" ]; then python3 tools/convert_peer_model.py --src "$(SHARED)" --out $(BUILD)/models && \
	  python3 Tests/fortran/onnx_io_bin.py --src "$(SHARED)" --out $(BUILD)/models && \
	  cp -f "$(SHARED)"/*.onnx $(BUILD)/models/; \
	else echo "no $(SHARED): skipping converted reference models"; fi

$(BUILD)/mod/inloop.mod: fortran-bindings/inloop.f90 fortran-bindings/inloop_c.inc
	@mkdir -p $(BUILD)/mod
	$(FC) $(FFLAGS) -J$(BUILD)/mod -c $< -o $(BUILD)/mod/inloop.o

$(BUILD)/mpimod/inloop.mod: fortran-bindings/inloop.f90 fortran-bindings/inloop_c.inc
	@mkdir -p $(BUILD)/mpimod
	$(MPIFC) $(FFLAGS) -J$(BUILD)/mpimod -c $< -o $(BUILD)/mpimod/inloop.o

# Fortran and C programs (tests, examples, benchmarks), all against the release library.
fortran: $(BUILD)/mod/inloop.mod $(BUILD)/mpimod/inloop.mod
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_serial.f90 $(LINK) -o $(BUILD)/test_fortran
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_error_stop.f90 $(LINK) -o $(BUILD)/test_error_stop
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_training.f90 $(LINK) -o $(BUILD)/test_fortran_training
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_onnx.f90 $(LINK) -o $(BUILD)/test_fortran_onnx
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_constraints.f90 $(LINK) -o $(BUILD)/test_fortran_constraints
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_threads_default.f90 $(LINK) -o $(BUILD)/test_threads_default
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_ranges.f90 $(LINK) -o $(BUILD)/test_ranges
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_ensemble.f90 $(LINK) -o $(BUILD)/test_fortran_ensemble
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_explain.f90 $(LINK) -o $(BUILD)/test_explain_f
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_noise.f90 $(LINK) -o $(BUILD)/test_noise_f
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o examples/fortran/example.f90 $(LINK) -o $(BUILD)/example_fortran
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi.f90 $(LINK) -o $(BUILD)/test_mpi
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_training.f90 $(LINK) -o $(BUILD)/test_mpi_training
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_f08.f90 $(LINK) -o $(BUILD)/test_mpi_f08
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_reference.f90 $(LINK) -o $(BUILD)/test_mpi_reference
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_ranges.f90 $(LINK) -o $(BUILD)/test_mpi_ranges
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_noise.f90 $(LINK) -o $(BUILD)/test_mpi_noise
	$(MPICC) -O2 -std=c99 -Wall -Wextra -c Tests/mpi/alloc_count_mpi.c -o $(BUILD)/alloc_count_mpi.o
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_alloc.f90 $(BUILD)/alloc_count_mpi.o $(LINK) -o $(BUILD)/test_mpi_alloc
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_collective.f90 $(LINK) -o $(BUILD)/test_collective_f
	$(MPICC) $(CFLAGS) -IInclude Tests/mpi/test_collective.c $(LINK) -lm -o $(BUILD)/test_collective
	@# OpenMP host threads: the module compiled as an OpenMP model would compile it
	@mkdir -p $(BUILD)/ompmod
	$(FC) $(FFLAGS) -fopenmp -J$(BUILD)/ompmod -c fortran-bindings/inloop.f90 -o $(BUILD)/ompmod/inloop.o
	$(FC) $(FFLAGS) -fopenmp -I$(BUILD)/ompmod $(BUILD)/ompmod/inloop.o Tests/openmp/test_openmp.f90 $(LINK) -o $(BUILD)/test_openmp

# Every Fortran block of README.md and docs/FORTRAN.md is a region of a file here (tools/run_tests.py,
# suite examples, checks it): the serial snippets with $(FC), -Werror with gfortran; the MPI snippets in
# both forms (`use mpi`, `use mpi_f08`) with $(MPIFC) -Werror; the porting guide and its check.
SNIPPETS_SERIAL := shapes run_multi errors training range_guard explain constraints ensemble stochastic
SNIPPETS_MPI    := online_training_f08 online_training_mpi mpi_basics_f08 mpi_basics_mpi
SNIPPET_WERROR  := $(if $(findstring flang,$(notdir $(FC))),,-Werror)
snippets: $(BUILD)/mod/inloop.mod $(BUILD)/mpimod/inloop.mod
	@mkdir -p $(BUILD)/snippets/mod
	@for s in $(SNIPPETS_SERIAL); do echo "$(FC) ... examples/snippets/$$s.f90"; \
	  $(FC) $(FFLAGS) $(SNIPPET_WERROR) -I$(BUILD)/mod $(BUILD)/mod/inloop.o examples/snippets/$$s.f90 $(LINK) -o $(BUILD)/snippets/$$s || exit 1; done
	@for s in $(SNIPPETS_MPI); do echo "$(MPIFC) ... examples/snippets/$$s.f90"; \
	  $(MPIFC) $(FFLAGS) -Werror -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o examples/snippets/$$s.f90 $(LINK) -o $(BUILD)/snippets/$$s || exit 1; done
	$(FC) $(FFLAGS) $(SNIPPET_WERROR) -I$(BUILD)/mod -J$(BUILD)/snippets/mod $(BUILD)/mod/inloop.o \
	  examples/porting/convection_nn.f90 examples/porting/check_porting.f90 $(LINK) -o $(BUILD)/snippets/check_porting

c-programs:
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -IInclude Tests/c/test_c.c $(LINK) -lpthread -o $(BUILD)/test_c
	$(CC) $(CFLAGS) -IInclude examples/c/example.c $(LINK) -o $(BUILD)/example_c
	$(CC) $(CFLAGS) -IInclude Tests/c/test_training.c $(LINK) -lm -o $(BUILD)/test_training
	$(CC) $(CFLAGS) -IInclude Tests/c/test_abi.c $(LINK) -lm -o $(BUILD)/test_abi
	$(CC) $(CFLAGS) -IInclude Tests/c/test_busy.c $(LINK) -lpthread -lm -o $(BUILD)/test_busy
	$(CC) $(CFLAGS) -IInclude Tests/c/test_threads.c $(LINK) -lopenblas -o $(BUILD)/test_threads
	$(CC) $(CFLAGS) -IInclude Tests/c/test_golden.c $(LINK) -lopenblas -o $(BUILD)/test_golden
	$(CC) $(CFLAGS) -IInclude Tests/c/test_shaped.c $(LINK) -lm -o $(BUILD)/test_shaped
	$(CC) $(CFLAGS) -IInclude Tests/c/test_ranges.c $(LINK) -lm -o $(BUILD)/test_ranges_c
	$(CC) $(CFLAGS) -IInclude Tests/c/test_explain.c $(LINK) -lm -o $(BUILD)/test_explain
	$(CC) $(CFLAGS) -IInclude Tests/c/test_constraints.c $(LINK) -lm -o $(BUILD)/test_constraints
	$(CC) $(CFLAGS) -IInclude Tests/c/test_ensemble.c $(LINK) -lm -o $(BUILD)/test_ensemble
	$(CC) $(CFLAGS) -IInclude Tests/c/test_noise.c $(LINK) -lm -o $(BUILD)/test_noise

# The Lorenz '96 demo (examples/lorenz96): modules first, then the program, against the MPI build of
# the module (one mpifort command; its .mod files go to build/lorenz96/obj); the executable and its output
# (model file, scorecard.txt, plot data, lorenz96.png) in build/lorenz96.
L96DIR     := $(BUILD)/lorenz96
L96_SRC    := $(addprefix examples/lorenz96/,l96_model.f90 l96_subgrid.f90 l96_scores.f90 lorenz96.f90)

$(L96DIR)/lorenz96: $(L96_SRC) $(BUILD)/mpimod/inloop.mod
	@mkdir -p $(L96DIR)/obj
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod -J$(L96DIR)/obj $(L96_SRC) $(BUILD)/mpimod/inloop.o $(LINK) -o $@

lorenz96: lib $(L96DIR)/lorenz96

# The radiation demo (examples/radiation): gas-optics tables from make_tables.py, the scheme's checks (a
# serial program), the MPI program; everything in build/radiation.
RADDIR     := $(BUILD)/radiation
RAD_SRC    := $(addprefix examples/radiation/,rad_scheme.f90 column_model.f90 radiation.f90)
RAD_CHECKS := $(addprefix examples/radiation/,rad_scheme.f90 column_model.f90 rad_checks.f90)

$(RADDIR)/rad_tables.txt: examples/radiation/make_tables.py
	@mkdir -p $(RADDIR)
	python3 $< $@

$(RADDIR)/radiation: $(RAD_SRC) $(BUILD)/mpimod/inloop.mod
	@mkdir -p $(RADDIR)/obj
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod -J$(RADDIR)/obj $(RAD_SRC) $(BUILD)/mpimod/inloop.o $(LINK) -o $@

$(RADDIR)/rad_checks: $(RAD_CHECKS)
	@mkdir -p $(RADDIR)/obj-serial
	$(FC) $(FFLAGS) -J$(RADDIR)/obj-serial $(RAD_CHECKS) -o $@

radiation: lib $(RADDIR)/radiation $(RADDIR)/rad_checks $(RADDIR)/rad_tables.txt

# matplotlib for the demo's picture (pip-installed when missing)
plot-deps:
	@python3 -c "import matplotlib" 2>/dev/null || { echo "installing matplotlib"; python3 -m pip install -q matplotlib; }

# SUITES="mpi fortran" runs only those suites (names: tools/run_tests.py)
test: lib models
	python3 tools/run_tests.py $(SUITES)

demo: lib fortran c-programs lorenz96 plot-deps
	@echo "== Fortran example (examples/fortran/example.f90) =="
	$(BUILD)/example_fortran Tests/fixtures/mlp_medium.safetensors
	@echo "== C example (examples/c/example.c) =="
	$(BUILD)/example_c Tests/fixtures/mlp_medium.safetensors
	@echo "== Lorenz '96: train a sub-grid parameterization online over MPI, then run with it (examples/lorenz96) =="
	@# the picture is drawn even when the verdict fails (exit status 1), to see why; the status is kept
	$(MPIRUN) -np 2 $(L96DIR)/lorenz96 --config examples/lorenz96/training.yaml --out $(L96DIR); \
	status=$$?; python3 examples/lorenz96/plot.py $(L96DIR) || status=1; exit $$status

# The radiation demo: the scheme's checks, then train its emulator online over 2 ranks, the coupled run,
# the scorecard and verdict, the picture (build/radiation/radiation.png). 1 thread per rank.
demo-radiation: radiation plot-deps
	$(RADDIR)/rad_checks $(RADDIR)/rad_tables.txt
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 $(MPIRUN) -np 2 $(RADDIR)/radiation --tables $(RADDIR)/rad_tables.txt \
	  --config examples/radiation/training.yaml --out $(RADDIR); \
	status=$$?; python3 examples/radiation/plot.py $(RADDIR) || status=1; exit $$status

# ONNX's backend node tests (regenerated from the onnx package into build/onnx-node) through the CLI:
# the per-op table, the failure reasons, the regression check against Tests/onnx/node_passing.txt.
NODE_ARGS  ?=
node-tests: lib
	python3 Tests/onnx/node_tests.py $(NODE_ARGS)

# cnn2d's convolutions: InLoop's direct kernel (called directly), the im2col + sgemm path and oneDNN
# (when dnnl.h exists: apt-get install libdnnl-dev) in one run, 1 thread. Not part of test or bench.
bench-conv:
	@mkdir -p $(BUILD)
	clang -O2 -ffp-contract=off -fno-math-errno -ISources/InLoopKernelsC/include -c Sources/InLoopKernelsC/kernels.c \
	  -o $(BUILD)/ilk_kernels.o
	clang -O2 -std=c99 -Wall -Wextra -Werror -ISources/InLoopKernelsC/include -Ibench \
	  $$(test -f /usr/include/dnnl.h && echo "-DHAVE_DNNL") bench/bench_conv_onednn.c $(BUILD)/ilk_kernels.o \
	  -lopenblas $$(test -f /usr/include/dnnl.h && echo "-ldnnl") -lm -o $(BUILD)/bench_conv_onednn
	OMP_NUM_THREADS=1 $(BUILD)/bench_conv_onednn

bench: lib models $(BUILD)/mod/inloop.mod $(BUILD)/mpimod/inloop.mod
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o bench/bench_fortran.f90 $(LINK) -o $(BUILD)/bench_fortran
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o bench/bench_mpi_training.f90 $(LINK) -o $(BUILD)/bench_mpi_training
	$(CC) $(CFLAGS) -IInclude bench/bench_onnx.c $(LINK) -o $(BUILD)/bench_onnx
	$(CC) $(CFLAGS) -IInclude bench/bench_constraints.c $(LINK) -lm -o $(BUILD)/bench_constraints
	$(CC) $(CFLAGS) -IInclude bench/bench_ensemble.c $(LINK) -lm -o $(BUILD)/bench_ensemble
	$(CC) $(CFLAGS) -IInclude bench/bench_explain.c $(LINK) -lm -o $(BUILD)/bench_explain
	$(CC) $(CFLAGS) -IInclude bench/bench_noise.c $(LINK) -lm -o $(BUILD)/bench_noise
	python3 bench/run_bench.py
	python3 bench/bench_ort_table.py
	python3 bench/bench_training.py
	python3 bench/bench_rnn.py
	python3 bench/bench_mpi.py
	@echo "== hard constraints: cost per forward call next to the plain forward (bench/bench_constraints.c) =="
	$(BUILD)/bench_constraints $(BUILD)/models/column_mlp.onnx 1 256

# Fuzz targets (Tests/fuzz/targets): libFuzzer executables, debug build with -sanitize=fuzzer in .build-fuzz
# (INLOOP_FUZZ=1 adds them to the package). One product at a time: nothing else of the package is built.
FUZZ_TARGETS := native onnx config checkpoint npy
FUZZ_SECONDS ?= 300
FUZZ_RUNS    ?=
fuzz-build:
	@for t in $(FUZZ_TARGETS); do \
	  INLOOP_FUZZ=1 swift build --scratch-path .build-fuzz --sanitize=fuzzer --product fuzz-$$t || exit 1; \
	done

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) python3 Tests/fuzz/fuzz.py run

fuzz-smoke: fuzz-build
	python3 Tests/fuzz/fuzz.py smoke


# AddressSanitizer (+UBSan for the C shim) and ThreadSanitizer builds in .build-asan, .build-asan-test,
# .build-tsan; logs in build/sanitize. Ends "N passed, M failed".
sanitize: deps models
	python3 tools/sanitize.py

clean:
	rm -rf $(BUILD) .build .build-mpich .build-static .build-static-mpich .build-asan .build-asan-test .build-tsan .build-fuzz

# ---------------------------------------------------------------- install on a cluster without Swift
# `make install PREFIX=...` (default /usr/local; DESTDIR honoured), `make uninstall`, `make install-debug`
# (the library's debug info, kept apart), `make dist` (the prefix as a relocatable tarball), and
# `make test-install` (install, move the prefix, hide the Swift toolchain, link through pkg-config,
# CMake and fpm). The installed library has the Swift runtime linked in statically (-static-stdlib),
# in its own scratch directory so that .build is left alone. tools/install.py writes the prefix.
PREFIX     ?= /usr/local
VERSION    := $(shell sed -n 's/.*static let string = "\([0-9][0-9.]*\)".*/\1/p' Sources/InLoop/Version.swift)
SOVERSION  := $(firstword $(subst ., ,$(VERSION)))
STATIC_SCRATCH := .build-static$(if $(filter mpich,$(MPI)),-mpich)
STAGE      := $(BUILD)/stage$(if $(filter mpich,$(MPI)),-mpich)
DIST_NAME  := inloop-$(VERSION)-linux-$(shell uname -m)$(if $(filter mpich,$(MPI)),-mpich)
INSTALL_APT_PKGS := cmake

static-lib: deps
	swift build -c release -Xswiftc -static-stdlib --scratch-path $(STATIC_SCRATCH) --product InLoop \
	  -Xlinker -soname=libInLoop.so.$(SOVERSION)
	swift build -c release -Xswiftc -static-stdlib --scratch-path $(STATIC_SCRATCH) --product inloop

# The relocatable prefix, staged in build/stage[-mpich]; install and dist copy it.
stage: static-lib
	python3 tools/install.py stage --stage $(STAGE) --build $(ROOT)/$(STATIC_SCRATCH)/release \
	  --version $(VERSION) --mpi $(MPI) --fc "$(FC)"

install: stage
	python3 tools/install.py install --stage $(STAGE) --prefix "$(DESTDIR)$(PREFIX)"

install-debug: stage
	python3 tools/install.py install-debug --stage $(STAGE) --prefix "$(DESTDIR)$(PREFIX)"

uninstall:
	python3 tools/install.py uninstall --prefix "$(DESTDIR)$(PREFIX)"

dist: stage
	python3 tools/install.py dist --stage $(STAGE) --name $(DIST_NAME) --out $(BUILD)

# CMake (Debian) and fpm (PyPI) for the relocation test, installed when missing.
install-test-deps:
	@$(MAKE) -s deps APT_PKGS="$(INSTALL_APT_PKGS)"
	@command -v fpm >/dev/null || python3 -m pip install -q fpm || echo "fpm not installable: its check will fail"

# The relocation test: `make test-install`, or TARBALL=build/inloop-...tar.gz to test an unpacked dist.
test-install: install-test-deps stage
	python3 tools/test_install.py --fc "$(FC)" $(if $(TARBALL),--tarball $(TARBALL))

# Installed size, resident memory of a Fortran process running column_mlp, load-to-first-forward times.
footprint: stage
	python3 tools/footprint.py --stage $(STAGE) --models "$(SHARED)" --fc "$(FC)"

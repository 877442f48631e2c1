# InLoop — build, test, benchmark.
#   make test    install missing system packages (as root on Debian/Ubuntu), build, run every test suite
#   make demo    build and run the example programs on a small model, then the Lorenz '96 demo
#                (a Fortran MPI model that learns its sub-grid parameterization online; 2 ranks)
#   make bench   forward-pass benchmark against bare cblas_sgemm (needs ../shared/models)
#   make fuzz    libFuzzer campaigns over the model/config/checkpoint/npy readers, FUZZ_SECONDS each
#                (Tests/fuzz/README.md); `make fuzz-smoke` is the short run `make test` does
SHELL      := /bin/bash
ROOT       := $(CURDIR)
LIBDIR     := $(ROOT)/.build/release
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

.PHONY: all deps lib header models test demo bench clean fortran c-programs lorenz96 plot-deps
.PHONY: fuzz fuzz-build fuzz-smoke

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
	@python3 -c "import onnx, onnxruntime" 2>/dev/null || python3 -m pip install -q onnx onnxruntime || \
	  echo "onnx/onnxruntime not installable: the onnx test suite will be skipped"

lib: deps
	swift build -c release

# Regenerate the committed C header from the Swift @c functions.
header: lib
	python3 tools/gen_header.py

# Benchmark/reference models of ../shared converted to the native format (skipped when absent).
models:
	@if [ -d "$(SHARED)" ]; then python3 tools/convert_peer_model.py --src "$(SHARED)" --out $(BUILD)/models && \
	  python3 Tests/fortran/onnx_io_bin.py --src "$(SHARED)" --out $(BUILD)/models && \
	  cp -f "$(SHARED)"/*.onnx $(BUILD)/models/; \
	else echo "no $(SHARED): skipping converted reference models"; fi

$(BUILD)/mod/inloop.mod: fortran-bindings/inloop.f90
	@mkdir -p $(BUILD)/mod
	$(FC) $(FFLAGS) -J$(BUILD)/mod -c $< -o $(BUILD)/mod/inloop.o

$(BUILD)/mpimod/inloop.mod: fortran-bindings/inloop.f90
	@mkdir -p $(BUILD)/mpimod
	$(MPIFC) $(FFLAGS) -J$(BUILD)/mpimod -c $< -o $(BUILD)/mpimod/inloop.o

# Fortran and C programs (tests, examples, benchmarks), all against the release library.
fortran: $(BUILD)/mod/inloop.mod $(BUILD)/mpimod/inloop.mod
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_serial.f90 $(LINK) -o $(BUILD)/test_fortran
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_error_stop.f90 $(LINK) -o $(BUILD)/test_error_stop
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_training.f90 $(LINK) -o $(BUILD)/test_fortran_training
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o Tests/fortran/test_onnx.f90 $(LINK) -o $(BUILD)/test_fortran_onnx
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o examples/fortran/example.f90 $(LINK) -o $(BUILD)/example_fortran
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi.f90 $(LINK) -o $(BUILD)/test_mpi
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_training.f90 $(LINK) -o $(BUILD)/test_mpi_training
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_f08.f90 $(LINK) -o $(BUILD)/test_mpi_f08
	mpicc -O2 -std=c99 -Wall -Wextra -c Tests/mpi/alloc_count_mpi.c -o $(BUILD)/alloc_count_mpi.o
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o Tests/mpi/test_mpi_alloc.f90 $(BUILD)/alloc_count_mpi.o $(LINK) -o $(BUILD)/test_mpi_alloc

c-programs:
	@mkdir -p $(BUILD)
	$(CC) $(CFLAGS) -IInclude Tests/c/test_c.c $(LINK) -lpthread -o $(BUILD)/test_c
	$(CC) $(CFLAGS) -IInclude examples/c/example.c $(LINK) -o $(BUILD)/example_c
	$(CC) $(CFLAGS) -IInclude Tests/c/test_training.c $(LINK) -lm -o $(BUILD)/test_training

# The Lorenz '96 demo (examples/lorenz96): modules first, then the program, against the MPI build of
# the module (one mpifort command; its .mod files go to build/lorenz96/obj); the executable and its output
# (model file, scorecard.txt, plot data, lorenz96.png) in build/lorenz96.
L96DIR     := $(BUILD)/lorenz96
L96_SRC    := $(addprefix examples/lorenz96/,l96_model.f90 l96_subgrid.f90 l96_scores.f90 lorenz96.f90)

$(L96DIR)/lorenz96: $(L96_SRC) $(BUILD)/mpimod/inloop.mod
	@mkdir -p $(L96DIR)/obj
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod -J$(L96DIR)/obj $(L96_SRC) $(BUILD)/mpimod/inloop.o $(LINK) -o $@

lorenz96: lib $(L96DIR)/lorenz96

# matplotlib for the demo's picture (pip-installed when missing)
plot-deps:
	@python3 -c "import matplotlib" 2>/dev/null || { echo "installing matplotlib"; python3 -m pip install -q matplotlib; }

test: lib models
	python3 tools/run_tests.py

demo: lib fortran c-programs lorenz96 plot-deps
	@echo "== Fortran example (examples/fortran/example.f90) =="
	$(BUILD)/example_fortran Tests/fixtures/mlp_medium.safetensors
	@echo "== C example (examples/c/example.c) =="
	$(BUILD)/example_c Tests/fixtures/mlp_medium.safetensors
	@echo "== Lorenz '96: train a sub-grid parameterization online over MPI, then run with it (examples/lorenz96) =="
	@# the picture is drawn even when the verdict fails (exit status 1), to see why; the status is kept
	$(MPIRUN) -np 2 $(L96DIR)/lorenz96 --config examples/lorenz96/training.yaml --out $(L96DIR); \
	status=$$?; python3 examples/lorenz96/plot.py $(L96DIR) || status=1; exit $$status

bench: lib models $(BUILD)/mod/inloop.mod $(BUILD)/mpimod/inloop.mod
	$(FC) $(FFLAGS) -I$(BUILD)/mod $(BUILD)/mod/inloop.o bench/bench_fortran.f90 $(LINK) -o $(BUILD)/bench_fortran
	$(MPIFC) $(FFLAGS) -I$(BUILD)/mpimod $(BUILD)/mpimod/inloop.o bench/bench_mpi_training.f90 $(LINK) -o $(BUILD)/bench_mpi_training
	$(CC) $(CFLAGS) -IInclude bench/bench_onnx.c $(LINK) -o $(BUILD)/bench_onnx
	python3 bench/run_bench.py
	python3 bench/bench_training.py
	python3 bench/bench_mpi.py

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

clean:
	rm -rf $(BUILD) .build .build-fuzz

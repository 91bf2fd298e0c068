# mrcnn build: `make` builds build/libmrcnn.a and build/mrcnn; `make test`, `make test-asan`,
# `make demo`, `make bench`, `make quality`, `make refs`, `make fuzz`. Every target first checks
# the Debian packages it needs and installs the missing ones (apt-get, via sudo when not root).

CC      ?= gcc
BUILD   ?= build
PKGS    := openblas hdf5 libcjson stb criterion libpng libjpeg ompi-c
DEBS    := pkg-config libopenblas-openmp-dev libhdf5-dev libcjson-dev libstb-dev libcriterion-dev \
           libpng-dev libjpeg62-turbo-dev openmpi-bin libopenmpi-dev
REF_DEBS := python3-torch python3-torchvision python3-h5py python3-numpy
# The report's browser test renders report.html in Debian's headless Chromium; the ONNX tests
# check exports with Debian's python3-onnx.
TEST_DEBS := chromium python3-onnx
# The ONNX parity tests run exports in ONNX Runtime: npm's onnxruntime-node (its CPU runtime is in
# the package), installed with --ignore-scripts (the install script fetches GPU providers from
# elsewhere) into build/onnxruntime, never committed.
ORT_VERSION := 1.30.0
ORT_DIR     := $(CURDIR)/build/onnxruntime

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
           -Wdouble-promotion -Werror
# Dependency headers are system headers: their own warnings are not ours to fix.
DEP_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null | sed 's/-I/-isystem /g')
# Images are read and written through libpng and libjpeg (data/image.c); stb's easy_font, the
# only stb part left, is header-only.
# Data-parallel training (core/dist.c) links OpenMPI; a run not started by mpirun never calls it.
DEP_LIBS   = $(shell pkg-config --libs openblas hdf5 libcjson libpng libjpeg ompi-c 2>/dev/null)
# GCC 12's -O2 vectorises a loop only when its trip count needs no scalar tail, which leaves every
# elementwise pass over a tensor scalar; the dynamic cost model vectorises them. Floats are not
# reassociated (no sum is reordered), so no result changes.
CFLAGS  ?= -O2 -g -fvect-cost-model=dynamic
ALL_CFLAGS = -std=c11 $(CFLAGS) $(WARN) -fopenmp -D_GNU_SOURCE -MMD -MP $(DEP_CFLAGS) $(EXTRA_CFLAGS)
LDLIBS  = $(DEP_LIBS) -fopenmp -lm -lpthread $(EXTRA_LDFLAGS)

LIB_DIRS := core layers losses data train
LIB_SRC  := $(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
TOOL_SRC := $(sort $(wildcard tools/*.c))
# The fuzz targets' bodies are part of the suite: test_fuzz_corpus.c replays the corpus through them.
TEST_SRC := $(sort $(wildcard tests/*.c)) tests/fuzz/targets.c
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
DEPS_OK  := $(BUILD)/.deps-ok

.PHONY: FORCE all deps ref-deps test-deps onnxruntime test test-asan demo bench bench-mpi bench-deps quality refs format clean fuzz \
        fuzz-build fuzz-seeds
all: $(BUILD)/mrcnn

# Checked once per build folder; delete build/ to check again.
deps: $(DEPS_OK)
$(DEPS_OK):
	@mkdir -p $(BUILD)
	@sh tools/ensure-debs.sh $(DEBS)
	@touch $@

ref-deps:
	@sh tools/ensure-debs.sh $(REF_DEBS)

# The compiler and flags a build folder was made with: when they change (say `make CFLAGS=-O3`),
# the file changes and every object is rebuilt, instead of linking objects made the old way.
FLAGS_STAMP := $(BUILD)/.flags
$(FLAGS_STAMP): FORCE | $(DEPS_OK)
	@printf '%s\n' '$(CC) $(ALL_CFLAGS) $(LDLIBS)' | cmp -s - $@ || \
	    printf '%s\n' '$(CC) $(ALL_CFLAGS) $(LDLIBS)' > $@
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_STAMP) | $(DEPS_OK)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libmrcnn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/mrcnn: $(TOOL_OBJ) $(BUILD)/libmrcnn.a $(FLAGS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ $(TOOL_OBJ) $(BUILD)/libmrcnn.a $(LDLIBS)

$(BUILD)/test_mrcnn: $(TEST_OBJ) $(BUILD)/libmrcnn.a $(FLAGS_STAMP)
	$(CC) $(ALL_CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libmrcnn.a $(LDLIBS) -lcriterion

# Criterion runs each test in its own process; two workers match the two-core machines, and
# each worker keeps to one BLAS/OpenMP thread so they do not fight over the cores.
TEST_ENV := OMP_NUM_THREADS=1 MRCNN_SHARED=$(CURDIR)/../shared \
            MRCNN_ONNXRUNTIME=$(ORT_DIR)/node_modules/onnxruntime-node
test: $(BUILD)/test_mrcnn $(BUILD)/mrcnn test-deps onnxruntime
	$(TEST_ENV) MRCNN_BIN=$(CURDIR)/$(BUILD)/mrcnn tests/run-suite.sh $(BUILD)/test.log \
	    ./$(BUILD)/test_mrcnn --jobs 2 $(TEST_ARGS)

# The same suite under AddressSanitizer and UBSan, in its own build folder.
ASAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
test-deps:
	@sh tools/ensure-debs.sh $(TEST_DEBS)

# Once per checkout; where npm is missing or cannot reach the registry, one line says so and the
# ONNX Runtime tests skip visibly (tests/test_onnx.c).
onnxruntime:
	@[ -f $(ORT_DIR)/node_modules/onnxruntime-node/package.json ] || { \
	    if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then \
	        echo "mrcnn: ONNX Runtime test skipped: node and npm are not installed"; \
	    else mkdir -p $(ORT_DIR) && cd $(ORT_DIR) && \
	        npm install --ignore-scripts --no-audit --no-fund --silent \
	            onnxruntime-node@$(ORT_VERSION) >npm.log 2>&1 || \
	        echo "mrcnn: ONNX Runtime test skipped: npm could not install onnxruntime-node@$(ORT_VERSION) (see $(ORT_DIR)/npm.log)"; \
	    fi; }

test-asan: test-deps onnxruntime | $(DEPS_OK)
	@mkdir -p build-asan && touch build-asan/.deps-ok
	$(MAKE) --no-print-directory BUILD=build-asan CFLAGS="-O1 -g" \
	    EXTRA_CFLAGS="$(ASAN_FLAGS)" EXTRA_LDFLAGS="$(ASAN_FLAGS)" build-asan/test_mrcnn build-asan/mrcnn
	$(TEST_ENV) MRCNN_BIN=$(CURDIR)/build-asan/mrcnn ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    tests/run-suite.sh build-asan/test.log ./build-asan/test_mrcnn --jobs 2 $(TEST_ARGS)

# ---- fuzzing ---------------------------------------------------------------------------------
# `make fuzz` builds one libFuzzer harness per target of tests/fuzz/targets.c with clang, ASan and
# UBSan (library included, in build-fuzz/), and runs each for FUZZ_SECONDS on a working copy of
# the committed corpus; crashers land in build-fuzz/crashes/ and fail the target. FUZZ_TARGETS
# picks some. New inputs stay in build-fuzz/corpus/; commit only the few that matter.
FUZZ_BUILD   := build-fuzz
FUZZ_DEBS    := clang libclang-rt-14-dev libomp-14-dev
FUZZ_TARGETS ?= annotations config image weights checkpoint h5_layout roi_align
FUZZ_SECONDS ?= 60
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_BINS     = $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/fuzz_%)
# Warnings are errors in the gcc builds; clang's extra ones (-Wdouble-promotion on float
# arguments, `omp simd` loops that instrumentation cannot vectorise) are silenced here.

$(FUZZ_BUILD)/.fuzz-deps-ok:
	@mkdir -p $(FUZZ_BUILD)
	@sh tools/ensure-debs.sh $(DEBS) $(FUZZ_DEBS)
	@touch $(FUZZ_BUILD)/.deps-ok $@

fuzz-build: $(FUZZ_BUILD)/.fuzz-deps-ok
	@$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) CC=clang CFLAGS="-O1 -g" \
	    EXTRA_CFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link -Wno-error -w" \
	    EXTRA_LDFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer" $(FUZZ_BINS)

.SECONDARY: $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz/fuzz_%.o)
$(BUILD)/fuzz_%: $(BUILD)/tests/fuzz/fuzz_%.o $(BUILD)/tests/fuzz/targets.o $(BUILD)/libmrcnn.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)

fuzz: fuzz-build
	@fail=0; for t in $(FUZZ_TARGETS); do \
	    sh tests/fuzz/run.sh $(FUZZ_BUILD) $$t $(FUZZ_SECONDS) || fail=1; \
	done; exit $$fail

# Rewrites the HDF5 and image seeds of tests/fuzz/corpus with the project's writers.
$(BUILD)/make_seeds: $(BUILD)/tests/fuzz/make_seeds.o $(BUILD)/tests/fuzz/targets.o \
                     $(BUILD)/libmrcnn.a
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LDLIBS)
fuzz-seeds: $(BUILD)/make_seeds
	mkdir -p tests/fuzz/corpus/weights tests/fuzz/corpus/checkpoint tests/fuzz/corpus/image
	./$(BUILD)/make_seeds tests/fuzz/corpus

demo: $(BUILD)/mrcnn
	./$(BUILD)/mrcnn demo --out demo

# A user's machine pins no OpenBLAS kernel, so the bench runs with both variables unset, in its
# own command only (tests and CI keep the environment). When this environment pins them, a
# quick run under the pin follows, so both figures stay on record.
bench: $(BUILD)/mrcnn onnxruntime bench-deps
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	    MRCNN_ONNXRUNTIME=$(ORT_DIR)/node_modules/onnxruntime-node ./$(BUILD)/mrcnn bench $(BENCH_ARGS)
	@if [ -n "$$OPENBLAS_CORETYPE$$OPENBLAS_L2_SIZE" ]; then \
	    echo "as this environment pins OpenBLAS (OPENBLAS_CORETYPE=$$OPENBLAS_CORETYPE OPENBLAS_L2_SIZE=$$OPENBLAS_L2_SIZE):"; \
	    MRCNN_ONNXRUNTIME=$(ORT_DIR)/node_modules/onnxruntime-node ./$(BUILD)/mrcnn bench --quick; \
	fi

# Data-parallel training speed (tools/bench_mpi.py): 1x1, 1x2 and 2x1 processes x threads on the
# R50 512 case, collectives' share and bytes, and a labelled projection; appends to BENCHMARKS.md.
bench-mpi: $(BUILD)/mrcnn
	/usr/bin/python3 tools/bench_mpi.py --mrcnn $(BUILD)/mrcnn $(BENCH_MPI_ARGS)

bench-deps: ref-deps

# Accuracy side by side with torchvision on generated data (17 minutes on 2 idle cores); a
# benchmark, not a test: it asserts nothing and appends its figures to BENCHMARKS.md.
quality: $(BUILD)/mrcnn ref-deps
	/usr/bin/python3 tools/quality.py --mrcnn $(BUILD)/mrcnn $(QUALITY_ARGS)

# Regenerates the committed PyTorch reference files in tests/ref/ (needs python3-torch).
refs: ref-deps
	cd tests/ref && for s in make_*.py; do /usr/bin/python3 $$s || exit 1; done

format:
	clang-format -i $(LIB_SRC) $(TOOL_SRC) $(TEST_SRC) $(wildcard */*.h tests/fuzz/*.[ch])

clean:
	rm -rf $(BUILD) build-asan $(FUZZ_BUILD)

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_OBJ:.o=.d)
-include $(wildcard $(BUILD)/tests/fuzz/*.d)

# tessera build. `make demo` and `make test` are the two commands a newcomer runs.
# Sources are discovered by folder, so a new file needs no Makefile edit.

# Every core unless -j is given: `make test` (CI's command) has four builds to make.
ifeq ($(filter -j%,$(MAKEFLAGS)),)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif

CC      ?= gcc
OPT     ?= -O3 -march=native
WARN    := -Wall -Wextra -Werror -Wno-unknown-pragmas
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L
# A sanitizer build (make BUILD=build-asan SAN=1): debug info, light optimization.
# FUZZ=1 (set by `make fuzz`) adds libFuzzer coverage for clang.
ifneq ($(SAN)$(FUZZ),)
OPT     := -O1 -g -fno-omit-frame-pointer
endif
BUILD   ?= build
CFLAGS  := $(CSTD) $(OPT) $(WARN) -fopenmp -Iinclude -I$(BUILD)/gen -fPIC
LDLIBS  := -ldnnl -lprotobuf-c -lpng -ljpeg -lz -lm -fopenmp
# Open MPI (docs/distributed.md): found through pkg-config, the CLI's data-parallel
# training (tools/dist_mpi.c) is built with it; MPI=0, or a machine without it, builds
# everything else the same. libtessera never links MPI.
MPI     ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c) -DTS_HAVE_MPI
MPI_LIBS   := $(shell pkg-config --libs ompi-c)
endif
# SAN=1 also turns on TS_ASSERT, the internal invariants (src/core/core.h).
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow -DTS_DEBUG_ASSERT
LDLIBS  += -fsanitize=address,undefined,float-cast-overflow
endif
ifeq ($(FUZZ),1)
CFLAGS  += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
LDLIBS  += -fsanitize=address,undefined
endif

LIB_SRC  := $(sort $(wildcard src/*/*.c))
ZOO      := $(sort $(wildcard zoo/*.arch))
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/zoo.o $(BUILD)/gen/onnx/onnx.pb-c.o
# The ONNX schema is Debian's (libonnx-dev); its C code is generated, never edited.
ONNX_PROTO ?= /usr/include/onnx/onnx.proto
TOOL_SRC := $(sort $(wildcard tools/*.c))
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(filter-out tests/common/%,$(wildcard tests/*/test_*.c)))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
TEST_UTIL:= $(sort $(wildcard tests/common/*.c))

.PHONY: all deps demo report-demo test test-fast bench clean lib symbols layers tests fuzz fuzz-smoke fuzz-long onnx-conformance onnx-check valgrind dudect bench-onnx bench-rnn

all: $(BUILD)/tessera $(BUILD)/libtessera.a

lib: $(BUILD)/libtessera.a

# `make symbols`: libtessera.a exports exactly tessera.h's functions (part of make test).
symbols: $(BUILD)/libtessera.a
	@sh scripts/check-symbols.sh $(BUILD)

# `make layers`: every #include in src/ and tools/ points down the layers (docs/design.md).
layers:
	@sh scripts/check-layers.sh

$(BUILD)/%.o: %.c $(wildcard include/*.h src/*/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -Isrc -c $< -o $@

$(BUILD)/gen/zoo.c: $(ZOO) scripts/embed-zoo.sh
	@mkdir -p $(dir $@)
	@sh scripts/embed-zoo.sh $@ $(ZOO)

$(BUILD)/gen/zoo.o: $(BUILD)/gen/zoo.c
	@$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/gen/onnx/onnx.pb-c.h: $(ONNX_PROTO)
	@mkdir -p $(dir $@)
	@echo "  PROTOC  $<"
	@cp $< $(BUILD)/gen/onnx/onnx.proto
	@protoc-c --proto_path=$(BUILD)/gen/onnx --c_out=$(BUILD)/gen/onnx $(BUILD)/gen/onnx/onnx.proto
$(BUILD)/gen/onnx/onnx.pb-c.c: $(BUILD)/gen/onnx/onnx.pb-c.h

# generated code: warnings are protoc-c's, not ours; NDEBUG drops its assert()s (on
# descriptors tessera always passes right), so the library never aborts
$(BUILD)/gen/onnx/onnx.pb-c.o: $(BUILD)/gen/onnx/onnx.pb-c.c
	@$(CC) $(filter-out -Werror,$(CFLAGS)) -DNDEBUG -w -c $< -o $@

$(patsubst %.c,$(BUILD)/%.o,$(wildcard src/onnx/*.c)): $(BUILD)/gen/onnx/onnx.pb-c.h

# Two archives of the same objects. libtessera.a, which users and the CLI link, exposes
# only what tessera.h declares: the objects are linked into one (ld -r) and every other
# global symbol (internal helpers, the generated onnx__* code) is made local, so none can
# collide with a user's (scripts/check-symbols.sh checks it). libtessera-internal.a keeps
# every symbol, for tests, fuzz targets and benchmarks that call internal functions.
$(BUILD)/gen/exports.txt: include/tessera.h scripts/public-symbols.sh
	@mkdir -p $(dir $@)
	@sh scripts/public-symbols.sh $< >$@

$(BUILD)/libtessera.a: $(LIB_OBJ) $(BUILD)/gen/exports.txt
	@rm -f $@
	@echo "  AR      $@"
	@ld -r $(LIB_OBJ) -o $(BUILD)/gen/tessera-all.o
	@objcopy --keep-global-symbols=$(BUILD)/gen/exports.txt $(BUILD)/gen/tessera-all.o $(BUILD)/gen/tessera.o
	@ar rcs $@ $(BUILD)/gen/tessera.o

$(BUILD)/libtessera-internal.a: $(LIB_OBJ)
	@rm -f $@
	@echo "  AR      $@"
	@ar rcs $@ $^

$(BUILD)/tools/dist_mpi.o: CFLAGS += $(MPI_CFLAGS)

$(BUILD)/tessera: $(TOOL_OBJ) $(BUILD)/libtessera.a
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $(TOOL_OBJ) $(BUILD)/libtessera.a $(LDLIBS) $(MPI_LIBS) -o $@

$(BUILD)/tests/%: tests/%.c $(TEST_UTIL) $(BUILD)/libtessera-internal.a tests/common/test.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -Isrc -Itests $< $(TEST_UTIL) $(BUILD)/libtessera-internal.a $(LDLIBS) -o $@

# Allocation-failure injection (tests/robust/test_alloc_fail.c, docs/robustness.md):
# every allocation made by libtessera's own code goes through the test's counter.
ALLOC_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup,--wrap=aligned_alloc,--wrap=free
$(BUILD)/tests/robust/test_alloc_fail: tests/robust/test_alloc_fail.c $(TEST_UTIL) $(BUILD)/libtessera-internal.a tests/common/test.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -Isrc -Itests $< $(TEST_UTIL) $(BUILD)/libtessera-internal.a $(ALLOC_WRAP) $(LDLIBS) -o $@

tests: $(TEST_BIN)

# Installs missing Debian packages (needs root or sudo), one script for everything.
deps:
	@sh scripts/install-deps.sh

demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/demo.sh

# A model's HTML report (tessera report) checked in headless Chromium, with a
# screenshot: reuses make demo's outputs, or trains a quick model (scripts/report-demo.sh).
report-demo: deps
	@$(MAKE) --no-print-directory all
	@sh scripts/report-demo.sh

# Every test, plain build and ASan+UBSan build; valgrind over the CLI flows (beside the
# fuzz run); each fuzz target replaying its corpora, then a fixed seed and run count (deterministic).
# Last line: "N passed, N failed".
test: deps
	@sh scripts/check-layers.sh
	@sh scripts/report-browser-deps.sh >/dev/null || echo "note: tests/tools/test_cli_report will skip its browser check"
	@$(MAKE) --no-print-directory all tests
	@$(MAKE) --no-print-directory BUILD=build-asan SAN=1 all tests
	@$(MAKE) --no-print-directory BUILD=build-vg OPT="-O1 -g" build-vg/tessera
	@$(MAKE) --no-print-directory fuzz
	@# valgrind (one thread) runs beside the fuzz targets: each alone leaves a core idle part of the time
	@sh scripts/valgrind-cli.sh build-vg >build-vg/valgrind-cli.log 2>&1 & vg=$$!; \
	sh scripts/fuzz-smoke.sh build-fuzz; fz=$$?; wait $$vg; v=$$?; cat build-vg/valgrind-cli.log; \
	[ $$fz -eq 0 ] && [ $$v -eq 0 ]
	@sh scripts/check-symbols.sh build
	@sh scripts/run-tests.sh build build-asan

# Plain build only, for the edit-compile-test loop.
test-fast:
	@sh scripts/check-layers.sh
	@$(MAKE) --no-print-directory all tests
	@sh scripts/check-symbols.sh build
	@sh scripts/run-tests.sh build

# The ONNX backend test data (libonnx-testdata): one line per op type, and with
# -v each case that did not pass. Also part of `make test` (tests/onnx).
onnx-conformance: deps
	@$(MAKE) --no-print-directory $(BUILD)/tests/onnx/test_onnx_conformance
	@$(BUILD)/tests/onnx/test_onnx_conformance -v

# valgrind memcheck over the CLI flows (also part of `make test`).
valgrind:
	@$(MAKE) --no-print-directory BUILD=build-vg OPT="-O1 -g" build-vg/tessera
	@sh scripts/valgrind-cli.sh build-vg

# Exports checked by onnx.checker and onnxruntime (scripts/onnx-check.sh).
onnx-check:
	@sh scripts/onnx-check.sh

bench: all
	@sh bench/run.sh
	@sh bench/resnet20/run.sh

# Timing-leak measurement of inference, default vs constant-time mode (dudect-style
# Welch t-test; bench/security/run.sh, docs/security.md). DUDECT_N measurements each.
$(BUILD)/bench/dudect: bench/security/dudect.c $(BUILD)/libtessera.a include/tessera.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libtessera.a $(LDLIBS) -o $@

# tessera against onnxruntime on torchvision's models (bench/onnx/run.sh)
$(BUILD)/bench/onnx_run: bench/onnx/onnx_run.c $(BUILD)/libtessera.a include/tessera.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libtessera.a $(LDLIBS) -o $@

bench-onnx: all $(BUILD)/bench/onnx_run
	@sh bench/onnx/run.sh $(BUILD)

# recurrent layers against PyTorch (bench/rnn/run.sh)
$(BUILD)/bench/rnn_bench: bench/rnn/rnn_bench.c $(BUILD)/libtessera.a include/tessera.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libtessera.a $(LDLIBS) -o $@

$(BUILD)/bench/text_dump: bench/rnn/text_dump.c $(BUILD)/libtessera.a include/tessera.h
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) $< $(BUILD)/libtessera.a $(LDLIBS) -o $@

bench-rnn: all $(BUILD)/bench/rnn_bench $(BUILD)/bench/text_dump
	@sh bench/rnn/run.sh $(BUILD)

dudect: all $(BUILD)/bench/dudect
	@sh bench/security/run.sh $(BUILD)/bench/dudect

clean:
	rm -rf build build-asan build-fuzz build-vg

# libFuzzer targets for every reader (tests/fuzz, clang): `make fuzz` builds them in
# build-fuzz/; `make fuzz-smoke` replays each target's seeds and saved crash inputs, then
# a fixed seed and run count (what make test runs); `make fuzz-long` fuzzes each for
# FUZZ_SECONDS, open-ended, keeping its corpus in build-fuzz/corpus.
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(patsubst tests/fuzz/%.c,build-fuzz/%,$(FUZZ_SRC))
FUZZ_SECONDS ?= 60

fuzz:
	@$(MAKE) --no-print-directory BUILD=build-fuzz FUZZ=1 CC=clang $(FUZZ_BIN)

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_common.h build-fuzz/libtessera-internal.a
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -fsanitize=fuzzer -Isrc $< build-fuzz/libtessera-internal.a $(LDLIBS) -o $@

fuzz-smoke: fuzz
	@sh scripts/fuzz-smoke.sh build-fuzz

fuzz-long: fuzz
	@sh scripts/fuzz-smoke.sh build-fuzz $(FUZZ_SECONDS)

# ---------------------------------------------------------------- install
# `make install [PREFIX=/usr/local] [DESTDIR=...]`: the CLI, libtessera.so (SONAME
# libtessera.so.MAJOR) and libtessera.a, tessera.h, tessera.pc and the man page
# tessera(1); `make uninstall` removes exactly those files (tests/install/).
# The shared library exports what libtessera.a exports: tessera.h's functions (a
# version script made from the same list); the man page is made from the help texts.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
PKGCONFIGDIR?= $(LIBDIR)/pkgconfig
VERSION     := $(shell sed -n 's/^.define TS_VERSION_STRING "\(.*\)"/\1/p' include/tessera.h)
SOMAJOR     := $(firstword $(subst ., ,$(VERSION)))
SONAME      := libtessera.so.$(SOMAJOR)
SOLIB       := libtessera.so.$(VERSION)

.PHONY: shared man install uninstall

all: $(BUILD)/libtessera.so $(BUILD)/tessera.1
shared: $(BUILD)/libtessera.so
man: $(BUILD)/tessera.1

$(BUILD)/gen/tessera.map: $(BUILD)/gen/exports.txt
	@{ echo "{ global:"; sed 's/.*/  &;/' $<; echo "local: *; };"; } >$@

# -z defs: every symbol resolved now (a missing library fails here, not in a user's link)
$(BUILD)/$(SOLIB): $(LIB_OBJ) $(BUILD)/gen/tessera.map
	@echo "  LD      $@"
	@$(CC) $(CFLAGS) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(BUILD)/gen/tessera.map \
		-Wl,-z,defs $(LIB_OBJ) $(LDLIBS) -o $@

$(BUILD)/libtessera.so: $(BUILD)/$(SOLIB)
	@ln -sf $(SOLIB) $(BUILD)/$(SONAME)
	@ln -sf $(SONAME) $@

$(BUILD)/tessera.1: $(BUILD)/tessera scripts/gen-man.sh docs/cli.md
	@echo "  MAN     $@"
	@sh scripts/gen-man.sh $(BUILD)/tessera >$@.tmp || { rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@

# The same list of files for both, so uninstall removes what install put there.
INSTALLED := $(BINDIR)/tessera $(LIBDIR)/$(SOLIB) $(LIBDIR)/$(SONAME) $(LIBDIR)/libtessera.so \
	$(LIBDIR)/libtessera.a $(INCLUDEDIR)/tessera.h $(PKGCONFIGDIR)/tessera.pc $(MANDIR)/man1/tessera.1

# tessera.pc names PREFIX, so it is written at install time, not built.
install: $(BUILD)/tessera $(BUILD)/libtessera.a $(BUILD)/libtessera.so $(BUILD)/tessera.1
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BUILD)/tessera $(DESTDIR)$(BINDIR)/tessera
	install -m 755 $(BUILD)/$(SOLIB) $(DESTDIR)$(LIBDIR)/$(SOLIB)
	ln -sf $(SOLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libtessera.so
	install -m 644 $(BUILD)/libtessera.a $(DESTDIR)$(LIBDIR)/libtessera.a
	install -m 644 include/tessera.h $(DESTDIR)$(INCLUDEDIR)/tessera.h
	sh scripts/tessera-pc.sh "$(PREFIX)" "$(LIBDIR)" "$(INCLUDEDIR)" "$(VERSION)" >$(DESTDIR)$(PKGCONFIGDIR)/tessera.pc
	install -m 644 $(BUILD)/tessera.1 $(DESTDIR)$(MANDIR)/man1/tessera.1

uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# domicile — build, tests, demo, benchmarks.
#
#   make            the `domicile` binary in $(BUILD)/
#   make check      unit tests (cmocka) and end-to-end tests with real processes
#   make check-asan the same, built with AddressSanitizer and UBSan
#   make demo       installs what is missing, builds, runs the demo
#   make bench      the benchmarks (report, never fail)
#   make fuzz       libFuzzer targets (clang), each run for FUZZ_SECONDS

BUILD ?= build
CC ?= cc
PKGS = libevent libevent_pthreads libevent_openssl libssl jansson sqlite3 libprotobuf-c libzstd libmosquitto libcrypto p11-kit-1

SAN ?=
FUZZ ?=
ifeq ($(FUZZ),1)
# libFuzzer builds (clang): the library is instrumented for coverage too.
SANFLAGS = -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all \
	-fno-omit-frame-pointer
OPT = -O1
else ifeq ($(SAN),1)
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
OPT = -O1
else
SANFLAGS =
OPT = -O2
endif

CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -g $(OPT) -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-parameter -Isrc -I$(BUILD)/gen $(SANFLAGS) \
	-DDM_DEFAULT_CATALOG='"$(abspath catalog/signals.catalog)"'
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CFLAGS += $(CFLAGS_BASE) $(PKG_CFLAGS)
LDLIBS = $(PKG_LIBS) -lpthread -lm

PROTO_SRC = $(BUILD)/gen/proto/batch.pb-c.c
PROTO_HDR = $(BUILD)/gen/proto/batch.pb-c.h
LIB_SRC = $(filter-out src/main.c,$(shell find src -name '*.c' | sort))
LIB_OBJ = $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/proto/batch.pb-c.o
TEST_SRC = $(wildcard tests/test_*.c)
TEST_BIN = $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

.PHONY: all check unit e2e check-asan demo bench fuzz fuzz-run deps clean format
# Keep test and bench objects between runs instead of rebuilding them.
.SECONDARY:
all: $(BUILD)/domicile

deps:
	scripts/install-deps.sh

$(PROTO_SRC) $(PROTO_HDR): proto/batch.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --c_out=$(BUILD)/gen proto/batch.proto

$(BUILD)/gen/proto/batch.pb-c.o: $(PROTO_SRC)
	$(CC) $(CFLAGS) -Wno-error -c $< -o $@

$(BUILD)/%.o: %.c $(PROTO_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdomicile.a: $(LIB_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/domicile: $(BUILD)/src/main.o $(BUILD)/libdomicile.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/libdomicile.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libdomicile.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

unit: $(TEST_BIN)
	@set -e; for t in $(TEST_BIN); do echo "== $$t"; $$t; done

# The fault the end-to-end tests inject into a real node (LD_PRELOAD):
# built without sanitizers, it only wraps one libc call.
FAILSYNC_LIB = $(BUILD)/tests/libfailsync.so
$(FAILSYNC_LIB): tests/e2e/failsync.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -fPIC -shared -o $@ $< -ldl

e2e: $(BUILD)/domicile $(FAILSYNC_LIB)
	DOMICILE=$(abspath $(BUILD)/domicile) FAILSYNC_LIB=$(abspath $(FAILSYNC_LIB)) \
		tests/e2e/run.sh

# The tests need packages too: install what is missing first (a no-op when
# everything is there).
check: deps
	$(MAKE) unit e2e

check-asan: deps
	$(MAKE) BUILD=build-asan SAN=1 unit e2e

demo: deps
	$(MAKE) $(BUILD)/domicile
	DOMICILE=$(abspath $(BUILD)/domicile) scripts/demo.sh

bench: $(BUILD)/domicile $(BENCH_BIN)
	DOMICILE=$(abspath $(BUILD)/domicile) BENCH_DIR=$(abspath $(BUILD)/bench) bench/run.sh

FUZZ_SECONDS ?= 20
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN = $(FUZZ_SRC:fuzz/%.c=$(BUILD)/fuzz/%)
$(BUILD)/fuzz/%: fuzz/%.c $(BUILD)/libdomicile.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(BUILD)/libdomicile.a $(LDLIBS)

# Each target runs FUZZ_SECONDS from its seeds in fuzz/corpus/ (if any);
# what it finds new goes to $(BUILD)/corpus/, crashes to $(BUILD)/.
fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang FUZZ=1 fuzz-run

fuzz-run: $(FUZZ_BIN)
	@set -e; for f in $(FUZZ_BIN); do n=$$(basename $$f); \
	  mkdir -p $(BUILD)/corpus/$$n fuzz/corpus/$$n; echo "== $$n"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=$(BUILD)/ \
	    $(BUILD)/corpus/$$n fuzz/corpus/$$n 2>&1 | tail -1; done

format:
	clang-format -i $$(find src tests bench fuzz -name '*.[ch]')

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

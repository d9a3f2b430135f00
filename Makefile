# celeriac: plain Makefile. Override CC, OPT, PREFIX or SANITIZE on the
# command line, e.g. `make SANITIZE=address,undefined`.

CC ?= cc
OPT ?= -O2 -g
PREFIX ?= /usr/local
BUILD ?= build
PYTHON ?= /usr/bin/python3
SANITIZE ?=

WARNINGS = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-nonliteral
PKGS = librabbitmq jansson zlib uuid hiredis libssl libcrypto
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS := $(shell pkg-config --libs $(PKGS) 2>/dev/null || \
                echo -lrabbitmq -ljansson -lz -luuid -lhiredis -lssl -lcrypto)

ifneq ($(SANITIZE),)
SAN_FLAGS = -fsanitize=$(SANITIZE) -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined
endif

CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(WARNINGS) $(SAN_FLAGS) \
             -fPIC -Iinclude -Iprotocol -Ilib $(PKG_CFLAGS) $(CFLAGS)
LDFLAGS_ALL = $(SAN_FLAGS) $(LDFLAGS)
LIBS = $(PKG_LIBS) -ldl -lm -lpthread

PROTOCOL_SRC = $(wildcard protocol/*.c)
LIB_SRC = $(wildcard lib/*.c)
WORKER_SRC = $(wildcard worker/*.c)
CORE_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(PROTOCOL_SRC) $(LIB_SRC))
WORKER_OBJ = $(patsubst %.c,$(BUILD)/obj/%.o,$(WORKER_SRC))
UNIT_SRC = $(wildcard tests/unit/check_*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck)
FUZZ_SRC = $(wildcard fuzz/fuzz_*.c)

.PHONY: all check interop test asan lint format demo run install clean \
        deps services bench fuzz-smoke

all: $(BUILD)/celeriac $(BUILD)/demo_tasks.so $(BUILD)/libceleriac.a \
     $(BUILD)/libceleriac.so

$(BUILD)/obj/%.o: %.c $(wildcard include/celeriac/*.h protocol/*.h lib/*.h \
                           worker/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/libceleriac.a: $(CORE_OBJ)
	@mkdir -p $(BUILD)
	rm -f $@
	ar rcs $@ $^

$(BUILD)/libceleriac.so: $(CORE_OBJ)
	$(CC) -shared $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The worker links the static library and exports its symbols, so task
# modules loaded with dlopen resolve cel_* against the running binary.
$(BUILD)/celeriac: $(WORKER_OBJ) $(BUILD)/libceleriac.a
	$(CC) $(LDFLAGS_ALL) -rdynamic -o $@ $(WORKER_OBJ) \
	    -Wl,--whole-archive $(BUILD)/libceleriac.a -Wl,--no-whole-archive \
	    $(LIBS)

$(BUILD)/demo_tasks.so: examples/demo_tasks.c include/celeriac/celeriac.h
	$(CC) $(CFLAGS_ALL) -shared -o $@ $< $(LDFLAGS_ALL)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libceleriac.a \
    $(wildcard tests/unit/support_*.c tests/unit/support_*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -DCEL_TEST_DATA='"tests/data"' \
	    -o $@ $< $(wildcard tests/unit/support_*.c) $(BUILD)/libceleriac.a \
	    $(LDFLAGS_ALL) $(CHECK_LIBS) $(LIBS)

check: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

deps:
	scripts/deps.sh

services:
	scripts/services.sh start

interop: all services
	CELERIAC_REQUIRE_BROKER=1 $(PYTHON) -m pytest -q tests/interop

asan:
	$(MAKE) BUILD=build/asan SANITIZE=address,undefined OPT="-O1 -g" check

fuzz-smoke:
	@if [ -n "$(FUZZ_SRC)" ]; then $(MAKE) -f fuzz/Makefile smoke; fi

test: deps
	$(MAKE) all
	$(MAKE) check
	$(MAKE) asan
	$(MAKE) fuzz-smoke
	$(MAKE) interop

lint:
	@clang-format --dry-run --Werror $(PROTOCOL_SRC) $(LIB_SRC) \
	    $(WORKER_SRC) examples/*.c include/celeriac/*.h protocol/*.h \
	    lib/*.h worker/*.h

format:
	clang-format -i $(PROTOCOL_SRC) $(LIB_SRC) $(WORKER_SRC) examples/*.c \
	    include/celeriac/*.h protocol/*.h lib/*.h worker/*.h

demo: deps
	$(MAKE) all
	scripts/services.sh start
	$(PYTHON) examples/demo_client.py

run: all
	$(BUILD)/celeriac worker -A $(BUILD)/demo_tasks.so \
	    --result-backend rpc:// -l info

# The broker ceiling of the benchmark: a bare rabbitmq-c consumer.
$(BUILD)/bench/ceiling: bench/ceiling.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(LDFLAGS_ALL) $(PKG_LIBS)

# BENCH_FLAGS passes options to bench/run.sh, e.g. BENCH_FLAGS=--quick.
bench: all services $(BUILD)/bench/ceiling
	CELERIAC_BUILD_DIR=$(BUILD) bench/run.sh $(BENCH_FLAGS)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib \
	    $(DESTDIR)$(PREFIX)/include/celeriac $(DESTDIR)$(PREFIX)/lib/celeriac
	install -m 755 $(BUILD)/celeriac $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libceleriac.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libceleriac.so $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/demo_tasks.so $(DESTDIR)$(PREFIX)/lib/celeriac/
	install -m 644 include/celeriac/*.h $(DESTDIR)$(PREFIX)/include/celeriac/

clean:
	rm -rf $(BUILD)

# moongate build. `make` builds build/moongate; `make test` installs what is
# missing (make deps) and runs every spec; `make asan` builds with ASan+UBSan.

CC        ?= cc
BUILD     ?= build
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
LUAJIT_INC ?= /usr/include/luajit-2.1
BUSTED    ?= busted
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

DEPS_PKGS := build-essential pkg-config libuv1-dev libjansson-dev libluajit2-5.1-dev luajit2 \
             lua-busted lua-socket lua-posix lua-cjson node-llhttp python3 curl clang-format chromium \
             libssl-dev openssl pebble testssl.sh

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT       ?= -O2 -g
CFLAGS_ALL = -std=gnu11 $(OPT) $(WARN) -fvisibility=hidden -pthread \
             -I core -I $(LLHTTP_INC) -I $(LUAJIT_INC) -I $(BUILD) \
             -DMG_VERSION='"$(VERSION)"' $(EXTRA_CFLAGS)
LDFLAGS_ALL = -pthread -Wl,-E $(EXTRA_LDFLAGS)
LIBS      := -luv -ljansson -lluajit-5.1 -lssl -lcrypto -lm -ldl

CORE_SRCS := $(wildcard core/*.c)
CORE_OBJS := $(patsubst core/%.c,$(BUILD)/core/%.o,$(CORE_SRCS))
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
EMBED_LUA := $(shell find lua plugins -name '*.lua' 2>/dev/null | sort)

.PHONY: all deps test test-unit test-integration asan run bench e2e format format-check clean

all: $(BUILD)/moongate

# C unit tests, built for `make test` (not needed to build the gateway)
TEST_BINS = $(BUILD)/tls_engine_test

$(BUILD)/moongate: $(CORE_OBJS) $(LLHTTP_OBJS) $(BUILD)/embedded.o
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The TLS engine's unit tests (spec/tls/engine_spec.lua runs them).
TLS_TEST_OBJS := $(patsubst %,$(BUILD)/core/%.o,tls tls_certs tls_tickets tls_crypto tls_stream stream log)
$(BUILD)/tls_engine_test: spec/tls/engine_test.c $(TLS_TEST_OBJS) $(wildcard core/*.h)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ spec/tls/engine_test.c $(TLS_TEST_OBJS) -luv -lssl -lcrypto

$(BUILD)/core/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/core
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# llhttp is third-party generated C: compiled with our flags but without -Werror.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c | $(BUILD)/llhttp
	$(CC) -std=gnu11 $(OPT) -fvisibility=hidden -I $(LLHTTP_INC) $(EXTRA_CFLAGS) -w -c -o $@ $<

# The gateway's Lua library and the built-in plugins are compiled into the
# binary, so build/moongate runs from any directory.
$(BUILD)/embedded.c: tools/embed.lua $(EMBED_LUA) | $(BUILD)
	luajit tools/embed.lua $(EMBED_LUA) > $@.tmp && mv $@.tmp $@

$(BUILD)/embedded.o: $(BUILD)/embedded.c
	$(CC) -std=gnu11 -O0 -c -o $@ $<

$(BUILD) $(BUILD)/core $(BUILD)/llhttp:
	mkdir -p $@

deps:
	@sh tools/deps.sh $(DEPS_PKGS)

test: deps
	$(MAKE) all $(TEST_BINS)
	sh tools/run-specs.sh $(BUILD)/moongate

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" all build/asan/tls_engine_test

test-asan: deps asan
	MG_SANITIZED=1 sh tools/run-specs.sh build/asan/moongate

run: all
	$(BUILD)/moongate

bench: all
	sh bench/run.sh $(BUILD)/moongate

e2e:
	sh e2e/run.sh

format:
	clang-format -i core/*.c core/*.h

format-check:
	clang-format --dry-run --Werror core/*.c core/*.h

clean:
	rm -rf build

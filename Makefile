# moongate build. `make` builds build/moongate; `make run` installs the build
# dependencies (make build-deps), builds and runs the gateway; `make test`
# installs what is missing (make deps) and runs every spec; `make asan`
# builds with ASan+UBSan; `make demo` brings up the compose demo.

CC        ?= cc
BUILD     ?= build
LLHTTP_SRC ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
LUAJIT_INC ?= /usr/include/luajit-2.1
BUSTED    ?= busted
VERSION   := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

# What building needs (make run installs only these), then what the specs add.
# zlib1g, libbrotli1, libcrypt1: loaded at run time through the FFI by the
# compress and basic_auth middlewares (libz.so.1, libbrotlienc.so.1, libcrypt.so.1)
BUILD_PKGS := build-essential pkg-config libuv1-dev libjansson-dev libluajit2-5.1-dev luajit2 node-llhttp \
              libssl-dev libnghttp2-dev zlib1g libbrotli1 libcrypt1
DEPS_PKGS := $(BUILD_PKGS) lua-busted lua-socket lua-posix lua-cjson python3 curl clang-format chromium \
             openssl pebble testssl.sh nghttp2-client nghttp2-server python3-grpcio
# What make bench adds: the peers and the load tools.
BENCH_PKGS := nginx-light libnginx-mod-http-lua haproxy wrk valgrind openssl python3 nghttp2-client

WARN      := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
OPT       ?= -O2 -g
CFLAGS_ALL = -std=gnu11 $(OPT) $(WARN) -fvisibility=hidden -pthread \
             -I core -I $(LLHTTP_INC) -I $(LUAJIT_INC) -I $(BUILD) \
             -DMG_VERSION='"$(VERSION)"' $(EXTRA_CFLAGS)
LDFLAGS_ALL = -pthread -Wl,-E $(EXTRA_LDFLAGS)
LIBS      := -luv -ljansson -lluajit-5.1 -lnghttp2 -lssl -lcrypto -lm -ldl

CORE_SRCS := $(wildcard core/*.c)
CORE_OBJS := $(patsubst core/%.c,$(BUILD)/core/%.o,$(CORE_SRCS))
LLHTTP_OBJS := $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o $(BUILD)/llhttp/llhttp.o
# lua/ also holds the spec backends' scripts (lua/moongate/test/*.py).
EMBED_LUA := $(shell find lua plugins \( -name '*.lua' -o -name '*.py' \) 2>/dev/null | sort)
EMBED_FILES := $(EMBED_LUA) core/dashboard.html

.PHONY: all deps build-deps test test-unit test-integration asan run demo demo-down bench e2e e2e-swarm format format-check clean

all: $(BUILD)/moongate

# C unit tests, built for `make test` (not needed to build the gateway)
TEST_BINS = $(BUILD)/tls_engine_test

$(BUILD)/moongate: $(CORE_OBJS) $(LLHTTP_OBJS) $(BUILD)/embedded.o
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

# The TLS engine's unit tests (spec/tls/engine_spec.lua runs them).
TLS_TEST_OBJS := $(patsubst %,$(BUILD)/core/%.o,tls tls_cert tls_certs tls_ocsp tls_tickets tls_crypto tls_stream stream log)
$(BUILD)/tls_engine_test: spec/tls/engine_test.c $(TLS_TEST_OBJS) $(wildcard core/*.h)
	$(CC) $(CFLAGS_ALL) $(LDFLAGS_ALL) -o $@ spec/tls/engine_test.c $(TLS_TEST_OBJS) -luv -lssl -lcrypto

$(BUILD)/core/%.o: core/%.c $(wildcard core/*.h) | $(BUILD)/core
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

# llhttp is third-party generated C: compiled with our flags but without -Werror.
$(BUILD)/llhttp/%.o: $(LLHTTP_SRC)/%.c | $(BUILD)/llhttp
	$(CC) -std=gnu11 $(OPT) -fvisibility=hidden -I $(LLHTTP_INC) $(EXTRA_CFLAGS) -w -c -o $@ $<

# The gateway's Lua library, its spec helpers, the built-in plugins and the
# admin dashboard page are compiled into the binary, so build/moongate runs
# (and tests) from any directory.
$(BUILD)/embedded.c: tools/embed.lua $(EMBED_FILES) $(BUILD)/embed.list | $(BUILD)
	luajit tools/embed.lua $(EMBED_FILES) > $@.tmp && mv $@.tmp $@

# Changes when a file is added to or removed from the embedded set, so the
# binary never misses a new file whose mtime is older than embedded.c.
$(BUILD)/embed.list: FORCE | $(BUILD)
	@echo '$(EMBED_FILES)' | cmp -s - $@ || echo '$(EMBED_FILES)' > $@

$(BUILD)/embedded.o: $(BUILD)/embedded.c
	$(CC) -std=gnu11 -O0 -c -o $@ $<

$(BUILD) $(BUILD)/core $(BUILD)/llhttp:
	mkdir -p $@

deps:
	@sh tools/deps.sh $(DEPS_PKGS)
	@sh tools/go-tools.sh

build-deps:
	@sh tools/deps.sh $(BUILD_PKGS)

test: deps
	$(MAKE) all $(TEST_BINS)
	sh tools/run-specs.sh $(BUILD)/moongate

asan:
	$(MAKE) BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  EXTRA_LDFLAGS="-fsanitize=address,undefined" all build/asan/tls_engine_test

test-asan: deps asan
	MG_SANITIZED=1 sh tools/run-specs.sh build/asan/moongate

# The gateway in the foreground on the embedded default config (:8080), or
# on ./moongate.lua if there is one; ARGS="-c FILE" picks another config.
run: build-deps
	$(MAKE) all
	$(BUILD)/moongate $(ARGS)

# The compose demo (Docker): tools/demo.sh builds the base image when it
# cannot be pulled, brings the stack up with Compose v1 or v2, prints the URLs.
demo:
	sh tools/demo.sh up

demo-down:
	sh tools/demo.sh down

bench: all
	@sh tools/deps.sh $(BENCH_PKGS)
	sh bench/run.sh $(BUILD)/moongate

e2e:
	sh e2e/run.sh

# only the Swarm discovery test (single-node swarm, left on every exit path)
e2e-swarm:
	sh e2e/run.sh swarm

# (optional: the Docker build context has no fuzz/)
-include fuzz/fuzz.mk

# Chaos and soak on the real Docker engine (docs/reliability.md).
.PHONY: chaos chaos-short soak
chaos:
	sh e2e/chaos/run.sh full

chaos-short:
	sh e2e/chaos/run.sh short

soak:
	sh bench/soak.sh

format:
	clang-format -i core/*.c core/*.h fuzz/*.c fuzz/*.h

format-check:
	clang-format --dry-run --Werror core/*.c core/*.h fuzz/*.c fuzz/*.h

clean:
	rm -rf build

FORCE:

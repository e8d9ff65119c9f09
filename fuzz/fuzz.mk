# libFuzzer harnesses (docs/reliability.md, "Fuzzing").
# Included by the Makefile. Everything builds under build/fuzz with clang,
# ASan and UBSan; the gateway's objects are rebuilt there with
# -fsanitize=fuzzer-no-link so the fuzzer sees their coverage.

FUZZ_CC      ?= clang
FUZZ_BUILD   := $(BUILD)/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   = -std=gnu11 -O1 -g -fno-omit-frame-pointer $(WARN) -pthread \
                -I core -I fuzz -I $(LLHTTP_INC) -I $(LUAJIT_INC) -I $(BUILD) \
                -DMG_VERSION='"$(VERSION)"' -fsanitize=fuzzer-no-link $(FUZZ_SAN)
FUZZ_HARNESSES := request response router config
FUZZ_SECONDS ?= 60

FUZZ_CORE_OBJS := $(patsubst core/%.c,$(FUZZ_BUILD)/obj/core/%.o,$(filter-out core/main.c,$(CORE_SRCS)))
FUZZ_LLHTTP_OBJS := $(patsubst $(BUILD)/llhttp/%,$(FUZZ_BUILD)/obj/llhttp/%,$(LLHTTP_OBJS))
FUZZ_LIB := $(FUZZ_BUILD)/libmoongate.a
FUZZ_BINS := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_HARNESSES))

FUZZ_PKGS := $(BUILD_PKGS) clang libclang-rt-14-dev

.PHONY: fuzz fuzz-build fuzz-deps

fuzz-deps:
	@sh tools/deps.sh $(FUZZ_PKGS)

fuzz-build: $(FUZZ_BINS)

# Builds (installing clang and its fuzzer runtime when missing), then runs
# every harness for FUZZ_SECONDS from its seed corpus (fuzz/run.sh).
fuzz: fuzz-deps
	$(MAKE) fuzz-build
	@sh fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

$(FUZZ_BUILD)/obj/core/%.o: core/%.c $(wildcard core/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c -o $@ $<

$(FUZZ_BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O1 -g -I $(LLHTTP_INC) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -w -c -o $@ $<

$(FUZZ_BUILD)/obj/embedded.o: $(BUILD)/embedded.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -std=gnu11 -O0 -c -o $@ $<

# An archive: each harness links only the objects it needs.
$(FUZZ_LIB): $(FUZZ_CORE_OBJS) $(FUZZ_LLHTTP_OBJS) $(FUZZ_BUILD)/obj/embedded.o
	rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fz.c fuzz/fz.h $(FUZZ_LIB)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Wl,-E -o $@ fuzz/fuzz_$*.c fuzz/fz.c $(FUZZ_LIB) $(LIBS)

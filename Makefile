# telkin - build, test, demo, bench.
#
#   make          build/telkin: static, stripped, musl-linked x86_64 executable
#   make arm64    build/arm64/telkin (cross-compiled)
#   make test     everything that asserts behaviour (installs what it needs: make deps)
#   make demo     telkin against the local Lambda simulator and kinesalite, records printed
#   make bench    figures (not assertions): tokenizer MB/s, signing time, cold start, RSS, ...
#
# BearSSL is built from Debian bookworm's source package, fetched once with a private deb-src list
# (no change to the system's apt configuration), checked against the sha256 pinned below, and
# compiled with the same compiler and flags as telkin into build/<arch>/.

BUILD      := build
SRC_DIR    := $(BUILD)/src
BEARSSL_PKG       := bearssl
BEARSSL_DEB_VER   := 0.6+dfsg.1-3
BEARSSL_ORIG      := bearssl_0.6+dfsg.1.orig.tar.xz
BEARSSL_SHA256    := 102a625bd8f6155260867a50c508df8d8c3f796985dd744df1a68e5cd1a79004
BEARSSL_TOPDIR    := bearssl-0.6
DEBIAN_MIRROR     := http://deb.debian.org/debian

# Size bound from the design card (stripped binary), in bytes.
SIZE_LIMIT := 307200

# One set of flags for telkin and BearSSL; warnings are errors for our code only.
# _FORTIFY_SOURCE acts on the host (glibc) builds only: musl has no fortified headers.
OPT_CFLAGS  := -std=c11 -Os -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables \
               -fno-unwind-tables -fPIE -fstack-protector-strong -fstack-clash-protection \
               -D_FORTIFY_SOURCE=2 -D_DEFAULT_SOURCE
WARN_CFLAGS := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
               -Wformat=2 -Wvla
LDFLAGS_STATIC := -static-pie -Wl,--gc-sections -Wl,-z,relro -Wl,-z,now -Wl,-z,noexecstack -s

ARCH_CFLAGS_x86_64 := -fcf-protection
ARCH_CFLAGS_arm64  := -mbranch-protection=standard
# A static PIE: musl's specs, then build/<arch>/static-pie.specs (below) for its start files.
MUSL_LIB_x86_64 := /usr/lib/x86_64-linux-musl
MUSL_LIB_arm64  := /usr/lib/aarch64-linux-musl
CC_x86_64 := gcc -specs $(MUSL_LIB_x86_64)/musl-gcc.specs \
             -specs $(abspath $(BUILD))/x86_64/static-pie.specs
CC_arm64  := aarch64-linux-gnu-gcc -specs $(MUSL_LIB_arm64)/musl-gcc.specs \
             -specs $(abspath $(BUILD))/arm64/static-pie.specs
# Host (glibc) build for the unit tests: cmocka comes from Debian and is linked against glibc.
CC_host   := gcc
ARCH_CFLAGS_host :=

TELKIN_SRCS := telkin.c json_min.c sigv4.c
# Trust anchors compiled into telkin: Amazon Root CA 1-4 and Starfield Services Root CA G2 (what
# Kinesis endpoints chain to), from Debian's ca-certificates, converted by our own generator.
CA_DIR   := /usr/share/ca-certificates/mozilla
CA_FILES := $(CA_DIR)/Amazon_Root_CA_1.crt $(CA_DIR)/Amazon_Root_CA_2.crt \
            $(CA_DIR)/Amazon_Root_CA_3.crt $(CA_DIR)/Amazon_Root_CA_4.crt \
            $(CA_DIR)/Starfield_Services_Root_Certificate_Authority_-_G2.crt
ANCHORS  := $(BUILD)/trust_anchors.h
TELKIN_HDRS := json_min.h sigv4.h

.PHONY: all arm64 deps test unit-test asan-test clang-check e2e-test arm64-test infra-test \
        layer demo bench clean distclean
.DELETE_ON_ERROR:
# Keep BearSSL's extracted tree and library (made through pattern chains) between builds.
.PRECIOUS: $(BUILD)/%/libbearssl.a $(BUILD)/%/$(BEARSSL_TOPDIR)/.extracted

all: $(BUILD)/telkin

# ---------------------------------------------------------------------------------------------
# BearSSL: fetch once, verify, build per architecture.

$(SRC_DIR)/$(BEARSSL_ORIG):
	@mkdir -p $(SRC_DIR)/apt/lists/partial $(SRC_DIR)/apt/cache/archives/partial
	@echo "deb-src $(DEBIAN_MIRROR) bookworm main" > $(SRC_DIR)/apt/sources.list
	@echo "fetching BearSSL $(BEARSSL_DEB_VER) source from Debian (private source list)"
	@cd $(SRC_DIR) && APT="apt-get -q -o Dir::Etc::SourceList=$$PWD/apt/sources.list \
	    -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$$PWD/apt/lists \
	    -o Dir::Cache=$$PWD/apt/cache -o APT::Sandbox::User=root" && \
	  $$APT update >/dev/null && \
	  $$APT source --download-only $(BEARSSL_PKG)=$(BEARSSL_DEB_VER) >/dev/null
	@echo "$(BEARSSL_SHA256)  $@" | sha256sum -c --quiet - || \
	  { echo "BearSSL source checksum mismatch: refusing to build" >&2; rm -f $@; exit 1; }

# Extract into build/<arch>/; the source list is the .c files the tarball has.
$(BUILD)/%/$(BEARSSL_TOPDIR)/.extracted: $(SRC_DIR)/$(BEARSSL_ORIG)
	@mkdir -p $(BUILD)/$*
	@echo "$(BEARSSL_SHA256)  $<" | sha256sum -c --quiet -
	tar -C $(BUILD)/$* -xJf $<
	@touch $@

$(BUILD)/%/libbearssl.a: $(BUILD)/%/$(BEARSSL_TOPDIR)/.extracted
	@echo "building BearSSL for $*"
	@cd $(BUILD)/$*/$(BEARSSL_TOPDIR) && rm -rf obj && mkdir obj && \
	  find src -name '*.c' | sort | \
	  xargs -P $$(nproc) -I{} sh -c 'o=obj/$$(echo {} | tr / _ ).o; \
	    $(CC_$*) $(OPT_CFLAGS) $(ARCH_CFLAGS_$*) -w -Iinc -Isrc -c {} -o $$o' && \
	  rm -f ../libbearssl.a && ar rcs ../libbearssl.a obj/*.o
	@test -s $@

BEARSSL_INC = -I$(BUILD)/$(1)/$(BEARSSL_TOPDIR)/inc

# ---------------------------------------------------------------------------------------------
# telkin: the static binaries.

$(ANCHORS): tests/gen_trust_anchors.c $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a \
             | deps
	$(CC_host) -std=c11 -O1 -D_DEFAULT_SOURCE -DTELKIN_TEST -DTELKIN_NO_BUILTIN_ANCHORS -I. \
	  $(call BEARSSL_INC,host) -w tests/gen_trust_anchors.c json_min.c sigv4.c \
	  -o $(BUILD)/host/gen_trust_anchors $(BUILD)/host/libbearssl.a
	$(BUILD)/host/gen_trust_anchors $(CA_FILES) > $@.tmp && mv $@.tmp $@

$(BUILD)/%/telkin: $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/%/libbearssl.a $(ANCHORS) Makefile
	$(CC_$*) $(OPT_CFLAGS) $(ARCH_CFLAGS_$*) $(WARN_CFLAGS) $(call BEARSSL_INC,$*) -I$(BUILD) \
	  $(TELKIN_SRCS) -o $@ $(LDFLAGS_STATIC) $(BUILD)/$*/libbearssl.a
	@size=$$(stat -c %s $@); echo "$@: $$size bytes stripped (bound $(SIZE_LIMIT))"; \
	  test $$size -le $(SIZE_LIMIT) || { echo "$@ is over the size bound" >&2; exit 1; }

# The musl toolchain comes from make deps; order-only, so an install never forces a rebuild.
$(BUILD)/x86_64/libbearssl.a $(BUILD)/x86_64/telkin: | deps $(BUILD)/x86_64/static-pie.specs
$(BUILD)/arm64/libbearssl.a $(BUILD)/arm64/telkin: | $(BUILD)/arm64/static-pie.specs

# musl-gcc.specs starts every program with Scrt1.o and names a dynamic linker. A static PIE
# starts with rcrt1.o, which applies the binary's own relocations before anything else runs, and
# has no interpreter: this second specs file overrides just those entries (gcc -static-pie).
$(BUILD)/%/static-pie.specs:
	@mkdir -p $(@D)
	@printf '%s\n' '*startfile:' '$(MUSL_LIB_$*)/rcrt1.o $(MUSL_LIB_$*)/crti.o crtbeginS.o%s' '' \
	  '*endfile:' 'crtendS.o%s $(MUSL_LIB_$*)/crtn.o' '' \
	  '*link:' '-nostdlib -static -pie --no-dynamic-linker -z text' '' > $@

$(BUILD)/telkin: $(BUILD)/x86_64/telkin
	cp $< $@.tmp && mv -f $@.tmp $@
	@file -b $@ | grep -q 'static-pie linked' || { echo "$@ is not a static PIE" >&2; exit 1; }

arm64: $(BUILD)/arm64/telkin

# ---------------------------------------------------------------------------------------------
# Dependencies: installs what is missing when run as root; quiet when everything is there.

DEB_PACKAGES := gcc make musl-tools libcmocka-dev xz-utils file clang python3 dpkg-dev \
                ca-certificates openssl
# Node.js (simulator, kinesalite, CDK): the machine's own when present, else Debian's.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Status} $${Architecture}\n' $$p 2>/dev/null | \
	    grep -Eqx "installed ($$(dpkg --print-architecture)|all)" || \
	    missing="$$missing $$p"; done; \
	command -v node >/dev/null && command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make deps as root)" >&2; exit 1; fi; \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# ---------------------------------------------------------------------------------------------
# Tests.

# The tests include telkin.c itself to reach its static functions; main() is left out.
TEST_CFLAGS := -std=c11 -O1 -g -D_DEFAULT_SOURCE -DTELKIN_TEST $(WARN_CFLAGS) -Wno-unused-function \
               -I. -I$(BUILD) $(call BEARSSL_INC,host)
SAN_CFLAGS  := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

$(BUILD)/host/telkin_test: telkin_test.c $(wildcard tests/unit_*.c) $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a $(ANCHORS)
	$(CC_host) $(TEST_CFLAGS) telkin_test.c json_min.c sigv4.c -o $@ \
	  $(BUILD)/host/libbearssl.a -lcmocka

$(BUILD)/host/telkin_test_asan: telkin_test.c $(wildcard tests/unit_*.c) $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a $(ANCHORS)
	$(CC_host) $(TEST_CFLAGS) $(SAN_CFLAGS) telkin_test.c json_min.c sigv4.c -o $@ \
	  $(BUILD)/host/libbearssl.a -lcmocka

# Unit tests read ../shared/ (it sits beside the checkout); TELKIN_SHARED overrides.
SHARED ?= $(abspath ../shared)

unit-test: $(BUILD)/host/telkin_test
	cd $(BUILD)/host && TELKIN_SHARED=$(SHARED) ./telkin_test

asan-test: $(BUILD)/host/telkin_test_asan
	cd $(BUILD)/host && TELKIN_SHARED=$(SHARED) ASAN_OPTIONS=detect_leaks=1 \
	  UBSAN_OPTIONS=print_stacktrace=1 ./telkin_test_asan

# Warnings are errors with clang too.
clang-check: $(BUILD)/host/libbearssl.a $(ANCHORS)
	clang $(subst -fstack-clash-protection,,$(OPT_CFLAGS)) $(WARN_CFLAGS) \
	  $(call BEARSSL_INC,host) -I$(BUILD) -fsyntax-only $(TELKIN_SRCS)
	clang $(TEST_CFLAGS) -fsyntax-only telkin_test.c

# Every stage runs, even after a failure, so that one run shows everything that is wrong.
TEST_STAGES := all arm64 clang-check unit-test asan-test hardening-test sim-test consumer-test e2e-test modes-test \
               prod-test hostile-test e2e-asan-test valgrind-test layer-test arm64-test \
               infra-test fuzz-smoke
test: deps deps-arm64
	@passed=0; failed=0; failures=""; for stage in $(TEST_STAGES); do \
	  echo "=== make $$stage"; \
	  if $(MAKE) --no-print-directory $$stage; then passed=$$((passed+1)); \
	  else failed=$$((failed+1)); failures="$$failures $$stage"; fi; \
	done; \
	echo "=== test stages:$${failures:+ failed:$$failures}"; \
	echo "stages: $$passed passed, $$failed failed"; test $$failed -eq 0

# ---------------------------------------------------------------------------------------------

# Each tests/bench_*.c is a stand-alone driver printing figures; built for the host with -O2.
BENCH_DRIVERS := $(patsubst tests/%.c,$(BUILD)/host/%,$(wildcard tests/bench_*.c))
$(BUILD)/host/bench_%: tests/bench_%.c json_min.c sigv4.c $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a \
                      $(ANCHORS)
	$(CC_host) -std=c11 -O2 -D_DEFAULT_SOURCE -DTELKIN_TEST $(WARN_CFLAGS) $(call BEARSSL_INC,host) \
	  -I. -I$(BUILD) \
	  $< json_min.c sigv4.c -o $@ $(BUILD)/host/libbearssl.a

bench: deps $(BENCH_DRIVERS) $(BENCH_EXTRA)
	@for b in $(BENCH_DRIVERS); do echo "== $$b"; TELKIN_SHARED=$(SHARED) $$b || exit 1; done
	@$(if $(BENCH_EXTRA_RUN),$(BENCH_EXTRA_RUN))

# Layers (layer/), infrastructure (infra/) and the end-to-end suite (tests/) keep their rules
# beside their files.
-include layer/layer.mk
-include infra/infra.mk
-include tests/tests.mk
-include tests/bench.mk
-include tests/prod.mk
-include tests/security.mk

clean:
	rm -rf $(BUILD)/x86_64/telkin $(BUILD)/arm64/telkin $(BUILD)/host/telkin_test* $(BUILD)/telkin \
	  $(BUILD)/escape \
	  $(BUILD)/arm64host/telkin_test $(BUILD)/telkin-layer-*.zip $(BUILD)/cdk.out

distclean:
	rm -rf $(BUILD)

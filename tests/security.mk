# tests/ security rules, included by the top-level Makefile (-include tests/security.mk), which
# provides BUILD, CC_<arch>, OPT_CFLAGS, ARCH_CFLAGS_<arch>, WARN_CFLAGS, LDFLAGS_STATIC,
# TELKIN_SRCS, TELKIN_HDRS, ANCHORS, BEARSSL_INC and the BearSSL rules.
#
#   make hardening-test  ELF checks of build/x86_64/telkin (and build/arm64/telkin when built):
#                        static, stripped, NX stack, W^X, RELRO, BIND_NOW/PIE, size, CET/BTI/PAC,
#                        stack protector (tests/check_hardening.sh prints each check)
#   make fuzz-deps       libFuzzer's runtime (Debian's libclang-rt-14-dev); quiet when installed
#   make fuzz            every libFuzzer target for FUZZ_SECONDS each (default 60)
#   make fuzz-smoke      the same for 10 s each (CI), after replaying tests/fuzz/regress/
#   make fuzz-regress    replay tests/fuzz/regress/<target>/* (every input once, no fuzzing)
#   make hostile-test    hostile listener traffic against telkin in the simulator (tests/hostile.test.js)
#   make e2e-asan-test   e2e + hostile suites against an ASan/UBSan build (build/host/asan/telkin)
#   make valgrind-test   a short scenario under valgrind memcheck (build/host/vg/telkin)
#   make sandbox-test    the seccomp sandbox in the simulator (tests/sandbox.test.js): a test-only
#                        build (build/escape/telkin, -DTELKIN_TEST_ESCAPE) tries execve, fork, an
#                        open for writing, a listening socket, ... after start, each refused while
#                        it keeps shipping; the shipped binary runs TLS, DNS, container credentials
#                        with a token file and a SnapStart restore with no call refused
#
# Targets are tests/fuzz_<name>.c; seeds are tests/fuzz/corpus/<name>/ (read only: new inputs go
# to build/fuzz/corpus/<name>/, crashes to build/fuzz/artifacts/<name>/).

.PHONY: hardening-test fuzz-deps fuzz fuzz-smoke fuzz-regress fuzz-build

# ---------------------------------------------------------------------------------------------
# Hardening.

# An unstripped twin of each binary: the same compiler, flags and inputs as $(BUILD)/%/telkin but
# no -s, so the stack protector's references can be counted. The check compares the twins' .text
# with the shipped binaries' byte for byte, so a twin that drifts from the real recipe fails.
$(BUILD)/%/telkin.unstripped: $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/%/libbearssl.a $(ANCHORS) \
                              | $(BUILD)/%/telkin
	$(CC_$*) $(OPT_CFLAGS) $(ARCH_CFLAGS_$*) $(WARN_CFLAGS) $(call BEARSSL_INC,$*) -I$(BUILD) \
	  $(TELKIN_SRCS) -o $@ $(filter-out -s,$(LDFLAGS_STATIC)) $(BUILD)/$*/libbearssl.a

# PIE is required once the Makefile links a static PIE (-static-pie in LDFLAGS_STATIC).
HARDENING_EXPECT_PIE ?= $(if $(filter -static-pie,$(LDFLAGS_STATIC)),1,auto)

# x86_64 always; arm64 when it has been built (make arm64), decided when the recipe runs.
hardening-test: $(BUILD)/x86_64/telkin $(BUILD)/x86_64/telkin.unstripped
	@if [ -f $(BUILD)/arm64/telkin ]; then \
	  $(MAKE) --no-print-directory $(BUILD)/arm64/telkin.unstripped || exit 1; fi
	@SIZE_LIMIT=$(or $(SIZE_LIMIT),307200) EXPECT_PIE=$(HARDENING_EXPECT_PIE) \
	  sh tests/check_hardening.sh $(BUILD)

# ---------------------------------------------------------------------------------------------
# Fuzzing: clang 14 with libFuzzer, ASan and UBSan; telkin.c is included with -DTELKIN_TEST by
# the targets that need its static functions; BearSSL is the host (gcc-built) library.

FUZZ_SECONDS  ?= 60
FUZZ_TARGETS  := $(patsubst tests/fuzz_%.c,%,$(wildcard tests/fuzz_*.c))
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_BINS     := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))
FUZZ_CC       := clang
FUZZ_CFLAGS   := -std=c11 -g -O1 -D_DEFAULT_SOURCE -DTELKIN_TEST -I. -I$(BUILD) \
                 $(call BEARSSL_INC,host) -fsanitize=fuzzer,address,undefined \
                 -fno-sanitize-recover=all -fno-omit-frame-pointer -Wall -Wextra \
                 -Wno-unused-function -Wno-unused-parameter
# Per-target input bound: big enough for a Telemetry API batch of realistic events.
FUZZ_MAX_LEN  ?= 65536
# libFuzzer's own run options; leaks are checked (telkin allocates once, at start).
FUZZ_RUN_OPTS ?= -max_len=$(FUZZ_MAX_LEN) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1

# Debian packages libFuzzer with compiler-rt; installs it when missing (as root), else quiet.
fuzz-deps:
	@dpkg-query -W -f='$${db:Status-Status}\n' libclang-rt-14-dev 2>/dev/null | grep -qx installed || { \
	  if [ "$$(id -u)" != 0 ]; then echo "missing package: libclang-rt-14-dev (run make fuzz-deps as root)" >&2; exit 1; fi; \
	  echo "installing: libclang-rt-14-dev"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    libclang-rt-14-dev >/dev/null; }

$(FUZZ_DIR)/fuzz_%: tests/fuzz_%.c tests/fuzz_telkin.h $(TELKIN_SRCS) $(TELKIN_HDRS) \
                    $(BUILD)/host/libbearssl.a $(ANCHORS) | fuzz-deps
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $< json_min.c sigv4.c -o $@ $(BUILD)/host/libbearssl.a

fuzz-build: $(FUZZ_BINS)

# Every input ever kept in tests/fuzz/regress/<target>/ runs once: a crash that was fixed stays
# fixed. (The same inputs are cmocka tests in tests/unit_regress.c.)
fuzz-regress: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  set -- tests/fuzz/regress/$$t/*; [ -e "$$1" ] || continue; \
	  echo "== fuzz_$$t: replaying $$# regression input(s)"; \
	  $(FUZZ_DIR)/fuzz_$$t -runs=1 "$$@" > $(FUZZ_DIR)/regress-$$t.log 2>&1 || \
	    { cat $(FUZZ_DIR)/regress-$$t.log; echo "fuzz_$$t: a regression input fails" >&2; exit 1; }; \
	done

# Run each target for FUZZ_SECONDS; new corpus entries stay in build/, crashes fail the run.
fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/artifacts/$$t; \
	  echo "== fuzz_$$t for $(FUZZ_SECONDS) s"; \
	  $(FUZZ_DIR)/fuzz_$$t $(FUZZ_RUN_OPTS) -max_total_time=$(FUZZ_SECONDS) \
	    -artifact_prefix=$(FUZZ_DIR)/artifacts/$$t/ \
	    $(FUZZ_DIR)/corpus/$$t tests/fuzz/corpus/$$t > $(FUZZ_DIR)/$$t.log 2>&1; rc=$$?; \
	  grep -E '^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb' $(FUZZ_DIR)/$$t.log | \
	    sed 's/^/   /'; \
	  if [ $$rc != 0 ]; then tail -60 $(FUZZ_DIR)/$$t.log; \
	    echo "fuzz_$$t FAILED (exit $$rc): reproducer in $(FUZZ_DIR)/artifacts/$$t/" >&2; exit 1; fi; \
	done; echo "fuzz: $(words $(FUZZ_TARGETS)) targets, no crash"

fuzz-smoke:
	$(MAKE) --no-print-directory fuzz-regress
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

# ---------------------------------------------------------------------------------------------
# The real telkin (main() included) under AddressSanitizer + UBSan and under valgrind, driven by
# the end-to-end suites. Glibc host builds. The simulator requires the executable's file name to
# be the extension name it registers, so both are named telkin, each in its own directory.
#
#   make hostile-test    tests/hostile.test.js against TELKIN_BIN (default build/telkin)
#   make e2e-asan-test   e2e.test.js + hostile.test.js against build/host/asan/telkin
#   make valgrind-test   a short scenario (tests/valgrind.test.js) under valgrind memcheck

.PHONY: hostile-test e2e-asan-test valgrind-test

TELKIN_ASAN_BIN := $(BUILD)/host/asan/telkin
TELKIN_VG_BIN   := $(BUILD)/host/vg/telkin
HOST_E2E_CFLAGS := -std=c11 -O1 -g -D_DEFAULT_SOURCE $(filter-out -Werror,$(WARN_CFLAGS)) \
                   -I. -I$(BUILD) $(call BEARSSL_INC,host)

$(TELKIN_ASAN_BIN): $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a $(ANCHORS)
	@mkdir -p $(@D)
	$(CC_host) $(HOST_E2E_CFLAGS) -fsanitize=address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=all $(TELKIN_SRCS) -o $@ $(BUILD)/host/libbearssl.a

$(TELKIN_VG_BIN): $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/host/libbearssl.a $(ANCHORS)
	@mkdir -p $(@D)
	$(CC_host) $(HOST_E2E_CFLAGS) $(TELKIN_SRCS) -o $@ $(BUILD)/host/libbearssl.a

hostile-test: $(BUILD)/telkin tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) node --test hostile.test.js

# The simulator gives the extension a clean environment (PATH only), so the sanitizer options
# (and TELKIN_SANDBOX=0: LeakSanitizer's check at exit stops the world with a clone()d thread that
# ptrace()s the process, and reports are symbolized by fork/exec of llvm-symbolizer, all of which
# the filter refuses; a glibc build's calls are not the shipped musl binary's anyway) reach telkin
# through the wrapper (env, then tests/san_wrap.sh, which also appends telkin's stderr
# to $(SAN_LOG)). Every error is fatal (abort: the simulator sees SIGABRT, not exit 0, and the
# test fails) and any report in $(SAN_LOG) fails the target whatever the suites said. Leaks are
# checked: telkin allocates its buffers once and keeps them in a global until exit(), so
# LeakSanitizer (which reports only unreachable blocks) is quiet unless a pointer is really lost.
# The memory bound of the flood test is widened for ASan's shadow memory and allocator.
SAN_LOG        := $(abspath $(BUILD))/host/asan/stderr.log
ASAN_RUN_OPTS  := abort_on_error=1:halt_on_error=1:detect_leaks=1:check_initialization_order=1:strict_string_checks=1:detect_stack_use_after_return=1
UBSAN_RUN_OPTS := abort_on_error=1:halt_on_error=1:print_stacktrace=1
SAN_PATTERN    := ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|Sanitizer CHECK failed

e2e-asan-test: $(TELKIN_ASAN_BIN) tests-npm
	@rm -f $(SAN_LOG) && touch $(SAN_LOG)
	@cd $(TESTS_DIR) && TELKIN_BIN=$(abspath $(TELKIN_ASAN_BIN)) \
	  TELKIN_BIN_WRAPPER="env TELKIN_SANDBOX=0 ASAN_OPTIONS=$(ASAN_RUN_OPTS) UBSAN_OPTIONS=$(UBSAN_RUN_OPTS) $(abspath $(TESTS_DIR))/san_wrap.sh $(SAN_LOG)" \
	  HOSTILE_RSS_EXTRA_MB=16 HOSTILE_TIME_SCALE=2 node --test e2e.test.js hostile.test.js; rc=$$?; \
	if grep -qE '$(SAN_PATTERN)' $(SAN_LOG); then grep -E -A40 '$(SAN_PATTERN)' $(SAN_LOG) | head -200; \
	  echo "e2e-asan-test: sanitizer report(s) above (whole stderr: $(SAN_LOG))" >&2; exit 1; fi; \
	exit $$rc

# valgrind memcheck: any error makes telkin exit 99; the test also wants "ERROR SUMMARY: 0 errors".
# TELKIN_SANDBOX=0: valgrind runs the guest's system calls itself, so a seccomp filter the guest
# installs binds valgrind's own calls too (its translations are mmap'd executable), and the
# glibc build's calls are not the shipped musl binary's anyway.
valgrind-test: $(TELKIN_VG_BIN) tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(abspath $(TELKIN_VG_BIN)) \
	  TELKIN_BIN_WRAPPER="env TELKIN_SANDBOX=0 $(abspath $(TESTS_DIR))/valgrind_wrap.sh" \
	  node --test valgrind.test.js

# ---------------------------------------------------------------------------------------------
# The sandbox (telkin.c, "Least privilege"). The escape build is the shipped recipe plus
# -DTELKIN_TEST_ESCAPE (its attempts run only with TELKIN_TEST_ESCAPE=<dir> set); it is never
# shipped. Named telkin, like every binary the simulator runs.

TELKIN_ESCAPE_BIN := $(BUILD)/escape/telkin

$(TELKIN_ESCAPE_BIN): $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/x86_64/libbearssl.a $(ANCHORS) \
                      | $(BUILD)/x86_64/static-pie.specs
	@mkdir -p $(@D)
	$(CC_x86_64) $(OPT_CFLAGS) $(ARCH_CFLAGS_x86_64) $(WARN_CFLAGS) -DTELKIN_TEST_ESCAPE \
	  $(call BEARSSL_INC,x86_64) -I$(BUILD) $(TELKIN_SRCS) -o $@ $(LDFLAGS_STATIC) \
	  $(BUILD)/x86_64/libbearssl.a

# A stage of make test (appended here, after the Makefile's list).
TEST_STAGES += sandbox-test

.PHONY: sandbox-test
sandbox-test: $(BUILD)/telkin $(TELKIN_ESCAPE_BIN) tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) TELKIN_ESCAPE_BIN=$(abspath $(TELKIN_ESCAPE_BIN)) \
	  node --test sandbox.test.js

# layer/layer.mk - included by the main Makefile.
#
#   make deps-arm64   installs the arm64 cross toolchain, musl for arm64, qemu and cmocka:arm64
#   make layer        build/telkin-layer-x86_64.zip and build/telkin-layer-arm64.zip
#   make layer-test   asserts what the layer zips hold, and that they are reproducible
#   make arm64-test   unit tests and one end-to-end scenario for arm64 under qemu-aarch64-static

.PHONY: deps-arm64 layer layer-test arm64-test arm64-unit-test arm64-e2e-test

LAYER_ARCHES := x86_64 arm64
LAYER_ZIPS   := $(foreach a,$(LAYER_ARCHES),$(BUILD)/telkin-layer-$(a).zip)
LAYER_ZIPPER := layer/mkzip.py

# ---------------------------------------------------------------------------------------------
# arm64 packages. Quiet no-op when everything is there; installs what is missing when root.

DEB_PACKAGES_ARM64 := gcc-aarch64-linux-gnu libc6-dev-arm64-cross musl-dev:arm64 \
                      libcmocka-dev:arm64 qemu-user-static
deps-arm64:
	@missing=""; for p in $(DEB_PACKAGES_ARM64); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing packages:$$missing (run make deps-arm64 as root)" >&2; exit 1; fi; \
	  dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64; \
	  echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

# The arm64 objects need the cross compiler and musl for arm64; order-only so that an install
# never makes BearSSL or telkin out of date.
$(BUILD)/arm64/libbearssl.a $(BUILD)/arm64/telkin: | deps-arm64

# ---------------------------------------------------------------------------------------------
# Layers: exactly extensions/telkin, mode 0755, fixed timestamp and order (byte-reproducible).

$(BUILD)/telkin-layer-%.zip: $(BUILD)/%/telkin $(LAYER_ZIPPER)
	python3 $(LAYER_ZIPPER) $@ $<

layer: $(LAYER_ZIPS)

# Reproducible: keeps the zips, rebuilds both binaries and zips from the sources (BearSSL is kept),
# and compares the bytes. Then checks what each zip holds.
layer-test: layer
	@mkdir -p $(BUILD)/layer-test && for a in $(LAYER_ARCHES); do \
	  mv $(BUILD)/telkin-layer-$$a.zip $(BUILD)/layer-test/ && rm -f $(BUILD)/$$a/telkin; done
	@$(MAKE) --no-print-directory layer >/dev/null
	@for a in $(LAYER_ARCHES); do test -s $(BUILD)/$$a/telkin || \
	  { echo "FAIL $(BUILD)/$$a/telkin was not rebuilt" >&2; exit 1; }; done
	@for a in $(LAYER_ARCHES); do \
	  z=$(BUILD)/telkin-layer-$$a.zip; \
	  cmp $$z $(BUILD)/layer-test/telkin-layer-$$a.zip || \
	    { echo "FAIL $$z differs after a rebuild: not reproducible" >&2; exit 1; }; \
	  echo "ok   $$z: byte-identical after rebuilding the binary and the zip"; \
	  python3 layer/check_layer.py $$z $$a $(SIZE_LIMIT) || exit 1; \
	done; rm -rf $(BUILD)/layer-test
	@echo "layer-test: $(words $(LAYER_ARCHES)) passed, 0 failed"

# ---------------------------------------------------------------------------------------------
# arm64 tests under qemu. The unit tests are built with the glibc cross compiler (cmocka for
# arm64 comes from Debian, linked against glibc) and a BearSSL built by the same compiler.

CC_arm64host := aarch64-linux-gnu-gcc
ARCH_CFLAGS_arm64host := -mbranch-protection=standard
QEMU_ARM64   := qemu-aarch64-static -L /usr/aarch64-linux-gnu

$(BUILD)/arm64host/libbearssl.a: | deps-arm64

# The host unit tests' flags (main Makefile), with the arm64 BearSSL headers.
ARM64_TEST_CFLAGS = $(subst $(call BEARSSL_INC,host),$(call BEARSSL_INC,arm64host),$(TEST_CFLAGS))

$(BUILD)/arm64host/telkin_test: telkin_test.c $(TELKIN_SRCS) $(TELKIN_HDRS) $(wildcard tests/unit_*.c) \
                                $(BUILD)/arm64host/libbearssl.a | deps-arm64
	$(CC_arm64host) $(ARM64_TEST_CFLAGS) telkin_test.c json_min.c sigv4.c -o $@ \
	  $(BUILD)/arm64host/libbearssl.a -L/usr/lib/aarch64-linux-gnu -lcmocka
	@file -b $@ | grep -q 'ARM aarch64' || { echo "$@ is not an aarch64 executable" >&2; exit 1; }

# qemu-user 7.2 hangs in fork() here (even a ten-line program), so the SnapStart clone test,
# which forks, is skipped under it: it runs natively on x86_64 (unit-test, asan-test).
arm64-unit-test: $(BUILD)/arm64host/telkin_test
	cd $(BUILD)/arm64host && TELKIN_SHARED=$(SHARED) TELKIN_TEST_NO_FORK="qemu-user hangs in fork()" \
	  $(QEMU_ARM64) ./telkin_test

# End-to-end scenarios of the static arm64 binary under qemu (the suites are tests/e2e.test.js and
# tests/modes.test.js; they honour TELKIN_BIN and TELKIN_BIN_WRAPPER). ARM64_E2E_PATTERN and
# ARM64_MODES_PATTERN pick the scenarios (regular expressions for node --test-name-pattern,
# without single quotes); at least one test of each suite must run.
# Default: the preflight and the basic delivery scenario (30 invokes, every event arrives), and
# the Managed Instances and SnapStart execution modes.
ARM64_E2E_PATTERN ?= ^(preflight|30 invokes)
ARM64_MODES_PATTERN ?= ^(lambda-managed-instances|snap-start):
ARM64_E2E_LOG := $(BUILD)/arm64/e2e.log
ARM64_MODES_LOG := $(BUILD)/arm64/modes.log
arm64-e2e-test: $(BUILD)/arm64/telkin | deps-arm64
	@if [ ! -f tests/e2e.test.js ]; then \
	  echo "arm64-e2e-test: tests/e2e.test.js does not exist yet: end-to-end half skipped"; \
	  exit 0; fi; \
	[ -d tests/node_modules ] || (cd tests && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	cd tests && TELKIN_BIN=$(abspath $(BUILD)/arm64/telkin) TELKIN_BIN_WRAPPER=qemu-aarch64-static \
	  node --test --test-name-pattern='$(ARM64_E2E_PATTERN)' e2e.test.js > $(abspath $(ARM64_E2E_LOG)) 2>&1; \
	rc=$$?; cat $(abspath $(ARM64_E2E_LOG)); [ $$rc = 0 ] || exit $$rc; \
	grep -Eq '^# pass [1-9]' $(abspath $(ARM64_E2E_LOG)) || \
	  { echo "arm64-e2e-test: no test matched '$(ARM64_E2E_PATTERN)'" >&2; exit 1; }; \
	TELKIN_BIN=$(abspath $(BUILD)/arm64/telkin) TELKIN_BIN_WRAPPER=qemu-aarch64-static \
	  node --test --test-name-pattern='$(ARM64_MODES_PATTERN)' modes.test.js > $(abspath $(ARM64_MODES_LOG)) 2>&1; \
	rc=$$?; cat $(abspath $(ARM64_MODES_LOG)); [ $$rc = 0 ] || exit $$rc; \
	grep -Eq '^# pass [1-9]' $(abspath $(ARM64_MODES_LOG)) || \
	  { echo "arm64-e2e-test: no modes test matched '$(ARM64_MODES_PATTERN)'" >&2; exit 1; }

arm64-test: arm64-unit-test arm64-e2e-test
	@file -b $(BUILD)/arm64/telkin | grep -q 'ARM aarch64.*static-pie linked' || \
	  { echo "$(BUILD)/arm64/telkin is not a static aarch64 executable" >&2; exit 1; }

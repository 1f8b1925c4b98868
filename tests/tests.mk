# tests/ rules, included by the top-level Makefile (which provides BUILD, deps, $(BUILD)/telkin).
#
#   make tests-npm   npm ci in tests/ when node_modules is missing or the lock file changed
#   make sim-test    self-test of the Lambda simulator and the kinesalite harness (no telkin needed)
#   make consumer-test  the reference consumer (tests/consumer/): check.js and lambda.js event by
#                    event, the telkin-check CLI against hand-made records in kinesalite (no telkin)
#   make e2e-test    telkin in the Lambda simulator shipping into kinesalite, checked event by event
#   make modes-test  the same in every Lambda execution mode (on-demand, provisioned concurrency,
#                    SnapStart restore, Managed Instances, timeout/crash resets): tests/modes.test.js
#   make demo        the same, narrated: records printed, one-line summary
#
# TELKIN_BIN (default build/telkin) and TELKIN_BIN_WRAPPER (e.g. qemu-aarch64-static) select the
# binary under test.

TESTS_DIR       := tests
TESTS_NPM_STAMP := $(TESTS_DIR)/node_modules/.npm-ci-stamp
TELKIN_BIN      ?= $(abspath $(BUILD)/telkin)

.PHONY: tests-npm sim-test consumer-test e2e-test modes-test demo

tests-npm: $(TESTS_NPM_STAMP)

$(TESTS_NPM_STAMP): $(TESTS_DIR)/package.json $(TESTS_DIR)/package-lock.json
	cd $(TESTS_DIR) && npm ci --no-audit --no-fund
	@touch $@

sim-test: tests-npm
	cd $(TESTS_DIR) && TELKIN_SHARED=$(SHARED) node --test sim.test.js kinesis.test.js

consumer-test: tests-npm
	cd $(TESTS_DIR) && TELKIN_SHARED=$(SHARED) node --test consumer_check.test.js consumer_lambda.test.js \
	  consumer_cli.test.js

e2e-test: $(BUILD)/telkin tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) node --test e2e.test.js

modes-test: $(BUILD)/telkin tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) node --test modes.test.js

demo: deps $(BUILD)/telkin tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) node demo.js

# The production path to real Kinesis (tests/ rules, included by the top-level Makefile):
#
#   make prod-test   TLS against local servers with a test PKI made by openssl (tls.test.js),
#                    a fault-injecting PutRecords stub (faults.test.js, kinesis_stub.js), Kinesis
#                    pushing back: random throttling, 5xx storms, per-shard write limits
#                    (pushback.test.js), container credentials (creds.test.js), and a second Kinesis implementation, kinesis-mock's
#                    npm build kinesis-local (kinesis_local.test.js). Needs openssl (make deps).
#

.PHONY: prod-test

prod-test: $(BUILD)/telkin tests-npm
	cd $(TESTS_DIR) && TELKIN_BIN=$(TELKIN_BIN) node --test tls.test.js faults.test.js pushback.test.js creds.test.js kinesis_local.test.js

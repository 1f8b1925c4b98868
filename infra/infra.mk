# infra/infra.mk - included by the main Makefile.
#
#   make infra-npm    npm ci in infra/ (once: again only when package.json or the lock changes)
#   make infra-test   offline template assertions (node:test via tsx) and a `cdk synth` into
#                     build/cdk.out; builds the layer zips first. No AWS credentials needed.

.PHONY: infra-npm infra-test

INFRA_STAMP := infra/node_modules/.telkin-npm-ci

# A synth must never look for credentials or contact anything: no profile, no instance metadata,
# no version check. (synth of this environment-agnostic stack needs no account.)
INFRA_OFFLINE_ENV := env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_SESSION_TOKEN \
  -u AWS_PROFILE -u AWS_DEFAULT_PROFILE AWS_EC2_METADATA_DISABLED=true \
  AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null CDK_DISABLE_VERSION_CHECK=true

$(INFRA_STAMP): infra/package.json infra/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing (make deps installs Node.js and npm)" >&2; exit 1; }
	cd infra && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

infra-npm: $(INFRA_STAMP)

infra-test: layer infra-npm
	cd infra && $(INFRA_OFFLINE_ENV) TELKIN_LAYER_DIR=$(abspath $(BUILD)) \
	  node --import tsx --test test/*.test.ts
	rm -rf $(BUILD)/cdk.out
	cd infra && $(INFRA_OFFLINE_ENV) npx --no-install cdk synth --quiet \
	  -c layerDir=$(abspath $(BUILD)) -o $(abspath $(BUILD)/cdk.out)
	@python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); \
	  n={}; [n.__setitem__(r["Type"], n.get(r["Type"],0)+1) for r in t["Resources"].values()]; \
	  assert n.get("AWS::Lambda::LayerVersion")==2 and n.get("AWS::Kinesis::Stream")==1, n; \
	  print("cdk synth: %s: %d resources" % (sys.argv[1], len(t["Resources"])))' \
	  $(BUILD)/cdk.out/Telkin.template.json

# make bench, the part beyond the C micro-benchmarks (tests/bench_*.c): cold start, peak RSS,
# throughput, time added per invoke, shipping strategies (TELKIN_FLUSH), record packing
# (TELKIN_RECORD) and the PutRecords round trip over loopback TLS (tlsrtt: needs the openssl CLI
# for its test PKI, skipped without it), measured by tests/bench.js with the Lambda simulator (tests/lambda_sim.js) and
# a fast PutRecords sink (tests/fast_sink.js; it decodes records for the last two). Node built-ins
# only: no npm install needed. Figures are printed against their targets, never asserted.
#
#   make bench                         everything (about six minutes: 'strategy' runs three
#                                      simulated workloads with 11 s idle gaps in real time)
#   cd tests && node bench.js --only cold|rss|tput|invoke|strategy|packing|tlsrtt|pushback|latency|cpu|mem
#                                      [--runs N] [--events N] [--invokes N] [--frequent N] [--rare N]
#                                      [--lines N] [--mem-invokes N]
#
# 'cpu' is telkin's CPU for issue 13's reference invocation (20 000 lines, ~3.8 MB of telemetry),
# then, with valgrind, its instructions per event under callgrind (in the unstripped build below).
# 'mem' runs telkin and the floor program in a cgroup v1 cpu quota of the share Lambda gives a
# 128 MB, 512 MB and 1769 MB function (7.2 %, 28.9 %, 100 % of a core): cold start, time added
# to billed duration per strategy, CPU per 1000 events; needs root and a writable cpu controller,
# else it prints "skipped: no writable cgroup cpu controller".
#
# 'pushback' (about 70 s) runs one 20 000-line invocation into the fault stub (tests/kinesis_stub.js)
# with Kinesis's real per-shard limits, for 1, 2 and 4 shards, each TELKIN_PARTITION_KEY and
# TELKIN_RECORD=event|ndjson, and prints what arrived before the SHUTDOWN deadline beside the
# physical maximum those limits allow.

# The floor for the cold start and memory figures: a do-nothing extension built with telkin's
# compiler, flags and static link. It registers under its own file name, as the simulator
# (and Lambda) require.
BENCH_FLOOR := $(BUILD)/x86_64/floor_extension

$(BENCH_FLOOR): tests/floor_extension.c
	@mkdir -p $(@D)
	$(CC_x86_64) $(OPT_CFLAGS) $(ARCH_CFLAGS_x86_64) $(WARN_CFLAGS) $< -o $@ $(LDFLAGS_STATIC)

BENCH_EXTRA     := $(BUILD)/telkin $(BENCH_FLOOR)
BENCH_EXTRA_RUN := cd tests && TELKIN_BIN=$(abspath $(BUILD)/telkin) \
                   FLOOR_BIN=$(abspath $(BENCH_FLOOR)) node bench.js

# The top-level bench rule names $(BENCH_EXTRA) before this file is read (prerequisites are
# expanded at once): name them again here.
bench: $(BENCH_EXTRA)

# The same binary unstripped, with debug information (the code is the same: -g changes no
# instruction): what callgrind_annotate names functions and lines in. make bench's 'cpu' part runs
# it under callgrind.
BENCH_PROFILE_BIN := $(BUILD)/x86_64/telkin.prof

$(BENCH_PROFILE_BIN): $(TELKIN_SRCS) $(TELKIN_HDRS) $(BUILD)/x86_64/libbearssl.a $(ANCHORS) Makefile
	$(CC_x86_64) $(OPT_CFLAGS) -g $(ARCH_CFLAGS_x86_64) $(WARN_CFLAGS) $(call BEARSSL_INC,x86_64) -I$(BUILD) \
	  $(TELKIN_SRCS) -o $@ $(filter-out -s,$(LDFLAGS_STATIC)) $(BUILD)/x86_64/libbearssl.a

BENCH_EXTRA     += $(BENCH_PROFILE_BIN)
BENCH_EXTRA_RUN := cd tests && TELKIN_BIN=$(abspath $(BUILD)/telkin) \
                   FLOOR_BIN=$(abspath $(BENCH_FLOOR)) TELKIN_PROFILE_BIN=$(abspath $(BENCH_PROFILE_BIN)) node bench.js
bench: $(BENCH_PROFILE_BIN)

'use strict';
// telkin reference consumer as a Lambda function on the stream (Kinesis event source mapping):
// the check of check.js, run continuously, published as CloudWatch Embedded Metric Format lines on
// stdout (namespace TELKIN_CHECK_NAMESPACE, default telkin/consumer; no API call, no permission).
//
// One mapping delivers one shard's records in order, batch after batch, to one invocation at a
// time (ParallelizationFactor 1). The state of every sandbox lives in module scope and survives
// from one invocation to the next while this environment stays warm.
//
// When a number is a gap: telkin reports drops after the fact (its telkin.dropped record comes
// after the numbers it covers), so a number not yet seen is not counted at once. A sandbox's
// numbers up to (highest seen - TELKIN_CHECK_GRACE_EVENTS) are settled after each batch: what is
// then neither delivered nor covered by a telkin.dropped range counts in Gaps, once. A sandbox
// that sent nothing for TELKIN_CHECK_IDLE_SECONDS is settled up to its highest number; one beyond
// TELKIN_CHECK_MAX_SANDBOXES (least recently seen first) is settled and forgotten.
//
// Limits (README, "Checking completeness"):
// - exact with TELKIN_PARTITION_KEY=sandbox (a sandbox on one shard, in order); with `request` or
//   `random` one sandbox spreads over shards, each mapping sees only a part, and every number
//   of another shard looks missing: use the CLI over the whole stream instead;
// - a sandbox is checked from the first number this environment sees of it (the mapping may
//   start mid-stream, and a cold start of this function forgets every sandbox): numbers below
//   it are not checked (a later copy of one counts as a duplicate), nor, after a cold start,
//   the numbers between the last ones settled before it and the first one seen after it;
// - an event that arrives after its number was counted in Gaps is counted in LateEvents, and a
//   number a telkin.dropped report covers only after it was counted in Gaps (a report that came
//   more than GRACE events late) in LateDropped (and Dropped): Gaps already published stay, so
//   over a period Gaps - LateEvents - LateDropped is what nobody accounts for;
// - the tail cannot be checked: events lost after the last one that arrived leave no gap.

const { Checker } = require('./check');

function positiveInt(name, dflt, env = process.env) {
  const v = env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, not ${v}`);
  return n;
}

function settings(env = process.env) {
  return {
    grace: positiveInt('TELKIN_CHECK_GRACE_EVENTS', 1000, env),
    idleMs: positiveInt('TELKIN_CHECK_IDLE_SECONDS', 900, env) * 1000,
    maxSandboxes: positiveInt('TELKIN_CHECK_MAX_SANDBOXES', 10000, env),
    namespace: env.TELKIN_CHECK_NAMESPACE || 'telkin/consumer',
  };
}

const METRICS = ['Events', 'Duplicates', 'Gaps', 'Dropped', 'LateEvents', 'LateDropped'];

/**
 * The consumer: a Checker kept across batches. processBatch(records) takes a Kinesis event's
 * Records and returns the EMF objects to print (one per telkin function seen, one for the batch).
 */
class Consumer {
  constructor(opts = settings()) {
    this.o = opts;
    this.checker = new Checker({ startAtFirstSeen: true });
  }

  processBatch(records, now = Date.now()) {
    const perFunction = new Map();
    const counts = (fn) => {
      const key = fn || '(unknown)';
      if (!perFunction.has(key)) perFunction.set(key, Object.fromEntries(METRICS.map((m) => [m, 0])));
      return perFunction.get(key);
    };
    const foreignBefore = this.checker.foreign;
    const touched = new Set();
    for (const r of records || []) {
      const data = r && r.kinesis && r.kinesis.data;
      for (const { outcome, state } of this.checker.addData(Buffer.from(typeof data === 'string' ? data : '', 'base64'))) {
        if (!state) continue;
        state.lastSeen = now;
        touched.add(state);
        const c = counts(state.function);
        if (outcome === 'duplicate') c.Duplicates++;
        else c.Events++;
        if (outcome === 'late') c.LateEvents++;
      }
    }
    for (const s of touched) {
      // Numbers counted in Gaps by an earlier batch that a report in this one covers.
      const late = s.lateCovered - (s.lateCoveredPublished || 0);
      s.lateCoveredPublished = s.lateCovered;
      counts(s.function).LateDropped += late;
      counts(s.function).Dropped += late;
      this._settle(s, s.maxSeq - this.o.grace, counts);
    }
    // Idle sandboxes: settle their whole range; beyond the cap, forget the least recently seen.
    const byAge = [...this.checker.sandboxes.values()].sort((a, b) => a.lastSeen - b.lastSeen);
    let excess = byAge.length - this.o.maxSandboxes;
    for (const s of byAge) {
      if (excess > 0) {
        this._settle(s, s.top, counts);
        this.checker.sandboxes.delete(s.sandbox);
        excess--;
      } else if (now - s.lastSeen >= this.o.idleMs) {
        this._settle(s, s.top, counts);
      } else break;
    }
    return this._emf(perFunction, this.checker.foreign - foreignBefore, records ? records.length : 0, now);
  }

  // Settles one sandbox through `through`; adds its new gaps and covered numbers to its function's counts.
  _settle(s, through, counts) {
    const coveredBefore = s.settledCovered;
    const unaccountedBefore = s.unaccounted(true);
    const gaps = s.settle(through);
    const c = counts(s.function);
    c.Gaps += gaps + s.unaccounted(true) - unaccountedBefore;
    c.Dropped += s.settledCovered - coveredBefore;
  }

  _emf(perFunction, foreign, records, now) {
    const metric = (names) => names.map((Name) => ({ Name, Unit: 'Count' }));
    const lines = [];
    for (const [fn, c] of perFunction) {
      if (METRICS.every((m) => c[m] === 0)) continue;
      lines.push({
        _aws: { Timestamp: now, CloudWatchMetrics: [{ Namespace: this.o.namespace, Dimensions: [['FunctionName']], Metrics: metric(METRICS) }] },
        FunctionName: fn,
        ...c,
      });
    }
    lines.push({
      _aws: { Timestamp: now, CloudWatchMetrics: [{ Namespace: this.o.namespace, Dimensions: [[]], Metrics: metric(['Records', 'Foreign', 'Sandboxes']) }] },
      Records: records,
      Foreign: foreign,
      Sandboxes: this.checker.sandboxes.size,
    });
    return lines;
  }
}

let consumer; // module scope: kept while this execution environment is warm

exports.handler = async (event) => {
  if (!consumer) consumer = new Consumer(settings());
  for (const line of consumer.processBatch(event && event.Records)) process.stdout.write(`${JSON.stringify(line)}\n`);
  return {};
};

exports.Consumer = Consumer;
exports.settings = settings;

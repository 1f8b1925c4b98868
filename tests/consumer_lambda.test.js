'use strict';
// The reference consumer as a Lambda function (tests/consumer/lambda.js): batches of one shard,
// in order, state per sandbox across invocations, Gaps / Duplicates / Events / Dropped /
// LateEvents as CloudWatch EMF lines. A number counts as a gap only once GRACE more numbers of its
// sandbox have been seen without it being delivered or covered by a telkin.dropped range.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Consumer, settings } = require('./consumer/lambda');
const { telkinEvent, droppedEvent, ndjson, kinesisEvent } = require('./consumer_util');

const GRACE = 3;
const consumer = (o = {}) => new Consumer({ ...settings({}), grace: GRACE, ...o });
const batch = (c, datas, now) => c.processBatch(kinesisEvent(datas).Records, now);
const seqs = (sb, list, o) => list.map((i) => telkinEvent(sb, i, o));
// The per-function metrics of one batch's EMF lines (FunctionName -> {Events, ...}).
const perFunction = (lines) => Object.fromEntries(lines.filter((l) => l.FunctionName).map((l) => [l.FunctionName, l]));
const totals = (lines) => lines.find((l) => !l.FunctionName);

test('EMF shape: namespace, FunctionName dimension, every metric declared and present', () => {
  const lines = batch(consumer(), seqs('sb-1', [1, 2]), 1000);
  const f = perFunction(lines)['fn-test'];
  const decl = f._aws.CloudWatchMetrics[0];
  assert.equal(decl.Namespace, 'telkin/consumer');
  assert.deepEqual(decl.Dimensions, [['FunctionName']]);
  for (const m of decl.Metrics) assert.equal(typeof f[m.Name], 'number', m.Name);
  assert.deepEqual(decl.Metrics.map((m) => m.Name), ['Events', 'Duplicates', 'Gaps', 'Dropped', 'LateEvents', 'LateDropped']);
  assert.equal(f._aws.Timestamp, 1000);
  assert.equal(f.Events, 2);
  const t = totals(lines);
  assert.deepEqual(t._aws.CloudWatchMetrics[0].Dimensions, [[]]);
  assert.equal(t.Records, 2);
  assert.equal(t.Sandboxes, 1);
});

test('duplicates are counted across invocations (state in module scope)', () => {
  const c = consumer();
  batch(c, seqs('sb-1', [1, 2, 3]));
  const f = perFunction(batch(c, seqs('sb-1', [3, 4])))['fn-test'];
  assert.equal(f.Duplicates, 1);
  assert.equal(f.Events, 1);
});

test('a gap counts once, and only after GRACE more numbers of its sandbox', () => {
  const c = consumer();
  let f = perFunction(batch(c, seqs('sb-1', [1, 2, 4, 5])))['fn-test'];
  assert.equal(f.Gaps, 0, 'highest 5: numbers up to 2 settled, 3 is still open');
  f = perFunction(batch(c, seqs('sb-1', [6])))['fn-test'];
  assert.equal(f.Gaps, 1, 'highest 6: 3 is settled, missing');
  f = perFunction(batch(c, seqs('sb-1', [7, 8, 9, 10])))['fn-test'];
  assert.equal(f.Gaps, 0, 'counted once');
});

test('a gap covered by telkin.dropped within the grace is Dropped, not Gaps', () => {
  const c = consumer();
  batch(c, seqs('sb-1', [1, 2, 5]));
  const lines = batch(c, [droppedEvent('sb-1', 6, { droppedRecords: 2, seqRanges: [[3, 4]] }), ...seqs('sb-1', [7, 8, 9])]);
  const f = perFunction(lines)['fn-test'];
  assert.equal(f.Gaps, 0);
  assert.equal(f.Dropped, 2);
  assert.equal(f.Events, 4);
});

test('a report that comes after the grace: the gap stays counted, and the numbers count in LateDropped', () => {
  const c = consumer();
  let f = perFunction(batch(c, seqs('sb-1', [1, 4, 5, 6, 7])))['fn-test'];
  assert.equal(f.Gaps, 2);
  f = perFunction(batch(c, [droppedEvent('sb-1', 8, { droppedRecords: 2, seqRanges: [[2, 3]], reason: 'rejected by Kinesis' })]))['fn-test'];
  assert.equal(f.LateDropped, 2);
  assert.equal(f.Dropped, 2);
  assert.equal(f.Gaps, 0);
  f = perFunction(batch(c, seqs('sb-1', [9, 10, 11, 12])))['fn-test'];
  assert.equal(f.LateDropped, 0, 'published once');
});

test('a coalesced range hiding a loss (more absent numbers than droppedRecords) counts in Gaps', () => {
  const c = consumer();
  const lines = batch(c, [...seqs('sb-1', [1, 3, 5]), droppedEvent('sb-1', 6, { droppedRecords: 1, seqRanges: [[2, 4]] }),
    ...seqs('sb-1', [7, 8, 9])]);
  const f = perFunction(lines)['fn-test'];
  assert.equal(f.Dropped, 2);
  assert.equal(f.Gaps, 1);
});

test('an event arriving after its number was counted as a gap is a LateEvent; its copy a duplicate', () => {
  const c = consumer();
  batch(c, seqs('sb-1', [1, 2, 4, 5, 6, 7]));
  let f = perFunction(batch(c, seqs('sb-1', [3])))['fn-test'];
  assert.equal(f.LateEvents, 1);
  assert.equal(f.Events, 1);
  f = perFunction(batch(c, seqs('sb-1', [3])))['fn-test'];
  assert.equal(f.Duplicates, 1);
});

test('ndjson records with and without the trailing newline; foreign records counted apart', () => {
  const c = consumer();
  const lines = batch(c, [ndjson(seqs('sb-1', [1, 2])), ndjson(seqs('sb-1', [3, 4]), { trailingNewline: false }),
    'not telkin', '{"type":"function"}\n']);
  assert.equal(perFunction(lines)['fn-test'].Events, 4);
  assert.equal(totals(lines).Foreign, 2);
  assert.equal(totals(lines).Records, 4);
});

test('SnapStart: two sandboxes, each from 1, of one function: metrics add up', () => {
  const c = consumer();
  const lines = batch(c, [...seqs('restored-a', [1, 2, 3, 4, 5]), ...seqs('restored-b', [1, 3, 4, 5, 6])]);
  const f = perFunction(lines)['fn-test'];
  assert.equal(f.Events, 10);
  assert.equal(f.Gaps, 1);
  assert.equal(totals(lines).Sandboxes, 2);
});

test('two functions on one stream: one EMF line each', () => {
  const lines = batch(consumer(), [...seqs('sb-a', [1], { fn: 'alpha' }), ...seqs('sb-b', [1, 2], { fn: 'beta' })]);
  const f = perFunction(lines);
  assert.equal(f.alpha.Events, 1);
  assert.equal(f.beta.Events, 2);
});

test('an idle sandbox is settled up to its highest number', () => {
  const c = consumer({ idleMs: 60000 });
  batch(c, seqs('sb-1', [1, 3, 4]), 0);
  const f = perFunction(batch(c, seqs('sb-2', [1]), 60000))['fn-test'];
  assert.equal(f.Gaps, 1, 'sb-1 idle for 60 s: 2 settled missing');
});

test('beyond maxSandboxes the least recently seen is settled and forgotten', () => {
  const c = consumer({ maxSandboxes: 2 });
  batch(c, seqs('old', [1, 3]), 1);
  batch(c, seqs('mid', [1]), 2);
  const lines = batch(c, seqs('new', [1]), 3);
  assert.equal(perFunction(lines)['fn-test'].Gaps, 1, 'old: 1 missing');
  assert.deepEqual([...c.checker.sandboxes.keys()].sort(), ['mid', 'new']);
  assert.equal(totals(lines).Sandboxes, 2);
});

test('a consumer starting mid-stream (cold start) checks a sandbox from the first number it sees', () => {
  const c = consumer();
  let f = perFunction(batch(c, seqs('sb-1', [700, 701, 702, 703, 704])))['fn-test'];
  assert.equal(f.Gaps, 0);
  f = perFunction(batch(c, seqs('sb-1', [650, 705])))['fn-test'];
  assert.equal(f.Duplicates, 1, 'below the first number seen: a copy of an event delivered before');
  assert.equal(f.Events, 1);
});

test('a huge jump in numbers is settled as one range, in constant time', () => {
  const c = consumer();
  const f = perFunction(batch(c, seqs('sb-1', [1, 5_000_000_000, 5_000_000_001, 5_000_000_002, 5_000_000_003])))['fn-test'];
  assert.equal(f.Gaps, 4_999_999_998);
  assert.equal(c.checker.sandboxes.get('sb-1').settledMissing.ranges.length, 1);
});

test('handler: prints one JSON line per EMF object on stdout, keeps state between calls', async () => {
  const { handler } = require('./consumer/lambda');
  const out = [];
  const write = process.stdout.write;
  process.stdout.write = (s) => { out.push(String(s)); return true; };
  try {
    await handler(kinesisEvent(seqs('sb-h', [1, 2])));
    await handler(kinesisEvent(seqs('sb-h', [2])));
    await handler({});
  } finally {
    process.stdout.write = write;
  }
  const lines = out.join('').trimEnd().split('\n').map((l) => JSON.parse(l));
  const fn = lines.filter((l) => l.FunctionName === 'fn-test');
  assert.equal(fn[0].Events, 2);
  assert.equal(fn[1].Duplicates, 1);
  assert.equal(lines.at(-1).Records, 0);
});

test('settings: defaults, and a bad value is refused', () => {
  assert.deepEqual(settings({}), { grace: 1000, idleMs: 900000, maxSandboxes: 10000, namespace: 'telkin/consumer' });
  assert.equal(settings({ TELKIN_CHECK_GRACE_EVENTS: '50' }).grace, 50);
  assert.throws(() => settings({ TELKIN_CHECK_GRACE_EVENTS: '0' }), /positive integer/);
  assert.throws(() => settings({ TELKIN_CHECK_MAX_SANDBOXES: 'x' }), /positive integer/);
});

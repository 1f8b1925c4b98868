'use strict';
// The reference consumer's verification logic (tests/consumer/check.js), event by event, against
// the record format telkin ships: one event or NDJSON per Kinesis record, each event with
// "sandbox" and "seq" appended, telkin.dropped records with the numbers they stand for.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Checker, RangeSet } = require('./consumer/check');
const { telkinEvent, droppedEvent, ndjson } = require('./consumer_util');

const only = (c) => {
  const r = c.report();
  assert.equal(r.sandboxes.length, 1, JSON.stringify(r));
  return r.sandboxes[0];
};

test('RangeSet: merges adjacent and overlapping ranges, counts what is new, removes from the middle', () => {
  const s = new RangeSet();
  assert.equal(s.addRange(1, 3), 3);
  assert.equal(s.addRange(10, 12), 3);
  assert.equal(s.addRange(5, 5), 1);
  assert.deepEqual(s.ranges, [[1, 3], [5, 5], [10, 12]]);
  assert.equal(s.addRange(2, 11), 5, 'only 4 and 6-9 are new');
  assert.deepEqual(s.ranges, [[1, 12]]);
  assert.equal(s.add(13), true);
  assert.equal(s.add(7), false);
  assert.equal(s.removeRange(4, 6), 3);
  assert.deepEqual(s.ranges, [[1, 3], [7, 13]]);
  assert.equal(s.countWithin(2, 8), 4);
  assert.equal(s.has(5), false);
  assert.equal(s.has(13), true);
});

test('every number delivered once, in order: complete', () => {
  const c = new Checker();
  for (let i = 1; i <= 5; i++) c.addData(telkinEvent('sb-1', i));
  const s = only(c);
  assert.equal(s.events, 5);
  assert.equal(s.duplicates, 0);
  assert.equal(s.missing, 0);
  assert.equal(s.maxSeq, 5);
  assert.equal(s.verdict, 'complete');
  assert.equal(c.report().verdict, 'complete');
});

test('out of order delivery is complete (the CLI reads shards one after another)', () => {
  const c = new Checker();
  for (const i of [4, 2, 5, 1, 3]) c.addData(telkinEvent('sb-1', i));
  assert.equal(only(c).verdict, 'complete');
  assert.equal(only(c).events, 5);
});

test('a redelivered record is a duplicate, dropped and counted, not an event', () => {
  const c = new Checker();
  c.addData(telkinEvent('sb-1', 1));
  c.addData(telkinEvent('sb-1', 2));
  assert.deepEqual(c.addData(telkinEvent('sb-1', 2)).map((r) => r.outcome), ['duplicate']);
  c.addData(telkinEvent('sb-1', 1));
  const s = only(c);
  assert.equal(s.events, 2);
  assert.equal(s.duplicates, 2);
  assert.equal(s.verdict, 'complete');
});

test('a number that never arrives is a gap, kept as ranges', () => {
  const c = new Checker();
  for (const i of [1, 2, 5, 6, 9]) c.addData(telkinEvent('sb-1', i));
  const s = only(c);
  assert.equal(s.missing, 4);
  assert.deepEqual(s.missingRanges, [[3, 4], [7, 8]]);
  assert.equal(s.verdict, 'GAPS');
  assert.equal(c.report().verdict, 'GAPS');
});

test('a gap covered by a telkin.dropped range is accounted for: complete, N reported dropped', () => {
  const c = new Checker();
  for (const i of [1, 2, 6]) c.addData(telkinEvent('sb-1', i));
  c.addData(droppedEvent('sb-1', 7, { droppedRecords: 3, seqRanges: [[3, 5]] }));
  const s = only(c);
  assert.equal(s.missing, 0);
  assert.equal(s.covered, 3);
  assert.equal(s.events, 4, 'the telkin.dropped record is itself a numbered event');
  assert.equal(s.verdict, 'complete, 3 reported dropped');
  assert.equal(c.report().verdict, 'complete, 3 reported dropped');
});

test('several ranges in one report, and a report that covers only part of a gap', () => {
  const c = new Checker();
  for (const i of [1, 4, 8]) c.addData(telkinEvent('sb-1', i));
  c.addData(droppedEvent('sb-1', 9, { droppedRecords: 3, seqRanges: [[2, 3], [5, 5]] }));
  const s = only(c);
  assert.equal(s.covered, 3);
  assert.equal(s.missing, 2);
  assert.deepEqual(s.missingRanges, [[6, 7]]);
  assert.equal(s.verdict, 'GAPS');
});

// Numbers 1..6 of one sandbox of which `delivered` arrive, and report 7: `droppedRecords` events
// dropped, their numbers coalesced into the range [2, 5].
function coalesced(delivered, droppedRecords) {
  const c = new Checker();
  for (const i of delivered) c.addData(telkinEvent('sb-1', i));
  c.addData(droppedEvent('sb-1', 7, { droppedRecords, seqRanges: [[2, 5]] }));
  return only(c);
}

test('a coalesced range that also covers delivered numbers: those count as delivered', () => {
  // 2 and 5 were dropped, 3 and 4 delivered.
  const s = coalesced([1, 3, 4, 6], 2);
  assert.deepEqual([s.events, s.covered, s.unaccounted], [5, 2, 0]);
  assert.equal(s.verdict, 'complete, 2 reported dropped');
});

test('a coalesced range covering more absent numbers than droppedRecords hides a loss: GAPS', () => {
  // 2 and 5 were dropped, 3 was lost on the way: the range covers it as well.
  const s = coalesced([1, 4, 6], 2);
  assert.deepEqual([s.missing, s.covered, s.unaccounted], [0, 3, 1]);
  assert.equal(s.verdict, 'GAPS');
});

test('a redelivered telkin.dropped record counts its droppedRecords once', () => {
  const c = new Checker();
  c.addData(telkinEvent('sb-1', 1));
  const d = droppedEvent('sb-1', 4, { droppedRecords: 2, seqRanges: [[2, 3]] });
  c.addData(d);
  c.addData(d);
  const s = only(c);
  assert.equal(s.reportedDropped, 2);
  assert.equal(s.duplicates, 1);
  assert.equal(s.verdict, 'complete, 2 reported dropped');
});

test('a dropped range above every delivered number still counts up to its end', () => {
  const c = new Checker();
  c.addData(telkinEvent('sb-1', 1));
  // The report arrived but its own number is below the range (never telkin's order; tolerated).
  c.addData(droppedEvent('sb-1', 2, { droppedRecords: 2, seqRanges: [[3, 4]] }));
  const s = only(c);
  assert.equal(s.maxSeq, 4);
  assert.equal(s.verdict, 'complete, 2 reported dropped');
});

test('malformed seqRanges are counted and ignored, never thrown', () => {
  const c = new Checker();
  c.addData(telkinEvent('sb-1', 1));
  c.addData(droppedEvent('sb-1', 3, { droppedRecords: 1, seqRanges: [[5, 2], 'x', [0, 1], [1.5, 2], [2]] }));
  const s = only(c);
  assert.equal(s.badRanges, 5);
  assert.deepEqual(s.missingRanges, [[2, 2]]);
});

test('ndjson records, with and without the trailing newline, and blank lines', () => {
  const c = new Checker();
  c.addData(ndjson([telkinEvent('sb-1', 1), telkinEvent('sb-1', 2)], { trailingNewline: true }));
  c.addData(ndjson([telkinEvent('sb-1', 3), telkinEvent('sb-1', 4)], { trailingNewline: false }));
  c.addData(Buffer.from(`\n${telkinEvent('sb-1', 5)}\n\n${telkinEvent('sb-1', 6).trimEnd()}\r\n`));
  const s = only(c);
  assert.equal(c.records, 3);
  assert.equal(s.events, 6);
  assert.equal(c.foreign, 0);
  assert.equal(s.verdict, 'complete');
});

test('TELKIN_RECORD_NEWLINE=0: one event per record, no newline', () => {
  const c = new Checker();
  for (let i = 1; i <= 3; i++) c.addData(telkinEvent('sb-1', i).trimEnd());
  assert.equal(only(c).verdict, 'complete');
});

test('a concatenation of records (Firehose, S3) is one NDJSON text', () => {
  const c = new Checker();
  c.addData([1, 2, 3].map((i) => telkinEvent('sb-1', i)).join(''));
  assert.equal(only(c).events, 3);
});

test('foreign records are counted, never crash the check, and make no sandbox', () => {
  const c = new Checker();
  const foreign = ['not json', '{"half":', '[1,2]', 'null', '42', '"str"',
    '{"sandbox":"sb-x"}', '{"seq":3}', '{"sandbox":"","seq":1}', '{"sandbox":"sb-x","seq":0}',
    '{"sandbox":"sb-x","seq":"7"}', '{"sandbox":"sb-x","seq":1.5}', '{"sandbox":7,"seq":1}',
    '{"sandbox":"sb-x","seq":1e300}'];
  for (const f of foreign) c.addData(f);
  c.addData(Buffer.from([0xff, 0xfe, 0x00, 0x0a]));
  c.addData(telkinEvent('sb-1', 1));
  const r = c.report();
  assert.equal(r.foreign, foreign.length + 1);
  assert.equal(r.sandboxes.length, 1);
  assert.equal(r.verdict, 'complete');
});

test('nothing but foreign records: no telkin events', () => {
  const c = new Checker();
  c.addData('hello');
  assert.equal(c.report().verdict, 'no telkin events');
});

test('SnapStart: the restored copy has its own sandbox and starts again at 1', () => {
  const c = new Checker();
  // The snapshot's init events, then two restored copies of it (each ships its own numbers).
  for (let i = 1; i <= 3; i++) c.addData(telkinEvent('snapshot', i));
  for (let i = 1; i <= 4; i++) c.addData(telkinEvent('restored-a', i));
  for (const i of [1, 3]) c.addData(telkinEvent('restored-b', i));
  const r = c.report();
  const by = Object.fromEntries(r.sandboxes.map((s) => [s.sandbox, s]));
  assert.equal(by.snapshot.verdict, 'complete');
  assert.equal(by['restored-a'].events, 4);
  assert.equal(by['restored-a'].verdict, 'complete');
  assert.deepEqual(by['restored-b'].missingRanges, [[2, 2]]);
  assert.equal(r.verdict, 'GAPS');
  assert.equal(r.totals.events, 9);
});

test('huge seq: a first number in the billions is one missing range, not a billion entries', () => {
  const c = new Checker();
  const big = 4_000_000_000;
  c.addData(telkinEvent('sb-1', big));
  c.addData(telkinEvent('sb-1', big + 1));
  c.addData(telkinEvent('sb-1', Number.MAX_SAFE_INTEGER));
  const s = only(c);
  assert.deepEqual(s.missingRanges, [[1, big - 1], [big + 2, Number.MAX_SAFE_INTEGER - 1]]);
  assert.equal(s.missing, Number.MAX_SAFE_INTEGER - 3);
  assert.equal(s.missingRangeCount, 2);
});

test('fromLowest: numbers below the lowest seen (past the retention period) are not missing', () => {
  const c = new Checker();
  for (const i of [500, 501, 503]) c.addData(telkinEvent('sb-1', i));
  assert.equal(c.report().sandboxes[0].missing, 500);
  const s = c.report({ fromLowest: true }).sandboxes[0];
  assert.deepEqual(s.missingRanges, [[502, 502]]);
  assert.equal(s.lowest, 500);
});

test('startAtFirstSeen (the Lambda): a sandbox is checked from its first number', () => {
  const c = new Checker({ startAtFirstSeen: true });
  for (const i of [500, 501, 503]) c.addData(telkinEvent('sb-1', i));
  assert.deepEqual(only(c).missingRanges, [[502, 502]]);
  assert.equal(c.addData(telkinEvent('sb-1', 499))[0].outcome, 'duplicate');
});

test('a sandbox spread over 4 shards (random keys), read shard after shard: 400 000 events, complete', { timeout: 30000 }, () => {
  const c = new Checker();
  const N = 400_000;
  for (let shard = 0; shard < 4; shard++) {
    for (let i = 1 + shard; i <= N; i += 4) c.addEvent({ sandbox: 'sb-1', seq: i, type: 'function', function: 'f' });
  }
  for (let i = 1; i <= N; i += 1000) c.addEvent({ sandbox: 'sb-1', seq: i, type: 'function', function: 'f' });
  const s = only(c);
  assert.equal(s.events, N);
  assert.equal(s.duplicates, N / 1000);
  assert.equal(s.verdict, 'complete');
  assert.deepEqual(c.sandboxes.get('sb-1').delivered.ranges, [[1, N]]);
});

test('RangeSet: numbers below the end wait and merge; duplicates are seen before and after the merge', () => {
  const s = new RangeSet();
  for (const n of [10, 11, 20, 3, 5, 4, 15]) assert.equal(s.add(n), true, String(n));
  assert.equal(s.add(4), false, 'pending duplicate');
  assert.equal(s.has(15), true);
  assert.deepEqual(s.ranges, [[3, 5], [10, 11], [15, 15], [20, 20]]);
  assert.equal(s.add(5), false, 'merged duplicate');
  assert.equal(s.add(12), true);
  assert.equal(s.add(14), true);
  assert.equal(s.add(13), true);
  assert.deepEqual(s.ranges, [[3, 5], [10, 15], [20, 20]]);
  assert.equal(s.size(), 10);
});

test('a million events in order cost one range', () => {
  const c = new Checker();
  const N = 1_000_000;
  for (let i = 1; i <= N; i++) c.addEvent({ sandbox: 'sb-1', seq: i, type: 'function', function: 'f' });
  const st = c.sandboxes.get('sb-1');
  assert.equal(st.delivered.ranges.length, 1);
  assert.equal(only(c).events, N);
});

test('settle(): decided numbers keep only their gaps; late arrivals and late reports are recognised', () => {
  const c = new Checker();
  for (const i of [1, 2, 4, 5, 8, 9, 10]) c.addData(telkinEvent('sb-1', i));
  const st = c.sandboxes.get('sb-1');
  assert.equal(st.settle(9), 3, '3, 6 and 7 are missing');
  assert.deepEqual(st.delivered.ranges, [[10, 10]]);
  assert.deepEqual(st.settledMissing.ranges, [[3, 3], [6, 7]]);
  assert.equal(c.addData(telkinEvent('sb-1', 4))[0].outcome, 'duplicate');
  assert.equal(c.addData(telkinEvent('sb-1', 3))[0].outcome, 'late');
  c.addData(droppedEvent('sb-1', 11, { droppedRecords: 2, seqRanges: [[6, 7]] }));
  const s = only(c);
  assert.equal(s.missing, 0);
  assert.equal(s.covered, 2);
  assert.equal(s.late, 1);
  assert.equal(s.verdict, 'complete, 2 reported dropped');
});

'use strict';
// telkin while Kinesis pushes back (issue 16): records throttled at random, 5xx storms, and the
// per-shard write limits (kinesis_stub.js shardLimits: 1 000 records/s and 1 MiB/s per shard,
// one second of burst). For each shipping strategy, event by event (compare.js against what the
// simulator emitted):
//   - where the volume fits the limits and the time: nothing lost, nothing twice;
//   - where it cannot (more than a shard takes before the SHUTDOWN deadline): what arrived plus
//     what telkin reports lost is exactly what it accepted, the oldest events went first, and the
//     loss is reported (exit summary, EMF line, a telkin.dropped record downstream).
// Nothing here asserts timing.

const test = require('node:test');
const assert = require('node:assert/strict');
const { compare, canon, stripAppended, recordLines } = require('./compare');
const { stubAndSim, parseSummary, withDiagnostics, assertShutdown, assertClean } = require('./prod_util');

const TYPES = ['platform', 'function'];
const STRATEGIES = ['end', 'periodic:200', 'auto'];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const d = (name, fn, opts = {}) => test(name, { timeout: 120000, ...opts }, withDiagnostics(fn));

async function finish(t, sim, stub, { pk = 'sandbox' } = {}) {
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  const sum = parseSummary(sim.stderrLines);
  assert.ok(sum, 'telkin printed its summary line at exit');
  const cmp = compare(sim, stub.accepted, { types: TYPES, pk });
  t.diagnostic(`${stub.requests.length} requests; ${sum.line.replace(/^.*info: /, '')}`);
  return { sd, sum, cmp };
}

// Nothing lost, nothing twice, nothing reported lost.
function assertNothingLost(t, cmp, sum) {
  assertClean(t, cmp);
  assert.equal(cmp.duplicates, 0, 'records Kinesis took were sent again');
  assert.equal(sum.lostAtExit, 0, sum.line);
  assert.equal(sum.refused, 0, sum.line);
}

// What arrived + what telkin reports lost == what it accepted; the loss is reported downstream.
function assertLossAccounted(t, sim, cmp, sum) {
  assert.equal(cmp.unexpected.length, 0, 'records that match no emitted event');
  assert.equal(cmp.duplicates, 0, 'records Kinesis took were sent again');
  assert.equal(cmp.expected, sum.queued, `telkin queued ${sum.queued} of the ${cmp.expected} events it acknowledged`);
  assert.ok(sum.lostAtExit > 0, 'the volume was meant not to fit');
  // Exact: what is missing is what telkin reports lost, but for the records of a request that
  // had no answer by the deadline (counted lost, reported as unanswered: they may have arrived).
  assert.ok(cmp.missing.length <= sum.lostAtExit && cmp.missing.length >= sum.lostAtExit - sum.unanswered,
    `${cmp.missing.length} events missing downstream, telkin reports ${sum.lostAtExit} lost ` +
    `(${sum.unanswered} unanswered): ${sum.line}`);
  assert.ok(sim.stderrLines.some((l) => /could not be shipped before the shutdown deadline/.test(l)), 'loss logged');
  const emf = sim.stdoutLines.map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .filter((j) => j && j._aws);
  assert.equal(emf.reduce((s, j) => s + (j.EventsLost || 0), 0), sum.lostAtExit, 'EMF EventsLost');
  // The telkin.dropped record is the last request, sent if there is time (and taken if the
  // shard has room): at most one, and exact when it arrives.
  const reports = cmp.dropped.filter((ev) => ev.record.reason === 'shutdown deadline');
  assert.ok(reports.length <= 1, `one telkin.dropped record for the shutdown loss: ${JSON.stringify(cmp.dropped)}`);
  for (const r of reports) assert.equal(r.record.droppedRecords, sum.lostAtExit, JSON.stringify(r.record));
  t.diagnostic(`telkin.dropped for the loss: ${reports.length ? 'arrived' : 'not taken'}`);
  t.diagnostic(`arrived ${cmp.expected - cmp.missing.length} + lost ${sum.lostAtExit} (unanswered ${sum.unanswered}) = accepted ${sum.queued}`);
}

// Oldest first: no event arrived while an older one was left behind, unless both were in one
// request (Kinesis takes a request's records in order, but its bucket refills meanwhile, so a
// record after a throttled one may still fit).
function assertOldestFirst(sim, stub, cmp) {
  const key = (ev) => canon(ev);
  const missing = new Set(cmp.missing.map(key));
  const seqOf = new Map(sim.emitted.map((r) => [key(r.event), r.seq]));
  const oldest = cmp.missing.reduce((a, ev) => (seqOf.get(key(ev)) < seqOf.get(key(a)) ? ev : a));
  const oldestSeq = seqOf.get(key(oldest));
  const together = new Set();
  for (const req of stub.requests) {
    const keys = req.data.map((d) => { try { return key(stripAppended(JSON.parse(d))); } catch { return ''; } });
    if (keys.includes(key(oldest))) for (const k of keys) together.add(k);
  }
  const younger = sim.emitted.filter((r) => r.acked && TYPES.includes(r.category) && r.seq > oldestSeq &&
    !missing.has(key(r.event)) && !together.has(key(r.event)));
  assert.equal(younger.length, 0,
    `${younger.length} events arrived although an older one (seq ${oldestSeq}) was left behind, in other requests`);
}

for (const flush of STRATEGIES) {
  d(`TELKIN_FLUSH=${flush}: 20 invokes x 10 lines, every 3rd PutRecords 500, each record throttled with p=0.3: nothing lost`, async (t, h) => {
    const { stub, sim } = await stubAndSim(t, h, {
      env: { TELKIN_FLUSH: flush },
      setup: (s) => { s.throttleP = 0.3; s.decide = (req) => (req.n % 3 === 2 ? { status: 500 } : null); },
    });
    for (let i = 0; i < 20; i++) await sim.invoke({ lines: 10 });
    const { cmp, sum } = await finish(t, sim, stub);
    assertNothingLost(t, cmp, sum);
    assert.ok(sum.throttled > 0 && sum.failedCalls > 0, `faults were injected: ${sum.line}`);
  });

  d(`TELKIN_FLUSH=${flush}: one invoke of 20 000 lines, 30% of records throttled: nothing lost`, async (t, h) => {
    const { stub, sim } = await stubAndSim(t, h, { env: { TELKIN_FLUSH: flush }, setup: (s) => { s.throttleP = 0.3; } });
    await sim.invoke({ lines: 20000 });
    const { cmp, sum } = await finish(t, sim, stub);
    assertNothingLost(t, cmp, sum);
    assert.ok(sum.throttled > 1000, `records were throttled: ${sum.line}`);
  });

  d(`TELKIN_FLUSH=${flush}: one shard, 40 invokes x 150 lines with freezes between them: nothing lost`, async (t, h) => {
    // 40 x 300 ms frozen (the shard refills while telkin is frozen; an idle shard holds one
    // second) for 6 000 lines: well inside 1 000 records/s.
    const { stub, sim } = await stubAndSim(t, h, { env: { TELKIN_FLUSH: flush }, setup: (s) => s.shardLimits({ shards: 1 }) });
    for (let i = 0; i < 40; i++) {
      await sim.invoke({ lines: 150 });
      await sleep(300);
    }
    const { cmp, sum } = await finish(t, sim, stub);
    assertNothingLost(t, cmp, sum);
  });

  d(`TELKIN_FLUSH=${flush}: one shard, one invoke of 20 000 lines (more than it takes before the SHUTDOWN deadline): loss exact, oldest first, reported`, async (t, h) => {
    const { stub, sim } = await stubAndSim(t, h, { env: { TELKIN_FLUSH: flush }, setup: (s) => s.shardLimits({ shards: 1 }) });
    stub.shardLimits({ shards: 1 }); // an idle shard: full bucket when the invoke starts
    await sim.invoke({ lines: 20000 });
    const { cmp, sum } = await finish(t, sim, stub);
    assertLossAccounted(t, sim, cmp, sum);
    assertOldestFirst(sim, stub, cmp);
  });
}

d('TELKIN_FLUSH=periodic:500, one shard, 40 invokes x 150 lines with 50 ms freezes: nothing lost, or the loss exact and reported', async (t, h) => {
  // Whether 6 000 lines fit depends on how long telkin gets to run (it ships while thawed):
  // either way nothing may go missing unreported.
  const { stub, sim } = await stubAndSim(t, h, { env: { TELKIN_FLUSH: 'periodic:500' }, setup: (s) => s.shardLimits({ shards: 1 }) });
  for (let i = 0; i < 40; i++) {
    await sim.invoke({ lines: 150 });
    await sleep(50);
  }
  const { cmp, sum } = await finish(t, sim, stub);
  if (sum.lostAtExit) assertLossAccounted(t, sim, cmp, sum);
  else assertNothingLost(t, cmp, sum);
});

d('four shards, random partition keys, 12 000 lines: nothing lost; the records use every shard', async (t, h) => {
  const { stub, sim } = await stubAndSim(t, h, {
    env: { TELKIN_PARTITION_KEY: 'random', TELKIN_FLUSH_TIMEOUT_MS: '5000' },
    sim: { functionTimeoutMs: 15000 },
    setup: (s) => s.shardLimits({ shards: 4 }),
  });
  await sim.invoke({ lines: 12000 });
  const { cmp, sum } = await finish(t, sim, stub, { pk: 'random' });
  assertNothingLost(t, cmp, sum);
  const perShard = [0, 0, 0, 0];
  for (const r of stub.accepted) perShard[stub.shardOf(r.partitionKey)]++;
  assert.ok(perShard.every((n) => n > 0), `records per shard ${perShard}`);
});

d('TELKIN_RECORD=ndjson, one shard, 20 000 lines: loss counted in events, exact, reported', async (t, h) => {
  const { stub, sim } = await stubAndSim(t, h, { env: { TELKIN_RECORD: 'ndjson' }, setup: (s) => s.shardLimits({ shards: 1 }) });
  // One event per line of each record: compare() works on events.
  const events = () => stub.accepted.flatMap((r) => recordLines(r.data).map((line) => ({ ...r, data: line, json: JSON.parse(line) })));
  await sim.invoke({ lines: 20000 });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  const sum = parseSummary(sim.stderrLines);
  const cmp = compare(sim, events(), { types: TYPES });
  if (sum.lostAtExit) assertLossAccounted(t, sim, cmp, sum);
  else assertNothingLost(t, cmp, sum);
});

d('5xx storm (the first 12 PutRecords answered 503): every wait fits the deadlines, nothing lost', async (t, h) => {
  const { stub, sim } = await stubAndSim(t, h, { script: Array(12).fill({ status: 503 }) });
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 10 });
  const { cmp, sum } = await finish(t, sim, stub);
  assertNothingLost(t, cmp, sum);
  assert.equal(sum.failedCalls, 12, sum.line);
});

'use strict';
// telkin against a fault-injecting PutRecords endpoint (kinesis_stub.js), event by event.
// For every fault: every event telkin acknowledged arrives at least once (the stub stores only
// what it answered with success), except what a non-retryable refusal dropped, which must be
// exactly the refused requests' records and counted in telkin's exit summary; the number of
// requests stays bounded; no invoke holds the freeze beyond TELKIN_FLUSH_TIMEOUT_MS; SHUTDOWN
// exits 0 before its deadline.

const test = require('node:test');
const assert = require('node:assert/strict');
const { compare, canon, stripAppended } = require('./compare');
const {
  stubAndSim, parseSummary, withDiagnostics, assertShutdown, assertClean, assertFreezeBudget,
} = require('./prod_util');

const TYPES = ['platform', 'function'];
const FLUSH_MS = 1000; // telkin's default TELKIN_FLUSH_TIMEOUT_MS

/**
 * The common scenario: 3 invokes of 10 lines (+ init), SHUTDOWN; the script applies to the first
 * PutRecords requests. Returns {stub, sim, cmp, sum, sd}.
 */
async function run(t, h, { script, env, sim: simOpts, invokes = 3, lines = 10, budget = FLUSH_MS, extraRequests = 0 }) {
  const { stub, sim } = await stubAndSim(t, h, { script, env, sim: simOpts });
  for (let i = 0; i < invokes; i++) await sim.invoke({ lines });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  assertFreezeBudget(sim, budget);
  const sum = parseSummary(sim.stderrLines);
  assert.ok(sum, 'telkin printed its summary line at exit');
  const cmp = compare(sim, stub.accepted, { types: TYPES });
  // Bounded: the scripted faults, plus the requests a fault-free run needs (one per batch the
  // simulator delivered, at most), plus what the caller allows (partial retries).
  const bound = script.length + sim.deliveries.length + 2 + extraRequests;
  assert.ok(stub.requests.length <= bound, `${stub.requests.length} PutRecords requests, bound ${bound}`);
  assert.equal(sum.calls, stub.requests.length, `telkin counted ${sum.calls} PutRecords calls, the stub saw ${stub.requests.length}`);
  assert.equal(sum.lostAtExit, 0, `lost at exit: ${sum.line}`);
  t.diagnostic(`requests ${stub.requests.length} (${script.length} faulted), connections ${stub.connections}; ${sum.line}`);
  return { stub, sim, cmp, sum, sd };
}

const d = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withDiagnostics(fn));

// ---------------------------------------------------------------------------------------------

d('per-record ProvisionedThroughputExceededException and InternalFailure: only failed records resent', async (t, h) => {
  const script = [
    { recordError: 'ProvisionedThroughputExceededException' },
    { recordError: 'InternalFailure' },
    { recordError: 'ProvisionedThroughputExceededException', which: () => true },
  ];
  const { stub, cmp, sum } = await run(t, h, { script, extraRequests: 3 });
  assertClean(t, cmp);
  assert.equal(cmp.duplicates, 0, 'records Kinesis took were sent again');
  const failed = stub.requests.slice(0, 3).reduce((s, r) => s + (r.records - r.stored), 0);
  assert.ok(failed > 0);
  assert.ok(sum.retried >= failed, `summary retried ${sum.retried}, records failed ${failed}`);
  // The records that failed went out again, alone, in the next request.
  const firstFailed = stub.requests[0].data.filter((_, i) => i % 2 === 0);
  const resent = stub.requests[1].data;
  assert.ok(firstFailed.every((x) => resent.includes(x)), 'the next request carries the failed records');
});

for (const [status, type] of [[400, 'ThrottlingException'], [400, 'ProvisionedThroughputExceededException'],
  [400, 'com.amazon.coral.availability#ThrottlingException'], [500, 'InternalFailure'], [503, 'ServiceUnavailable'],
  [500, null], [503, null], [429, null]]) {
  d(`HTTP ${status} ${type || '(no JSON body)'} x3: retried, nothing lost, no duplicates`, async (t, h) => {
    const a = { status, type };
    const { cmp, sum } = await run(t, h, { script: [a, a, a] });
    assertClean(t, cmp);
    assert.equal(cmp.duplicates, 0);
    assert.equal(sum.failedCalls, 3, sum.line);
    assert.equal(sum.refused, 0, sum.line);
  });
}

d('response slower than the 5 s request timeout, flush budget 8 s: timed out, resent within the invoke', async (t, h) => {
  const { stub, sim, cmp, sum } = await run(t, h, {
    script: [{ delayMs: 6000, then: {} }],
    invokes: 2,
    env: { TELKIN_FLUSH_TIMEOUT_MS: '8000' },
    sim: { functionTimeoutMs: 15000 },
    budget: 8000,
  });
  assertClean(t, cmp);
  assert.equal(sum.failedCalls, 1, sum.line);
  assert.equal(stub.requests[0].stored, false, 'the late answer found the connection closed');
  const held = sim.invokes[0].extensionNextAt - sim.invokes[0].runtimeDoneAt;
  t.diagnostic(`first invoke held the freeze ${held} ms (the timed-out request is resent within it)`);
  assert.ok(stub.requests[1].conn !== stub.requests[0].conn, 'the retry uses a new connection');
});

d('response slower than the request timeout, default 1 s budget: invoke ends on time, SHUTDOWN ships it', async (t, h) => {
  const { cmp, sum } = await run(t, h, {
    script: [{ delayMs: 6000, then: {} }],
    invokes: 1,
    sim: { shutdownDeadlineMs: 9000 },
  });
  assertClean(t, cmp);
  assert.ok(sum.failedCalls <= 1, sum.line);
});

for (const [name, a] of [['connection reset mid-response', { reset: true }],
  ['truncated body (Content-Length larger than sent, then close)', { truncate: true }],
  ['garbage bytes instead of HTTP', { garbage: true }]]) {
  d(`${name} x2: retried on a new connection, nothing lost`, async (t, h) => {
    const { stub, cmp, sum } = await run(t, h, { script: [a, a] });
    assertClean(t, cmp);
    assert.equal(cmp.duplicates, 0);
    assert.equal(sum.failedCalls, 2, sum.line);
    assert.ok(stub.connections >= 3, `connections ${stub.connections}: each broken one is replaced`);
  });
}

d('chunked response bodies and Connection: close answers are understood', async (t, h) => {
  const script = [{ chunked: true }, { chunked: true, close: true }, { close: true }, { chunked: true }];
  const { stub, cmp, sum } = await run(t, h, { script });
  assertClean(t, cmp);
  assert.equal(cmp.duplicates, 0);
  assert.equal(sum.failedCalls, 0, `a chunked or closing 200 was taken for a failure: ${sum.line}`);
  assert.equal(sum.retried, 0, sum.line);
  assert.ok(stub.connections >= 2, 'a new connection after Connection: close');
});

d('a non-retryable error type of 70 characters is logged once, not once per request', async (t, h) => {
  const type = 'KMSAccessDeniedExceptionWithAnUnusuallyLongNameThatGoesOnAndOnForTests';
  const a = { status: 400, type, message: 'injected' };
  const { sim, sum } = await run(t, h, { script: [a, a, a] });
  assert.equal(sum.failedCalls, 3, sum.line);
  const logged = sim.stderrLines.filter((l) => l.includes(type));
  assert.equal(logged.length, 1, `logged ${logged.length} times:\n${logged.join('\n')}`);
}, {});

for (const type of ['AccessDeniedException', 'ResourceNotFoundException']) {
  d(`non-retryable 400 ${type}: the refused request's records are dropped, counted, logged once`, async (t, h) => {
    const a = { status: 400, type, message: `injected ${type}` };
    const { stub, sim, cmp, sum } = await run(t, h, { script: [a, a] });
    const refused = stub.requests.slice(0, 2).reduce((s, r) => s + r.records, 0);
    assert.equal(sum.refused, refused, `summary: ${sum.line}`);
    assert.equal(sum.failedCalls, 2, sum.line);
    // What is missing is exactly what was refused.
    const refusedSet = new Set(stub.requests.slice(0, 2).flatMap((r) => r.data.map((x) => canon(stripAppended(JSON.parse(x))))));
    assert.ok(cmp.missing.length > 0 && cmp.missing.length <= refused, `missing ${cmp.missing.length}, refused ${refused}`);
    for (const ev of cmp.missing) assert.ok(refusedSet.has(canon(ev)), `missing but never refused: ${JSON.stringify(ev)}`);
    // Each refused event is named by a telkin.dropped record that arrived (compare() checks that
    // every number is delivered or named); a refused report is named by the next one.
    assertClean(t, cmp, { allowMissing: refused, allowDropped: true });
    const named = cmp.dropped.reduce((n, d) => n + d.record.droppedRecords, 0);
    assert.ok(named >= cmp.missing.length, `telkin.dropped names ${named} events, ${cmp.missing.length} missing`);
    assert.ok(cmp.dropped.every((d) => d.record.reason === 'rejected by Kinesis'), JSON.stringify(cmp.dropped));
    assert.equal(stub.requests.length, stub.requests.filter((r, i) => i < 2 || r.stored !== false).length,
      'after the refusals every request succeeded');
    const logged = sim.stderrLines.filter((l) => l.includes(type));
    assert.equal(logged.length, 1, `the refusal is logged once: ${logged.join(' | ')}`);
    assert.match(logged[0], /error/);
  });
}

d('Kinesis answers 503 to everything: each invoke ends within its budget, SHUTDOWN exits on time, loss counted', async (t, h) => {
  const { stub, sim } = await stubAndSim(t, h, { setup: (s) => { s.defaultAction = { status: 503 }; } });
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 5 });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  assertFreezeBudget(sim, FLUSH_MS);
  const sum = parseSummary(sim.stderrLines);
  assert.ok(sum, 'summary printed');
  t.diagnostic(`${stub.requests.length} requests; ${sum.line}`);
  assert.equal(stub.accepted.length, 0);
  assert.equal(sum.shipped, 0);
  assert.equal(sum.lostAtExit, sum.queued, `everything queued is reported lost at exit: ${sum.line}`);
  assert.ok(sim.stderrLines.some((l) => /could not be shipped before the shutdown deadline/.test(l)), 'loss logged as an error');
  // Backoff: 3 invokes of <= 1 s each and a 2 s SHUTDOWN; 25 ms doubling to a 2 s cap, each wait
  // at most half the time left before the phase's deadline (and at least 25 ms): about
  // log2(budget / 25 ms) + 3 attempts per phase, 4 phases.
  assert.ok(stub.requests.length <= 48, `${stub.requests.length} requests: retries are not backing off`);
  assert.equal(sum.calls, stub.requests.length);
});

d('200 whose Records count does not match the request: nothing marked shipped, resent', async (t, h) => {
  const { cmp, sum } = await run(t, h, { script: [{ wrongCount: true }, { wrongCount: true }] });
  assertClean(t, cmp);
  assert.equal(cmp.duplicates, 0);
  assert.equal(sum.shipped, cmp.arrived, `summary shipped ${sum.shipped}, stub stored ${cmp.arrived}: ${sum.line}`);
});

// Known telkin bug (reported): hc_response_complete takes a 1xx head for the final answer, so
// kinesis_on_response sees "HTTP100", not retryable, and refuses (drops) the request's records.
d('an interim 100 Continue before the 200: the final answer counts, nothing refused or lost', async (t, h) => {
  const { cmp, sum } = await run(t, h, { script: [{ interim: true }, { interim: true }], extraRequests: 2 });
  assert.equal(sum.refused, 0, `records refused because of a 1xx answer: ${sum.line}`);
  assertClean(t, cmp);
}, {});

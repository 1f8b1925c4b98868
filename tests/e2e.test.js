'use strict';
// End-to-end: telkin (TELKIN_BIN, default ../build/telkin; TELKIN_BIN_WRAPPER e.g.
// "qemu-aarch64-static") inside the Lambda simulator, shipping into kinesalite. Every test reads
// the stream back and compares it EVENT BY EVENT with what the simulator emitted:
//   - each record's Data is one telemetry event exactly as delivered, plus the appended members
//     function / version / region / sandbox; the record minus those deep-equals the event;
//   - every event of the forwarded types (TELKIN_TYPES) that telkin acknowledged (2xx) arrives
//     (at least once: duplicates are reported, not failed); nothing of another type arrives;
//   - "telkin.dropped" records are telkin's own and are checked only where drops are expected.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const http = require('node:http');
const fs = require('node:fs');
const { LambdaSim } = require('./lambda_sim');
const { Kinesalite, streamArn } = require('./kinesis');
const { canon, describe, compare, stripAppended, recordLines } = require('./compare');
const {
  BIN, WRAPPER, ECHO, tail, assertClean, assertShutdown: assertCleanShutdown, invokeHead, absentFrom,
  assertConsumerComplete,
} = require('./prod_util');

const TEST_TIMEOUT = 90000;

let kin; // shared kinesalite (tests that stop it get their own)
let streams = 0;
const sims = new Set();
const kins = new Set();
let preflight = null; // null | Error: telkin does not register at all

test.before(async () => {
  kin = new Kinesalite();
  kins.add(kin);
  await kin.start();
});

test.after(async () => {
  for (const s of sims) await s.close();
  for (const k of kins) await k.close();
});

const { freePort } = require('./ports');

/**
 * Start kinesalite stream + simulator + telkin. Returns a context with helpers.
 * @param {object} p  {env, sim: LambdaSim options, kinesalite, arn, shards}
 */
async function setup(t, p = {}) {
  if (preflight) throw preflight;
  const k = p.kinesalite || kin;
  const c = k.client();
  const stream = `e2e-${process.pid}-${++streams}`;
  await c.createStream(stream, p.shards || 1);
  const port = await freePort();
  const env = {
    TELKIN_STREAM: p.arn ? streamArn(stream, k.region) : stream,
    AWS_ENDPOINT_URL_KINESIS: k.endpoint,
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    TELKIN_LISTEN_PORT: String(port),
    // Most scenarios pin the "ship before /event/next" contract; the strategies have their own.
    TELKIN_FLUSH: 'end',
    ...p.env,
  };
  for (const key of Object.keys(env)) if (env[key] === null) delete env[key];
  const sim = new LambdaSim({
    bin: BIN, wrapper: WRAPPER, env, echo: ECHO, region: k.region,
    functionName: 'telkin-e2e', functionVersion: '$LATEST', ...p.sim,
  });
  sims.add(sim);
  t.after(() => sim.close());
  await sim.start();
  const ctx = { sim, stream, client: c, kinesalite: k, env, listenPort: port };
  ctx.read = () => c.readAll(stream);
  return ctx;
}

// Wrap a test body: on failure, attach telkin's last output lines and the simulator summary.
function e2e(name, opts, body) {
  test(name, { timeout: TEST_TIMEOUT, ...opts }, async (t) => {
    const holder = {};
    try {
      await body(t, holder);
    } catch (e) {
      const sim = holder.ctx && holder.ctx.sim;
      if (sim) {
        e.message += `\n--- telkin stderr (tail) ---\n${tail(sim.stderrLines)}` +
          `\n--- telkin stdout (tail) ---\n${tail(sim.stdoutLines, 10)}` +
          `\n--- simulator ---\n${JSON.stringify(sim.summary())}`;
      }
      throw e;
    }
  });
}

async function start(t, holder, p) {
  const ctx = await setup(t, p);
  holder.ctx = ctx;
  await ctx.sim.waitInit().catch((e) => {
    throw new Error(`telkin did not finish init (register + subscribe + /event/next): ${e.message}`);
  });
  return ctx;
}

function postRaw(port, body, { contentType = 'application/json' } = {}) {
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: '/',
      headers: { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) },
      agent: false,
    }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, error: e.code || e.message }));
    req.end(body);
  });
}

// An oversized POST over a raw socket: send the headers (Content-Length announces the size), give
// the server a moment to answer from the headers alone, then send the body. Reading the answer
// does not depend on the server draining the body (a server that answers 413 and closes with
// unread data makes the kernel send RST, which can destroy the answer before it is read).
function postOversized(port, body) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let got = '';
    let done = false;
    const finish = (r) => { if (!done) { done = true; clearTimeout(guard); sock.destroy(); resolve(r); } };
    const guard = setTimeout(() => finish({ status: 0, error: 'timeout', got }), 10000);
    const status = () => {
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(got);
      return m ? Number(m[1]) : 0;
    };
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (status()) finish({ status: status(), early: !bodySent });
    });
    sock.on('error', (e) => finish({ status: status(), error: e.code || e.message, early: !bodySent }));
    sock.on('close', () => finish({ status: status(), error: 'closed', early: !bodySent }));
    let bodySent = false;
    sock.on('connect', () => {
      sock.write(`POST / HTTP/1.1\r\nHost: sandbox.localdomain\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`);
      setTimeout(() => { if (!done) { bodySent = true; sock.write(body); } }, 300);
    });
  });
}

// ------------------------------------------------------------------------------------------------

test('preflight: telkin binary exists and registers', { timeout: 20000 }, async (t) => {
  if (!fs.existsSync(BIN)) {
    preflight = new Error(`telkin binary not found at ${BIN} (run make, or set TELKIN_BIN)`);
    throw preflight;
  }
  const sim = new LambdaSim({ bin: BIN, wrapper: WRAPPER, env: {}, initTimeoutMs: 5000 });
  sims.add(sim);
  try {
    await sim.start();
    const registered = new Promise((resolve) => sim.once('register', resolve));
    const r = await Promise.race([registered.then(() => 'registered'), sim.waitExit({ timeoutMs: 5000 }).then(() => 'exited')])
      .catch(() => 'timeout');
    if (r !== 'registered' && !sim.registration) {
      preflight = new Error(`telkin at ${BIN} never called /extension/register (${r}); ` +
        `stdout: ${tail(sim.stdoutLines, 5)} stderr: ${tail(sim.stderrLines, 5)}`);
      throw preflight;
    }
  } finally {
    await sim.close();
  }
});

e2e('missing TELKIN_STREAM: init/error Extension.ConfigInvalid and a non-zero exit', {}, async (t, h) => {
  const ctx = await setup(t, { env: { TELKIN_STREAM: null } });
  h.ctx = ctx;
  const ex = await ctx.sim.waitExit({ timeoutMs: 5000 }).catch(() => null);
  assert.ok(ex, 'telkin did not exit within 5 s without TELKIN_STREAM');
  assert.ok(ctx.sim.registration, 'telkin must register before reporting init/error');
  assert.deepEqual(ctx.sim.initErrors.map((e) => e.errorType), ['Extension.ConfigInvalid']);
  assert.notEqual(ex.code, 0, `exit code ${ex.code}`);
});

e2e('30 invokes, text logs: every event arrives; each invoke is shipped before /event/next', {}, async (t, h) => {
  const ctx = await start(t, h, {});
  const { sim } = ctx;
  const types = ['platform', 'function'];
  const sub = sim.subscriptions[0];
  assert.equal(sub.schemaVersion, '2022-12-13', 'telkin subscribes with schema 2022-12-13');
  assert.ok(sub.types.includes('function') && sub.types.includes('platform'));
  for (let i = 0; i < 30; i++) {
    const inv = await sim.invoke({ lines: 5 });
    assert.ok(inv.ackedBeforeNext, `invoke ${i}: telkin called /event/next before acknowledging ` +
      `${inv.unackedBeforeNext.map((e) => describe(e.event)).join(', ')}`);
    if (i % 10 === 0 || i === 29) {
      // Frozen now: everything of the invoke up to runtimeDone must already be in the stream.
      const recs = await ctx.read();
      const inStream = new Set(recs.filter((r) => r.json).map((r) => canon(stripAppended(r.json))));
      const head = invokeHead(inv, types);
      const absent = head.filter((e) => !inStream.has(canon(JSON.parse(e.json))));
      assert.equal(absent.length, 0, `invoke ${i}: called /event/next before shipping ` +
        `${absent.length}/${head.length} events: ${absent.slice(0, 4).map((e) => describe(e.event)).join('; ')}`);
    }
  }
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  const cmp = compare(sim, await ctx.read(), { types });
  assertClean(t, cmp);
  // The last invoke's platform.report (emitted when telkin called next) arrives too.
  const lastReport = sim.invokes[29].report;
  assert.ok(lastReport.acked, 'the simulator delivered the final platform.report before SHUTDOWN');
  assert.equal(cmp.missing.filter((e) => e.type === 'platform.report').length, 0);
  // No extension events were forwarded (TELKIN_TYPES default is platform,function).
  t.diagnostic(`cold start ${sim.coldStartMs.toFixed(1)} ms; shutdown→exit ${sd.shutdownToExitMs} ms`);
});

e2e('JSON logs, all types, ARN stream, request partition keys', {}, async (t, h) => {
  const types = ['platform', 'function', 'extension'];
  const ctx = await start(t, h, {
    arn: true,
    sim: { logFormat: 'JSON', functionName: 'json-fn', functionVersion: '12', region: 'eu-west-1' },
    env: { TELKIN_TYPES: 'platform,function,extension', TELKIN_PARTITION_KEY: 'request' },
  });
  const { sim } = ctx;
  assert.ok(sim.subscriptions[0].types.includes('extension'), 'subscribed to extension telemetry');
  for (let i = 0; i < 5; i++) {
    const inv = await sim.invoke({ lines: 20 });
    assert.ok(inv.ackedBeforeNext, `invoke ${i}: /event/next before runtimeDone's batch was acknowledged`);
  }
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  const recs = await ctx.read();
  const cmp = compare(sim, recs, { types, pk: 'request' });
  assertClean(t, cmp);
  const fnRecs = recs.filter((r) => r.json && r.json.type === 'function');
  assert.ok(fnRecs.length >= 100);
  for (const r of fnRecs.slice(0, 5)) {
    assert.equal(typeof r.json.record, 'object', 'JSON log records stay objects');
    assert.equal(r.json.record.level, 'INFO');
  }
});

e2e('20 000-line burst in one invoke: nothing lost, shipped before /event/next', {}, async (t, h) => {
  // kinesalite takes ~1-2 s for 20 000 records: give telkin time to ship before /event/next.
  const ctx = await start(t, h, {
    env: { TELKIN_BUFFER_ITEMS: '10000', TELKIN_BUFFER_BYTES: '1048576', TELKIN_FLUSH_TIMEOUT_MS: '30000' },
  });
  const { sim } = ctx;
  assert.deepEqual(sim.subscriptions[0].buffering, { maxItems: 10000, maxBytes: 1048576, timeoutMs: 25 },
    'subscription buffering from TELKIN_BUFFER_ITEMS/BYTES (TIMEOUT_MS default 25)');
  await sim.invoke({ lines: 3 });
  const inv = await sim.invoke({ lines: 20000 });
  assert.ok(inv.ackedBeforeNext, `/event/next before ${inv.unackedBeforeNext.length} burst events were acknowledged`);
  const recs = await ctx.read();
  const inStream = new Set(recs.filter((r) => r.json).map((r) => canon(stripAppended(r.json))));
  const head = invokeHead(inv, ['platform', 'function']);
  const absent = head.filter((e) => !inStream.has(canon(JSON.parse(e.json))));
  assert.equal(absent.length, 0, `${absent.length}/${head.length} burst events not yet in the stream at /event/next`);
  await sim.invoke({ lines: 3 });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assert.ok(!sim.emitted.some((e) => e.event.type === 'platform.logsDropped'), 'the platform dropped telemetry (telkin too slow to accept)');
  assertClean(t, compare(sim, await ctx.read()));
});

e2e('SHUTDOWN while telemetry is still in flight: queue shipped, exit 0 before the deadline', {}, async (t, h) => {
  const ctx = await start(t, h, { env: { TELKIN_BUFFER_TIMEOUT_MS: '25' } });
  const { sim } = ctx;
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 50 });
  // 3000 function log lines written while telkin is shutting down (the runtime's SIGTERM handler).
  const sd = await sim.shutdown({ logsDuringShutdown: 3000 });
  assertCleanShutdown(sd, sim);
  const cmp = compare(sim, await ctx.read());
  assertClean(t, cmp);
  const during = sim.emitted.filter((e) => e.state === 'shutdown' && e.category === 'function');
  t.diagnostic(`during shutdown: ${during.length} emitted, ${during.filter((e) => e.acked).length} acknowledged by telkin`);
});

e2e('SHUTDOWN right after init (no invoke), random partition keys: init events arrive', {}, async (t, h) => {
  const ctx = await start(t, h, { env: { TELKIN_PARTITION_KEY: 'random' } });
  // AWS documents SPINDOWN/TIMEOUT/FAILURE in upper case; emulators send lower case.
  const sd = await ctx.sim.shutdown({ reason: 'SPINDOWN' });
  assertCleanShutdown(sd, ctx.sim);
  const recs = await ctx.read();
  const cmp = compare(ctx.sim, recs, { pk: 'random' });
  assertClean(t, cmp);
  assert.ok(cmp.expected >= 4, 'initStart, initRuntimeDone, telemetrySubscription, initReport');
  const pks = new Set(recs.map((r) => r.partitionKey));
  assert.ok(pks.size > 1, `TELKIN_PARTITION_KEY=random gave ${pks.size} distinct key(s) for ${recs.length} records`);
  assert.ok(!pks.has(cmp.sandbox), 'random partition keys are not the sandbox id');
});

e2e('frozen longer than the Kinesis keep-alive timeout: telkin reconnects, nothing lost', {}, async (t, h) => {
  const ctx = await start(t, h, {});
  const { sim } = ctx;
  await sim.invoke({ lines: 5 });
  // kinesalite (Node's http server) closes idle keep-alive connections after 5 s; a real Kinesis
  // endpoint closes them too while a sandbox sits frozen. The idle time is the scenario itself.
  await new Promise((r) => setTimeout(r, 5600));
  const inv = await sim.invoke({ lines: 5 });
  assert.ok(inv.ackedBeforeNext, 'invoke after the idle period acknowledged before /event/next');
  const inStream = new Set((await ctx.read()).filter((r) => r.json).map((r) => canon(stripAppended(r.json))));
  const absent = invokeHead(inv, ['platform', 'function']).filter((e) => !inStream.has(canon(JSON.parse(e.json))));
  assert.equal(absent.length, 0, `after the idle period, /event/next came before shipping ${absent.length} events`);
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assertClean(t, compare(sim, await ctx.read()));
});

e2e('kinesalite stopped (killed) and restarted mid-run: nothing lost', {}, async (t, h) => {
  const k = new Kinesalite();
  kins.add(k);
  t.after(() => k.close());
  await k.start();
  const ctx = await start(t, h, { kinesalite: k, env: { TELKIN_FLUSH_TIMEOUT_MS: '500' } });
  const { sim } = ctx;
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 10 });
  await k.stop({ hard: true });
  const t0 = Date.now();
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 10 });
  t.diagnostic(`3 invokes with Kinesis down took ${Date.now() - t0} ms`);
  await k.start();
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 10 });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assertClean(t, compare(sim, await ctx.read()));
});

// telkin with a 2 MiB queue shipping to a kinesalite of its own, killed while one invoke logs
// ~4 MB (more than the queue holds), then started again; returns the context once telkin has
// caught up with the backlog it kept.
async function overflowWhileDown(t, h) {
  const k = new Kinesalite();
  kins.add(k);
  t.after(() => k.close());
  await k.start();
  const ctx = await start(t, h, {
    kinesalite: k, env: { TELKIN_FLUSH_TIMEOUT_MS: '300', TELKIN_QUEUE_BYTES: String(2 << 20) },
  });
  await ctx.sim.invoke({ lines: 5 });
  await k.stop({ hard: true });
  const pad = 'p'.repeat(1100);
  await ctx.sim.invoke({ lines: 3500, message: (m) => `${m} ${pad}` });
  await k.start();
  // telkin only runs during invokes: invoke (bounded) until one is fully shipped before its
  // /event/next, i.e. telkin has caught up with the backlog it kept.
  let caughtUp = false;
  for (let i = 0; i < 20 && !caughtUp; i++) {
    const inv = await ctx.sim.invoke({ lines: 1 });
    const inStream = new Set((await ctx.read()).filter((r) => r.json).map((r) => canon(stripAppended(r.json))));
    caughtUp = invokeHead(inv, ['platform', 'function']).every((e) => inStream.has(canon(JSON.parse(e.json))));
  }
  assert.ok(caughtUp, 'telkin did not catch up within 20 invokes after Kinesis came back');
  return ctx;
}

e2e('Kinesis down and TELKIN_QUEUE_BYTES exceeded: telkin.dropped accounts for what is missing', {}, async (t, h) => {
  const ctx = await overflowWhileDown(t, h);
  const { sim } = ctx;
  const last = await sim.invoke({ lines: 10 });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  const cmp = compare(sim, await ctx.read());
  const droppedRecords = cmp.dropped.reduce((s, d) => s + (d.record.droppedRecords || 0), 0);
  t.diagnostic(`missing ${cmp.missing.length}, telkin.dropped records ${cmp.dropped.length} totalling ${droppedRecords}`);
  assert.ok(cmp.dropped.length > 0, 'expected telkin.dropped records when the queue overflowed');
  for (const d of cmp.dropped) {
    assert.ok(Number.isInteger(d.record.droppedRecords) && d.record.droppedRecords > 0, JSON.stringify(d.record));
    assert.ok(Number.isInteger(d.record.droppedBytes) && d.record.droppedBytes > 0, JSON.stringify(d.record));
    assert.match(d.time, /^\d{4}-\d\d-\d\dT/);
  }
  assert.ok(droppedRecords >= cmp.missing.length,
    `${cmp.missing.length} events missing but telkin.dropped reports only ${droppedRecords}`);
  // Once Kinesis is back, the next invoke's events arrive in full.
  const lastHead = new Set(invokeHead(last, ['platform', 'function']).map((e) => canon(JSON.parse(e.json))));
  const lostLate = cmp.missing.filter((e) => lastHead.has(canon(e)));
  assert.equal(lostLate.length, 0, `events of the invoke after recovery missing: ${lostLate.map(describe).join('; ')}`);
  assertClean(t, cmp, { allowMissing: Infinity, allowDropped: true });
});

e2e('malformed (400) and oversized (413) telemetry POSTs; listener keeps serving, nothing lost', {}, async (t, h) => {
  const bytes = 262144;
  const ctx = await start(t, h, { env: { TELKIN_BUFFER_BYTES: String(bytes) } });
  const { sim, listenPort } = ctx;
  assert.ok(sim.subscriptions[0].destination.URI.includes(`:${listenPort}`),
    `telkin subscribed ${sim.subscriptions[0].destination.URI}, expected port TELKIN_LISTEN_PORT=${listenPort}`);
  await sim.invoke({ lines: 5 });
  const results = {};
  await sim.invoke({
    lines: 50,
    // While the invoke runs (telkin thawed, its queue holding this invoke's events):
    beforeDone: async () => {
      results.garbage = await postRaw(listenPort, '{this is not json');
      results.truncated = await postRaw(listenPort, '[{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"x"}');
      results.binary = await postRaw(listenPort, Buffer.from([0xff, 0xfe, 0x00, 0x5b, 0x7b]).toString('latin1'));
      const limit = 2 * bytes + 65536;
      const ev = JSON.stringify({ time: '2024-01-01T00:00:00.000Z', type: 'function', record: 'y'.repeat(1000) });
      const big = '[' + Array(Math.ceil((limit + 10000) / (ev.length + 1))).fill(ev).join(',') + ']';
      assert.ok(big.length > limit);
      results.oversized = await postOversized(listenPort, big);
      results.oversizedBytes = big.length;
    },
  });
  t.diagnostic(JSON.stringify(results));
  assert.equal(results.garbage.status, 400, `garbage body: ${JSON.stringify(results.garbage)}`);
  assert.equal(results.truncated.status, 400, `truncated JSON: ${JSON.stringify(results.truncated)}`);
  assert.equal(results.binary.status, 400, `binary body: ${JSON.stringify(results.binary)}`);
  assert.equal(results.oversized.status, 413, `${results.oversizedBytes}-byte body: ${JSON.stringify(results.oversized)}`);
  await sim.invoke({ lines: 5 });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assert.ok(sim.deliveries.every((d) => d.status >= 200 && d.status < 300),
    `simulator deliveries not accepted: ${JSON.stringify(sim.deliveries.filter((d) => d.status < 200 || d.status >= 300))}`);
  assertClean(t, compare(sim, await ctx.read()));
});

// ------------------------------------------------------------------------------------------------
// Shipping strategies (TELKIN_FLUSH), record packing (TELKIN_RECORD), filters, self-metrics.

// Which of an invoke's events (through runtimeDone) are not in the stream right now.
async function absentAtFreeze(ctx, inv, types = ['platform', 'function']) {
  return absentFrom(await ctx.read(), invokeHead(inv, types));
}

e2e('TELKIN_FLUSH=periodic: /event/next is not held for Kinesis; every event arrives by SHUTDOWN', {}, async (t, h) => {
  const ctx = await start(t, h, { env: { TELKIN_FLUSH: 'periodic:400' } });
  const { sim } = ctx;
  let heldBack = 0;
  for (let i = 0; i < 8; i++) {
    const inv = await sim.invoke({ lines: 5 });
    if ((await absentAtFreeze(ctx, inv)).length) heldBack++;
  }
  // Each invoke takes far less than the period: its events wait for a later thaw.
  assert.ok(heldBack > 0, 'periodic shipping held no invoke back: it behaved like end');
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assertClean(t, compare(sim, await ctx.read()));
});

e2e('TELKIN_FLUSH=auto: end while invocations are rare, periodic once frequent, end after a pause', { timeout: 90000 }, async (t, h) => {
  const ctx = await start(t, h, { env: { TELKIN_FLUSH: null } }); // the default is auto
  const { sim } = ctx;
  const first = await sim.invoke({ lines: 5 });
  assert.equal((await absentAtFreeze(ctx, first)).length, 0, 'first invoke (rare so far) was not shipped before /event/next');
  let heldBack = 0;
  for (let i = 0; i < 8; i++) {
    const inv = await sim.invoke({ lines: 5 });
    if ((await absentAtFreeze(ctx, inv)).length) heldBack++;
  }
  assert.ok(heldBack > 0, 'frequent invokes never switched auto to periodic');
  await new Promise((r) => setTimeout(r, 10500)); // longer than the 10 s that means "rare"
  const late = await sim.invoke({ lines: 5 });
  assert.equal((await absentAtFreeze(ctx, late)).length, 0, 'after a pause, auto did not ship before /event/next');
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  assertClean(t, compare(sim, await ctx.read()));
});

e2e('TELKIN_RECORD=ndjson: events packed into records of at most TELKIN_RECORD_MAX_BYTES; EMF line at SHUTDOWN', {}, async (t, h) => {
  const max = 25600;
  const ctx = await start(t, h, { env: { TELKIN_RECORD: 'ndjson' } });
  const { sim } = ctx;
  for (let i = 0; i < 4; i++) await sim.invoke({ lines: 150 });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  const recs = await ctx.read();
  for (const r of recs) {
    assert.ok(Buffer.byteLength(r.data) + Buffer.byteLength(r.partitionKey) <= max,
      `record of ${Buffer.byteLength(r.data)} bytes over TELKIN_RECORD_MAX_BYTES`);
  }
  // Consumers split a record's Data on newlines: one event object per line.
  const lines = recs.flatMap((r) => recordLines(r.data).map((line) => ({ ...r, data: line, json: JSON.parse(line) })));
  assert.ok(recs.length * 5 < lines.length, `ndjson packed only ${lines.length} events into ${recs.length} records`);
  t.diagnostic(`${lines.length} events in ${recs.length} records`);
  assertClean(t, compare(sim, lines));
  // Self-metrics: one CloudWatch EMF line on stdout at SHUTDOWN.
  const emf = sim.stdoutLines.map((l) => { try { return JSON.parse(l); } catch { return null; } })
    .filter((j) => j && j._aws);
  assert.ok(emf.length >= 1, 'no EMF line on stdout');
  const m = emf[emf.length - 1];
  assert.equal(m._aws.CloudWatchMetrics[0].Namespace, 'telkin');
  assert.deepEqual(m._aws.CloudWatchMetrics[0].Dimensions, [['FunctionName']]);
  assert.equal(m.FunctionName, 'telkin-e2e');
  const shipped = emf.reduce((s, j) => s + j.EventsShipped, 0);
  assert.equal(shipped, lines.length, 'EventsShipped over all EMF lines equals the events in the stream');
  for (const metric of m._aws.CloudWatchMetrics[0].Metrics) assert.ok(metric.Name in m, `${metric.Name} has a value`);
});

e2e('forwarding filter: platform events by name, TELKIN_MIN_LEVEL for JSON logs; TELKIN_METRICS=0', {}, async (t, h) => {
  const ctx = await start(t, h, {
    env: { TELKIN_TYPES: 'platform.report,function', TELKIN_MIN_LEVEL: 'WARN', TELKIN_METRICS: '0' },
    sim: { logFormat: 'JSON' },
  });
  const { sim } = ctx;
  const levels = ['DEBUG', 'INFO', 'WARN', 'ERROR'];
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 8, level: (k) => levels[k % 4] });
  const sd = await sim.shutdown();
  assertCleanShutdown(sd, sim);
  const recs = await ctx.read();
  const want = sim.emitted.filter((r) => r.acked && (r.event.type === 'platform.report' ||
    (r.event.type === 'function' && (typeof r.event.record !== 'object' || ['WARN', 'ERROR'].includes(r.event.record.level)))));
  const got = new Set(recs.map((r) => canon(stripAppended(r.json))));
  const missing = want.filter((r) => !got.has(canon(JSON.parse(r.json))));
  assert.equal(missing.length, 0, `missing: ${missing.slice(0, 3).map((r) => describe(r.event)).join('; ')}`);
  for (const r of recs) {
    const ty = r.json.type;
    assert.ok(ty === 'platform.report' || ty === 'function', `not forwarded by the filter: ${ty}`);
    if (ty === 'function' && typeof r.json.record === 'object') {
      assert.ok(['WARN', 'ERROR'].includes(r.json.record.level), `level ${r.json.record.level} below WARN`);
    }
  }
  assert.equal(recs.length, want.length);
  assert.ok(!sim.stdoutLines.some((l) => l.includes('"_aws"')), 'TELKIN_METRICS=0 still printed an EMF line');
});

// The reference consumer (tests/consumer/telkin-check.js) as the oracle: it reads the stream as a
// user would and must find every number of every sandbox, and exactly the events telkin took.
// (These need telkin's "seq" and "sandbox" members: issue 14.)

e2e('oracle: 2 shards, 12 invokes of text logs, event records: complete, exact counts', {}, async (t, h) => {
  const ctx = await start(t, h, { shards: 2 });
  for (let i = 0; i < 12; i++) await ctx.sim.invoke({ lines: 5 });
  assertCleanShutdown(await ctx.sim.shutdown(), ctx.sim);
  await assertConsumerComplete(t, ctx.sim, { stream: ctx.stream, endpoint: ctx.kinesalite.endpoint });
});

// Data ends with '\n' by default; TELKIN_RECORD_NEWLINE=0 turns that off.
for (const newline of ['default', '0']) {
  e2e(`oracle: TELKIN_RECORD=ndjson, TELKIN_RECORD_NEWLINE ${newline}, JSON logs, all types, by ARN: complete, exact counts`, {}, async (t, h) => {
    const types = ['platform', 'function', 'extension'];
    const ctx = await start(t, h, {
      arn: true,
      env: { TELKIN_RECORD: 'ndjson', TELKIN_RECORD_NEWLINE: newline === '0' ? '0' : null, TELKIN_TYPES: types.join(',') },
      sim: { logFormat: 'JSON' },
    });
    for (let i = 0; i < 4; i++) await ctx.sim.invoke({ lines: 120 });
    assertCleanShutdown(await ctx.sim.shutdown(), ctx.sim);
    const recs = await ctx.read();
    const ends = recs.filter((r) => r.data.endsWith('\n')).length;
    assert.equal(ends, newline === '0' ? 0 : recs.length, `${ends} of ${recs.length} records end with a newline`);
    await assertConsumerComplete(t, ctx.sim, {
      stream: streamArn(ctx.stream, ctx.kinesalite.region), endpoint: ctx.kinesalite.endpoint, types,
    });
  });
}

e2e('oracle: filtered events (TELKIN_TYPES by name, TELKIN_MIN_LEVEL) get no number: complete', {}, async (t, h) => {
  const ctx = await start(t, h, {
    env: { TELKIN_TYPES: 'platform.report,function', TELKIN_MIN_LEVEL: 'WARN' }, sim: { logFormat: 'JSON' },
  });
  const levels = ['DEBUG', 'INFO', 'WARN', 'ERROR'];
  for (let i = 0; i < 3; i++) await ctx.sim.invoke({ lines: 8, level: (k) => levels[k % 4] });
  assertCleanShutdown(await ctx.sim.shutdown(), ctx.sim);
  const expected = ctx.sim.emitted.filter((r) => r.acked && (r.event.type === 'platform.report' ||
    (r.event.type === 'function' && ['WARN', 'ERROR'].includes(r.event.record.level)))).length;
  await assertConsumerComplete(t, ctx.sim, { stream: ctx.stream, endpoint: ctx.kinesalite.endpoint, expected });
});

e2e('oracle: queue overflow while Kinesis is down: complete, every missing number reported dropped', {}, async (t, h) => {
  const ctx = await overflowWhileDown(t, h);
  await ctx.sim.invoke({ lines: 10 });
  assertCleanShutdown(await ctx.sim.shutdown(), ctx.sim);
  await assertConsumerComplete(t, ctx.sim, { stream: ctx.stream, endpoint: ctx.kinesalite.endpoint, dropped: true });
});

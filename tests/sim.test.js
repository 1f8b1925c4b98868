'use strict';
// Self-test of the Lambda simulator: it enforces the Extensions/Telemetry API contracts, batches
// as documented, freezes the extension, retries and drops, and enforces the SHUTDOWN deadline.
// Runs against tests/fake_extension.js (no telkin needed).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const { once } = require('node:events');
const { LambdaSim } = require('./lambda_sim');

const FAKE = path.join(__dirname, 'fake_extension.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'telkin-simtest-'));
let n = 0;
const sims = [];
test.after(async () => {
  for (const s of sims) await s.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function newSim(opts = {}, env = {}) {
  const out = path.join(tmp, `out${n++}.jsonl`);
  const sim = new LambdaSim({ bin: FAKE, env: { FAKE_MODE: 'record', FAKE_OUT: out, ...env }, ...opts });
  sim.out = out;
  sims.push(sim);
  return sim;
}

function posts(sim) {
  if (!fs.existsSync(sim.out)) return [];
  return fs.readFileSync(sim.out, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

function call(sim, method, p, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request({
      host: '127.0.0.1', port: sim.port, method, path: p,
      headers: { ...headers, ...(data ? { 'Content-Length': data.length } : {}) },
    }, (res) => {
      const c = [];
      res.on('data', (d) => c.push(d));
      res.on('end', () => {
        const text = Buffer.concat(c).toString();
        let json = null;
        try { json = JSON.parse(text); } catch { /* text */ }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

function procState(pid) {
  // /proc/<pid>/stat: "pid (comm) S ..." — T means stopped.
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return s.slice(s.lastIndexOf(')') + 2)[0];
}

// SIGSTOP takes effect asynchronously: poll (bounded) for the stopped state.
async function stoppedState(pid) {
  for (let i = 0; i < 100 && procState(pid) !== 'T'; i++) await new Promise((r) => setTimeout(r, 5));
  return procState(pid);
}

test('register, env, subscribe and API errors follow the contract', async () => {
  const sim = newSim({ functionName: 'fn-x', functionVersion: '7', memoryMB: 256, region: 'eu-west-1', logFormat: 'JSON' },
    { FAKE_WAIT_SIGNAL: '1', FAKE_DUMP_ENV: '1' });
  await sim.start();
  const reg = (await once(sim, 'register'))[0];
  assert.match(reg.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(reg.events, ['INVOKE', 'SHUTDOWN']);
  const H = { 'Lambda-Extension-Identifier': reg.id };
  const NEXT = '/2020-01-01/extension/event/next';
  const TEL = '/2022-07-01/telemetry';

  // Identifier checks: 403 with {errorMessage, errorType}.
  let r = await call(sim, 'GET', NEXT);
  assert.equal(r.status, 403);
  assert.equal(r.json.errorType, 'Extension.MissingExtensionIdentifier');
  assert.equal(typeof r.json.errorMessage, 'string');
  r = await call(sim, 'GET', NEXT, { headers: { 'Lambda-Extension-Identifier': 'nope' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.errorType, 'Extension.InvalidExtensionIdentifier');
  r = await call(sim, 'GET', NEXT, { headers: { 'Lambda-Extension-Identifier': '00000000-0000-4000-8000-000000000000' } });
  assert.equal(r.status, 403);
  assert.equal(r.json.errorType, 'Extension.UnknownExtensionIdentifier');

  // Registration errors.
  const REG = '/2020-01-01/extension/register';
  r = await call(sim, 'POST', REG, { body: { events: ['INVOKE'] } });
  assert.equal(r.status, 400, 'missing Lambda-Extension-Name');
  r = await call(sim, 'POST', REG, { headers: { 'Lambda-Extension-Name': 'fake_extension.js' }, body: '{nope' });
  assert.equal(r.status, 400, 'malformed body');
  r = await call(sim, 'POST', REG, { headers: { 'Lambda-Extension-Name': 'fake_extension.js' }, body: { events: ['INVOKE', 'BOGUS'] } });
  assert.equal(r.status, 400);
  assert.equal(r.json.errorType, 'Extension.InvalidEventType');
  r = await call(sim, 'POST', REG, { headers: { 'Lambda-Extension-Name': 'other' }, body: { events: ['INVOKE'] } });
  assert.equal(r.status, 403, 'name must equal the executable file name');
  r = await call(sim, 'POST', REG, { headers: { 'Lambda-Extension-Name': 'fake_extension.js' }, body: { events: ['INVOKE'] } });
  assert.equal(r.status, 403, 'second registration');

  // Subscribe validation: every documented violation is a 400.
  const good = {
    schemaVersion: '2022-12-13', destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:4243/t' },
    types: ['platform'], buffering: { maxItems: 1000, maxBytes: 262144, timeoutMs: 25 },
  };
  const bad = [
    ['not json', '{'],
    ['schemaVersion missing', { ...good, schemaVersion: undefined }],
    ['schemaVersion unknown', { ...good, schemaVersion: '2021-01-01' }],
    ['destination missing', { ...good, destination: undefined }],
    ['protocol bogus', { ...good, destination: { protocol: 'UDP', URI: good.destination.URI } }],
    ['URI missing', { ...good, destination: { protocol: 'HTTP' } }],
    ['URI other host', { ...good, destination: { protocol: 'HTTP', URI: 'http://example.com:4243/' } }],
    ['types missing', { ...good, types: undefined }],
    ['types empty', { ...good, types: [] }],
    ['types unknown', { ...good, types: ['platform', 'logs'] }],
    ['maxItems 999', { ...good, buffering: { ...good.buffering, maxItems: 999 } }],
    ['maxItems 10001', { ...good, buffering: { ...good.buffering, maxItems: 10001 } }],
    ['maxBytes 262143', { ...good, buffering: { ...good.buffering, maxBytes: 262143 } }],
    ['maxBytes 1048577', { ...good, buffering: { ...good.buffering, maxBytes: 1048577 } }],
    ['timeoutMs 24', { ...good, buffering: { ...good.buffering, timeoutMs: 24 } }],
    ['timeoutMs 30001', { ...good, buffering: { ...good.buffering, timeoutMs: 30001 } }],
    ['timeoutMs 100.5', { ...good, buffering: { ...good.buffering, timeoutMs: 100.5 } }],
    ['maxItems string', { ...good, buffering: { ...good.buffering, maxItems: '1000' } }],
  ];
  for (const [what, body] of bad) {
    r = await call(sim, 'PUT', TEL, { headers: H, body });
    assert.equal(r.status, 400, `subscribe with ${what}: got ${r.status} ${r.text}`);
    assert.equal(typeof r.json.errorMessage, 'string', what);
  }
  r = await call(sim, 'PUT', TEL, { body: good });
  assert.equal(r.status, 403, 'subscribe without identifier');
  r = await call(sim, 'GET', '/2020-01-01/nothing');
  assert.equal(r.status, 404);

  // Error reporting endpoints.
  r = await call(sim, 'POST', '/2020-01-01/extension/exit/error', { headers: H, body: {} });
  assert.equal(r.status, 400, 'missing Lambda-Extension-Function-Error-Type');
  r = await call(sim, 'POST', '/2020-01-01/extension/exit/error',
    { headers: { ...H, 'Lambda-Extension-Function-Error-Type': 'Extension.Test' }, body: { x: 1 } });
  assert.equal(r.status, 202);
  assert.deepEqual(r.json, { status: 'OK' });
  assert.deepEqual(sim.exitErrors.map((e) => e.errorType), ['Extension.Test']);
  assert.equal(sim.subscriptions.length, 0);

  // Let the fake subscribe (valid) and finish init.
  assert.equal(sim.exit, null, `fake exited early: ${sim.stderrLines.join("\n")}`);
  process.kill(sim.pid, "SIGUSR2");
  await sim.waitInit();
  assert.equal(sim.subscriptions.length, 1);
  r = await call(sim, 'PUT', TEL, { headers: H, body: good });
  assert.equal(r.status, 403, 'subscription after init is closed');

  const envLine = sim.stdoutLines.find((l) => l.startsWith('env '));
  const env = JSON.parse(envLine.slice(4));
  assert.equal(env.AWS_LAMBDA_RUNTIME_API, `127.0.0.1:${sim.port}`);
  assert.equal(env.AWS_LAMBDA_FUNCTION_NAME, 'fn-x');
  assert.equal(env.AWS_LAMBDA_FUNCTION_VERSION, '7');
  assert.equal(env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE, '256');
  assert.equal(env.AWS_REGION, 'eu-west-1');
  assert.equal(env.AWS_LAMBDA_LOG_FORMAT, 'JSON');
  assert.ok(sim.coldStartMs > 0);

  const inv = await sim.invoke({ lines: 2 });
  const fnRecs = inv.events.filter((e) => e.event.type === 'function').map((e) => e.event.record);
  assert.equal(fnRecs.length, 2);
  for (const rec of fnRecs) {
    assert.deepEqual(Object.keys(rec).sort(), ['level', 'message', 'requestId', 'timestamp']);
    assert.equal(rec.requestId, inv.requestId);
  }
  const sd = await sim.shutdown();
  assert.equal(sd.code, 0);
  assert.equal(sd.overrun, false);
  // The extension's stdout became "extension" telemetry events.
  assert.ok(sim.emitted.some((e) => e.event.type === 'extension' && e.event.record.startsWith('env ')));
});

test('init, invoke and report events have the 2022-12-13 shapes and order; freeze between invokes', async () => {
  const sim = newSim({}, { FAKE_LOG: '1', FAKE_SUBSCRIBE: JSON.stringify({
    schemaVersion: '2022-12-13', destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:PORT/' },
    types: ['platform', 'function', 'extension'], buffering: { timeoutMs: 25 },
  }) });
  await sim.start();
  await sim.waitInit();
  assert.equal(await stoppedState(sim.pid), 'T', 'frozen after init');
  const a = await sim.invoke({ lines: 3 });
  assert.equal(await stoppedState(sim.pid), 'T', 'frozen after invoke');
  const types = a.events.map((e) => e.event.type);
  assert.deepEqual(types, ['platform.start', 'function', 'function', 'function', 'platform.runtimeDone', 'platform.report']);
  const [start, , , , done, report] = a.events.map((e) => e.event);
  assert.deepEqual(start.record, { requestId: a.requestId, version: '$LATEST' });
  assert.equal(done.record.status, 'success');
  assert.equal(typeof done.record.metrics.durationMs, 'number');
  assert.equal(typeof done.record.metrics.producedBytes, 'number');
  assert.equal(done.record.spans[0].name, 'responseLatency');
  assert.deepEqual(Object.keys(report.record.metrics).sort(),
    ['billedDurationMs', 'durationMs', 'initDurationMs', 'maxMemoryUsedMB', 'memorySizeMB']);
  for (const e of a.events) assert.match(e.event.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  assert.match(a.events[1].event.record, new RegExp(`^\\S+\\t${a.requestId}\\tINFO\\tsim:${sim.id}:0:0 `));
  const b = await sim.invoke({ lines: 1 });
  assert.ok(!('initDurationMs' in b.report.event.record.metrics), 'initDurationMs only on the cold invoke');
  const initTypes = sim.emitted.filter((e) => e.event.type.startsWith('platform.init')).map((e) => e.event.type);
  assert.deepEqual(initTypes, ['platform.initStart', 'platform.initRuntimeDone', 'platform.initReport']);
  assert.ok(sim.freezeCount >= 3);

  const sd = await sim.shutdown({ logsDuringShutdown: 0 });
  assert.equal(sd.code, 0);
  assert.equal(sd.reason, 'spindown');
  // Everything emitted before SHUTDOWN (incl. the last platform.report) was delivered before it.
  const before = sim.emitted.filter((e) => e.seq <= b.report.seq);
  assert.ok(before.every((e) => e.acked), 'all telemetry before SHUTDOWN delivered');
  // What the extension received equals what was emitted, in order, exactly once.
  const got = posts(sim).flatMap((p) => p.items);
  const want = sim.emitted.filter((e) => e.acked).map((e) => JSON.parse(e.json));
  assert.deepEqual(got, want);
  assert.ok(got.some((e) => e.type === 'platform.telemetrySubscription' && e.record.types.length === 3));
  assert.ok(got.some((e) => e.type === 'extension' && /fake: invoke/.test(e.record)));
});

test('batches honour maxItems and maxBytes; one batch in flight; nothing lost', async () => {
  const sim = newSim({}, { FAKE_SUBSCRIBE: JSON.stringify({
    schemaVersion: '2022-12-13', destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:PORT/' },
    types: ['platform', 'function'], buffering: { maxItems: 1000, maxBytes: 262144, timeoutMs: 25 },
  }), FAKE_NEXT_DELAY_MS: '300' });
  await sim.start();
  await sim.waitInit();
  // Small lines: maxItems binds. Large lines: maxBytes binds.
  await sim.invoke({ lines: 4000 });
  const big = 'x'.repeat(700);
  await sim.invoke({ lines: 1500, message: (m) => `${m} ${big}` });
  await sim.shutdown();
  const ps = posts(sim);
  for (const p of ps) {
    assert.ok(p.items.length <= 1000, `batch of ${p.items.length} items`);
    assert.ok(p.bytes <= 262144, `batch of ${p.bytes} bytes`);
  }
  assert.ok(ps.some((p) => p.items.length === 1000), 'some batch is exactly maxItems');
  assert.ok(ps.some((p) => p.bytes > 200000 && p.items.length < 1000), 'some batch is cut by maxBytes');
  const got = ps.flatMap((p) => p.items);
  const want = sim.emitted.filter((e) => e.category !== 'extension').map((e) => JSON.parse(e.json));
  assert.equal(got.length, want.length);
  assert.deepEqual(got, want);
  // One batch in flight at a time: deliveries never overlap.
  const ds = sim.deliveries;
  for (let i = 1; i < ds.length; i++) assert.ok(ds[i].at >= ds[i - 1].at + ds[i - 1].ms - 1);
});

test('timeoutMs holds a partial batch', async () => {
  const sim = newSim({}, { FAKE_SUBSCRIBE: JSON.stringify({
    schemaVersion: '2022-12-13', destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:PORT/' },
    types: ['function'], buffering: { timeoutMs: 300 },
  }), FAKE_NEXT_DELAY_MS: '600' });
  await sim.start();
  await sim.waitInit();
  const inv = await sim.invoke({ lines: 5 });
  const first = inv.events.find((e) => e.event.type === 'function');
  assert.ok(first.acked, 'delivered while the extension ran');
  const wait = first.deliveredAt - Date.parse(first.event.time);
  assert.ok(wait >= 290, `delivered after ${wait} ms, before timeoutMs`);
  await sim.shutdown();
});

test('failed deliveries are retried, then dropped with platform.logsDropped', async () => {
  const sim = newSim({}, { FAKE_STATUSES: '500,503,500,500', FAKE_SUBSCRIBE: JSON.stringify({
    schemaVersion: '2022-12-13', destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:PORT/' },
    types: ['platform', 'function'], buffering: { timeoutMs: 25 },
  }), FAKE_NEXT_DELAY_MS: '500' });
  await sim.start();
  await sim.waitInit();
  await sim.invoke({ lines: 3 });
  await sim.shutdown();
  const ps = posts(sim);
  assert.deepEqual(ps.slice(0, 4).map((p) => p.status), [500, 503, 500, 500]);
  assert.deepEqual(ps[0].items, ps[3].items, 'the same batch is retried');
  assert.deepEqual(sim.deliveries.slice(0, 4).map((d) => d.status), [500, 503, 500, 500]);
  const dropped = sim.emitted.find((e) => e.event.type === 'platform.logsDropped');
  assert.ok(dropped, 'platform.logsDropped emitted');
  assert.equal(dropped.event.record.droppedRecords, ps[0].items.length);
  assert.equal(typeof dropped.event.record.droppedBytes, 'number');
  assert.equal(typeof dropped.event.record.reason, 'string');
  assert.ok(dropped.acked, 'logsDropped itself delivered');
});

test('SHUTDOWN deadline: an extension that ignores it is killed and reported as overrun', async () => {
  const sim = newSim({ shutdownDeadlineMs: 300, shutdownReason: 'timeout' }, { FAKE_IGNORE_SHUTDOWN: '1' });
  await sim.start();
  await sim.waitInit();
  await sim.invoke({ lines: 1 });
  const sd = await sim.shutdown();
  assert.equal(sd.overrun, true);
  assert.equal(sd.signal, 'SIGKILL');
  assert.ok(sd.shutdownToExitMs >= 295, `${sd.shutdownToExitMs}`);
  assert.equal(sd.reason, 'timeout');
});

test('init/error is recorded (fake in ship mode without TELKIN_STREAM)', async () => {
  const sim = newSim({}, { FAKE_MODE: 'ship' });
  await sim.start();
  const ex = await sim.waitExit();
  assert.notEqual(ex.code, 0);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.ConfigInvalid']);
  await assert.rejects(sim.waitInit({ timeoutMs: 100 }));
});

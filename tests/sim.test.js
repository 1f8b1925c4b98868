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

// ------------------------------------------------------------------------------------------------
// Execution modes (MODES in lambda_sim.js): each one checked against the platform's facts.

const { MODES, CREDENTIALS_PATH } = require('./lambda_sim');
const SHARED = process.env.TELKIN_SHARED || path.resolve(__dirname, '../../shared');
// What AWS's Lambda emulator answered and delivered in Managed Instances mode (read when used).
const loadEmulator = () => JSON.parse(fs.readFileSync(path.join(SHARED, 'lambda-platform', 'managed-instances-emulator.json'), 'utf8'));
const SUB = (schemaVersion, types = ['platform', 'function', 'extension']) => JSON.stringify({
  schemaVersion, destination: { protocol: 'HTTP', URI: 'http://sandbox.localdomain:PORT/' }, types, buffering: { timeoutMs: 25 },
});
const envOf = (sim) => JSON.parse(sim.stdoutLines.find((l) => l.startsWith('env ')).slice(4));
const typeOf = (v) => (Array.isArray(v) ? 'array' : v === null ? 'null' : typeof v);
// The same members in the same order, with values of the same JSON types (recursively for objects).
function assertShape(got, want, what) {
  assert.equal(typeOf(got), typeOf(want), `${what}: ${JSON.stringify(got)} vs ${JSON.stringify(want)}`);
  if (typeOf(want) === 'object') {
    assert.deepEqual(Object.keys(got), Object.keys(want), `${what}: members`);
    for (const k of Object.keys(want)) assertShape(got[k], want[k], `${what}.${k}`);
  } else if (typeOf(want) === 'array' && want.length && typeOf(want[0]) === 'object') {
    assert.equal(got.length, want.length, `${what}: length`);
    want.forEach((w, i) => assertShape(got[i], w, `${what}[${i}]`));
  }
}

test('MODES: every execution mode is described as data', () => {
  assert.deepEqual(Object.keys(MODES).sort(),
    ['lambda-managed-instances', 'on-demand', 'provisioned-concurrency', 'snap-start']);
  for (const [name, m] of Object.entries(MODES)) {
    assert.equal(m.initializationType, name);
    assert.ok(m.registerEvents.includes('SHUTDOWN'), `${name}: SHUTDOWN`);
    assert.ok(['env', 'container'].includes(m.credentials), name);
    assert.ok(m.schemas.length >= 1, name);
  }
  const mi = MODES['lambda-managed-instances'];
  assert.deepEqual(mi.registerEvents, ['SHUTDOWN']);
  assert.deepEqual(mi.schemas, ['2025-01-29']);
  assert.equal(mi.freeze, false);
  assert.equal(mi.maxConcurrency, 1600);
  assert.equal(MODES['snap-start'].credentials, 'container');
  assert.equal(MODES['on-demand'].credentials, 'env');
  assert.throws(() => new LambdaSim({ bin: FAKE, mode: 'bogus' }), /unknown mode/);
});

test('lambda-managed-instances: register, subscribe, next and telemetry as AWS\'s emulator answered', async () => {
  const EMULATOR = loadEmulator();
  const sim = newSim({ mode: 'lambda-managed-instances', functionName: 'test_function' }, {
    FAKE_EVENTS: '["INVOKE","SHUTDOWN"]', FAKE_REGISTER_FALLBACK: '1', FAKE_WAIT_SIGNAL: '1', FAKE_DUMP_ENV: '1',
    FAKE_LOG: '1', FAKE_SUBSCRIBE: SUB('2025-01-29'), AWS_ACCESS_KEY_ID: 'AKIDSHOULDGO',
  });
  const received = [];
  sim.on('extensionEvent', (ev) => received.push(ev));
  await sim.start();
  const reg = (await once(sim, 'register'))[0];
  assert.deepEqual(reg.events, ['SHUTDOWN']);
  // The register answers: 403 with the emulator's exact body for INVOKE, then 200 for SHUTDOWN only.
  assert.equal(sim.registerAttempts.length, 2);
  const [refused, ok] = sim.registerAttempts;
  assert.deepEqual(refused.events, ['INVOKE', 'SHUTDOWN']);
  assert.equal(refused.status, EMULATOR.register[0].status);
  assert.deepEqual(refused.body, EMULATOR.register[0].body);
  assert.equal(ok.status, EMULATOR.register[1].status);
  assert.deepEqual(ok.body.functionName, EMULATOR.register[1].body.functionName);
  assert.deepEqual(Object.keys(ok.body).sort(), Object.keys(EMULATOR.register[1].body).sort());
  // Registration is closed to a second extension of the same name; INVOKE is refused whatever the state.
  const H = { 'Lambda-Extension-Identifier': reg.id };
  let r = await call(sim, 'POST', '/2020-01-01/extension/register',
    { headers: { 'Lambda-Extension-Name': 'fake_extension.js' }, body: { events: ['INVOKE'] } });
  assert.equal(r.status, 403);
  assert.deepEqual(r.json, { errorMessage: 'INVOKE: ErrorInvalidEventType', errorType: 'Extension.InvalidEventType' });
  // Schema 2022-12-13 is refused with 400 and a body that is not JSON (as the emulator's).
  const sub = JSON.parse(SUB('2022-12-13').replace('PORT', '4999'));
  r = await call(sim, 'PUT', '/2022-07-01/telemetry', { headers: H, body: sub });
  assert.equal(r.status, EMULATOR.subscribe_2022_12_13_refused.status);
  assert.equal(r.json, null, `refusal body is not JSON: ${r.text}`);
  assert.throws(() => JSON.parse(r.text));
  assert.match(r.text, /value must be "2025-01-29"/);
  r = await call(sim, 'PUT', '/2022-07-01/telemetry', { headers: H, body: { ...sub, schemaVersion: '2022-07-01' } });
  assert.equal(r.status, 400);
  assert.equal(sim.subscriptions.length, 0);
  process.kill(sim.pid, 'SIGUSR2');
  await sim.waitInit();
  assert.equal(sim.subscribeAttempts.at(-1).status, EMULATOR.subscribe[0].status);
  assert.equal(sim.subscribeAttempts.at(-1).text, EMULATOR.subscribe[0].body);
  // The environment: initialization type, container credentials (no key variables), concurrency.
  const env = envOf(sim);
  assert.equal(env.AWS_LAMBDA_INITIALIZATION_TYPE, 'lambda-managed-instances');
  assert.equal(env.AWS_ACCESS_KEY_ID, undefined);
  assert.equal(env.AWS_CONTAINER_CREDENTIALS_FULL_URI, `http://127.0.0.1:${sim.port}${CREDENTIALS_PATH}`);
  assert.ok(env.AWS_CONTAINER_AUTHORIZATION_TOKEN);
  // Never frozen: the environment stays active.
  assert.equal(procState(sim.pid) === 'T', false, 'not frozen after init');
  const invs = await sim.invokeConcurrent(10, { lines: 4 });
  assert.equal(procState(sim.pid) === 'T', false, 'not frozen between invocations');
  assert.equal(sim.freezeCount, 0);
  const sd = await sim.shutdown();
  assert.equal(sd.code, 0);
  // The extension got exactly one event: SHUTDOWN, shaped as the emulator's.
  assert.deepEqual(received.map((e) => e.eventType), ['SHUTDOWN']);
  assert.deepEqual(Object.keys(received[0]).sort(), Object.keys(EMULATOR.next[0].body).sort());
  assert.equal(received[0].shutdownReason, EMULATOR.next[0].body.shutdownReason);

  // Telemetry: every platform event type the emulator sent, with its members in its order.
  const byType = (type) => sim.emitted.filter((e) => e.event.type === type).map((e) => e.event.record);
  for (const want of EMULATOR.telemetry) {
    if (!want.type.startsWith('platform.')) continue;
    const got = byType(want.type);
    assert.ok(got.length, `${want.type} emitted`);
    for (const g of got) assertShape(g, want.record, want.type);
  }
  for (const want of EMULATOR.telemetry.filter((e) => e.type.startsWith('platform.init'))) {
    assert.equal(byType(want.type)[0].initializationType, 'lambda-managed-instances');
  }
  assert.deepEqual(byType('platform.extension')[0], { name: 'fake_extension.js', state: 'Ready', events: ['SHUTDOWN'] });
  assert.equal(byType('platform.start')[0].functionArn, sim.functionArn);
  // Order: init events, then platform.extension right before initReport, as the emulator sent them.
  const pl = sim.emitted.filter((e) => e.category === 'platform').map((e) => e.event.type);
  assert.equal(pl[0], 'platform.initStart');
  const iReady = pl.indexOf('platform.extension');
  assert.equal(pl[iReady + 1], 'platform.initReport');
  assert.ok(pl.indexOf('platform.initRuntimeDone') < iReady && pl.indexOf('platform.telemetrySubscription') < iReady);
  // No INVOKE, no runtimeDone; each request: start, its lines, report; requests interleave.
  assert.ok(!pl.includes('platform.runtimeDone'), 'no platform.runtimeDone on Managed Instances');
  assert.equal(invs.length, 10);
  for (const v of invs) {
    const types = v.events.map((e) => e.event.type);
    assert.deepEqual(types, ['platform.start', 'function', 'function', 'function', 'function', 'platform.report']);
    assert.equal(v.report.event.record.requestId, v.requestId);
    for (const e of v.events.filter((x) => x.category === 'function')) {
      assert.match(e.event.record, new RegExp(`\\t${v.requestId}\\t`));
    }
  }
  const fnOrder = sim.emitted.filter((e) => e.category === 'function' && e.state === 'invoke')
    .map((e) => e.event.record.split('\t')[1]);
  let switches = 0;
  for (let i = 1; i < fnOrder.length; i++) if (fnOrder[i] !== fnOrder[i - 1]) switches++;
  assert.ok(switches > 2 * invs.length, `function lines of different requests interleave (${switches} switches)`);
  const starts = sim.emitted.filter((e) => e.event.type === 'platform.start').map((e) => e.seq);
  const reports = sim.emitted.filter((e) => e.event.type === 'platform.report').map((e) => e.seq);
  assert.ok(starts.at(-1) > reports[0], 'requests start while others have already ended');
  // Everything emitted before SHUTDOWN reached the extension.
  const got = posts(sim).flatMap((p) => p.items);
  assert.deepEqual(got, sim.emitted.filter((e) => e.acked).map((e) => JSON.parse(e.json)));
  assert.ok(sim.emitted.filter((e) => e.state !== 'shutdown' && e.state !== 'exited').every((e) => e.acked));
  // Concurrency bounds.
  await assert.rejects(sim.invokeConcurrent(1601), /allows 1600/);
});

test('lambda-managed-instances: an extension that insists on INVOKE fails init', async () => {
  const sim = newSim({ mode: 'lambda-managed-instances' }, { FAKE_SUBSCRIBE: SUB('2025-01-29') });
  await sim.start();
  const ex = await sim.waitExit();
  assert.notEqual(ex.code, 0);
  assert.equal(sim.registration, null);
  assert.deepEqual(sim.registerAttempts.map((a) => a.status), [403]);
  assert.match(sim.stderrLines.join('\n'), /register failed 403 .*INVOKE: ErrorInvalidEventType/);
});

test('lambda-managed-instances: an extension subscribing with 2022-12-13 fails init', async () => {
  const sim = newSim({ mode: 'lambda-managed-instances' }, { FAKE_EVENTS: '["SHUTDOWN"]', FAKE_SUBSCRIBE: SUB('2022-12-13') });
  await sim.start();
  const ex = await sim.waitExit();
  assert.notEqual(ex.code, 0);
  assert.deepEqual(sim.subscribeAttempts.map((a) => a.status), [400]);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.SubscribeFailed']);
});

test('snap-start: snapshot at the end of init; restore rotates credentials, new sender, restore events', async () => {
  const sim = newSim({ mode: 'snap-start' }, {
    FAKE_DUMP_ENV: '1', FAKE_SUBSCRIBE: SUB('2022-12-13', ['platform', 'function']), FAKE_INIT_NEXT_DELAY_MS: '300',
    AWS_ACCESS_KEY_ID: 'AKIDSHOULDGO', AWS_SECRET_ACCESS_KEY: 'x', AWS_SESSION_TOKEN: 'y',
  });
  const atRestore = [];
  sim.o.onRestore = async (r) => {
    atRestore.push({ state: procState(sim.pid), generation: r.generation, previous: r.previous.AccessKeyId, now: r.credentials.AccessKeyId,
      initReportAcked: sim.emitted.find((e) => e.event.type === 'platform.initReport').acked });
  };
  await sim.start();
  await sim.waitInit();
  const env = envOf(sim);
  assert.equal(env.AWS_LAMBDA_INITIALIZATION_TYPE, 'snap-start');
  assert.match(env.AWS_EXECUTION_ENV, /^AWS_Lambda_(java|python|dotnet)/, 'SnapStart runtimes: Java, Python, .NET');
  for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) assert.equal(env[k], undefined, k);
  assert.equal(env.AWS_CONTAINER_CREDENTIALS_FULL_URI, sim.credentialsUri);
  // The provider: the token is required; generation 1 until the restore.
  let r = await call(sim, 'GET', CREDENTIALS_PATH);
  assert.equal(r.status, 401);
  r = await call(sim, 'GET', CREDENTIALS_PATH, { headers: { Authorization: env.AWS_CONTAINER_AUTHORIZATION_TOKEN } });
  assert.equal(r.status, 200);
  assert.deepEqual(Object.keys(r.json).sort(), ['AccessKeyId', 'Expiration', 'SecretAccessKey', 'Token']);
  const gen1 = r.json.AccessKeyId;
  assert.equal(sim.credentialGeneration(gen1), 1);
  assert.ok(Date.parse(r.json.Expiration) > Date.now() + 600e3);
  // The snapshot: frozen in /event/next at the end of init; initReport emitted, not yet delivered.
  assert.equal(await stoppedState(sim.pid), 'T');
  assert.ok(sim.snapshot && sim.snapshot.seq > 0);
  const init = sim.emitted.filter((e) => e.event.type.startsWith('platform.init')).map((e) => e.event);
  assert.deepEqual(init.map((e) => e.type), ['platform.initStart', 'platform.initRuntimeDone', 'platform.initReport']);
  for (const e of init) assert.equal(e.record.initializationType, 'snap-start');
  const before = sim.deliveries.filter((d) => d.status === 200).map((d) => d.localPort);
  assert.ok(before.length >= 1);

  const rest = await sim.restore({ gapMs: 50 });
  assert.deepEqual(atRestore, [{ state: 'T', generation: 2, previous: gen1, now: sim.credentials.AccessKeyId, initReportAcked: false }]);
  assert.notEqual(sim.credentials.AccessKeyId, gen1);
  r = await call(sim, 'GET', CREDENTIALS_PATH, { headers: { Authorization: env.AWS_CONTAINER_AUTHORIZATION_TOKEN } });
  assert.equal(r.json.AccessKeyId, sim.credentials.AccessKeyId, 'the provider serves the new credentials after restore');
  assert.equal(sim.credentialGeneration(r.json.AccessKeyId), 2);
  const inv = await sim.invoke({ lines: 2 });
  // Restore events after the snapshot, initReport delivered after restore, the extension woke with INVOKE.
  const after = sim.emitted.filter((e) => e.seq >= rest.seq && e.category === 'platform').map((e) => e.event);
  assert.deepEqual(after.slice(0, 3).map((e) => e.type), ['platform.restoreStart', 'platform.restoreRuntimeDone', 'platform.restoreReport']);
  assert.deepEqual(Object.keys(after[0].record), ['functionName', 'functionVersion', 'runtimeVersion', 'runtimeVersionArn']);
  assert.deepEqual(after[1].record, { status: 'success' });
  assert.deepEqual(Object.keys(after[2].record), ['status', 'metrics']);
  assert.equal(typeof after[2].record.metrics.durationMs, 'number');
  const initReport = sim.emitted.find((e) => e.event.type === 'platform.initReport');
  assert.ok(initReport.acked && initReport.deliveredAt >= rest.at, 'the snapshot-time initReport arrives after restore');
  assert.ok(!('initDurationMs' in inv.report.event.record.metrics));
  assert.equal(typeof inv.report.event.record.metrics.restoreDurationMs, 'number');
  // The platform's telemetry sender started anew: a new connection to the listener.
  const later = sim.deliveries.filter((d) => d.at >= rest.at && d.status === 200).map((d) => d.localPort);
  assert.ok(later.length >= 1);
  for (const p of later) assert.ok(!before.includes(p), `delivery after restore on the pre-snapshot connection ${p}`);
  await assert.rejects(sim.restore(), /restored already/);
  const sd = await sim.shutdown();
  assert.equal(sd.code, 0);
  assert.equal(sim.restores.length, 1);
});

test('provisioned-concurrency: init long before the first invoke, a frozen gap with a hook', async () => {
  const sim = newSim({ mode: 'provisioned-concurrency', gapMs: 100 }, { FAKE_DUMP_ENV: '1', FAKE_SUBSCRIBE: SUB('2022-12-13') });
  const hooked = [];
  sim.on('gap', (g) => hooked.push({ ms: g.ms, state: procState(sim.pid) }));
  await sim.start();
  await sim.waitInit();
  assert.equal(envOf(sim).AWS_LAMBDA_INITIALIZATION_TYPE, 'provisioned-concurrency');
  assert.equal(sim.emitted[0].event.record.initializationType, 'provisioned-concurrency');
  await stoppedState(sim.pid);
  const a = await sim.invoke({ lines: 1 });
  const b = await sim.invoke({ lines: 1 });
  assert.deepEqual(hooked, [{ ms: 100, state: 'T' }], 'one gap, before the first invoke, while frozen');
  assert.ok(!('initDurationMs' in a.report.event.record.metrics), 'no init duration: init was not on the invoke path');
  assert.ok(b.report);
  assert.equal((await sim.shutdown()).code, 0);
});

test('function timeout: runtimeDone timeout (or none), report, then SHUTDOWN timeout at /event/next', async () => {
  for (const runtimeDone of [true, false]) {
    const sim = newSim({}, { FAKE_SUBSCRIBE: SUB('2022-12-13', ['platform', 'function']) });
    const received = [];
    sim.on('extensionEvent', (ev) => received.push(ev));
    await sim.start();
    await sim.waitInit();
    await sim.invoke({ lines: 1 });
    const inv = await sim.invoke({ lines: 3, timeout: true, runtimeDone, functionTimeoutMs: 300 });
    const types = inv.events.map((e) => e.event.type);
    assert.deepEqual(types, ['platform.start', 'function', 'function', 'function',
      ...(runtimeDone ? ['platform.runtimeDone'] : []), 'platform.report']);
    if (runtimeDone) {
      const done = inv.events.at(-2).event;
      assert.equal(done.record.status, 'timeout');
      assert.ok(Date.parse(done.time) >= inv.deadlineMs - 1, 'runtimeDone after the deadline');
    }
    assert.equal(inv.report.event.record.status, 'timeout');
    assert.ok(inv.nextBeforeDeadline, 'the fake was in /event/next before the deadline');
    assert.deepEqual(received.map((e) => e.eventType), ['INVOKE', 'INVOKE', 'SHUTDOWN']);
    assert.equal(received[2].shutdownReason, 'timeout');
    assert.equal(inv.shutdown.code, 0);
    assert.equal(inv.shutdown.reason, 'timeout');
    assert.ok(inv.shutdown.deadlineMs - inv.shutdown.sentAt === 2000);
    assert.ok(inv.report.acked, 'the report was delivered before SHUTDOWN');
    await assert.rejects(sim.invoke(), /not idle/);
  }
});

test('runtime crash with the extension not in /event/next: SHUTDOWN failure once it calls next', async () => {
  const sim = newSim({}, { FAKE_SUBSCRIBE: SUB('2022-12-13', ['platform', 'function']), FAKE_NEXT_DELAY_MS: '400' });
  const received = [];
  sim.on('extensionEvent', (ev) => received.push({ ev, at: Date.now() }));
  await sim.start();
  await sim.waitInit();
  let nextAt = 0;
  sim.on('next', () => { nextAt = Date.now(); });
  const inv = await sim.invoke({ lines: 2, crash: true });
  const done = inv.events.find((e) => e.event.type === 'platform.runtimeDone').event.record;
  assert.deepEqual([done.status, done.errorType], ['failure', 'Runtime.ExitError']);
  assert.equal(inv.report.event.record.status, 'failure');
  assert.equal(inv.report.event.record.errorType, 'Runtime.ExitError');
  assert.equal(received.at(-1).ev.eventType, 'SHUTDOWN');
  assert.equal(received.at(-1).ev.shutdownReason, 'failure');
  assert.ok(received.at(-1).at >= nextAt && nextAt > 0, 'SHUTDOWN answered the next /event/next');
  assert.equal(inv.shutdown.code, 0);
});

test('on-demand: concurrency 1, no restore; modes do not leak', async () => {
  const sim = newSim({}, { FAKE_DUMP_ENV: '1' });
  await sim.start();
  await sim.waitInit();
  assert.equal(envOf(sim).AWS_LAMBDA_INITIALIZATION_TYPE, 'on-demand');
  assert.equal(envOf(sim).AWS_CONTAINER_CREDENTIALS_FULL_URI, undefined);
  await assert.rejects(sim.invokeConcurrent(2), /allows 1/);
  await assert.rejects(sim.restore(), /no snapshots/);
  const r = await call(sim, 'GET', CREDENTIALS_PATH);
  assert.equal(r.status, 404, 'no container credentials provider in on-demand mode');
  assert.equal((await sim.shutdown()).code, 0);
});

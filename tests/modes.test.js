'use strict';
// telkin end to end in every Lambda execution mode (MODES in lambda_sim.js): on-demand,
// provisioned concurrency, SnapStart, Managed Instances, and the reset after a function timeout or
// a runtime crash. Every scenario compares what reached Kinesis EVENT BY EVENT with what the
// simulator emitted (compare.js): nothing lost, nothing altered, exit 0 before the SHUTDOWN
// deadline, no init/exit error; plus what the mode itself requires (register body, schema, init
// events in Kinesis before the snapshot/the provisioned gap, a new sandbox id and fresh
// credentials after a restore, a new connection after a silent connection loss, ...).
//
// kinesalite where no fault is needed; kinesis_stub.js where Kinesis must misbehave as it does
// across a freeze or a restore (connections that went silent, ExpiredTokenException for the old
// credentials). Assertions are on events and order, never on wall-clock durations: where a
// scenario needs "did not wait for a dead connection", it is expressed as "everything of the
// invocation was in Kinesis when telkin called /event/next" with a flush budget
// (TELKIN_FLUSH_TIMEOUT_MS) shorter than telkin's 5 s request timeout.
//
// TELKIN_BIN / TELKIN_BIN_WRAPPER select the binary (arm64 under qemu: layer/layer.mk runs the
// Managed Instances and SnapStart scenarios by name).

const fs = require('node:fs');
const test = require('node:test');
const assert = require('node:assert/strict');
const { Kinesalite } = require('./kinesis');
const { KinesisStub, verifySigV4 } = require('./kinesis_stub');
const { compare, canon, stripAppended } = require('./compare');
const {
  startSim, withDiagnostics, assertShutdown, assertClean, invokeHead, absentFrom, parseSummary, makePki,
} = require('./prod_util');

const TYPES = ['platform', 'function'];
const FLUSH_BUDGET_MS = '3000'; // < telkin's 5 s Kinesis request timeout
const EXPIRED = { status: 400, type: 'ExpiredTokenException', message: 'The security token included in the request is expired' };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

let kin;
let streams = 0;
test.before(async () => { kin = new Kinesalite(); await kin.start(); });
test.after(async () => { if (kin) await kin.close(); });

const scenario = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withDiagnostics(fn));

/**
 * telkin in the simulator in `mode`, shipping to kinesalite (kinesis: 'kinesalite') or to a
 * KinesisStub (kinesis: 'stub'; stubTls: its TLS options). Returns {sim, stub, read}; read() ->
 * the records in Kinesis.
 */
async function start(t, h, { mode, kinesis = 'kinesalite', stubTls, env = {}, sim = {}, waitInit = true } = {}) {
  let endpoint;
  let read;
  const stream = `modes-${process.pid}-${++streams}`;
  if (kinesis === 'stub') {
    const stub = new KinesisStub(stubTls ? { tls: stubTls } : {});
    await stub.start();
    t.after(() => stub.close());
    h.stub = stub;
    endpoint = stub.endpoint;
    read = async () => stub.accepted.slice();
  } else {
    const c = kin.client();
    await c.createStream(stream, 1);
    endpoint = kin.endpoint;
    read = () => c.readAll(stream);
  }
  h.read = read;
  const s = await startSim(t, {
    env: { TELKIN_STREAM: stream, AWS_ENDPOINT_URL_KINESIS: endpoint, ...env },
    sim: { mode, region: kin.region, ...sim },
    waitInit: false,
  });
  h.sim = s;
  if (waitInit) {
    await s.waitInit().catch((e) => {
      const reg = s.registerAttempts.map((a) => `${JSON.stringify(a.events)} -> ${a.status} ${JSON.stringify(a.body)}`);
      throw new Error(`telkin did not finish init in mode ${mode}: ${e.message}; register: ${reg.join('; ')}; ` +
        `subscribe: ${s.subscribeAttempts.map((a) => `${a.schemaVersion} -> ${a.status}`).join('; ')}`);
    });
  }
  return { sim: s, stub: h.stub, read };
}

// SHUTDOWN (unless already done), then: exit 0 before the deadline, no init/exit error, the stream
// equals what was emitted, event by event; nothing lost at exit per telkin's own summary.
async function finish(t, h, { sd, types = TYPES, pk = 'sandbox', maxSandboxes = 1 } = {}) {
  const { sim } = h;
  sd = sd || await sim.shutdown();
  assertShutdown(sd, sim);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), [], 'no init/error');
  assert.deepEqual(sim.exitErrors.map((e) => e.errorType), [], 'no exit/error');
  const recs = await h.read();
  const cmp = compare(sim, recs, { types, pk, maxSandboxes });
  assertClean(t, cmp);
  const sum = parseSummary(sim.stderrLines);
  if (sum && sum.lostAtExit !== undefined) assert.equal(sum.lostAtExit, 0, sum.line);
  return { recs, cmp, sd };
}

// Events of the forwarded types emitted with seq in [from, to).
const emittedBetween = (sim, from, to = Infinity, types = TYPES) =>
  sim.emitted.filter((e) => e.seq >= from && e.seq < to && types.includes(e.category));

// An invocation with TELKIN_FLUSH=end: acknowledged and in Kinesis when telkin called /event/next.
async function invokeShipped(h, p = {}) {
  const inv = await h.sim.invoke({ lines: 5, ...p });
  assert.ok(inv.ackedBeforeNext, `invoke ${inv.index}: /event/next before the listener acknowledged its events`);
  const absent = absentFrom(await h.read(), invokeHead(inv, TYPES));
  assert.equal(absent.length, 0, `invoke ${inv.index}: /event/next before ${absent.length} of its events were in Kinesis ` +
    `(e.g. ${absent.slice(0, 3).map((e) => e.event.type).join(', ')})`);
  return inv;
}

const registered = (sim) => sim.registerAttempts.map((a) => ({ events: a.events, status: a.status }));

// Kinesis record -> the simulator's emitted event (by content) -> seq.
function seqOf(sim) {
  const m = new Map();
  for (const e of sim.emitted) m.set(canon(JSON.parse(e.json)), e.seq);
  return (rec) => m.get(canon(stripAppended(rec.json)));
}

// Managed Instances: no INVOKE ever comes, so telkin must ship while it waits in /event/next for
// SHUTDOWN. Polls the stream (bounded: 10 s, far above the contract's ~100 ms or the period).
async function assertShippedWhileWaiting(h, invs) {
  const events = invs.flatMap((v) => v.events).filter((e) => TYPES.includes(e.category));
  let absent = events;
  for (let i = 0; i < 100 && absent.length; i++) {
    await sleep(100);
    absent = absentFrom(await h.read(), events);
  }
  assert.equal(absent.length, 0, `${absent.length} of ${events.length} events of the invocations not shipped ` +
    `while telkin waited for SHUTDOWN (TELKIN_FLUSH=${h.sim.childEnv.TELKIN_FLUSH ?? 'auto'})`);
}

const keyIdOf = (req) => (/Credential=([^/]+)\//.exec(req.headers.authorization || '') || [])[1];

// ------------------------------------------------------------------------------------------------

scenario('on-demand: baseline, INVOKE+SHUTDOWN, schema 2022-12-13, each invoke shipped before /event/next', async (t, h) => {
  const { sim } = await start(t, h, { mode: 'on-demand' });
  assert.deepEqual(registered(sim), [{ events: ['INVOKE', 'SHUTDOWN'], status: 200 }]);
  assert.equal(sim.subscriptions[0].schemaVersion, '2022-12-13');
  assert.equal(sim.childEnv.AWS_LAMBDA_INITIALIZATION_TYPE, 'on-demand');
  for (let i = 0; i < 5; i++) await invokeShipped(h);
  await finish(t, h);
});

scenario('on-demand: an unknown AWS_LAMBDA_INITIALIZATION_TYPE runs as on-demand and is logged once', async (t, h) => {
  const value = 'future-mode-7f3a';
  const { sim } = await start(t, h, { mode: 'on-demand', env: { AWS_LAMBDA_INITIALIZATION_TYPE: value } });
  assert.deepEqual(registered(sim), [{ events: ['INVOKE', 'SHUTDOWN'], status: 200 }]);
  assert.equal(sim.subscriptions[0].schemaVersion, '2022-12-13');
  for (let i = 0; i < 3; i++) await invokeShipped(h);
  await finish(t, h);
  const mentions = [...sim.stdoutLines, ...sim.stderrLines].filter((l) => l.includes(value));
  assert.equal(mentions.length, 1, `the unknown value logged ${mentions.length} times: ${mentions.join(' | ')}`);
});

// CPU pinning (TELKIN_CPU_PIN, README): under one vCPU's share (a memory size below 1,769 MB)
// telkin pins itself to the last CPU it may run on, when it has two or more; not at 1,769 MB and
// up, not on Managed Instances, not with TELKIN_CPU_PIN=off. The kernel's word for it
// (/proc/<pid>/status, Cpus_allowed_list) during an invocation, and the exit summary's "cpu".
const cpusOf = (pid) => {
  const m = /^Cpus_allowed_list:\s*(\S+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  const cpus = [];
  for (const part of m[1].split(',')) {
    const [a, b = a] = part.split('-').map(Number);
    for (let c = a; c <= b; c++) cpus.push(c);
  }
  return cpus;
};
const OURS = cpusOf('self');
for (const [label, mode, memoryMB, env, pinned] of [
  ['128 MB: pinned to the last CPU', 'on-demand', 128, {}, OURS.length > 1],
  ['1,768 MB under SnapStart: pinned', 'snap-start', 1768, {}, OURS.length > 1],
  ['1,769 MB (one vCPU): not pinned', 'on-demand', 1769, {}, false],
  ['128 MB, TELKIN_CPU_PIN=off: not pinned', 'on-demand', 128, { TELKIN_CPU_PIN: 'off' }, false],
  ['Managed Instances: not pinned', 'lambda-managed-instances', 2048, {}, false],
  [`128 MB, TELKIN_CPU_PIN=${OURS[0]}: pinned to that CPU`, 'on-demand', 128, { TELKIN_CPU_PIN: String(OURS[0]) }, true],
]) {
  scenario(`${mode}: CPU pinning, ${label}`, async (t, h) => {
    const { sim } = await start(t, h, { mode, env, sim: { memoryMB } });
    if (mode === 'lambda-managed-instances') {
      const inv = await sim.invoke({ lines: 5 });
      await assertShippedWhileWaiting(h, [inv]);
    } else {
      await invokeShipped(h);
    }
    const want = pinned ? [env.TELKIN_CPU_PIN !== undefined ? Number(env.TELKIN_CPU_PIN) : OURS[OURS.length - 1]] : OURS;
    if (!process.env.TELKIN_BIN_WRAPPER) { // under qemu-user the pid is the emulator's
      assert.deepEqual(cpusOf(sim.pid), want,
        `telkin's CPUs at ${memoryMB} MB in ${mode}`);
    }
    await finish(t, h, { maxSandboxes: mode === 'snap-start' ? 2 : 1 }); // a restore is a new sandbox
    const line = parseSummary(sim.stderrLines).line;
    assert.match(line, new RegExp(`; cpu ${pinned ? want[0] : 'any'}; `), line);
    assert.equal(sim.stderrLines.some((l) => l.includes('pinned to CPU')), pinned, 'the start line says where');
  });
}

scenario('on-demand: a long freeze kills the Kinesis connection silently: the next invoke is shipped on a new one', async (t, h) => {
  const { sim, stub } = await start(t, h, { mode: 'on-demand', kinesis: 'stub', env: { TELKIN_FLUSH_TIMEOUT_MS: FLUSH_BUDGET_MS } });
  await invokeShipped(h);
  const at = {};
  sim.once('gap', () => { at.connections = stub.connections; at.requests = stub.requests.length; at.silenced = stub.silence(); });
  await sim.gap({ ms: 2000 }); // frozen between invocations; the connection died without FIN or RST
  assert.equal(at.silenced, 1, 'the kept-alive connection of the first invoke');
  await invokeShipped(h);
  const stored = stub.requests.filter((r) => r.n >= at.requests && r.stored);
  assert.ok(stored.length >= 1 && stored.every((r) => r.conn > at.connections), 'shipped on a new connection');
  await invokeShipped(h);
  await finish(t, h);
});

scenario('provisioned-concurrency: init events in Kinesis before the gap; connections dead after it; nothing lost', async (t, h) => {
  const atGap = {};
  const { sim, stub } = await start(t, h, {
    mode: 'provisioned-concurrency', kinesis: 'stub', env: { TELKIN_FLUSH_TIMEOUT_MS: FLUSH_BUDGET_MS },
    sim: {
      gapMs: 2000,
      onGap: () => {
        // Frozen since the end of init: what is in Kinesis now is what telkin shipped during init.
        atGap.absent = absentFrom(h.stub.accepted, emittedBetween(h.sim, 0, h.sim.snapshot.seq));
        atGap.connections = h.stub.connections;
        atGap.silenced = h.stub.silence(); // minutes to hours frozen: every connection is dead
        atGap.requests = h.stub.requests.length;
      },
    },
  });
  assert.equal(sim.emitted[0].event.record.initializationType, 'provisioned-concurrency');
  assert.deepEqual(registered(sim), [{ events: ['INVOKE', 'SHUTDOWN'], status: 200 }]);
  const first = await invokeShipped(h);
  assert.deepEqual(atGap.absent.map((e) => e.event.type), [],
    'init events (initStart, telemetrySubscription, init logs, initRuntimeDone) in Kinesis before the gap');
  assert.ok(atGap.silenced >= 1, `no Kinesis connection open at the gap (connections ${atGap.connections})`);
  // After the gap: a new connection carried the first invoke's events (none waited for the dead one).
  assert.ok(stub.connections > atGap.connections, 'telkin opened a new connection after the gap');
  const stored = stub.requests.filter((r) => r.n >= atGap.requests && r.stored);
  assert.ok(stored.length >= 1 && stored.every((r) => r.conn > atGap.connections), 'shipped on a new connection');
  assert.ok(first.report);
  for (let i = 0; i < 3; i++) await invokeShipped(h);
  await finish(t, h);
});

scenario('snap-start: init shipped before the snapshot; after restore new sandbox id, fresh credentials, new connection', async (t, h) => {
  const expired = new Set();
  const at = {};
  const { sim, stub } = await start(t, h, {
    mode: 'snap-start', kinesis: 'stub', env: { TELKIN_FLUSH_TIMEOUT_MS: FLUSH_BUDGET_MS },
    sim: {
      onRestore: (r) => {
        // The restored environment: the old credentials are expired at Kinesis, and every
        // connection made before the snapshot is gone without a FIN or RST.
        expired.add(r.previous.AccessKeyId);
        at.requests = h.stub.requests.length;
        at.connections = h.stub.connections;
        at.silenced = h.stub.silence();
      },
    },
  });
  stub.decide = (req) => (expired.has(keyIdOf(req)) ? EXPIRED : null);
  // Init: SnapStart's environment, container credentials only, the classic register and schema.
  assert.equal(sim.childEnv.AWS_LAMBDA_INITIALIZATION_TYPE, 'snap-start');
  assert.equal(sim.childEnv.AWS_ACCESS_KEY_ID, undefined);
  assert.deepEqual(registered(sim), [{ events: ['INVOKE', 'SHUTDOWN'], status: 200 }]);
  assert.equal(sim.subscriptions[0].schemaVersion, '2022-12-13');
  assert.ok(sim.credentialRequests.some((c) => c.status === 200 && c.generation === 1), 'credentials from the provider');
  // The snapshot (frozen in /event/next): every init event is in Kinesis already.
  const initEvents = emittedBetween(sim, 0, sim.snapshot.seq);
  const absent = absentFrom(await h.read(), initEvents);
  assert.deepEqual(absent.map((e) => e.event.type), [], 'init events in Kinesis at the snapshot');
  const beforeSnapshot = stub.accepted.length;

  const rest = await sim.restore({ gapMs: 1000 });
  assert.equal(rest.generation, 2);
  assert.ok(at.silenced >= 1, 'a Kinesis connection was open at the snapshot');
  const firstAfter = await invokeShipped(h);
  for (let i = 0; i < 2; i++) await invokeShipped(h);
  const { recs } = await finish(t, h, { maxSandboxes: 2 });

  // Fresh credentials: asked for after the restore; everything stored afterwards signed with them.
  const fresh = sim.credentialRequests.filter((c) => c.at >= rest.at && c.status === 200);
  assert.ok(fresh.length >= 1 && fresh.every((c) => c.generation === 2), 'credentials fetched again after the restore');
  const afterReqs = stub.requests.filter((r) => r.n >= at.requests);
  for (const r of afterReqs.filter((x) => x.stored)) {
    assert.equal(sim.credentialGeneration(keyIdOf(r)), 2, `request ${r.n} after restore signed with ${keyIdOf(r)}`);
    assert.equal(verifySigV4(r, sim.credentials.SecretAccessKey), null, `request ${r.n}: signature`);
    assert.equal(r.headers['x-amz-security-token'], sim.credentials.Token, `request ${r.n}: session token`);
  }
  const refused = afterReqs.filter((r) => r.action === EXPIRED).length;
  t.diagnostic(`after restore: ${afterReqs.length} PutRecords, ${refused} refused as expired, ` +
    `${stub.connections - at.connections} new connection(s), ${stub.silentBytes || 0} bytes sent into silenced ones`);
  // A new connection after the restore carried the data.
  assert.ok(afterReqs.filter((r) => r.stored).every((r) => r.conn > at.connections), 'shipped on new connections only');
  // A new sandbox id: records of init events vs records of events emitted after the restore.
  const seq = seqOf(sim);
  const sandboxes = (from, to) => new Set(recs.filter((r) => { const s = seq(r); return s >= from && s < to; }).map((r) => r.json.sandbox));
  const before = sandboxes(0, sim.snapshot.seq);
  const after = sandboxes(rest.seq, Infinity);
  assert.equal(before.size, 1, `init records carry one sandbox id: ${[...before]}`);
  assert.equal(after.size, 1, `records after the restore carry one sandbox id: ${[...after]}`);
  assert.notEqual([...after][0], [...before][0], 'the restored environment has a new sandbox id');
  // The restore events themselves were forwarded; the first invoke was complete at its /event/next.
  const types = new Set(recs.map((r) => r.json.type));
  for (const ty of ['platform.restoreStart', 'platform.restoreRuntimeDone', 'platform.restoreReport', 'platform.initReport']) {
    assert.ok(types.has(ty), `${ty} in Kinesis`);
  }
  assert.ok(beforeSnapshot >= initEvents.length && firstAfter.ackedBeforeNext);
});

scenario('snap-start: over TLS the restored environment does a full handshake; a later reconnect resumes (control)', async (t, h) => {
  const pki = makePki();
  const expired = new Set();
  const at = {};
  const { sim, stub } = await start(t, h, {
    mode: 'snap-start', kinesis: 'stub', stubTls: { key: pki.good.key, cert: pki.good.cert, sessionCache: true },
    env: { TELKIN_CA_FILE: pki.caFile, TELKIN_FLUSH_TIMEOUT_MS: FLUSH_BUDGET_MS },
    sim: {
      onRestore: (r) => {
        expired.add(r.previous.AccessKeyId);
        at.sessions = h.stub.tlsSessions.length;
        at.silenced = h.stub.silence();
      },
    },
  });
  stub.decide = (req) => (expired.has(keyIdOf(req)) ? EXPIRED : null);
  assert.ok(stub.tlsSessions.length >= 1, 'telkin shipped over TLS during init');
  await sim.restore({ gapMs: 500 });
  assert.ok(at.silenced >= 1, 'a TLS connection was open at the snapshot');
  await invokeShipped(h);
  const afterRestore = stub.tlsSessions.slice(at.sessions);
  assert.ok(afterRestore.length >= 1, 'a new TLS connection after the restore');
  assert.equal(afterRestore[0].resumed, false, 'the first handshake after the restore resumed a session from before the snapshot');
  // Control: the same stub resumes telkin's sessions: after a long freeze (connection dead), the
  // reconnect resumes the session made after the restore.
  sim.once('gap', () => { at.sessions2 = stub.tlsSessions.length; stub.silence(); });
  await sim.gap({ ms: 1500 });
  await invokeShipped(h);
  const later = stub.tlsSessions.slice(at.sessions2);
  assert.ok(later.length >= 1 && later[0].resumed, `reconnect after a freeze: ${JSON.stringify(later)} (sessions resumed)`);
  await finish(t, h, { maxSandboxes: 2 });
});

scenario('lambda-managed-instances: SHUTDOWN-only register, schema 2025-01-29, 10 concurrent interleaved invocations shipped while waiting', async (t, h) => {
  const { sim } = await start(t, h, { mode: 'lambda-managed-instances' });
  assert.deepEqual(registered(sim), [{ events: ['SHUTDOWN'], status: 200 }], 'registered for SHUTDOWN only, at once');
  assert.deepEqual(sim.subscribeAttempts.map((a) => [a.schemaVersion, a.status]), [['2025-01-29', 200]]);
  assert.ok(sim.credentialRequests.some((c) => c.status === 200), 'container credentials from the provider');
  const invs = await sim.invokeConcurrent(10, { lines: 20 });
  await assertShippedWhileWaiting(h, invs);
  // More work, then SHUTDOWN right away: drained within the deadline.
  await sim.invokeConcurrent(12, { lines: 10 });
  await finish(t, h);
  assert.ok(!sim.emitted.some((e) => e.event.type === 'platform.runtimeDone'));
});

scenario('lambda-managed-instances: JSON logs, TELKIN_PARTITION_KEY=request, TELKIN_FLUSH=periodic: each event keyed by its requestId', async (t, h) => {
  const { sim } = await start(t, h, {
    mode: 'lambda-managed-instances', sim: { logFormat: 'JSON' },
    env: { TELKIN_PARTITION_KEY: 'request', TELKIN_FLUSH: 'periodic:300' },
  });
  const invs = await sim.invokeConcurrent(12, { lines: 10 });
  await assertShippedWhileWaiting(h, invs);
  const { recs } = await finish(t, h, { pk: 'request' });
  const ids = new Set(invs.map((v) => v.requestId));
  const keyed = recs.filter((r) => r.json.record && typeof r.json.record === 'object' && r.json.record.requestId);
  assert.ok(keyed.length >= 12 * 12, `${keyed.length} records carry a requestId`);
  for (const r of keyed) {
    assert.ok(ids.has(r.partitionKey), `${r.json.type}: partition key ${r.partitionKey} is not a requestId`);
    assert.equal(r.partitionKey, r.json.record.requestId);
  }
  // Events that carry no requestId (init) keep the sandbox id.
  for (const r of recs.filter((x) => !keyed.includes(x))) assert.equal(r.partitionKey, r.json.sandbox, r.json.type);
});

scenario('lambda-managed-instances: Kinesis failing after init (503s) is retried while waiting; the process lives on, nothing lost', async (t, h) => {
  const { sim, stub } = await start(t, h, { mode: 'lambda-managed-instances', kinesis: 'stub' });
  stub.script(Array(6).fill({ status: 503, type: 'ServiceUnavailable', message: 'injected' }));
  const invs = await sim.invokeConcurrent(8, { lines: 10 });
  await assertShippedWhileWaiting(h, invs);
  assert.equal(sim.exit, null, 'telkin exited after init');
  assert.ok(stub.requests.filter((r) => r.status === 503).length >= 1, 'the 503s were seen');
  await finish(t, h);
});

for (const initType of [null, 'on-demand']) {
  scenario(`lambda-managed-instances: AWS_LAMBDA_INITIALIZATION_TYPE ${initType ?? 'absent'}: INVOKE refused, retried with SHUTDOWN only, runs as on Managed Instances`, async (t, h) => {
    const { sim } = await start(t, h, {
      mode: 'lambda-managed-instances',
      // TELKIN_FLUSH unset: the default (auto)
      env: { AWS_LAMBDA_INITIALIZATION_TYPE: initType, TELKIN_PARTITION_KEY: 'request', TELKIN_FLUSH: null },
    });
    assert.equal(sim.childEnv.AWS_LAMBDA_INITIALIZATION_TYPE, initType ?? undefined);
    assert.deepEqual(registered(sim), [
      { events: ['INVOKE', 'SHUTDOWN'], status: 403 },
      { events: ['SHUTDOWN'], status: 200 },
    ]);
    assert.deepEqual(sim.registerAttempts[0].body, { errorMessage: 'INVOKE: ErrorInvalidEventType', errorType: 'Extension.InvalidEventType' });
    assert.deepEqual(sim.subscribeAttempts.map((a) => [a.schemaVersion, a.status]), [['2025-01-29', 200]]);
    const invs = await sim.invokeConcurrent(8, { lines: 6 });
    await assertShippedWhileWaiting(h, invs);
    const { recs } = await finish(t, h, { pk: 'request' });
    // Text lines carry no requestId member: keyed by the sandbox id; start/report by their requestId.
    const text = recs.filter((r) => r.json.type === 'function');
    assert.equal(text.length, 8 * 6 + sim.o.initLines);
    for (const r of text) assert.equal(r.partitionKey, r.json.sandbox);
    const ids = new Set(invs.map((v) => v.requestId));
    const perRequest = recs.filter((r) => ['platform.start', 'platform.report'].includes(r.json.type));
    assert.equal(perRequest.length, 16);
    for (const r of perRequest) assert.ok(ids.has(r.partitionKey) && r.partitionKey === r.json.record.requestId);
  });
}

for (const runtimeDone of [true, false]) {
  scenario(`on-demand: function timeout ${runtimeDone ? 'with runtimeDone status timeout' : 'without runtimeDone'}: ` +
    'next before the deadline, SHUTDOWN timeout drained, every line arrives', async (t, h) => {
    const { sim } = await start(t, h, { mode: 'on-demand' });
    await invokeShipped(h);
    const inv = await sim.invoke({ lines: 20, timeout: true, runtimeDone, functionTimeoutMs: 1500 });
    assert.ok(inv.firstNextAt, 'telkin called /event/next during the invocation');
    assert.ok(inv.nextBeforeDeadline, `telkin called /event/next ${inv.firstNextAt - inv.deadlineMs} ms after the deadline`);
    assert.equal(inv.shutdown.reason, 'timeout');
    assert.ok(inv.shutdown.shutdownDelivered, 'SHUTDOWN answered a pending /event/next');
    const { recs } = await finish(t, h, { sd: inv.shutdown });
    const lines = inv.events.filter((e) => e.category === 'function');
    assert.equal(absentFrom(recs, lines).length, 0, 'every line logged before the deadline is in Kinesis');
    assert.equal(recs.some((r) => r.json.type === 'platform.runtimeDone' && r.json.record.status === 'timeout'), runtimeDone);
  });
}

scenario('on-demand: runtime crash: runtimeDone failure Runtime.ExitError, SHUTDOWN failure, everything shipped', async (t, h) => {
  const { sim } = await start(t, h, { mode: 'on-demand' });
  await invokeShipped(h);
  const inv = await sim.invoke({ lines: 30, crash: true });
  assert.equal(inv.shutdown.reason, 'failure');
  const { recs } = await finish(t, h, { sd: inv.shutdown });
  const done = recs.find((r) => r.json.type === 'platform.runtimeDone' && r.json.record.requestId === inv.requestId);
  assert.ok(done, 'the failed runtimeDone is in Kinesis');
  assert.deepEqual([done.json.record.status, done.json.record.errorType], ['failure', 'Runtime.ExitError']);
});

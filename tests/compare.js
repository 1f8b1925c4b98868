'use strict';
// Event-by-event comparison of what arrived in Kinesis with what the simulator emitted.

// Members telkin appends to every event.
const APPENDED = ['function', 'version', 'region', 'sandbox'];

// Stable key for multiset comparison: JSON with object keys sorted.
function canon(v) {
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (v && typeof v === 'object') {
    return '{' + Object.keys(v).sort().map((k) => JSON.stringify(k) + ':' + canon(v[k])).join(',') + '}';
  }
  return JSON.stringify(v);
}

function describe(ev) {
  const r = ev.record;
  const tag = typeof r === 'string' ? r.slice(0, 90) : r && (r.message || r.requestId || r.name || r.phase || '');
  return `${ev.type} ${JSON.stringify(tag)}`;
}

function stripAppended(j) {
  const ev = { ...j };
  for (const k of APPENDED) delete ev[k];
  return ev;
}

/**
 * Compare the stream with what the simulator emitted.
 * @returns {{expected, arrived, missing, duplicates, unexpected, dropped, problems, sandbox, sandboxes}}
 * maxSandboxes: how many sandbox ids may appear (2 across a SnapStart restore).
 */
function compare(sim, records, {
  types = ['platform', 'function'], pk = 'sandbox', requireAllBeforeShutdown = true, maxSandboxes = 1,
} = {}) {
  const problems = [];
  const fnName = sim.o.functionName;
  const fnVersion = sim.o.functionVersion;
  const region = sim.o.region;

  // Expected: every forwarded event telkin acknowledged.
  const forwarded = sim.emitted.filter((r) => types.includes(r.category));
  const expected = forwarded.filter((r) => r.acked);
  if (requireAllBeforeShutdown) {
    // The simulator flushes everything emitted before SHUTDOWN to the listener before sending it.
    const notDelivered = forwarded.filter((r) => !r.acked && r.state !== 'shutdown' && r.state !== 'exited');
    if (notDelivered.length) {
      problems.push(`${notDelivered.length} events emitted before SHUTDOWN were never acknowledged by telkin's ` +
        `listener, e.g. ${notDelivered.slice(0, 3).map((r) => describe(r.event)).join('; ')}`);
    }
  }

  const want = new Map();
  for (const r of expected) {
    const key = canon(JSON.parse(r.json));
    const e = want.get(key) || { n: 0, ev: r.event };
    e.n++;
    want.set(key, e);
  }
  const got = new Map();
  const dropped = [];
  const unexpected = [];
  const sandboxes = new Set();
  let badShape = 0;
  for (const rec of records) {
    const j = rec.json;
    if (!j || typeof j !== 'object' || Array.isArray(j)) {
      problems.push(`record is not a JSON object: ${rec.data.slice(0, 120)}`);
      continue;
    }
    const keys = Object.keys(j);
    const last4 = keys.slice(-4).sort();
    if (canon(last4) !== canon([...APPENDED].sort())) {
      if (badShape++ < 3) problems.push(`record does not end with the appended members ${APPENDED}: keys ${keys}`);
    }
    if (j.function !== fnName) problems.push(`"function" is ${JSON.stringify(j.function)}, want ${JSON.stringify(fnName)}`);
    if (j.version !== fnVersion) problems.push(`"version" is ${JSON.stringify(j.version)}, want ${JSON.stringify(fnVersion)}`);
    if (j.region !== region) problems.push(`"region" is ${JSON.stringify(j.region)}, want ${JSON.stringify(region)}`);
    if (typeof j.sandbox !== 'string' || !j.sandbox) problems.push(`"sandbox" missing or empty: ${JSON.stringify(j.sandbox)}`);
    sandboxes.add(j.sandbox);
    const ev = { ...j };
    for (const k of APPENDED) delete ev[k];
    if (pk === 'sandbox' && rec.partitionKey !== j.sandbox) {
      problems.push(`partition key ${JSON.stringify(rec.partitionKey)} != sandbox ${JSON.stringify(j.sandbox)}`);
    }
    if (pk === 'request') {
      const rid = ev.record && typeof ev.record === 'object' ? ev.record.requestId : undefined;
      if (rid && rec.partitionKey !== rid) problems.push(`partition key ${rec.partitionKey} != requestId ${rid} (${ev.type})`);
    }
    if (ev.type === 'telkin.dropped') { dropped.push(ev); continue; }
    const key = canon(ev);
    if (!want.has(key)) { unexpected.push(ev); continue; }
    got.set(key, (got.get(key) || 0) + 1);
  }
  if (sandboxes.size > maxSandboxes) problems.push(`${sandboxes.size} different sandbox ids in one telkin process`);
  const missing = [];
  let duplicates = 0;
  for (const [key, e] of want) {
    const n = got.get(key) || 0;
    if (n < e.n) missing.push(e.ev);
    if (n > e.n) duplicates += n - e.n;
  }
  return {
    expected: expected.length, arrived: records.length, missing, duplicates, unexpected, dropped, problems,
    sandbox: [...sandboxes][0], sandboxes: [...sandboxes],
  };
}

module.exports = { APPENDED, canon, describe, compare, stripAppended };

'use strict';
// Event-by-event comparison of what arrived in Kinesis with what the simulator emitted.

// Members telkin appends to every event (README, record format), in this order; function and
// extension events may have "requestId" before them.
const APPENDED = ['function', 'version', 'region', 'sandbox', 'seq'];

// Data of one Kinesis record -> its event lines (every event ends with \n unless
// TELKIN_RECORD_NEWLINE=0; ndjson records hold several).
function recordLines(data) {
  const lines = data.split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  return lines;
}

// The members telkin appended to j (requestId only when telkin added it, i.e. just before them).
function appendedOf(j) {
  const keys = Object.keys(j);
  const tail = keys.slice(-APPENDED.length);
  const rid = keys.length > APPENDED.length && keys[keys.length - APPENDED.length - 1] === 'requestId';
  return { ok: tail.join() === APPENDED.join(), requestId: rid ? j.requestId : undefined, keys };
}

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
  if (appendedOf(j).requestId !== undefined) delete ev.requestId;
  return ev;
}

// Every number 1..max of each sandbox delivered or named by a telkin.dropped record: the gaps.
function seqGaps(delivered, covered) {
  const gaps = [];
  for (const [sandbox, seqs] of delivered) {
    const ranges = covered.get(sandbox) || [];
    const max = Math.max(...seqs, ...ranges.map((r) => r[1]));
    for (let n = 1; n <= max; n++) {
      if (!seqs.has(n) && !ranges.some(([lo, hi]) => n >= lo && n <= hi)) gaps.push(`${sandbox.slice(0, 8)}:${n}`);
    }
  }
  return gaps;
}

/**
 * Compare the stream with what the simulator emitted.
 * Also checks what a consumer checks (README, record format): every "seq" of a sandbox from 1 to
 * the highest is delivered or named by a telkin.dropped record (allowGaps: reported, not a
 * problem; others: records the caller checks itself, numbered all the same), one event per
 * (sandbox, seq), and the appended "requestId" against the invocation that wrote each line.
 * @returns {{expected, arrived, missing, duplicates, unexpected, dropped, problems, gaps, sandbox, sandboxes}}
 * maxSandboxes: how many sandbox ids may appear (2 across a SnapStart restore).
 */
function compare(sim, records, {
  types = ['platform', 'function'], pk = 'sandbox', requireAllBeforeShutdown = true, maxSandboxes = 1,
  allowGaps = false, others = [],
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
    const e = want.get(key) || { n: 0, ev: r.event, rec: r };
    e.n++;
    want.set(key, e);
  }
  const got = new Map();
  const dropped = [];
  const unexpected = [];
  const sandboxes = new Set();
  const delivered = new Map();   // sandbox -> Set of seq
  const covered = new Map();     // sandbox -> [[lo, hi]] from telkin.dropped
  const bySeq = new Map();       // sandbox:seq -> canon: a duplicate must be the same event
  const managed = sim.o.mode === 'lambda-managed-instances';
  let badShape = 0;
  for (const rec of records) {
    const j = rec.json;
    if (!j || typeof j !== 'object' || Array.isArray(j)) {
      problems.push(`record is not a JSON object: ${rec.data.slice(0, 120)}`);
      continue;
    }
    const app = appendedOf(j);
    if (!app.ok) {
      if (badShape++ < 3) problems.push(`record does not end with the appended members ${APPENDED}: keys ${app.keys}`);
    }
    if (!Number.isSafeInteger(j.seq) || j.seq < 1) problems.push(`"seq" is ${JSON.stringify(j.seq)}, want an integer >= 1`);
    if (j.function !== fnName) problems.push(`"function" is ${JSON.stringify(j.function)}, want ${JSON.stringify(fnName)}`);
    if (j.version !== fnVersion) problems.push(`"version" is ${JSON.stringify(j.version)}, want ${JSON.stringify(fnVersion)}`);
    if (j.region !== region) problems.push(`"region" is ${JSON.stringify(j.region)}, want ${JSON.stringify(region)}`);
    if (typeof j.sandbox !== 'string' || !j.sandbox) problems.push(`"sandbox" missing or empty: ${JSON.stringify(j.sandbox)}`);
    sandboxes.add(j.sandbox);
    const ev = stripAppended(j);
    {
      const id = `${j.sandbox}:${j.seq}`;
      const c = canon(ev);
      if (bySeq.has(id) && bySeq.get(id) !== c) problems.push(`two different events carry sandbox/seq ${id}`);
      bySeq.set(id, c);
      if (!delivered.has(j.sandbox)) delivered.set(j.sandbox, new Set());
      delivered.get(j.sandbox).add(j.seq);
    }
    if (pk === 'sandbox' && rec.partitionKey !== j.sandbox) {
      problems.push(`partition key ${JSON.stringify(rec.partitionKey)} != sandbox ${JSON.stringify(j.sandbox)}`);
    }
    if (pk === 'request') {
      const rid = ev.record && typeof ev.record === 'object' ? ev.record.requestId : undefined;
      if (rid && rec.partitionKey !== rid) problems.push(`partition key ${rec.partitionKey} != requestId ${rid} (${ev.type})`);
    }
    if (ev.type === 'telkin.dropped') {
      dropped.push(ev);
      const ranges = ev.record && ev.record.seqRanges;
      if (!Array.isArray(ranges)) problems.push('telkin.dropped without seqRanges');
      else covered.set(j.sandbox, [...(covered.get(j.sandbox) || []), ...ranges]);
      continue;
    }
    const key = canon(ev);
    if (!want.has(key)) { unexpected.push(ev); continue; }
    got.set(key, (got.get(key) || 0) + 1);
    // requestId: the invocation that wrote the line (a JSON log's own), never a guess.
    const w = want.get(key).rec;
    if (ev.type === 'function') {
      const own = ev.record && typeof ev.record === 'object' ? ev.record.requestId : undefined;
      const truth = own ?? (managed ? undefined : w.requestId);
      if (app.requestId !== truth) {
        problems.push(`requestId ${JSON.stringify(app.requestId)} on ${describe(ev)}, want ${JSON.stringify(truth)}`);
      }
    } else if (ev.type === 'platform' || String(ev.type).startsWith('platform.')) {
      if (app.requestId !== undefined) problems.push(`requestId appended to a platform event: ${describe(ev)}`);
    }
  }
  // Records the caller checks itself (e.g. batches a test posted): numbered all the same.
  for (const rec of others) {
    const j = rec.json;
    if (!j || !j.sandbox || !Number.isSafeInteger(j.seq)) continue;
    if (!delivered.has(j.sandbox)) delivered.set(j.sandbox, new Set());
    delivered.get(j.sandbox).add(j.seq);
  }
  const gaps = seqGaps(delivered, covered);
  if (gaps.length && !allowGaps) {
    problems.push(`${gaps.length} sequence numbers neither delivered nor named by telkin.dropped, e.g. ${gaps.slice(0, 5).join(' ')}`);
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
    expected: expected.length, arrived: records.length, missing, duplicates, unexpected, dropped, problems, gaps,
    sandbox: [...sandboxes][0], sandboxes: [...sandboxes],
  };
}

module.exports = { APPENDED, canon, describe, compare, stripAppended, recordLines, appendedOf };

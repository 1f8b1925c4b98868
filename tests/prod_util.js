'use strict';
// Shared harness of the JS suites (e2e, modes, tls, faults, creds, kinesis_local):
// a test PKI made with the openssl CLI, telkin in the Lambda simulator against any endpoint,
// telkin's exit summary parsed, a Kinesis JSON client over HTTPS with a given CA, and the
// event-by-event assertions (assertClean, assertShutdown, what of an invoke is in the stream).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const net = require('node:net');
const https = require('node:https');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const { LambdaSim } = require('./lambda_sim');
const { KinesisClient } = require('./kinesis');
const { describe, canon, stripAppended } = require('./compare');

const BIN = path.resolve(__dirname, process.env.TELKIN_BIN || '../build/telkin');
const WRAPPER = (process.env.TELKIN_BIN_WRAPPER || '').split(/\s+/).filter(Boolean);
const ECHO = !!process.env.E2E_ECHO;

const AKID = 'AKIDPRODTEST0000';
const SECRET = 'prodTestSecret/K7MDENG/bPxRfiCYEXAMPLEKEY';

function tmpDir(prefix) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * A throw-away PKI in a temporary directory:
 *   ca          the test CA (CA:TRUE), ca.pem is what telkin gets as TELKIN_CA_FILE
 *   good        RSA 2048 leaf for DNS:localhost, signed by the CA
 *   goodEc      P-256 leaf for DNS:localhost, signed by the CA
 *   expired     leaf for DNS:localhost whose notAfter is in the past
 *   wrongHost   leaf for DNS:kinesis.example.com only
 *   unknownCa   leaf for DNS:localhost signed by another CA that telkin does not know
 * Each leaf is {key, cert} (PEM strings); cert holds the leaf only.
 */
function makePki() {
  const dir = tmpDir('telkin-pki-');
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1'];
  const mkCa = (name, cn) => openssl(['req', '-x509', ...ec, '-nodes', '-keyout', `${name}.key`, '-out', `${name}.pem`,
    '-days', '3', '-subj', `/CN=${cn}`, '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  mkCa('ca', 'telkin test CA');
  mkCa('other-ca', 'some other CA');
  const leaf = (name, { rsa = false, dns = 'localhost', days = '2', ca = 'ca' } = {}) => {
    const key = rsa ? ['-newkey', 'rsa:2048'] : ec;
    openssl(['req', '-new', ...key, '-nodes', '-keyout', `${name}.key`, '-subj', `/CN=${dns}`, '-out', `${name}.csr`], dir);
    fs.writeFileSync(path.join(dir, `${name}.ext`),
      `subjectAltName=DNS:${dns}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n` +
      'keyUsage=critical,digitalSignature,keyEncipherment\n');
    openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-set_serial',
      String(Math.floor(Math.random() * 1e9)), '-days', days, '-extfile', `${name}.ext`, '-out', `${name}.pem`], dir);
    return { key: fs.readFileSync(path.join(dir, `${name}.key`), 'utf8'), cert: fs.readFileSync(path.join(dir, `${name}.pem`), 'utf8') };
  };
  return {
    dir,
    caFile: path.join(dir, 'ca.pem'),
    caPem: fs.readFileSync(path.join(dir, 'ca.pem'), 'utf8'),
    good: leaf('good', { rsa: true }),
    goodEc: leaf('good-ec'),
    // -days -1: notAfter is a day before notBefore, i.e. in the past.
    expired: leaf('expired', { days: '-1' }),
    wrongHost: leaf('wrong-host', { dns: 'kinesis.example.com' }),
    unknownCa: leaf('unknown-ca', { ca: 'other-ca' }),
  };
}

const { freePort } = require('./ports');

function tail(lines, n = 25) { return lines.slice(-n).join('\n'); }

/**
 * telkin in the simulator with the given environment. Registers cleanup with t.after().
 * env: null deletes a variable (e.g. AWS_ACCESS_KEY_ID: null).
 */
async function startSim(t, { env = {}, sim = {}, waitInit = true } = {}) {
  const port = await freePort();
  const full = {
    AWS_ACCESS_KEY_ID: AKID,
    AWS_SECRET_ACCESS_KEY: SECRET,
    TELKIN_LISTEN_PORT: String(port),
    // Ship at the end of every invoke (what these suites assert on: the freeze budget, one
    // request per invoke); TELKIN_FLUSH=auto would switch to periodic for back-to-back invokes.
    TELKIN_FLUSH: 'end',
    ...env,
  };
  // null deletes: passed on, LambdaSim removes null variables after merging its own (so a test can
  // also remove one the simulator sets, e.g. AWS_LAMBDA_INITIALIZATION_TYPE).
  const s = new LambdaSim({ bin: BIN, wrapper: WRAPPER, env: full, echo: ECHO, functionName: 'telkin-prod', ...sim });
  t.after(() => s.close());
  await s.start();
  if (waitInit) {
    await s.waitInit().catch((e) => {
      throw new Error(`telkin did not finish init: ${e.message}\n--- stderr ---\n${tail(s.stderrLines)}`);
    });
  }
  return s;
}

/**
 * A fault-injecting PutRecords stub (kinesis_stub.js) with its script, and telkin in the
 * simulator shipping to it (stream 'faults' unless env says otherwise). Both are closed by
 * t.after(); h (withDiagnostics' holder) gets them for failure messages.
 */
async function stubAndSim(t, h, { script = [], env = {}, sim = {}, setup } = {}) {
  const { KinesisStub } = require('./kinesis_stub');
  const stub = new KinesisStub();
  await stub.start();
  t.after(() => stub.close());
  stub.script(script);
  if (setup) setup(stub);
  h.stub = stub;
  h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'faults', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, ...env },
    sim,
  });
  return { stub, sim: h.sim };
}

// telkin's exit summary line as numbers (print_summary in telkin.c).
function parseSummary(lines) {
  const line = lines.find((l) => l.includes('events received') && l.includes('PutRecords calls'));
  if (!line) return null;
  const num = (re) => { const m = line.match(re); return m ? Number(m[1]) : undefined; };
  return {
    line,
    received: num(/events received (\d+)/),
    queued: num(/queued (\d+)/),
    // "records shipped N ... in C PutRecords calls" or "shipped N (B bytes) in R records and C
    // PutRecords calls": events shipped, and PutRecords calls.
    shipped: num(/shipped (\d+)/),
    calls: num(/(\d+) PutRecords calls/),
    failedCalls: num(/\((\d+) failed\)/),
    retried: num(/retried (\d+)/),
    throttled: num(/throttled (\d+)/),
    refused: num(/refused (\d+)/),
    connections: num(/connections (\d+)/),
    lostAtExit: num(/lost at exit (\d+)/),
    // Of those, in a request with no answer by the deadline: they may have arrived.
    unanswered: num(/unanswered (\d+)/) || 0,
  };
}

// On failure, append telkin's output and the simulator's summary to the assertion message.
function withDiagnostics(body) {
  return async (t) => {
    const holder = {};
    try {
      await body(t, holder);
    } catch (e) {
      const sim = holder.sim;
      if (sim) {
        e.message += `\n--- telkin stderr (tail) ---\n${tail(sim.stderrLines, 30)}` +
          `\n--- simulator ---\n${JSON.stringify(sim.summary())}`;
      }
      if (holder.stub) {
        e.message += `\n--- stub requests ---\n${holder.stub.requests.map((r) =>
          `#${r.n} conn ${r.conn} records ${r.records} action ${JSON.stringify(r.action)} status ${r.status} stored ${r.stored}`).join('\n')}`;
      }
      throw e;
    }
  };
}

function assertShutdown(sd, sim) {
  assert.ok(!sd.overrun, `telkin did not exit before the SHUTDOWN deadline (killed after ${sd.shutdownToExitMs} ms)`);
  assert.equal(sd.code, 0, `telkin exit code after SHUTDOWN: ${sd.code} (signal ${sd.signal})`);
  assert.ok(sd.shutdownToExitMs < sim.o.shutdownDeadlineMs, `exit ${sd.shutdownToExitMs} ms after SHUTDOWN`);
}

// The comparison is clean: nothing missing, nothing altered, no telkin.dropped (unless allowed).
// Duplicates are reported, not failed (at-least-once).
function assertClean(t, cmp, { allowMissing = 0, allowDropped = false } = {}) {
  if (cmp.duplicates) t.diagnostic(`duplicates (allowed, at-least-once): ${cmp.duplicates}`);
  const msgs = [...new Set(cmp.problems)].slice(0, 10);
  if (cmp.unexpected.length) {
    msgs.push(`${cmp.unexpected.length} records match no emitted event of a forwarded type (altered or not forwarded), e.g.\n  ` +
      cmp.unexpected.slice(0, 3).map((e) => JSON.stringify(e).slice(0, 300)).join('\n  '));
  }
  if (cmp.missing.length > allowMissing) {
    msgs.push(`${cmp.missing.length} of ${cmp.expected} expected events missing from the stream, e.g.\n  ` +
      cmp.missing.slice(0, 5).map(describe).join('\n  '));
  }
  if (!allowDropped && cmp.dropped.length) {
    msgs.push(`unexpected telkin.dropped records: ${JSON.stringify(cmp.dropped.map((d) => d.record))}`);
  }
  t.diagnostic(`expected ${cmp.expected}, records ${cmp.arrived}, missing ${cmp.missing.length}, ` +
    `duplicates ${cmp.duplicates}, telkin.dropped ${cmp.dropped.length}`);
  assert.ok(msgs.length === 0, msgs.join('\n'));
}

// Events of invoke `inv` through platform.runtimeDone that are of a forwarded type.
function invokeHead(inv, types) {
  return inv.events.filter((e) => e.seq <= inv.runtimeDoneSeq && types.includes(e.category));
}

// Which of the simulator's emitted events (records of sim.emitted) are not among `records`
// (Kinesis records as KinesisClient.readAll / KinesisStub.accepted give them).
function absentFrom(records, events) {
  const inStream = new Set(records.filter((r) => r.json).map((r) => canon(stripAppended(r.json))));
  return events.filter((e) => !inStream.has(canon(JSON.parse(e.json))));
}

// Every invoke ended (telkin called /event/next) within the flush budget after runtimeDone.
function assertFreezeBudget(sim, budgetMs, slackMs = 400) {
  for (const inv of sim.invokes) {
    if (!inv.extensionNextAt || !inv.runtimeDoneAt) continue;
    const held = inv.extensionNextAt - inv.runtimeDoneAt;
    assert.ok(held <= budgetMs + slackMs,
      `invoke ${inv.index}: /event/next came ${held} ms after runtimeDone (budget ${budgetMs} ms)`);
  }
}

/** KinesisClient over HTTPS, trusting our test CA (the call itself is KinesisClient's). */
class TlsKinesisClient extends KinesisClient {
  constructor(endpoint, region, ca) {
    super(endpoint, region);
    this.agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca });
  }

  close() { this.agent.destroy(); }
}

/**
 * The reference consumer as the oracle: tests/consumer/telkin-check.js reads the whole stream
 * (through `endpoint`, trusting `ca`) and must find `sandboxes` sandboxes, every number from 1 to
 * the highest delivered or reported dropped, no foreign record, and the events exact: those that
 * arrived (telkin.dropped records aside) plus the numbers reported dropped are the events the
 * simulator emitted of the forwarded `types` and telkin acknowledged (`expected` overrides that
 * count). Duplicates are reported, not failed (at-least-once). With `dropped`, the verdict is
 * "complete, N reported dropped" with N the sum of droppedRecords; else "complete".
 * Returns the consumer's report.
 */
async function assertConsumerComplete(t, sim, { stream, endpoint, ca, types = ['platform', 'function'], sandboxes = 1,
  dropped = false, expected } = {}) {
  const { runCheck } = require('./consumer_util');
  const r = await runCheck(stream, { endpoint, ca });
  assert.ok(r.report, `telkin-check gave no report (exit ${r.code}): ${r.stderr}${r.stdout.slice(0, 500)}`);
  const rep = r.report;
  const brief = rep.sandboxes.map((s) => `${s.sandbox}: ${s.events} events, max seq ${s.maxSeq}, missing ${s.missing} ` +
    `${JSON.stringify(s.missingRanges.slice(0, 5))}, dropped ${s.covered}, duplicates ${s.duplicates}: ${s.verdict}`);
  t.diagnostic(`telkin-check: ${rep.verdict}; ${rep.records} records, foreign ${rep.foreign}; ${brief.join('; ')}`);
  const emitted = expected ?? sim.emitted.filter((e) => types.includes(e.category) && e.acked).length;
  const reports = rep.sandboxes.reduce((n, s) => n + s.droppedReports, 0);
  const reported = rep.sandboxes.reduce((n, s) => n + s.reportedDropped, 0);
  const want = dropped ? `complete, ${reported} reported dropped` : 'complete';
  assert.equal(rep.verdict, want, brief.join('\n'));
  assert.equal(r.code, 0, r.stderr);
  assert.equal(rep.foreign, 0, 'every record is a telkin event with sandbox and seq');
  assert.equal(rep.sandboxes.length, sandboxes, 'sandboxes');
  assert.equal(rep.totals.events - reports + rep.totals.covered, emitted, `events: ${rep.totals.events} arrived ` +
    `(${reports} of them telkin.dropped) and ${rep.totals.covered} reported dropped, for the ${emitted} forwarded ` +
    'events telkin acknowledged');
  for (const s of rep.sandboxes) {
    assert.equal(s.events + s.covered, s.maxSeq, `${s.sandbox}: every number 1..${s.maxSeq} delivered or reported dropped`);
  }
  if (dropped) assert.ok(reported > 0, 'telkin.dropped records reported drops');
  return rep;
}

// Everything telkin wrote, stdout and stderr.
function allOutput(sim) { return [...sim.stdoutLines, ...sim.stderrLines].join('\n'); }

module.exports = {
  BIN, AKID, SECRET, makePki, freePort, tail, startSim, stubAndSim, parseSummary, withDiagnostics, assertShutdown,
  assertClean, assertFreezeBudget, TlsKinesisClient, allOutput, tmpDir, invokeHead, absentFrom, WRAPPER, ECHO,
  assertConsumerComplete,
};

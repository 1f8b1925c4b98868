'use strict';
// The sandbox (telkin.c, "Least privilege"; make sandbox-test). After start-up telkin runs under a
// seccomp filter that allows exactly its loop's system calls, a refused call failing with EPERM.
//   - build/escape/telkin (TELKIN_ESCAPE_BIN; the shipped recipe plus -DTELKIN_TEST_ESCAPE, never
//     shipped) tries, once the filter is on, what injected code would: execve a shell, fork, clone,
//     open a file for writing (or with O_CREAT), a listening TCP socket, an AF_UNIX socket, an
//     executable mapping, kill, ptrace, sched_setaffinity. Each is refused, nothing is left on
//     disk, and telkin keeps shipping every event; a read-only open still works (SECURITY.md says
//     why).
//   - the shipped binary (TELKIN_BIN) takes every path that runs after start with no call refused:
//     TLS to a host name (the resolver reads /etc/hosts at each connect), reconnects, container
//     credentials with a token file read at each fetch, a refresh, a SnapStart restore
//     (getrandom, connections and credentials dropped and fetched anew), SHUTDOWN, the EMF line.
//   - TELKIN_SANDBOX=0 turns it off; any other value but 1 is a configuration error.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { KinesisStub } = require('./kinesis_stub');
const { compare } = require('./compare');
const {
  makePki, startSim, parseSummary, withDiagnostics, assertShutdown, assertClean, tmpDir,
} = require('./prod_util');

const ESCAPE_BIN = path.resolve(__dirname, process.env.TELKIN_ESCAPE_BIN || '../build/escape/telkin');
const TYPES = ['platform', 'function'];
const d = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withDiagnostics(fn));

function sandboxOf(sim) {
  const sum = parseSummary(sim.stderrLines);
  assert.ok(sum, 'telkin printed its summary line at exit');
  const m = /; sandbox (\w+), system calls denied (\d+)/.exec(sum.line);
  assert.ok(m, `the summary says whether the sandbox was on: ${sum.line}`);
  return { state: m[1], denied: Number(m[2]), refusals: sim.stderrLines.filter((l) => l.includes('sandbox: system call')) };
}

async function stubFor(t, h, o = {}) {
  const stub = new KinesisStub(o);
  await stub.start();
  t.after(() => stub.close());
  h.stub = stub;
  return stub;
}

async function runInvokes(sim, n, lines = 5) {
  for (let i = 0; i < n; i++) await sim.invoke({ lines });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
}

d('escape attempts after start are refused with EPERM; telkin keeps shipping every event', async (t, h) => {
  assert.ok(fs.existsSync(ESCAPE_BIN), `${ESCAPE_BIN} not built (make build/escape/telkin)`);
  const dir = tmpDir('telkin-escape-');
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'sandbox', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_TEST_ESCAPE: dir },
    sim: { bin: ESCAPE_BIN },
  });
  await runInvokes(sim, 10);
  const out = sim.stderrLines.join('\n');
  const refused = ['execve /bin/sh', 'fork', 'clone', 'open for writing', 'open read-only with O_CREAT',
    'listening TCP socket', 'AF_UNIX socket', 'executable mapping', 'kill', 'ptrace', 'sched_setaffinity'];
  const attempts = sim.stderrLines.filter((l) => l.includes('escape test')).join('\n');
  for (const what of refused) {
    // musl's mmap turns EPERM into ENOMEM for an anonymous mapping: refused all the same.
    const errno = what === 'executable mapping' ? 'Out of memory' : 'Operation not permitted';
    assert.ok(out.includes(`escape test: ${what}: ${errno}`), `${what} was not refused:\n${attempts}`);
  }
  // What the filter cannot refuse without breaking the credentials token file (SECURITY.md).
  assert.ok(out.includes('escape test: open read-only /proc/self/environ: ALLOWED'));
  assert.deepEqual(fs.readdirSync(dir), [], 'nothing was written or executed');
  const sb = sandboxOf(sim);
  assert.equal(sb.state, 'on');
  assert.ok(sb.denied >= refused.length, `system calls denied ${sb.denied}, attempts ${refused.length}`);
  // Each refused number is logged once: execve (59) among them, and no number twice.
  for (const nr of [59 /* execve */, 57 /* fork */, 56 /* clone */, 2 /* open */, 50 /* listen */,
    41 /* socket */, 9 /* mmap */, 62 /* kill */, 101 /* ptrace */, 203 /* sched_setaffinity */]) {
    assert.ok(sb.refusals.some((l) => l.includes(`system call ${nr} refused`)), `${nr}:\n${sb.refusals.join('\n')}`);
  }
  assert.equal(new Set(sb.refusals).size, sb.refusals.length, sb.refusals.join('\n'));
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
});

d('every path after start runs with no call refused: TLS to a host name, reconnects, token file, refresh, SnapStart restore', async (t, h) => {
  const pki = makePki();
  const stub = await stubFor(t, h, { tls: pki.goodEc });
  const dir = tmpDir('telkin-sandbox-');
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, 'sandboxAuthToken\n');
  // The provider: credentials expiring within 5 minutes, so that each send refreshes them (the
  // token file read again, a new connection, under the filter).
  const requests = [];
  const server = http.createServer((req, res) => {
    requests.push(req.headers.authorization);
    const exp = new Date(Date.now() + 120e3).toISOString().replace(/\.\d{3}Z$/, 'Z');
    res.end(JSON.stringify({ AccessKeyId: 'ASIASANDBOX', SecretAccessKey: 'sandboxSecret', Token: 'sandboxToken', Expiration: exp }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
  // Every other request closes its connection: the next one reconnects (resolver, socket, TLS).
  let n = 0;
  stub.decide = () => (++n % 2 === 0 ? { close: true } : null);
  const sim = h.sim = await startSim(t, {
    env: {
      TELKIN_STREAM: 'sandbox', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_CA_FILE: pki.caFile,
      AWS_ACCESS_KEY_ID: null, AWS_SECRET_ACCESS_KEY: null,
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `http://localhost:${server.address().port}/creds`,
      AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: tokenFile,
      AWS_LAMBDA_INITIALIZATION_TYPE: 'snap-start',
    },
  });
  await runInvokes(sim, 6);
  const sb = sandboxOf(sim);
  assert.equal(sb.state, 'on');
  assert.deepEqual(sb.refusals, [], 'no system call was refused');
  assert.equal(sb.denied, 0);
  assert.ok(sim.stderrLines.some((l) => l.includes('restored from a snapshot')), 'the SnapStart restore ran');
  assert.ok(requests.length >= 3, `credentials fetched ${requests.length} times (start, restore, refreshes)`);
  assert.ok(requests.every((a) => a === 'sandboxAuthToken'), 'the token file was read at each fetch');
  assert.ok(stub.tlsConnections >= 3, `TLS connections ${stub.tlsConnections}: reconnects happened`);
  assert.ok(sim.stdoutLines.some((l) => l.includes('"CloudWatchMetrics"')), 'the EMF line was written');
  const cmp = compare(sim, stub.accepted, { types: TYPES });
  // SnapStart: init's records carry the snapshot's sandbox id, later ones the restored copy's.
  cmp.problems = cmp.problems.filter((p) => p !== '2 different sandbox ids in one telkin process');
  assertClean(t, cmp);
});

d('TELKIN_SANDBOX=0 runs without the sandbox and says so', async (t, h) => {
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'sandbox', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_SANDBOX: '0' },
  });
  await runInvokes(sim, 2);
  assert.equal(sandboxOf(sim).state, 'off');
  assert.ok(sim.stderrLines.some((l) => l.includes('TELKIN_SANDBOX=0')), 'said at start');
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
});

d('TELKIN_SANDBOX other than 0 or 1: init/error Extension.ConfigInvalid', async (t, h) => {
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'sandbox', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_SANDBOX: 'yes' },
    waitInit: false,
  });
  const ex = await sim.waitExit({ timeoutMs: 5000 }).catch(() => null);
  assert.ok(ex, 'telkin exited');
  assert.notEqual(ex.code, 0);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.ConfigInvalid']);
});

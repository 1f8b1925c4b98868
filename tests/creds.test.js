'use strict';
// Container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI, as Lambda SnapStart and Managed
// Instances provide them): a provider server in the test, telkin started without
// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, PutRecords checked at the stub (kinesis_stub.js):
// the provider's key id in the Credential scope, its session token in X-Amz-Security-Token and a
// SigV4 signature that verifies with its secret key. Refresh before expiry, refusal of a failing
// or non-loopback provider at start, and no secret in anything telkin prints.

const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const { KinesisStub, verifySigV4 } = require('./kinesis_stub');
const { compare } = require('./compare');
const {
  startSim, parseSummary, withDiagnostics, assertShutdown, assertClean, allOutput, tmpDir,
} = require('./prod_util');

const TYPES = ['platform', 'function'];
const AUTH_TOKEN = 'authTokenZ9x8c7v6b5n4m3-SECRET-never-logged';
const keys = (n) => ({
  AccessKeyId: `ASIAPROVIDERKEY${n}`,
  SecretAccessKey: `providerSecret${n}/wJalrXUtnFEMI/K7MDENG+bPxRfiCY`,
  Token: `IQoJb3JpZ2luX2VjEXAMPLEsessionToken${n}${'A'.repeat(600)}/+=`,
});
const SECRETS = [AUTH_TOKEN, ...[1, 2, 3].flatMap((n) => [keys(n).SecretAccessKey, keys(n).Token])];

const d = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withDiagnostics(fn));

/** The credentials provider: answers[i] for the i-th request, then the last one again. */
async function provider(t, answers) {
  const p = { requests: [], port: 0 };
  const server = http.createServer((req, res) => {
    p.requests.push({ at: Date.now(), method: req.method, url: req.url, authorization: req.headers.authorization });
    const a = answers[Math.min(p.requests.length - 1, answers.length - 1)];
    const body = typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    res.writeHead(a.status || 200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  p.port = server.address().port;
  p.uri = `http://127.0.0.1:${p.port}/creds`;
  t.after(() => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return p;
}

const expiresIn = (ms) => new Date(Date.now() + ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
const good = (n, ms = 3600e3) => ({ body: { ...keys(n), Expiration: expiresIn(ms), Code: 'Success', Type: 'AWS-HMAC' } });

function containerEnv(p, extra = {}) {
  return {
    AWS_ACCESS_KEY_ID: null, AWS_SECRET_ACCESS_KEY: null, AWS_SESSION_TOKEN: null,
    AWS_CONTAINER_CREDENTIALS_FULL_URI: p.uri, AWS_CONTAINER_AUTHORIZATION_TOKEN: AUTH_TOKEN, ...extra,
  };
}

async function stubFor(t, h) {
  const stub = new KinesisStub();
  await stub.start();
  t.after(() => stub.close());
  h.stub = stub;
  return stub;
}

// Every PutRecords request was signed with credentials n.
function assertSignedWith(stub, n, from = 0, to = undefined) {
  for (const r of stub.requests.slice(from, to)) {
    assert.match(r.headers.authorization, new RegExp(`Credential=${keys(n).AccessKeyId}/`), `request ${r.n}: ${r.headers.authorization}`);
    assert.equal(r.headers['x-amz-security-token'], keys(n).Token, `request ${r.n}: X-Amz-Security-Token`);
    assert.equal(verifySigV4(r, keys(n).SecretAccessKey), null, `request ${r.n}: signature with secret ${n}`);
  }
}

function assertNoSecrets(sim, extra = []) {
  const text = allOutput(sim) + sim.initErrors.map((e) => e.body).join('\n') + sim.exitErrors.map((e) => e.body).join('\n');
  for (const s of [...SECRETS, ...extra]) {
    assert.ok(!text.includes(s), `telkin printed a secret (${s.slice(0, 12)}...)`);
    // A prefix long enough to be a leak, too (truncated log lines).
    assert.ok(!text.includes(s.slice(0, 24)), `telkin printed the start of a secret (${s.slice(0, 12)}...)`);
  }
}

async function runInvokes(sim, n, lines = 5) {
  for (let i = 0; i < n; i++) await sim.invoke({ lines });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
}

// ---------------------------------------------------------------------------------------------

d('AWS_CONTAINER_AUTHORIZATION_TOKEN: provider asked once with the token; PutRecords signed with its credentials', async (t, h) => {
  const p = await provider(t, [good(1)]);
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug', ...containerEnv(p) },
  });
  await runInvokes(sim, 3);
  assert.equal(p.requests.length, 1, `provider asked ${p.requests.length} times for credentials valid 1 h`);
  assert.equal(p.requests[0].method, 'GET');
  assert.equal(p.requests[0].url, '/creds');
  assert.equal(p.requests[0].authorization, AUTH_TOKEN);
  assert.ok(stub.requests.length >= 3);
  assertSignedWith(stub, 1);
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
  assertNoSecrets(sim);
});

d('AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: the token is read from the file (trailing newline trimmed)', async (t, h) => {
  const p = await provider(t, [good(1)]);
  const stub = await stubFor(t, h);
  const file = path.join(tmpDir('telkin-token-'), 'token');
  fs.writeFileSync(file, `${AUTH_TOKEN}\n`);
  const sim = h.sim = await startSim(t, {
    env: {
      TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug',
      ...containerEnv(p, { AWS_CONTAINER_AUTHORIZATION_TOKEN: null, AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: file }),
    },
  });
  await runInvokes(sim, 2);
  assert.equal(p.requests.length, 1);
  assert.equal(p.requests[0].authorization, AUTH_TOKEN);
  assertSignedWith(stub, 1);
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
  assertNoSecrets(sim);
});

d('Expiration within 5 minutes: refreshed before the next send, then not again', async (t, h) => {
  // Start: credentials 1 expiring in 2 minutes; the refresh gets credentials 2 valid 1 h.
  const p = await provider(t, [good(1, 120e3), good(2)]);
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug', ...containerEnv(p) },
  });
  assert.equal(p.requests.length, 1, 'one request at start');
  const t0 = Date.now();
  await runInvokes(sim, 3);
  assert.equal(p.requests.length, 2, `provider asked ${p.requests.length} times (start + one refresh)`);
  assert.ok(p.requests[1].at >= t0, 'the refresh happened after init');
  assert.ok(p.requests[1].at <= stub.requests[0].at, 'the refresh came before the first PutRecords');
  assert.equal(p.requests[1].authorization, AUTH_TOKEN);
  assertSignedWith(stub, 2);
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
  assertNoSecrets(sim);
});

d('ExpiredTokenException from Kinesis: credentials fetched again, the request resent with them, nothing lost', async (t, h) => {
  const p = await provider(t, [good(1), good(3)]);
  const stub = await stubFor(t, h);
  // As Kinesis does: every request signed with the expired credentials 1 is refused.
  stub.decide = (req) => (req.headers.authorization.includes(keys(1).AccessKeyId)
    ? { status: 400, type: 'ExpiredTokenException', message: 'The security token included in the request is expired' } : null);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug', ...containerEnv(p) },
  });
  await runInvokes(sim, 2);
  assert.equal(p.requests.length, 2, `provider asked ${p.requests.length} times`);
  assertSignedWith(stub, 1, 0, 1);
  assertSignedWith(stub, 3, 1);
  const cmp = compare(sim, stub.accepted, { types: TYPES });
  assertClean(t, cmp);
  const sum = parseSummary(sim.stderrLines);
  assert.equal(sum.refused, 0, sum.line);
  assertNoSecrets(sim);
}, {});

d('provider answers 500 at start: init/error Extension.CredentialsFailed, non-zero exit, no secret printed', async (t, h) => {
  const p = await provider(t, [{ status: 500, body: { message: `internal error ${AUTH_TOKEN}` } }]);
  const stub = await stubFor(t, h);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug', ...containerEnv(p) },
    waitInit: false,
  });
  const ex = await sim.waitExit({ timeoutMs: 10000 });
  assert.notEqual(ex.code, 0, `exit code ${ex.code}`);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.CredentialsFailed']);
  assert.match(sim.initErrors[0].body, /500/, `init/error body names the status: ${sim.initErrors[0].body}`);
  assert.ok(p.requests.length >= 1);
  assert.equal(stub.requests.length, 0);
  assertNoSecrets(sim);
});

d('provider not listening at start: init/error Extension.CredentialsFailed within the credentials timeout', async (t, h) => {
  const p = await provider(t, [good(1)]);
  const uri = `http://127.0.0.1:1/creds`; // nothing listens on port 1
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: 'http://127.0.0.1:9', ...containerEnv(p, { AWS_CONTAINER_CREDENTIALS_FULL_URI: uri }) },
    waitInit: false,
  });
  const ex = await sim.waitExit({ timeoutMs: 10000 });
  assert.notEqual(ex.code, 0);
  assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.CredentialsFailed']);
  assertNoSecrets(sim);
});

for (const [what, uri] of [['a host name that is not loopback', 'http://creds.invalid:8080/creds'],
  ['https (the provider is plain HTTP on loopback)', 'https://127.0.0.1:1/creds'],
  ['a link-local address other than ECS/EKS', 'http://169.254.169.254/latest/meta-data/creds']]) {
  d(`AWS_CONTAINER_CREDENTIALS_FULL_URI with ${what}: refused at start (Extension.ConfigInvalid), token never sent`, async (t, h) => {
    const sim = h.sim = await startSim(t, {
      env: {
        TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: 'http://127.0.0.1:9',
        ...containerEnv({ uri }),
      },
      waitInit: false,
    });
    const ex = await sim.waitExit({ timeoutMs: 10000 });
    assert.notEqual(ex.code, 0);
    assert.deepEqual(sim.initErrors.map((e) => e.errorType), ['Extension.ConfigInvalid']);
    assert.match(sim.initErrors[0].body, /AWS_CONTAINER_CREDENTIALS_FULL_URI/);
    assertNoSecrets(sim);
  });
}

d('secrets never printed at TELKIN_LOG_LEVEL=debug through refreshes, Kinesis errors and retries', async (t, h) => {
  const p = await provider(t, [good(1, 60e3), good(2, 60e3), good(3)]);
  const stub = await stubFor(t, h);
  stub.script([{ status: 503 }, { status: 400, type: 'ExpiredTokenException' }, { recordError: 'InternalFailure' }, { reset: true }]);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'creds', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_LOG_LEVEL: 'debug', ...containerEnv(p) },
  });
  await runInvokes(sim, 3);
  assert.ok(p.requests.length >= 3, `provider asked ${p.requests.length} times`);
  assert.ok(sim.stderrLines.length > 3, 'telkin printed debug lines');
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
  assertNoSecrets(sim);
});

'use strict';
// telkin's TLS to Kinesis against real local TLS servers, with a PKI made here by the openssl CLI
// (prod_util.makePki): telkin trusts the test CA through TELKIN_CA_FILE.
//   - a good certificate: kinesalite over HTTPS, every event arrives (RSA leaf);
//   - wrong host name, unknown CA, expired certificate, a TLS 1.0-only server: refused with a
//     clear error on stderr, no application byte reaches the server, exit 0 before the deadline;
//   - keep-alive: several invokes over one TLS connection (counted by the server);
//   - the server closing an idle connection (cleanly, then abruptly): telkin reconnects, no loss.

const test = require('node:test');
const assert = require('node:assert/strict');
const kinesalite = require('kinesalite');
const { KinesisStub } = require('./kinesis_stub');
const { compare } = require('./compare');
const {
  makePki, startSim, parseSummary, withDiagnostics, assertShutdown, assertClean, assertFreezeBudget,
  TlsKinesisClient,
} = require('./prod_util');

const TYPES = ['platform', 'function'];
let pki;

test.before(() => { pki = makePki(); });

const d = (name, fn, opts = {}) => test(name, { timeout: 60000, ...opts }, withDiagnostics(fn));

async function tlsStub(t, h, tlsOpts) {
  const stub = new KinesisStub({ tls: tlsOpts });
  await stub.start();
  t.after(() => stub.close());
  h.stub = stub;
  return stub;
}

d('good certificate (RSA leaf for localhost, test CA in TELKIN_CA_FILE): kinesalite over HTTPS gets every event', async (t, h) => {
  const server = kinesalite({
    ssl: true, key: pki.good.key, cert: pki.good.cert, ca: pki.caPem, createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0,
  });
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', resolve); });
  t.after(() => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }));
  const endpoint = `https://localhost:${server.address().port}`;
  const client = new TlsKinesisClient(endpoint, 'us-east-1', pki.caPem);
  t.after(() => client.close());
  await client.createStream('tls-good', 1);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'tls-good', AWS_ENDPOINT_URL_KINESIS: endpoint, TELKIN_CA_FILE: pki.caFile },
  });
  for (let i = 0; i < 4; i++) {
    const inv = await sim.invoke({ lines: 10 });
    assert.ok(inv.ackedBeforeNext, `invoke ${i}: /event/next before the invoke's events were acknowledged`);
  }
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  assertFreezeBudget(sim, 1000);
  const recs = await client.readAll('tls-good');
  assertClean(t, compare(sim, recs, { types: TYPES }));
  const sum = parseSummary(sim.stderrLines);
  assert.equal(sum.lostAtExit, 0, sum.line);
  assert.ok(!sim.stderrLines.some((l) => /TLS:/.test(l)), `TLS complaints: ${sim.stderrLines.filter((l) => /TLS:/.test(l))}`);
});

// The refused cases: what telkin must say, and the server options.
const REFUSED = [
  ['a certificate for another host name', () => ({ ...pki.wrongHost }), /TLS: server certificate does not match the host name/, true],
  ['a certificate from an unknown CA', () => ({ ...pki.unknownCa }), /TLS: server certificate chain is not trusted/, true],
  ['an expired certificate', () => ({ ...pki.expired }), /TLS: server certificate has expired or is not yet valid/, true],
  ['the good certificate without TELKIN_CA_FILE (built-in Amazon anchors only)', () => ({ ...pki.goodEc }),
    /TLS: server certificate chain is not trusted/, false],
  ['a TLS 1.0-only server', () => ({
    ...pki.goodEc, minVersion: 'TLSv1', maxVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0',
  }), /TLS: [^;]*(TLS 1\.2|refused the handshake)/, true,
  // OpenSSL limited to TLS 1.0 answers BearSSL's TLS 1.2-only ClientHello with a handshake_failure
  // alert (none of the offered AEAD suites exists in TLS 1.0); the message should say TLS 1.2.
  [/TLS: [^;]*TLS 1\.2/, 'a handshake_failure alert is reported as "the server refused the handshake (fatal alert)"']],
];

for (const [what, opts, message, withCa, exact] of REFUSED) {
  d(`${what}: refused with a clear error, nothing sent, exit 0 before the deadline`, async (t, h) => {
    const stub = await tlsStub(t, h, opts());
    const sim = h.sim = await startSim(t, {
      env: { TELKIN_STREAM: 'tls-bad', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, ...(withCa ? { TELKIN_CA_FILE: pki.caFile } : {}) },
    });
    for (let i = 0; i < 2; i++) await sim.invoke({ lines: 5 });
    const sd = await sim.shutdown();
    assertShutdown(sd, sim);
    assertFreezeBudget(sim, 1000);
    assert.ok(stub.connections >= 1, 'telkin never connected');
    assert.equal(stub.appBytes, 0, `the server received ${stub.appBytes} bytes of application data`);
    assert.equal(stub.requests.length, 0, 'a request reached the server');
    assert.equal(stub.tlsConnections, 0, 'a handshake completed');
    const lines = sim.stderrLines.filter((l) => message.test(l));
    assert.equal(lines.length, 1, `expected one line matching ${message} on stderr, got ${lines.length}:\n` +
      sim.stderrLines.join('\n'));
    assert.match(lines[0], /error: .*nothing was sent/);
    const sum = parseSummary(sim.stderrLines);
    assert.equal(sum.shipped, 0, sum.line);
    assert.equal(sum.lostAtExit, sum.queued, `what could not be sent is reported lost: ${sum.line}`);
    if (exact) {
      await t.test('the error names the cause', {}, () => assert.match(lines[0], exact[0]));
    }
    t.diagnostic(`${lines[0]}; server-side: ${JSON.stringify(stub.tlsErrors.slice(0, 1))}; ${stub.connections} TCP connections`);
  });
}

// Known telkin bug (reported): hc_start() on a kept-alive TLS connection calls hc_connected(),
// which br_ssl_client_reset()s the engine: a new ClientHello inside the open session, the server
// drops the connection, and the request is resent on a new one (a full handshake per request).
d('keep-alive: 5 invokes over one TLS connection (one handshake), every event arrives', async (t, h) => {
  const stub = await tlsStub(t, h, pki.goodEc);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'tls-ka', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_CA_FILE: pki.caFile },
  });
  for (let i = 0; i < 5; i++) await sim.invoke({ lines: 5 });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  assertClean(t, compare(sim, stub.accepted, { types: TYPES }));
  assert.ok(stub.requests.length >= 5, `${stub.requests.length} requests`);
  // A request on a kept-alive connection goes out at once (not when poll() next wakes up).
  assertFreezeBudget(sim, 0, 300);
  assert.equal(stub.tlsConnections, 1, `${stub.tlsConnections} TLS connections for ${stub.requests.length} requests`);
  assert.equal(new Set(stub.requests.map((r) => r.conn)).size, 1);
  const sum = parseSummary(sim.stderrLines);
  assert.equal(sum.connections, 1, `telkin counted ${sum.connections} handshakes: ${sum.line}`);
}, {});

d('the server closes idle connections (close_notify, then a bare TCP close): telkin reconnects, nothing lost', async (t, h) => {
  const stub = await tlsStub(t, h, pki.goodEc);
  const sim = h.sim = await startSim(t, {
    env: { TELKIN_STREAM: 'tls-idle', AWS_ENDPOINT_URL_KINESIS: stub.endpoint, TELKIN_CA_FILE: pki.caFile },
  });
  for (let i = 0; i < 2; i++) await sim.invoke({ lines: 5 });
  // telkin is frozen now; the server times its connection out (TLS close_notify + FIN).
  assert.equal(await stub.closeIdle(), 1, 'one idle connection to close');
  for (let i = 0; i < 2; i++) await sim.invoke({ lines: 5 });
  // Again, abruptly: no close_notify.
  assert.equal(await stub.closeIdle({ hard: true }), 1, 'one idle connection to close');
  for (let i = 0; i < 2; i++) await sim.invoke({ lines: 5 });
  const sd = await sim.shutdown();
  assertShutdown(sd, sim);
  assertFreezeBudget(sim, 1000);
  const cmp = compare(sim, stub.accepted, { types: TYPES });
  assertClean(t, cmp);
  assert.equal(cmp.duplicates, 0);
  const sum = parseSummary(sim.stderrLines);
  assert.equal(sum.failedCalls, 0, `a request failed on the way: ${sum.line}`);
  assert.ok(stub.tlsConnections >= 3, `${stub.tlsConnections} TLS connections`);
  await t.test('exactly one new connection after each close', {}, () => {
    assert.equal(stub.tlsConnections, 3, `${stub.tlsConnections} TLS connections (expected the first and two reconnects)`);
  });
});

'use strict';
// A short scenario with telkin under valgrind memcheck (make valgrind-test: TELKIN_BIN is the glibc
// host build build/host/vg/telkin, TELKIN_BIN_WRAPPER tests/valgrind_wrap.sh): init, a few invokes
// (one of them with rejected, chunked, pipelined and oversized requests on the listener and an
// event truncated to fit a Kinesis record), SHUTDOWN. telkin must exit 0 (valgrind exits 99 on any
// error) and valgrind must print "ERROR SUMMARY: 0 errors"; the stream is compared as in e2e.

const test = require('node:test');
const assert = require('node:assert/strict');
const net = require('node:net');
const path = require('node:path');
const fs = require('node:fs');
const { LambdaSim } = require('./lambda_sim');
const { Kinesalite } = require('./kinesis');
const { compare, describe } = require('./compare');

const BIN = path.resolve(__dirname, process.env.TELKIN_BIN || '../build/host/vg/telkin');
const WRAPPER = (process.env.TELKIN_BIN_WRAPPER || path.join(__dirname, 'valgrind_wrap.sh')).split(/\s+/).filter(Boolean);

const { freePort } = require('./ports');

// One connection: write `data`, resolve with the statuses of the responses read until close or
// `want` responses.
function exchange(port, data, want = 1) {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    let done = false;
    const statuses = () => [...buf.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1])).filter((s) => s >= 200);
    const finish = () => { if (!done) { done = true; clearTimeout(guard); sock.destroy(); resolve(statuses()); } };
    const guard = setTimeout(finish, 20000);
    sock.on('data', (d) => { buf += d.toString('latin1'); if (statuses().length >= want) finish(); });
    sock.on('close', finish);
    sock.on('error', () => {});
    sock.on('connect', () => sock.write(data));
  });
}

const post = (body) => `POST / HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

test('telkin under valgrind: a few invokes, hostile requests, SHUTDOWN: exit 0, ERROR SUMMARY: 0 errors', { timeout: 50000 }, async (t) => {
  assert.ok(fs.existsSync(BIN), `no telkin at ${BIN} (make build/host/vg/telkin)`);
  const k = new Kinesalite();
  await k.start();
  const sim = { close: async () => {} };
  try {
    const c = k.client();
    await c.createStream('vg', 1);
    const port = await freePort();
    const s = new LambdaSim({
      bin: BIN, wrapper: WRAPPER, echo: !!process.env.E2E_ECHO, region: k.region, functionName: 'telkin-vg',
      initTimeoutMs: 20000, functionTimeoutMs: 20000, shutdownDeadlineMs: 15000, deliveryTimeoutMs: 15000,
      env: {
        TELKIN_STREAM: 'vg', AWS_ENDPOINT_URL_KINESIS: k.endpoint, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', TELKIN_LISTEN_PORT: String(port),
        TELKIN_FLUSH: 'end', TELKIN_BUFFER_BYTES: '1048576', TELKIN_FLUSH_TIMEOUT_MS: '5000',
      },
    });
    sim.close = () => s.close();
    await s.start();
    await s.waitInit();
    await s.invoke({ lines: 20 });
    const statuses = {};
    const bigEvent = { time: new Date().toISOString(), type: 'function', record: `vg-big ${'\u00e9"'.repeat(400000)}` };
    await s.invoke({
      lines: 20,
      beforeDone: async () => {
        statuses.garbage = await exchange(port, post('{not json'));
        statuses.deep = await exchange(port, post('['.repeat(100000) + ']'.repeat(100000)));
        const bad = Buffer.from('[{"type":"x","record":"a\xffb"}]', 'latin1'); // invalid UTF-8
        statuses.utf8 = await exchange(port, Buffer.concat([Buffer.from(`POST / HTTP/1.1\r\nContent-Length: ${bad.length}\r\n\r\n`), bad]));
        statuses.head = await exchange(port, `POST / HTTP/1.1\r\nX-Pad: ${'a'.repeat(9000)}`);
        statuses.oversized = await exchange(port, `POST / HTTP/1.1\r\nContent-Length: ${3 << 20}\r\n\r\n`);
        statuses.chunkedBad = await exchange(port, 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
        const b1 = JSON.stringify([bigEvent]);
        statuses.truncated = await exchange(port, post(b1));
        statuses.pipelined = await exchange(port, post('[{"type":"x","record":1}]') + post('[]') + post('nope'), 3);
        statuses.chunked = await exchange(port, 'POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n[{"ty\r\n' +
          '12\r\npe":"y","record":2\r\n2\r\n}]\r\n0\r\n\r\n');
        statuses.method = await exchange(port, 'GET / HTTP/1.1\r\n\r\n');
      },
    });
    await s.invoke({ lines: 20 });
    const sd = await s.shutdown();
    t.diagnostic(JSON.stringify(statuses));
    const summary = s.stderrLines.filter((l) => /ERROR SUMMARY|definitely lost|in use at exit/.test(l));
    t.diagnostic(summary.join('\n'));
    const errors = s.stderrLines.filter((l) => /^==\d+== (Invalid|Conditional|Use of uninit|Syscall param|Mismatched|Source and destination)/.test(l));
    assert.deepEqual(errors, [], `valgrind errors:\n${s.stderrLines.filter((l) => /^==\d+==/.test(l)).slice(0, 60).join('\n')}`);
    assert.ok(!sd.overrun, `telkin under valgrind did not exit before the SHUTDOWN deadline (${sd.shutdownToExitMs} ms)`);
    assert.equal(sd.code, 0, `exit code ${sd.code} (signal ${sd.signal}); valgrind exits 99 on an error`);
    assert.ok(s.stderrLines.some((l) => /ERROR SUMMARY: 0 errors from 0 contexts/.test(l)),
      `no "ERROR SUMMARY: 0 errors" in telkin's stderr:\n${s.stderrLines.slice(-20).join('\n')}`);
    assert.deepEqual(statuses, {
      garbage: [400], deep: [400], utf8: [400], head: [431], oversized: [413], chunkedBad: [statuses.chunkedBad[0] === 400 ? 400 : 413],
      truncated: [200], pipelined: [200, 200, 400], chunked: [200], method: [405],
    });
    // The stream: every simulator event, plus the test's own accepted events.
    const recs = await c.readAll('vg');
    const own = recs.filter((r) => r.json && (r.json.truncated || r.json.type === 'x' || r.json.type === 'y'));
    const cmp = compare(s, recs.filter((r) => !own.includes(r)), { others: own });
    assert.deepEqual(cmp.problems, []);
    assert.equal(cmp.missing.length, 0, `missing: ${cmp.missing.slice(0, 3).map(describe).join('; ')}`);
    assert.equal(cmp.unexpected.length, 0, `unexpected: ${JSON.stringify(cmp.unexpected.slice(0, 2)).slice(0, 300)}`);
    assert.deepEqual(own.map((r) => r.json.type).sort(), ['function', 'x', 'y']);
    assert.ok(JSON.stringify(bigEvent).startsWith(own.find((r) => r.json.truncated).json.record));
  } finally {
    await sim.close();
    await k.close();
  }
});

'use strict';
// Worker thread of hostile.test.js: hostile connections to telkin's listener, in waves, in the
// proportions of MIX (the clients of issue 12: idle connections, a slowloris, a huge
// Content-Length, a 2 MiB header line, 3 MiB of '[', truncated JSON, invalid UTF-8, NUL bodies,
// GET/DELETE to random paths, HTTP/0.9 garbage, pipelined POSTs). Messages: {op:'wave', n} opens
// n connections (answers when they are connected), {op:'stop'} closes them all (answers with
// {opened, closedByTelkin, stillOpen}).

const net = require('node:net');
const { parentPort, workerData } = require('node:worker_threads');

// The attacker's clients at the default priority, whatever this thread inherited from the test's
// (which raises the simulator's thread and telkin: hostile.test.js). 0: this thread (Linux).
try { require('node:os').setPriority(0, 0); } catch { /* not permitted: unchanged */ }

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function post(body) {
  const b = Buffer.isBuffer(body) ? body : Buffer.from(body);
  return Buffer.concat([Buffer.from('POST / HTTP/1.1\r\nHost: sandbox.localdomain:4243\r\n' +
    `Content-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`), b]);
}

// Each kind: what is written, in order; [ms, data] waits ms first. Large payloads are built once.
const BIG_HEADER = Buffer.from('a'.repeat(2 << 20));
const BRACKET_CHUNK = Buffer.from(`10000\r\n${'['.repeat(0x10000)}\r\n`);
const BRACKETS_3M = post('['.repeat(3 << 20));
const KINDS = {
  idle: () => [],
  slowloris: () => ['POST / HTTP/1.1\r\nHost: x\r\nX-Slow: ', ...Array.from({ length: 200 }, () => [100, 'a'])],
  hugeLength: () => ['POST / HTTP/1.1\r\nContent-Length: 1073741824\r\n\r\n[[[['],
  hugeHeader: () => ['POST / HTTP/1.1\r\nX-Big: ', BIG_HEADER],
  brackets: () => ['POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n', ...Array.from({ length: 48 }, () => BRACKET_CHUNK)],
  bracketsLength: () => [BRACKETS_3M],
  truncated: () => [post('[{"time":"2024-01-01T00:00:00.000Z","type":"function","record":"x"')],
  stalledBody: () => ['POST / HTTP/1.1\r\nContent-Length: 60000\r\n\r\n[' + ' '.repeat(20000)],
  badUtf8: () => [post(Buffer.from([0x5b, 0x22, 0xff, 0xfe, 0xc0, 0xaf, 0x22, 0x5d]))],
  nul: () => [post(Buffer.alloc(4096))],
  randomGet: () => [`GET /${Math.random().toString(36).slice(2)} HTTP/1.1\r\nHost: x\r\n\r\n`],
  randomDelete: () => [`DELETE /${Math.random().toString(36).slice(2)}/x HTTP/1.1\r\nHost: x\r\n\r\n`],
  http09: () => ['GET /\r\n', '\x00\xff garbage \r\n\r\n'],
  pipelined: () => [Buffer.concat([post('[]'), post('[]')])],
};
// Per 1000 connections: mostly idle and slow ones (they hold slots), some of every other kind.
const MIX = { idle: 560, slowloris: 150, hugeLength: 30, hugeHeader: 10, brackets: 6, bracketsLength: 6, truncated: 30,
  stalledBody: 40, badUtf8: 30, nul: 30, randomGet: 25, randomDelete: 25, http09: 30, pipelined: 28 };

const state = { socks: new Set(), opened: 0, closedByPeer: 0, stop: false };

function conn(kind) {
  return new Promise((resolve) => {
    const sock = net.connect(workerData.port, '127.0.0.1');
    state.socks.add(sock);
    sock.on('error', () => {});
    sock.on('data', () => {});
    sock.on('close', () => { if (state.socks.delete(sock)) state.closedByPeer++; });
    sock.on('connect', async () => {
      state.opened++;
      resolve();
      for (const p of KINDS[kind]()) {
        if (state.stop || sock.destroyed) return;
        if (Array.isArray(p)) {
          await sleep(p[0]);
          if (!sock.destroyed && !state.stop) sock.write(p[1]);
        } else {
          sock.write(p);
        }
      }
    });
    setTimeout(resolve, 2000);
  });
}

function wave(n) {
  const kinds = [];
  for (const [k, c] of Object.entries(MIX)) for (let i = 0; i < Math.round(c * n / 1000); i++) kinds.push(k);
  return Promise.all(kinds.map(conn));
}

parentPort.on('message', async (m) => {
  if (m.op === 'wave') {
    await wave(m.n);
    parentPort.postMessage({ opened: state.opened });
  } else if (m.op === 'stop') {
    state.stop = true;
    const stillOpen = state.socks.size;
    for (const s of [...state.socks]) { state.socks.delete(s); s.destroy(); }
    parentPort.postMessage({ opened: state.opened, closedByTelkin: state.closedByPeer, stillOpen });
  }
});

#!/usr/bin/env node
'use strict';
// fast_sink: a minimal Kinesis-compatible PutRecords endpoint for benchmarks (make bench).
//
// An HTTP/1.1 keep-alive server on 127.0.0.1 that takes Kinesis_20131202.PutRecords requests
// (JSON 1.1 protocol), counts their records (occurrences of "PartitionKey" in the body: no JSON
// parse, no base64 decode, no signature check) and answers a valid 200 response with one
// {SequenceNumber, ShardId} per record (responses cached by record count). Anything else gets a
// 400 UnknownOperationException. Unlike kinesalite it stores nothing, so it is not the bottleneck
// (measureSink() gives its capacity; bench.js prints it).
//
// Module:  const { startSink, startSinkWorker, measureSink } = require('./fast_sink');
//   startSink({port, counters, capture, onCapture}) -> {port, stats(), close()}  (in this thread)
//   startSinkWorker({port, capture}) -> {port, stats(), close(), captured, settle()}  (own thread,
//                                    own core; stats() reads shared memory, no message round trip)
//   measureSink({port, records, requests, recordBytes}) -> {requests, records, ms, recordsPerSec}
//
// Capture (off unless asked; bench.js --only strategy,packing): the sink then also parses each
// PutRecords body and decodes every record's Data, and reports per request
//   {t, records: [{d, k, n, keys}]}
// t: arrival (the body's last byte read), process.hrtime in ms: the same monotonic clock in every
// thread of the process, so comparable with the simulator's times; d: Data bytes (decoded); k:
// PartitionKey bytes; n: events in the record (newline-separated lines, TELKIN_RECORD=ndjson);
// keys (capture 'events' only): eventKey() of each line. startSinkWorker collects the reports in
// `captured` (settle() waits until every request so far is there) and calls onCapture(report).
// TLS (bench.js --only tlsrtt): startSink/startSinkWorker({tls: {key, cert}}) serves HTTPS
// instead (endpoint https://localhost:PORT), with a session-ID cache (newSession/resumeSession:
// node keeps none of its own) unless sessionCache is false (then every new connection is a full
// handshake). closeEach: every answer carries Connection: close and the connection is closed, so
// each request needs a new connection. stats() then also counts TCP connections, TLS handshakes,
// the resumed ones (isSessionReused) and the sessions stored; startSinkWorker's sink.tlsInfo is the
// first connection's {protocol, cipher}.
// CLI:     node fast_sink.js [--port N] [--measure]

const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const { recordLines } = require('./compare');

const CTYPE = 'application/x-amz-json-1.1';
const TARGET = 'Kinesis_20131202.PutRecords';
const NEEDLE = Buffer.from('"PartitionKey"');
const SHARD = 'shardId-000000000000';
// Counter slots (Float64, exact to 2^53): records, requests, bytes, bad requests, with capture
// on, events (lines of the records' Data); TCP connections; with tls, handshakes completed, the
// resumed ones and the sessions stored.
const C_RECORDS = 0, C_REQUESTS = 1, C_BYTES = 2, C_BAD = 3, C_EVENTS = 4;
const C_CONNS = 5, C_TLS = 6, C_RESUMED = 7, C_NEWSESS = 8, C_SLOTS = 9;

const hrNowMs = () => Number(process.hrtime.bigint()) / 1e6;

// One telemetry event's identity, from its JSON text (as the simulator emitted it, or as telkin
// shipped it, identity members appended): the simulator's log line marker (sim:<id>:<invoke>:<i>)
// when there is one, else "<type>|<record.requestId>" (platform events).
const MARKER = /sim:[0-9a-f]+:[a-z0-9]+:\d+/;
function eventKey(text) {
  const m = MARKER.exec(text);
  if (m) return m[0];
  const type = /"type":"([^"]*)"/.exec(text);
  const rid = /"requestId":"([^"]*)"/.exec(text);
  return `${type ? type[1] : '?'}|${rid ? rid[1] : ''}`;
}

// A capture report for one PutRecords body (see the header).
function captureOf(t, body, withKeys) {
  const records = [];
  let parsed;
  try { parsed = JSON.parse(body); } catch { return { t, records, bad: true }; }
  for (const r of parsed.Records || []) {
    const data = Buffer.from(r.Data || '', 'base64').toString('utf8');
    const lines = recordLines(data);
    const rec = { d: Buffer.byteLength(data), k: Buffer.byteLength(r.PartitionKey || ''), n: lines.length };
    if (withKeys) rec.keys = lines.map(eventKey);
    records.push(rec);
  }
  return { t, records };
}

// The response for n records, cached: sequence numbers unique within a response.
const responses = new Map();
function responseFor(n) {
  let r = responses.get(n);
  if (!r) {
    const base = '49650000000000000000000000000000000000000000000000';
    const recs = [];
    for (let i = 0; i < n; i++) {
      const seq = base.slice(0, base.length - String(i).length) + i;
      recs.push(`{"SequenceNumber":"${seq}","ShardId":"${SHARD}"}`);
    }
    r = Buffer.from(`{"FailedRecordCount":0,"Records":[${recs.join(',')}]}`);
    if (responses.size < 1024) responses.set(n, r);
  }
  return r;
}

function countRecords(chunks) {
  // Count the needle across chunk boundaries without concatenating large bodies.
  let n = 0;
  let carry = null;
  for (let c of chunks) {
    if (carry) c = Buffer.concat([carry, c]);
    let i = c.indexOf(NEEDLE);
    while (i !== -1) { n++; i = c.indexOf(NEEDLE, i + NEEDLE.length); }
    carry = c.length >= NEEDLE.length ? c.subarray(c.length - NEEDLE.length + 1) : c;
  }
  return n;
}

/**
 * @param {object} [o]
 * @param {number} [o.port=0]
 * @param {Float64Array} [o.counters]  where the counts go (shared memory from startSinkWorker)
 * @param {string} [o.capture]         'sizes' | 'events': decode records, report each request
 * @param {function} [o.onCapture]     (report) => void
 * @param {{key, cert}} [o.tls]        serve HTTPS with this key and certificate
 * @param {boolean} [o.sessionCache=true]  with tls: resume sessions by ID
 * @param {boolean} [o.closeEach]      Connection: close on every answer
 * @param {function} [o.onTlsInfo]     ({protocol, cipher}) => void, at the first handshake
 */
function startSink(o = {}) {
  const counters = o.counters || new Float64Array(C_SLOTS);
  const opts = { keepAliveTimeout: 60000, noDelay: true };
  const handler = (req, res) => {
    const chunks = [];
    let bytes = 0;
    req.on('data', (c) => { chunks.push(c); bytes += c.length; });
    req.on('end', () => {
      const t = o.capture ? hrNowMs() : 0;
      counters[C_REQUESTS]++;
      counters[C_BYTES] += bytes;
      if (req.method !== 'POST' || req.headers['x-amz-target'] !== TARGET) {
        counters[C_BAD]++;
        const body = JSON.stringify({ __type: 'UnknownOperationException', message: 'PutRecords only' });
        res.writeHead(400, { 'Content-Type': CTYPE, 'Content-Length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      const n = countRecords(chunks);
      counters[C_RECORDS] += n;
      if (o.capture) {
        const rep = captureOf(t, Buffer.concat(chunks).toString('utf8'), o.capture === 'events');
        for (const r of rep.records) counters[C_EVENTS] += r.n;
        if (o.onCapture) o.onCapture(rep);
      }
      const body = responseFor(n);
      const head = { 'Content-Type': CTYPE, 'Content-Length': body.length, 'x-amzn-RequestId': 'fast-sink' };
      if (o.closeEach) head.Connection = 'close';
      res.writeHead(200, head);
      res.end(body);
    });
  };
  const server = o.tls ? https.createServer({ ...opts, key: o.tls.key, cert: o.tls.cert }, handler)
    : http.createServer(opts, handler);
  server.on('connection', () => { counters[C_CONNS]++; });
  if (o.tls) {
    server.on('secureConnection', (s) => {
      counters[C_TLS]++;
      if (s.isSessionReused()) counters[C_RESUMED]++;
      if (o.onTlsInfo && counters[C_TLS] === 1) {
        o.onTlsInfo({ protocol: s.getProtocol(), cipher: s.getCipher().name, reused: s.isSessionReused() });
      }
    });
    if (o.sessionCache !== false) {
      const cache = new Map();
      server.on('newSession', (id, data, cb) => {
        counters[C_NEWSESS]++;
        if (cache.size >= 1000) cache.delete(cache.keys().next().value);
        cache.set(id.toString('hex'), data);
        cb();
      });
      server.on('resumeSession', (id, cb) => cb(null, cache.get(id.toString('hex')) || null));
    }
  }
  server.headersTimeout = 0;
  server.requestTimeout = 0;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port || 0, '127.0.0.1', () => {
      const port = server.address().port;
      resolve({
        port,
        endpoint: o.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`,
        stats: () => statsOf(counters),
        close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(() => r()); }),
      });
    });
  });
}

function statsOf(c) {
  return {
    records: c[C_RECORDS], requests: c[C_REQUESTS], bytes: c[C_BYTES], bad: c[C_BAD], events: c[C_EVENTS],
    connections: c[C_CONNS], tlsHandshakes: c[C_TLS], tlsResumed: c[C_RESUMED], tlsNewSessions: c[C_NEWSESS],
  };
}

// The sink on its own thread: the caller's event loop (a load generator, a simulator) does not
// slow it down, and its counts are read from shared memory.
// With o.capture, the reports arrive as messages into `captured` (and onCapture, if set).
function startSinkWorker(o = {}) {
  const { Worker } = require('node:worker_threads');
  const shared = new SharedArrayBuffer(C_SLOTS * 8);
  const counters = new Float64Array(shared);
  const worker = new Worker(__filename, {
    workerData: {
      fastSink: true, port: o.port || 0, shared, capture: o.capture || null,
      tls: o.tls ? { key: o.tls.key, cert: o.tls.cert } : null, sessionCache: o.sessionCache !== false, closeEach: !!o.closeEach,
    },
  });
  worker.unref();
  const captured = [];
  return new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('message', (m) => {
      const sink = {
        port: m.port,
        endpoint: o.tls ? `https://localhost:${m.port}` : `http://127.0.0.1:${m.port}`,
        worker,
        tlsInfo: null,
        captured,
        onCapture: null,
        stats: () => statsOf(counters),
        // Every request counted so far is in `captured` (bounded wait).
        settle: async (timeoutMs = 5000) => {
          const until = Date.now() + timeoutMs;
          const want = () => counters[C_REQUESTS] - counters[C_BAD];
          while (captured.length < want() && Date.now() < until) await new Promise((r) => setTimeout(r, 2));
          return captured.length >= want();
        },
        close: () => worker.terminate(),
      };
      worker.on('message', (rep) => {
        if (rep.tlsInfo) { sink.tlsInfo = rep.tlsInfo; return; }
        captured.push(rep);
        if (sink.onCapture) sink.onCapture(rep);
      });
      resolve(sink);
    });
  });
}

/**
 * The sink's capacity as telkin uses it: one keep-alive connection, one request at a time, each
 * a PutRecords of `records` records of `recordBytes` (base64) each.
 */
async function measureSink({ port, records = 500, requests = 400, recordBytes = 420 } = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const rec = `{"Data":"${'A'.repeat(recordBytes)}","PartitionKey":"0123456789abcdef0123456789abcdef"}`;
  const body = Buffer.from(`{"StreamName":"bench","Records":[${Array(records).fill(rec).join(',')}]}`);
  const post = () => new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: '/', agent,
      headers: { 'Content-Type': CTYPE, 'X-Amz-Target': TARGET, 'Content-Length': body.length },
    }, (res) => {
      let got = 0;
      res.on('data', (c) => { got += c.length; });
      res.on('end', () => (res.statusCode === 200 ? resolve(got) : reject(new Error(`HTTP ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
  for (let i = 0; i < 20; i++) await post(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < requests; i++) await post();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  agent.destroy();
  return {
    requests, records: requests * records, requestBytes: body.length, ms,
    recordsPerSec: (requests * records) / (ms / 1000), msPerRequest: ms / requests,
  };
}

// Worker entry.
const wt = require('node:worker_threads');
if (!wt.isMainThread && wt.workerData && wt.workerData.fastSink) {
  const counters = new Float64Array(wt.workerData.shared);
  const capture = wt.workerData.capture;
  const { tls, sessionCache, closeEach } = wt.workerData;
  startSink({
    port: wt.workerData.port, counters, capture, onCapture: capture && ((rep) => wt.parentPort.postMessage(rep)),
    tls, sessionCache, closeEach, onTlsInfo: tls && ((info) => wt.parentPort.postMessage({ tlsInfo: info })),
  })
    .then((s) => wt.parentPort.postMessage({ port: s.port }));
}

// CLI.
if (wt.isMainThread && require.main === module) {
  const args = process.argv.slice(2);
  const i = args.indexOf('--port');
  const port = i >= 0 ? Number(args[i + 1]) : 0;
  if (args.includes('--help') || args.includes('-h')) {
    console.log(`usage: node ${path.basename(__filename)} [--port N] [--measure]`);
    process.exit(0);
  }
  (async () => {
    const sink = await startSinkWorker({ port });
    if (args.includes('--measure')) {
      const m = await measureSink({ port: sink.port });
      console.log(JSON.stringify({ ...m, sink: sink.stats() }));
      await sink.close();
      return;
    }
    console.log(JSON.stringify({ port: sink.port, endpoint: sink.endpoint }));
    sink.worker.ref();
    const report = () => { console.error(JSON.stringify(sink.stats())); process.exit(0); };
    process.on('SIGINT', report);
    process.on('SIGTERM', report);
  })();
}

module.exports = { startSink, startSinkWorker, measureSink, countRecords, responseFor, eventKey, hrNowMs };

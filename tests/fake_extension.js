#!/usr/bin/env node
'use strict';
// A Lambda external extension written in Node, for testing the simulator and the e2e suite itself.
//
// Default ("ship") mode is a small reference implementation of telkin's contract: register,
// subscribe to the Telemetry API, receive batches on TELKIN_LISTEN_PORT, and ship every event of
// TELKIN_TYPES to Kinesis (PutRecords over plain HTTP) with function/version/region/sandbox
// appended; everything of an invoke up to platform.runtimeDone is shipped before /event/next; on
// SHUTDOWN the queue is drained and the process exits 0. It is NOT telkin; it exists so that the
// e2e suite can be shown to pass against a correct implementation.
//
// "record" mode (FAKE_MODE=record) is for the simulator's self-test: it writes every telemetry
// POST it receives to FAKE_OUT (one JSON line per POST) and answers with the statuses listed in
// FAKE_STATUSES (comma separated, then 200). Other knobs:
//   FAKE_SUBSCRIBE      raw JSON body for the subscribe call (default built from TELKIN_* vars)
//   FAKE_WAIT_SIGNAL=1  after registering, print "registered" and wait for SIGUSR2 before going on
//   FAKE_NEXT_DELAY_MS  delay before each /event/next after an invoke
//   FAKE_IGNORE_SHUTDOWN=1  never exit on SHUTDOWN (to test the deadline kill)
//   FAKE_EXIT_CODE      exit code on SHUTDOWN (default 0)
//   FAKE_LOG=1          log a line to stdout per invoke (becomes "extension" telemetry)
//   FAKE_INIT_NEXT_DELAY_MS  delay before the first /event/next (init's telemetry delivered first)
//   FAKE_EVENTS         JSON array of the events to register for (default ["INVOKE","SHUTDOWN"])
//   FAKE_REGISTER_FALLBACK=1  a register refused with Extension.InvalidEventType is retried with
//                       ["SHUTDOWN"] (as on Lambda Managed Instances)

const http = require('node:http');
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const env = process.env;
const NAME = path.basename(process.argv[1]);
const [apiHost, apiPort] = (env.AWS_LAMBDA_RUNTIME_API || '127.0.0.1:9001').split(':');
const mode = env.FAKE_MODE || 'ship';
const log = (...a) => process.stderr.write(`[${NAME}] ${a.join(' ')}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const apiAgent = new http.Agent({ keepAlive: true, maxSockets: 4 });

function api(method, p, { headers = {}, body, timeout = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const req = http.request({
      host: apiHost, port: Number(apiPort), method, path: p, agent: apiAgent,
      headers: { ...headers, ...(data ? { 'Content-Type': 'application/json', 'Content-Length': data.length } : {}) },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
    });
    if (timeout) req.setTimeout(timeout, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(data);
  });
}

// ---------------------------------------------------------------------------------------------
// Configuration (telkin's environment contract)

const intEnv = (k, d) => (env[k] === undefined || env[k] === '' ? d : Number(env[k]));
const cfg = {
  stream: env.TELKIN_STREAM,
  region: env.AWS_REGION || 'us-east-1',
  endpoint: env.AWS_ENDPOINT_URL_KINESIS || `https://kinesis.${env.AWS_REGION || 'us-east-1'}.amazonaws.com`,
  port: intEnv('TELKIN_LISTEN_PORT', 4243),
  types: (env.TELKIN_TYPES || 'platform,function').split(',').map((s) => s.trim()).filter(Boolean),
  maxItems: intEnv('TELKIN_BUFFER_ITEMS', 1000),
  maxBytes: intEnv('TELKIN_BUFFER_BYTES', 262144),
  timeoutMs: intEnv('TELKIN_BUFFER_TIMEOUT_MS', 25),
  queueBytes: intEnv('TELKIN_QUEUE_BYTES', 8 << 20),
  pkMode: env.TELKIN_PARTITION_KEY || 'sandbox',
  flushTimeoutMs: intEnv('TELKIN_FLUSH_TIMEOUT_MS', 1500),
};
const sandbox = crypto.randomBytes(8).toString('hex');
const fn = env.AWS_LAMBDA_FUNCTION_NAME || '';
const ver = env.AWS_LAMBDA_FUNCTION_VERSION || '';

let extId = null;
const received = []; // record mode

// ---------------------------------------------------------------------------------------------
// Queue and Kinesis shipper

const queue = []; // {data: Buffer, pk}
let queueBytes = 0;
let dropped = { records: 0, bytes: 0 };
let shipping = null;
let kinesisOk = true;
const doneRequests = new Set();
let waiters = [];

function notify() { const w = waiters; waiters = []; for (const f of w) f(); }
function until(cond, deadline) {
  return new Promise((resolve) => {
    let timer = null;
    let done = false;
    const check = () => {
      if (done) return;
      if (cond() || Date.now() >= deadline) {
        done = true;
        clearTimeout(timer);
        resolve(cond());
        return;
      }
      waiters.push(check);
    };
    const tick = () => { check(); if (!done) timer = setTimeout(tick, Math.min(50, Math.max(1, deadline - Date.now()))); };
    tick();
  });
}

function pkFor(ev) {
  if (cfg.pkMode === 'random') return crypto.randomBytes(8).toString('hex');
  if (cfg.pkMode === 'request' && ev.record && typeof ev.record === 'object' && ev.record.requestId) {
    return ev.record.requestId;
  }
  return sandbox;
}

function enqueue(ev) {
  const data = Buffer.from(JSON.stringify({ ...ev, function: fn, version: ver, region: cfg.region, sandbox }));
  if (queueBytes + data.length > cfg.queueBytes) {
    dropped.records++;
    dropped.bytes += data.length;
    return;
  }
  if (dropped.records && queueBytes + data.length + 200 <= cfg.queueBytes) {
    const d = { time: new Date().toISOString(), type: 'telkin.dropped', record: { droppedRecords: dropped.records, droppedBytes: dropped.bytes } };
    dropped = { records: 0, bytes: 0 };
    const dd = Buffer.from(JSON.stringify({ ...d, function: fn, version: ver, region: cfg.region, sandbox }));
    queue.push({ data: dd, pk: sandbox });
    queueBytes += dd.length;
  }
  queue.push({ data, pk: pkFor(ev) });
  queueBytes += data.length;
  kick();
}

const kAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
function putRecords(records) {
  const u = new URL(cfg.endpoint);
  const streamName = cfg.stream.startsWith('arn:') ? cfg.stream.split(':stream/')[1] : cfg.stream;
  const body = Buffer.from(JSON.stringify({
    StreamName: streamName,
    Records: records.map((r) => ({ PartitionKey: r.pk, Data: r.data.toString('base64') })),
  }));
  const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port || 80, method: 'POST', path: '/', agent: kAgent,
      headers: {
        'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': 'Kinesis_20131202.PutRecords',
        'X-Amz-Date': amzDate, 'Content-Length': body.length,
        Authorization: `AWS4-HMAC-SHA256 Credential=${env.AWS_ACCESS_KEY_ID || 'AKID'}/${amzDate.slice(0, 8)}/${cfg.region}/kinesis/aws4_request, SignedHeaders=host;x-amz-date, Signature=0`,
      },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const t = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) return reject(new Error(`PutRecords ${res.statusCode} ${t.slice(0, 200)}`));
        resolve(JSON.parse(t));
      });
    });
    req.setTimeout(3000, () => req.destroy(new Error('PutRecords timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

function kick() {
  if (shipping || !queue.length || !cfg.stream) return;
  shipping = (async () => {
    let backoff = 50;
    while (queue.length) {
      let n = 0;
      let bytes = 0;
      while (n < queue.length && n < 500 && bytes + queue[n].data.length + queue[n].pk.length <= 5 << 20) {
        bytes += queue[n].data.length + queue[n].pk.length;
        n++;
      }
      const batch = queue.slice(0, n);
      try {
        const r = await putRecords(batch);
        kinesisOk = true;
        backoff = 50;
        const failed = [];
        r.Records.forEach((x, i) => { if (x.ErrorCode) failed.push(batch[i]); });
        queue.splice(0, n, ...failed);
        queueBytes -= batch.reduce((s, x) => s + x.data.length, 0) - failed.reduce((s, x) => s + x.data.length, 0);
      } catch (e) {
        if (kinesisOk) log(`kinesis: ${e.message}`);
        kinesisOk = false;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 500);
      }
      notify();
    }
  })().finally(() => { shipping = null; notify(); if (queue.length) kick(); });
}

// ---------------------------------------------------------------------------------------------
// Telemetry listener

const maxBody = 2 * cfg.maxBytes + 65536;
let postCount = 0;
const statuses = (env.FAKE_STATUSES || '').split(',').filter(Boolean).map(Number);

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (c) => {
    size += c.length;
    if (size > maxBody) tooBig = true;
    else chunks.push(c);
  });
  req.on('end', () => {
    const reply = (s) => { res.writeHead(s, { 'Content-Length': 0 }); res.end(); };
    if (tooBig) return reply(413);
    const text = Buffer.concat(chunks).toString('utf8');
    if (mode === 'record') {
      const status = statuses[postCount++] ?? 200;
      let items = null;
      try { items = JSON.parse(text); } catch { /* keep null */ }
      fs.appendFileSync(env.FAKE_OUT, JSON.stringify({ at: Date.now(), status, bytes: Buffer.byteLength(text), items }) + '\n');
      return reply(status);
    }
    let events;
    try { events = JSON.parse(text); } catch { return reply(400); }
    if (!Array.isArray(events)) return reply(400);
    for (const ev of events) {
      if (!ev || typeof ev !== 'object' || typeof ev.type !== 'string') continue;
      const cat = ev.type.startsWith('platform.') ? 'platform' : ev.type;
      if (ev.type === 'platform.runtimeDone' && ev.record) doneRequests.add(ev.record.requestId);
      if (cfg.types.includes(cat)) enqueue(ev);
    }
    notify();
    reply(200);
  });
});
server.keepAliveTimeout = 0;

// ---------------------------------------------------------------------------------------------
// Main loop

async function main() {
  if (env.FAKE_DUMP_ENV) console.log(`env ${JSON.stringify(env)}`);
  const events = env.FAKE_EVENTS ? JSON.parse(env.FAKE_EVENTS) : ['INVOKE', 'SHUTDOWN'];
  let reg = await api('POST', '/2020-01-01/extension/register', {
    headers: { 'Lambda-Extension-Name': NAME }, body: { events },
  });
  if (reg.status === 403 && env.FAKE_REGISTER_FALLBACK && /Extension\.InvalidEventType/.test(reg.text)) {
    reg = await api('POST', '/2020-01-01/extension/register', {
      headers: { 'Lambda-Extension-Name': NAME }, body: { events: ['SHUTDOWN'] },
    });
  }
  if (reg.status !== 200) { log(`register failed ${reg.status} ${reg.text}`); process.exit(1); }
  extId = reg.headers['lambda-extension-identifier'];
  const H = { 'Lambda-Extension-Identifier': extId };

  if (env.FAKE_WAIT_SIGNAL) {
    const hold = setInterval(() => {}, 1000); // keep the event loop alive while waiting
    await new Promise((resolve) => { process.once('SIGUSR2', resolve); console.log('registered'); });
    clearInterval(hold);
  }
  if (mode === 'ship' && !cfg.stream) {
    log('TELKIN_STREAM is not set');
    await api('POST', '/2020-01-01/extension/init/error', {
      headers: { ...H, 'Lambda-Extension-Function-Error-Type': 'Extension.ConfigInvalid' },
      body: { errorMessage: 'TELKIN_STREAM is not set', errorType: 'Extension.ConfigInvalid' },
    });
    process.exit(1);
  }

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(mode === 'record' ? 0 : cfg.port, '127.0.0.1', resolve);
  });
  const port = server.address().port;
  const sub = env.FAKE_SUBSCRIBE ? env.FAKE_SUBSCRIBE.replace('PORT', String(port)) : {
    schemaVersion: '2022-12-13',
    destination: { protocol: 'HTTP', URI: `http://sandbox.localdomain:${port}/telemetry` },
    types: [...new Set(['platform', ...cfg.types])],
    buffering: { maxItems: cfg.maxItems, maxBytes: cfg.maxBytes, timeoutMs: cfg.timeoutMs },
  };
  const s = await api('PUT', '/2022-07-01/telemetry', { headers: H, body: sub });
  if (s.status !== 200) {
    log(`subscribe failed ${s.status} ${s.text}`);
    await api('POST', '/2020-01-01/extension/init/error', {
      headers: { ...H, 'Lambda-Extension-Function-Error-Type': 'Extension.SubscribeFailed' }, body: {},
    });
    process.exit(1);
  }

  if (env.FAKE_INIT_NEXT_DELAY_MS) await sleep(Number(env.FAKE_INIT_NEXT_DELAY_MS));
  for (;;) {
    const r = await api('GET', '/2020-01-01/extension/event/next', { headers: H });
    if (r.status !== 200) { log(`next failed ${r.status} ${r.text}`); process.exit(1); }
    const ev = JSON.parse(r.text);
    if (ev.eventType === 'INVOKE') {
      if (env.FAKE_LOG) console.log(`fake: invoke ${ev.requestId}`);
      if (mode === 'ship') {
        // Everything up to runtimeDone must be shipped before we call next.
        const deadline = Date.now() + cfg.flushTimeoutMs;
        await until(() => doneRequests.has(ev.requestId), deadline);
        await until(() => !queue.length && !shipping, deadline);
      }
      if (env.FAKE_NEXT_DELAY_MS) await sleep(Number(env.FAKE_NEXT_DELAY_MS));
    } else if (ev.eventType === 'SHUTDOWN') {
      if (env.FAKE_IGNORE_SHUTDOWN) { await sleep(1e9); }
      console.log(`fake: shutdown ${ev.shutdownReason}`);
      if (mode === 'ship') {
        const deadline = ev.deadlineMs - 300;
        // Telemetry still arriving: let it settle briefly, then drain the queue.
        await sleep(Math.min(cfg.timeoutMs + 50, Math.max(0, deadline - Date.now())));
        await until(() => !queue.length && !shipping, deadline);
      }
      process.exit(Number(env.FAKE_EXIT_CODE || 0));
    }
  }
}

main().catch((e) => { log(e.stack); process.exit(1); });

'use strict';
// A small fault-injecting Kinesis PutRecords endpoint (plain HTTP or HTTPS) for telkin's tests.
//
// It speaks just enough HTTP/1.1 on raw sockets to misbehave on purpose: each PutRecords request
// takes the next scripted action (see ACTIONS below) and every record of a request answered with
// success is stored, in the shape KinesisClient.readAll() returns ({partitionKey, data, json}), so
// the tests can compare what arrived with what the simulator emitted (compare.js).
// Records of a request that failed (any non-200, a broken or dropped response) are NOT stored:
// what telkin does not resend is lost, and the comparison shows it.
//
//   const stub = new KinesisStub({ tls: { key, cert } });    // tls optional
//   await stub.start();  stub.endpoint -> 'http://127.0.0.1:PORT' | 'https://localhost:PORT'
//   stub.script([{ status: 503 }, { recordError: 'InternalFailure' }]); // next requests, in order
//   stub.defaultAction = { status: 503 };                     // once the script is used up
//   stub.decide = (req) => (cond(req.headers) ? action : null); // per request, before the script
//   stub.accepted / stub.requests / stub.connections / stub.tlsConnections / stub.tlsErrors
//   verifySigV4(request, secretAccessKey) -> null when the request's SigV4 signature is right
//   await stub.closeIdle();  await stub.close();
//   stub.silence()   every open connection forgotten silently: reset when next used ({hang:true}:
//                    never answered)
//   new KinesisStub({ tls: { key, cert, sessionCache: true } })  TLS session-ID resumption;
//                    stub.tlsSessions: one {conn, resumed} per handshake
//
// ACTIONS (one per PutRecords request; after the script runs out, defaultAction, {} at first):
//   {}                                  200, every record accepted
//   { recordError: TYPE, which }        200 with FailedRecordCount > 0: records for which
//                                       which(i) is true (default: even indices) fail with TYPE
//   { status, type, message }           error answer {"__type": type, "message": ...}
//   { status }                          error answer with a plain-text body
//   { delayMs, then: ACTION }           ACTION after delayMs (stored only if the socket is open)
//   { hang: true }                      never answer (the client has to time out)
//   { reset: true }                     half a response head, then a TCP reset
//   { truncate: true }                  200 with a Content-Length larger than what is sent, close
//   { chunked: true }                   200, body in several chunks (Transfer-Encoding: chunked)
//   { garbage: true }                   non-HTTP bytes, then close
//   { close: true }                     200 with Connection: close, then close
//   { interim: true, ... }              'HTTP/1.1 100 Continue' first, then the rest of the action
//   { wrongCount: true }                200 whose Records has one entry, whatever was sent
//
// Kinesis's write limits (off unless set): stub.shardLimits({ shards, recordsPerSec, bytesPerSec })
// models a stream of `shards` shards created by CreateStream (the 128-bit hash-key range split
// evenly); a record goes to the shard whose range holds MD5(PartitionKey) as a 128-bit number.
// Each shard is a token bucket of records and bytes (data + partition key) that refills at the
// shard's rate and holds at most one second of it (full at start: an idle stream). A record that
// does not fit fails with ProvisionedThroughputExceededException, worded as Kinesis words it.
// Records of a request are taken in order. Defaults are Kinesis's: 1 000 records/s and 1 MiB/s
// per shard (docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html).
// stub.throttleP = p: besides that, each record fails with that exception with probability p.
// Every accepted record answers with its ShardId and a SequenceNumber; stub.shardOf(key) -> index.

const net = require('node:net');
const tls = require('node:tls');
const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');
const { recordLines } = require('./compare');

const live = new Set();
process.on('exit', () => { for (const s of live) { try { s.destroy(); } catch { /* gone */ } } });

class KinesisStub extends EventEmitter {
  /**
   * @param {object} [o]
   * @param {{key, cert, minVersion?, maxVersion?, ciphers?, sessionCache?}} [o.tls]  serve HTTPS with this
   *                                     (sessionCache: resume sessions by ID, as AWS endpoints do)
   * @param {string} [o.host='127.0.0.1']   listen address
   * @param {string} [o.name]              host name in `endpoint` (default localhost for TLS)
   */
  constructor(o = {}) {
    super();
    this.o = o;
    this.port = 0;
    this.server = null;
    this.plan = [];           // scripted actions, consumed in order
    this.defaultAction = {};  // when the plan is empty
    this.decide = null;       // (request) => action or null: overrides the plan (e.g. by signer)
    this.requests = [];       // {n, at, conn, target, headers, records, action, stored}
    this.accepted = [];       // {partitionKey, data, json, stream, arn, request}
    this.connections = 0;     // TCP connections accepted
    this.tlsConnections = 0;  // TLS handshakes completed
    this.tlsErrors = [];      // handshake failures seen by the server {code, message}
    this.tlsSessions = [];    // one per completed handshake: {conn, resumed}
    this.appBytes = 0;        // application bytes received (decrypted for TLS)
    this.sockets = new Set();
    this._conn = 0;
    this.limits = null;       // per-shard write limits (shardLimits)
    this.throttleP = 0;       // random per-record throttling
    this.demand = [];         // per shard: Set of the distinct events (ndjson lines) sent to it
  }

  shardLimits({ shards = 1, recordsPerSec = 1000, bytesPerSec = 1 << 20 } = {}) {
    const now = Date.now();
    this.limits = { shards, recordsPerSec, bytesPerSec };
    this.buckets = Array.from({ length: shards }, () => ({ r: recordsPerSec, b: bytesPerSec, at: now }));
    this.demand = Array.from({ length: shards }, () => new Set());
    return this;
  }

  // The shard a partition key lands on: MD5 as a 128-bit big-endian number, in one of `shards`
  // equal hash-key ranges (CreateStream's even split).
  shardOf(key) {
    const n = this.limits ? this.limits.shards : 1;
    const h = BigInt('0x' + crypto.createHash('md5').update(key, 'utf8').digest('hex'));
    return Number((h * BigInt(n)) >> 128n);
  }

  static shardId(i) { return `shardId-${String(i).padStart(12, '0')}`; }

  // Take one record of `bytes` from shard i's bucket: false when the shard is over its limits.
  _take(i, bytes) {
    const L = this.limits;
    const k = this.buckets[i];
    const now = Date.now();
    const dt = (now - k.at) / 1000;
    k.at = now;
    k.r = Math.min(L.recordsPerSec, k.r + dt * L.recordsPerSec);
    k.b = Math.min(L.bytesPerSec, k.b + dt * L.bytesPerSec);
    if (k.r < 1 || k.b < bytes) return false;
    k.r -= 1;
    k.b -= bytes;
    return true;
  }

  get endpoint() {
    const host = this.o.name || (this.o.tls ? 'localhost' : '127.0.0.1');
    return `${this.o.tls ? 'https' : 'http'}://${host}:${this.port}`;
  }

  script(actions) { this.plan.push(...actions); return this; }

  async start() {
    const onSocket = (sock) => this._serve(sock);
    if (this.o.tls) {
      const { key, cert, minVersion, maxVersion, ciphers } = this.o.tls;
      this.server = tls.createServer({ key, cert, minVersion, maxVersion, ciphers }, onSocket);
      this.server.on('connection', (raw) => { this.connections++; this._track(raw); });
      if (this.o.tls.sessionCache) {
        const cache = new Map();
        this.server.on('newSession', (id, data, cb) => { cache.set(id.toString('hex'), data); cb(); });
        this.server.on('resumeSession', (id, cb) => cb(null, cache.get(id.toString('hex')) || null));
      }
      this.server.on('tlsClientError', (e) => {
        this.tlsErrors.push({ code: e.code, message: e.message });
        this.emit('tlsError', e);
      });
    } else {
      this.server = net.createServer((sock) => { this.connections++; this._track(sock); onSocket(sock); });
    }
    await new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, this.o.host || '127.0.0.1', () => { this.server.off('error', reject); resolve(); });
    });
    this.port = this.server.address().port;
    live.add(this);
    return this;
  }

  _track(sock) {
    this.sockets.add(sock);
    sock.on('close', () => { this.sockets.delete(sock); this.emit('socketClose'); });
    sock.on('error', () => {});
  }

  // Every connection open now is forgotten without a word, as a server does with connections
  // idle across a long freeze or from before a SnapStart restore: nothing is sent when it is
  // dropped; what arrives on it later is answered with a TCP reset, as a host answers segments of
  // a connection it no longer has. { hang: true } instead takes bytes and never answers (a server
  // that hangs: only the client's timeout ends that). New connections are served as usual.
  // Returns how many connections were dropped.
  silence({ hang = false } = {}) {
    let n = 0;
    for (const s of this.sockets) if (!s._stubSilent) { s._stubSilent = hang ? 'hang' : 'reset'; n++; }
    this.silenced = (this.silenced || 0) + n;
    return n;
  }

  // Every connection that is between requests: closed by us, as a server's idle timeout does.
  // Resolves once they are closed. hard=true destroys them without a TLS close_notify/FIN.
  async closeIdle({ hard = false } = {}) {
    const idle = [...this.sockets].filter((s) => !s._stubBusy && !s._stubSilent);
    await Promise.all(idle.map((s) => new Promise((resolve) => {
      if (s.destroyed) return resolve();
      s.once('close', resolve);
      if (hard) s.destroy(); else { (s._stubTls || s).end(); setTimeout(() => s.destroy(), 200).unref(); }
    })));
    return idle.length;
  }

  async close() {
    live.delete(this);
    for (const s of this.sockets) s.destroy();
    if (this.server) await new Promise((r) => this.server.close(() => r()));
    this.server = null;
  }

  // Resolves when `n` PutRecords requests have been seen (bounded).
  waitRequests(n, timeoutMs = 10000) {
    return this._waitFor(() => this.requests.length >= n, timeoutMs, `${n} PutRecords requests`);
  }

  _waitFor(pred, timeoutMs, what) {
    if (pred()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => { if (pred()) { cleanup(); resolve(); } };
      const t = setTimeout(() => { cleanup(); reject(new Error(`timeout after ${timeoutMs} ms: ${what}`)); }, timeoutMs);
      const cleanup = () => { clearTimeout(t); this.off('request', check); };
      this.on('request', check);
    });
  }

  // ---------------------------------------------------------------------------------------------

  _serve(sock) {
    if (this.o.tls) {
      this.tlsConnections++;
      // The raw TCP socket is the parent: remember the TLS one for a clean close.
      if (sock._parent) sock._parent._stubTls = sock;
    }
    const conn = ++this._conn;
    if (this.o.tls) this.tlsSessions.push({ conn, resumed: sock.isSessionReused() });
    let buf = Buffer.alloc(0);
    let busy = false;
    // Pieces of a large body wait in a list until it is complete (copying and searching the
    // whole buffer at every piece is quadratic: seconds for a 5 MiB request).
    let pieces = [];
    let piecesLen = 0;
    let need = 0;
    const raw = sock._parent || sock;
    sock.on('error', () => {});
    sock.on('data', (d) => {
      if (raw._stubSilent) {
        this.silentBytes = (this.silentBytes || 0) + d.length;
        if (raw._stubSilent === 'reset') raw.resetAndDestroy ? raw.resetAndDestroy() : raw.destroy();
        return;
      }
      this.appBytes += d.length;
      pieces.push(d);
      piecesLen += d.length;
      if (buf.length + piecesLen < need) return;
      buf = Buffer.concat([buf, ...pieces]);
      pieces = [];
      piecesLen = 0;
      pump();
    });
    const pump = () => {
      while (!busy) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const lines = head.split('\r\n');
        const [method, url] = lines[0].split(' ');
        const headers = {};
        for (const l of lines.slice(1)) {
          const i = l.indexOf(':');
          if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
        }
        const len = Number(headers['content-length'] || 0);
        need = end + 4 + len;
        if (buf.length < need) return;
        need = 0;
        const body = buf.subarray(end + 4, end + 4 + len);
        buf = buf.subarray(end + 4 + len);
        busy = true;
        raw._stubBusy = true;
        this._handle(sock, raw, conn, method, url, headers, body, () => {
          busy = false;
          raw._stubBusy = false;
          pump();
        });
      }
    };
  }

  _handle(sock, raw, conn, method, url, headers, body, done) {
    const target = headers['x-amz-target'] || '';
    let parsed = null;
    try { parsed = JSON.parse(body.toString('utf8')); } catch { /* answered 400 below */ }
    const isPut = method === 'POST' && target === 'Kinesis_20131202.PutRecords' && parsed && Array.isArray(parsed.Records);
    const req = {
      n: this.requests.length, at: Date.now(), conn, method, url, target, headers,
      records: isPut ? parsed.Records.length : 0, stream: parsed && parsed.StreamName,
      arn: parsed && parsed.StreamARN, action: null, stored: false, status: 0, body,
    };
    this.requests.push(req);
    const decided = isPut && this.decide ? this.decide(req) : null;
    const action = !isPut ? { status: 400, type: 'SerializationException' }
      : decided || (this.plan.length ? this.plan.shift() : this.defaultAction);
    // The records as sent (decoded), whatever the answer: to check what a refusal dropped.
    req.data = isPut ? parsed.Records.map((r) => Buffer.from(r.Data, 'base64').toString('utf8')) : [];
    req.action = action;
    this.emit('request', req);

    const write = (status, text, extra = {}) => {
      if (sock.destroyed || !sock.writable || raw._stubSilent) return false;
      const h = [`HTTP/1.1 ${status} ${status === 200 ? 'OK' : 'Error'}`,
        `x-amzn-RequestId: ${crypto.randomUUID()}`, 'Content-Type: application/x-amz-json-1.1'];
      if (extra.chunked) h.push('Transfer-Encoding: chunked');
      else h.push(`Content-Length: ${extra.contentLength ?? Buffer.byteLength(text)}`);
      if (extra.close) h.push('Connection: close');
      const headText = h.join('\r\n') + '\r\n\r\n';
      if (extra.chunked) {
        // The body in pieces of 7 bytes, with a chunk extension on one of them.
        sock.write(headText);
        const b = Buffer.from(text);
        for (let i = 0; i < b.length; i += 7) {
          const piece = b.subarray(i, i + 7);
          sock.write(`${piece.length.toString(16)}${i === 0 ? ';ext=1' : ''}\r\n`);
          sock.write(piece);
          sock.write('\r\n');
        }
        sock.write('0\r\n\r\n');
      } else if (extra.partial) {
        sock.write(headText + text.slice(0, Math.floor(text.length / 2)));
      } else {
        sock.write(headText + text);
      }
      req.status = status;
      req.answeredAt = Date.now();
      return true;
    };
    const store = (indices) => {
      for (const i of indices) {
        const r = parsed.Records[i];
        const data = Buffer.from(r.Data, 'base64').toString('utf8');
        let json = null;
        try { json = JSON.parse(data); } catch { /* not JSON */ }
        this.accepted.push({ partitionKey: r.PartitionKey, data, json, stream: parsed.StreamName, arn: parsed.StreamARN, request: req.n, at: Date.now() });
      }
      req.stored = indices.length;
    };
    const success = (failWhich, failType) => {
      const recs = [];
      const ok = [];
      parsed.Records.forEach((r, i) => {
        const shard = this.limits ? this.shardOf(r.PartitionKey) : 0;
        const sid = KinesisStub.shardId(shard);
        const rate = `Rate exceeded for shard ${sid} in stream ${parsed.StreamName} under account 123456789012.`;
        const data = Buffer.from(r.Data, 'base64');
        if (this.limits) for (const line of recordLines(data.toString('utf8'))) this.demand[shard].add(line);
        if (failWhich && failWhich(i)) {
          recs.push({ ErrorCode: failType, ErrorMessage: failType === 'ProvisionedThroughputExceededException' ? rate : 'Internal service failure.' });
        } else if (this.throttleP && Math.random() < this.throttleP) {
          recs.push({ ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: rate });
        } else if (this.limits && !this._take(shard, data.length + Buffer.byteLength(r.PartitionKey))) {
          recs.push({ ErrorCode: 'ProvisionedThroughputExceededException', ErrorMessage: rate });
        } else {
          ok.push(i);
          recs.push({ SequenceNumber: String(49500000000000000000000000000000000000000000000000000000n + BigInt(this.accepted.length + ok.length)), ShardId: sid });
        }
      });
      return { text: JSON.stringify({ FailedRecordCount: recs.length - ok.length, Records: recs }), ok };
    };

    const act = (a) => {
      if (sock.destroyed) { done(); return; }
      if (a.delayMs) { setTimeout(() => act(a.then || {}), a.delayMs); return; }
      if (a.hang) { return; } // never answered; the client's timeout closes the socket
      if (a.reset) {
        write(200, '{"FailedRecordCount":0,"Records":[]}', { partial: true });
        setImmediate(() => (raw.resetAndDestroy ? raw.resetAndDestroy() : raw.destroy()));
        return;
      }
      if (a.truncate) {
        const { text } = success();
        write(200, text.slice(0, 10), { contentLength: Buffer.byteLength(text) + 100 });
        sock.end();
        return;
      }
      if (a.garbage) {
        sock.write(Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37]));
        sock.write('this is not HTTP\r\n\r\n\x01\x02');
        sock.end();
        return;
      }
      if (a.interim) {
        // An interim 1xx answer before the real one (RFC 9110 15.2: a client must accept it).
        sock.write('HTTP/1.1 100 Continue\r\n\r\n');
        setTimeout(() => act({ ...a, interim: false }), 20);
        return;
      }
      if (a.wrongCount) {
        // A 200 whose Records array does not match the request (nothing stored).
        write(200, JSON.stringify({ FailedRecordCount: 0, Records: [{ SequenceNumber: '1', ShardId: 'shardId-000000000000' }] }));
        done();
        return;
      }
      if (a.status && a.status !== 200) {
        const text = a.type ? JSON.stringify({ __type: a.type, message: a.message || `${a.type} (injected)` }) : `injected ${a.status}`;
        write(a.status, text);
        done();
        return;
      }
      const which = a.recordError ? (a.which || ((i) => i % 2 === 0)) : null;
      const { text, ok } = success(which, a.recordError);
      if (write(200, text, { chunked: !!a.chunked, close: !!a.close })) store(ok);
      if (a.close) sock.end();
      done();
    };
    act(action);
  }
}

// Check a request's AWS Signature Version 4 with the given secret key: null when it is right,
// else what is wrong. (The stub does not enforce it; tests call this.)
function verifySigV4(req, secret) {
  const h = req.headers;
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/
    .exec(h.authorization || '');
  if (!m) return `malformed Authorization: ${h.authorization}`;
  const [, , date, region, service, signed, signature] = m;
  const amzDate = h['x-amz-date'];
  if (!amzDate || amzDate.slice(0, 8) !== date) return `X-Amz-Date ${amzDate} does not match the scope date ${date}`;
  const names = signed.split(';');
  for (const need of ['host', 'x-amz-date']) if (!names.includes(need)) return `${need} is not signed`;
  if (h['x-amz-security-token'] && !names.includes('x-amz-security-token')) return 'the session token is not signed';
  const sha = (x) => crypto.createHash('sha256').update(x).digest('hex');
  const hmac = (k, x) => crypto.createHmac('sha256', k).update(x).digest();
  const canonical = ['POST', '/', '', ...names.map((n) => `${n}:${(h[n] || '').trim().replace(/\s+/g, ' ')}`), '',
    signed, sha(req.body)].join('\n');
  const scope = `${date}/${region}/${service}/aws4_request`;
  const sts = ['AWS4-HMAC-SHA256', amzDate, scope, sha(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), service), 'aws4_request');
  const want = crypto.createHmac('sha256', key).update(sts).digest('hex');
  return want === signature ? null : 'signature does not match (wrong secret key, or a header/body changed)';
}

module.exports = { KinesisStub, verifySigV4 };

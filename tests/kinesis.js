'use strict';
// kinesalite harness: run kinesalite as a child process (LevelDB store in a temporary directory, so
// the data survives stop/restart on the same port) and talk to it with plain HTTP requests in the
// Kinesis JSON 1.1 protocol (no SDK).

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const http = require('node:http');
const https = require('node:https');
const readline = require('node:readline');

const SERVER_JS = path.join(__dirname, 'kinesalite_server.js');
const ACCOUNT_ID = '000000000000'; // what kinesalite puts into StreamARN
const live = new Set(); // every kinesalite child we started, killed at process exit

process.on('exit', () => {
  for (const k of live) {
    try { k.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

// On a signal, exit through process.exit so that the 'exit' handler above kills the children.
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  if (!process.listenerCount(sig)) process.once(sig, () => process.exit(128 + n));
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

class Kinesalite {
  constructor({ dir, region = 'us-east-1', log = false } = {}) {
    this.ownDir = !dir;
    this.dir = dir || fs.mkdtempSync(path.join(os.tmpdir(), 'telkin-kinesalite-'));
    this.region = region;
    this.log = log;
    this.port = 0;
    this.child = null;
    this.stderr = '';
  }

  get endpoint() { return `http://127.0.0.1:${this.port}`; }
  get running() { return !!this.child; }

  // Start (or restart, on the port used before). Resolves once it is listening.
  async start() {
    if (this.child) return this;
    let lastErr;
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        await this._spawnOnce();
        return this;
      } catch (e) {
        lastErr = e;
        // The port may still be held for a moment after a stop (or taken by someone else).
        if (!/EADDRINUSE/.test(e.message)) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    throw lastErr;
  }

  _spawnOnce() {
    const child = spawn(process.execPath, [SERVER_JS, String(this.port), this.dir], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, AWS_REGION: this.region, AWS_ACCOUNT_ID: ACCOUNT_ID },
    });
    live.add(child);
    this.stderr = '';
    child.stderr.on('data', (d) => {
      this.stderr += d;
      if (this.log) process.stderr.write(`[kinesalite] ${d}`);
    });
    return withTimeout(new Promise((resolve, reject) => {
      const rl = readline.createInterface({ input: child.stdout });
      rl.once('line', (line) => {
        try {
          this.port = JSON.parse(line).port;
          this.child = child;
          child.once('exit', () => { live.delete(child); if (this.child === child) this.child = null; });
          resolve();
        } catch (e) { reject(e); }
      });
      child.once('exit', (code) => {
        live.delete(child);
        reject(new Error(`kinesalite exited (${code}) before listening: ${this.stderr.trim()}`));
      });
    }), 15000, 'kinesalite start').catch((e) => { child.kill('SIGKILL'); throw e; });
  }

  // Stop the process; data stays in this.dir. hard=true uses SIGKILL (a crash).
  async stop({ hard = false } = {}) {
    const child = this.child;
    if (!child) return;
    this.child = null;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill(hard ? 'SIGKILL' : 'SIGTERM');
    try {
      await withTimeout(exited, 5000, 'kinesalite stop');
    } catch {
      child.kill('SIGKILL');
      await exited;
    }
  }

  async restart() {
    await this.stop();
    await this.start();
  }

  // Stop and remove the store.
  async close() {
    await this.stop({ hard: true });
    if (this.ownDir) fs.rmSync(this.dir, { recursive: true, force: true });
  }

  client() { return new KinesisClient(this.endpoint, this.region); }
}

class KinesisError extends Error {
  constructor(status, body) {
    super(`Kinesis ${status}: ${body && (body.__type || '')} ${body && (body.message || body.Message || '')}`);
    this.status = status;
    this.type = body && body.__type;
    this.body = body;
  }
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

class KinesisClient {
  constructor(endpoint, region = 'us-east-1') {
    this.endpoint = new URL(endpoint);
    this.region = region;
  }

  // One Kinesis_20131202 call. kinesalite only checks the shape of the signature.
  call(op, body, { timeoutMs = 10000 } = {}) {
    const payload = Buffer.from(JSON.stringify(body));
    const amzDate = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
    const headers = {
      'Content-Type': 'application/x-amz-json-1.1',
      'X-Amz-Target': `Kinesis_20131202.${op}`,
      'X-Amz-Date': amzDate,
      Authorization: `AWS4-HMAC-SHA256 Credential=AKID/${amzDate.slice(0, 8)}/${this.region}/kinesis/aws4_request, ` +
        'SignedHeaders=host;x-amz-date, Signature=abcd',
      'Content-Length': payload.length,
    };
    // https endpoints (the TLS tests) bring their own agent, with the test CA.
    const mod = this.endpoint.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = mod.request({
        host: this.endpoint.hostname, port: this.endpoint.port, method: 'POST', path: '/', headers,
        agent: this.agent || agent,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json = null;
          try { json = text ? JSON.parse(text) : {}; } catch { json = { message: text }; }
          if (res.statusCode === 200) resolve(json);
          else reject(new KinesisError(res.statusCode, json));
        });
        res.on('error', reject);
      });
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`Kinesis ${op}: timeout`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  async createStream(name, shards = 1, { timeoutMs = 10000 } = {}) {
    await this.call('CreateStream', { StreamName: name, ShardCount: shards });
    return this.waitActive(name, { timeoutMs });
  }

  async waitActive(name, { timeoutMs = 10000 } = {}) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const d = await this.call('DescribeStreamSummary', { StreamName: name });
      const s = d.StreamDescriptionSummary;
      if (s.StreamStatus === 'ACTIVE') return s;
      if (Date.now() > until) throw new Error(`stream ${name} not ACTIVE after ${timeoutMs} ms (${s.StreamStatus})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async deleteStream(name) {
    await this.call('DeleteStream', { StreamName: name });
  }

  async listShards(name) {
    const shards = [];
    let token;
    do {
      const d = await this.call('ListShards', token ? { NextToken: token } : { StreamName: name });
      shards.push(...d.Shards);
      token = d.NextToken;
    } while (token);
    return shards;
  }

  // Every record in the stream, oldest first per shard, shards concatenated then ordered by
  // arrival time. Returns [{partitionKey, data, json, sequenceNumber, shardId, arrival}].
  async readAll(name, { timeoutMs = 30000 } = {}) {
    const until = Date.now() + timeoutMs;
    const out = [];
    for (const shard of await this.listShards(name)) {
      let { ShardIterator: it } = await this.call('GetShardIterator', {
        StreamName: name, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON',
      });
      while (it) {
        if (Date.now() > until) throw new Error(`readAll(${name}): not caught up after ${timeoutMs} ms`);
        const d = await this.call('GetRecords', { ShardIterator: it, Limit: 10000 });
        for (const r of d.Records) {
          const data = Buffer.from(r.Data, 'base64').toString('utf8');
          let json = null;
          try { json = JSON.parse(data); } catch { /* not JSON */ }
          out.push({
            partitionKey: r.PartitionKey, data, json, sequenceNumber: r.SequenceNumber, shardId: shard.ShardId,
            arrival: r.ApproximateArrivalTimestamp,
          });
        }
        // Caught up: an empty page at the tip (kinesalite always reports MillisBehindLatest 0).
        if (d.Records.length === 0 && !d.MillisBehindLatest) break;
        it = d.NextShardIterator;
      }
    }
    // Stable sort: within a shard arrival times never decrease, so shard order is kept.
    out.sort((a, b) => a.arrival - b.arrival);
    return out;
  }

  async putRecords(name, records) {
    return this.call('PutRecords', {
      StreamName: name,
      Records: records.map((r) => ({
        PartitionKey: r.partitionKey, Data: Buffer.from(r.data).toString('base64'),
      })),
    });
  }
}

function streamArn(name, region = 'us-east-1') {
  return `arn:aws:kinesis:${region}:${ACCOUNT_ID}:stream/${name}`;
}

module.exports = { Kinesalite, KinesisClient, KinesisError, streamArn, ACCOUNT_ID };

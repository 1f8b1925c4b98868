#!/usr/bin/env node
'use strict';
// telkin-check: reads a whole Kinesis stream (every shard from TRIM_HORIZON until caught up) and
// tells, per sandbox, whether every event telkin numbered is accounted for. Node.js standard
// library only: copy this folder (check.js beside it) anywhere and run it.
//
//   node telkin-check.js [options] STREAM        STREAM: a name or arn:aws:kinesis:<region>:<account>:stream/<name>
//   node telkin-check.js [options] --file FILE   NDJSON (e.g. Firehose objects from S3), '-' for stdin
//
//   --endpoint URL   http(s)://host[:port] (kinesalite, kinesis-local); else AWS_ENDPOINT_URL_KINESIS,
//                    AWS_ENDPOINT_URL, else https://kinesis.<region>.amazonaws.com
//   --region R       else the ARN's region, AWS_REGION, AWS_DEFAULT_REGION (us-east-1 with --endpoint)
//   --ca FILE        PEM file of the CA(s) to trust for an https endpoint (a test CA)
//   --json           one JSON object on stdout instead of the table
//   --timeout S      give up reading after S seconds (default 300)
//   --ranges N       list at most N missing ranges per sandbox (default 20)
//   --from-lowest    check each sandbox from the lowest number seen, not from 1 (its first
//                    records have passed the stream's retention period)
//
// Credentials: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (with --endpoint and no
// key, a dummy key: kinesalite and kinesis-local check only the signature's shape).
// Exit status: 0 complete, 1 gaps, 2 usage or read error.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const crypto = require('node:crypto');
const { Checker } = require('./check');

const KINESIS_TARGET = 'Kinesis_20131202';
const GET_RECORDS_LIMIT = 10000; // GetRecords' maximum Limit (Kinesis API reference)
const EMPTY_PAGE_WAIT_MS = 200; // GetRecords allows 5 calls a second per shard
const RETRIES = 8;

const sha256hex = (data) => crypto.createHash('sha256').update(data).digest('hex');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();

/**
 * SigV4 Authorization for a Kinesis JSON request. headers: name -> value (Host and X-Amz-Date
 * included; every header given is signed). Returns the header value.
 */
function sigv4Authorization({ method, path, headers, body, region, service, accessKeyId, secretAccessKey }) {
  const amzDate = headers['X-Amz-Date'];
  const scope = `${amzDate.slice(0, 8)}/${region}/${service}/aws4_request`;
  const names = Object.keys(headers).map((k) => k.toLowerCase()).sort();
  const byLower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), String(v).trim()]));
  const canonical = [method, path, '', ...names.map((n) => `${n}:${byLower[n]}`), '', names.join(';'),
    sha256hex(body)].join('\n');
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(canonical)].join('\n');
  let key = hmac(`AWS4${secretAccessKey}`, amzDate.slice(0, 8));
  for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
  const signature = crypto.createHmac('sha256', key).update(toSign).digest('hex');
  return `AWS4-HMAC-SHA256 Credential=${accessKeyId}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
}

class KinesisError extends Error {
  constructor(op, status, body) {
    super(`${op}: HTTP ${status} ${(body && body.__type) || ''} ${(body && (body.message || body.Message)) || ''}`.trim());
    this.status = status;
    this.type = String((body && body.__type) || '').split('#').pop();
  }
}

const RETRYABLE = new Set(['ProvisionedThroughputExceededException', 'LimitExceededException',
  'ThrottlingException', 'InternalFailure', 'ServiceUnavailable']);
// Connection errors worth another attempt (a refused connection or a bad certificate is final).
const TRANSIENT_NET = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN']);

class Kinesis {
  constructor({ endpoint, region, ca, credentials }) {
    this.url = new URL(endpoint);
    this.region = region;
    this.credentials = credentials;
    const tls = this.url.protocol === 'https:';
    this.mod = tls ? https : http;
    // ca replaces Node's default roots: the test CA alone is trusted.
    this.agent = new this.mod.Agent({ keepAlive: true, ...(tls && ca ? { ca } : {}) });
  }

  _once(op, body) {
    const payload = JSON.stringify(body);
    const host = this.url.host; // host[:port] as the request line's Host
    const headers = {
      'Content-Type': 'application/x-amz-json-1.1',
      Host: host,
      'X-Amz-Date': new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, ''),
      'X-Amz-Target': `${KINESIS_TARGET}.${op}`,
    };
    if (this.credentials.sessionToken) headers['X-Amz-Security-Token'] = this.credentials.sessionToken;
    headers.Authorization = sigv4Authorization({
      method: 'POST', path: '/', headers, body: payload, region: this.region, service: 'kinesis',
      ...this.credentials,
    });
    headers['Content-Length'] = Buffer.byteLength(payload);
    return new Promise((resolve, reject) => {
      const req = this.mod.request({
        hostname: this.url.hostname, port: this.url.port || undefined, method: 'POST', path: '/', headers, agent: this.agent,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = text ? JSON.parse(text) : {}; } catch { json = { message: text.slice(0, 200) }; }
          if (res.statusCode === 200) resolve(json); else reject(new KinesisError(op, res.statusCode, json));
        });
        res.on('error', reject);
      });
      req.setTimeout(30000, () => req.destroy(new Error(`${op}: timeout`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  // One call, retried with backoff on throttling, 5xx and connection errors.
  async call(op, body) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this._once(op, body);
      } catch (e) {
        const retryable = e instanceof KinesisError ? e.status >= 500 || RETRYABLE.has(e.type)
          : TRANSIENT_NET.has(e.code) || /timeout/.test(e.message);
        if (!retryable || attempt >= RETRIES) throw e;
        await sleep(Math.random() * Math.min(5000, 100 * 2 ** attempt));
      }
    }
  }

  close() { this.agent.destroy(); }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// {StreamName} or {StreamARN, StreamName} (kinesalite wants StreamName; AWS takes both).
function streamParams(stream) {
  const m = /^arn:aws[a-z-]*:kinesis:([a-z0-9-]+):(\d+):stream\/(.+)$/.exec(stream);
  return m ? { params: { StreamARN: stream, StreamName: m[3] }, region: m[1] } : { params: { StreamName: stream } };
}

/** Reads every shard of the stream from TRIM_HORIZON into checker until each is caught up. */
async function readStream(kinesis, stream, checker, { timeoutMs = 300000 } = {}) {
  const until = Date.now() + timeoutMs;
  const { params } = streamParams(stream);
  const shards = [];
  let token;
  do {
    const d = await kinesis.call('ListShards', token ? { NextToken: token } : params);
    shards.push(...d.Shards);
    token = d.NextToken;
  } while (token);
  for (const shard of shards) {
    let { ShardIterator: it } = await kinesis.call('GetShardIterator', {
      ...params, ShardId: shard.ShardId, ShardIteratorType: 'TRIM_HORIZON',
    });
    while (it) {
      if (Date.now() > until) throw new Error(`shard ${shard.ShardId}: not caught up after ${timeoutMs / 1000} s`);
      const d = await kinesis.call('GetRecords', { ShardIterator: it, Limit: GET_RECORDS_LIMIT });
      for (const r of d.Records) checker.addData(Buffer.from(r.Data, 'base64'));
      // Caught up: an empty page at the tip. A closed shard (resharding) ends with no iterator.
      if (d.Records.length === 0 && !d.MillisBehindLatest) break;
      it = d.NextShardIterator;
      if (d.Records.length === 0) await sleep(EMPTY_PAGE_WAIT_MS);
    }
  }
  return shards.length;
}

const COLUMNS = [
  ['function', (s) => s.function || '-'],
  ['sandbox', (s) => s.sandbox],
  ['events', (s) => s.events],
  ['duplicates', (s) => s.duplicates],
  ['max seq', (s) => s.maxSeq],
  ['missing', (s) => s.missing + s.unaccounted],
  ['dropped', (s) => s.covered],
  ['verdict', (s) => s.verdict],
];

function formatTable(report, { shards, stream } = {}) {
  const rows = [COLUMNS.map(([h]) => h), ...report.sandboxes.map((s) => COLUMNS.map(([, f]) => String(f(s))))];
  const widths = COLUMNS.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const lines = rows.map((r) => r.map((c, i) => (i >= 2 && i <= 6 ? c.padStart(widths[i]) : c.padEnd(widths[i])))
    .join('  ').trimEnd());
  for (const s of report.sandboxes) {
    if (s.missingRangeCount) {
      const shown = s.missingRanges.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(', ');
      lines.push(`${s.sandbox}: missing ${shown}${s.missingRangeCount > s.missingRanges.length ? ', ...' : ''}`);
    }
    if (s.unaccounted) lines.push(`${s.sandbox}: ${s.unaccounted} numbers inside telkin.dropped ranges beyond its droppedRecords count (lost, hidden by coalesced ranges)`);
  }
  const where = shards === undefined ? `${stream}: ` : `${stream}: ${shards} shard(s), ${report.records} records, `;
  lines.push(`${where}${report.sandboxes.length} sandbox(es), ${report.totals.events} events, ` +
    `${report.totals.duplicates} duplicates, ${report.foreign} foreign`);
  lines.push(`verdict: ${report.verdict}`);
  return lines.join('\n');
}

function parseArgs(argv) {
  const o = { json: false, timeout: 300, ranges: 20 };
  const takes = new Set(['--endpoint', '--region', '--ca', '--timeout', '--ranges', '--file']);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') o.json = true;
    else if (a === '--from-lowest') o.fromLowest = true;
    else if (a === '-h' || a === '--help') o.help = true;
    else if (takes.has(a)) {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      o[a.slice(2)] = argv[++i];
    } else if (a.startsWith('--')) throw new Error(`unknown option ${a}`);
    else if (o.stream === undefined) o.stream = a;
    else throw new Error(`one stream only (got ${o.stream} and ${a})`);
  }
  for (const k of ['timeout', 'ranges']) {
    o[k] = Number(o[k]);
    if (!Number.isFinite(o[k]) || o[k] < 0) throw new Error(`--${k} takes a number`);
  }
  if (!o.help && (o.stream === undefined) === (o.file === undefined)) throw new Error('give a stream or --file, not both');
  return o;
}

function kinesisFromOptions(o, env) {
  const arnRegion = streamParams(o.stream).region;
  const endpointOverride = o.endpoint || env.AWS_ENDPOINT_URL_KINESIS || env.AWS_ENDPOINT_URL;
  const region = o.region || arnRegion || env.AWS_REGION || env.AWS_DEFAULT_REGION || (endpointOverride ? 'us-east-1' : '');
  if (!region) throw new Error('no region: --region, an ARN, AWS_REGION or AWS_DEFAULT_REGION');
  const endpoint = endpointOverride ||
    `https://kinesis.${region}.amazonaws.com${region.startsWith('cn-') ? '.cn' : ''}`;
  if (!/^https?:\/\//.test(endpoint)) throw new Error(`endpoint must be http:// or https://, not ${endpoint}`);
  let credentials = {
    accessKeyId: env.AWS_ACCESS_KEY_ID, secretAccessKey: env.AWS_SECRET_ACCESS_KEY, sessionToken: env.AWS_SESSION_TOKEN,
  };
  if (!credentials.accessKeyId || !credentials.secretAccessKey) {
    if (!endpointOverride) throw new Error('no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
    credentials = { accessKeyId: 'AKIDLOCALTEST', secretAccessKey: 'local' };
  }
  const ca = o.ca ? fs.readFileSync(o.ca) : undefined;
  return new Kinesis({ endpoint, region, ca, credentials });
}

async function main(argv, env) {
  let o;
  try { o = parseArgs(argv); } catch (e) {
    process.stderr.write(`telkin-check: ${e.message} (--help for usage)\n`);
    return 2;
  }
  if (o.help) {
    const lines = fs.readFileSync(__filename, 'utf8').split('\n').slice(2);
    const head = lines.slice(0, lines.findIndex((l) => !l.startsWith('//')));
    process.stdout.write(`${head.map((l) => l.replace(/^\/\/ ?/, '')).join('\n')}\n`);
    return 0;
  }
  const checker = new Checker();
  let shards;
  try {
    if (o.file !== undefined) {
      // A concatenation of records is NDJSON: the whole file is one Data.
      checker.addData(fs.readFileSync(o.file === '-' ? 0 : o.file));
    } else {
      const kinesis = kinesisFromOptions(o, env);
      try { shards = await readStream(kinesis, o.stream, checker, { timeoutMs: o.timeout * 1000 }); } finally { kinesis.close(); }
    }
  } catch (e) {
    process.stderr.write(`telkin-check: ${e.message}\n`);
    return 2;
  }
  const report = checker.report({ maxRanges: o.ranges, fromLowest: !!o.fromLowest });
  if (o.json) process.stdout.write(`${JSON.stringify({ stream: o.stream, file: o.file, shards, ...report })}\n`);
  else process.stdout.write(`${formatTable(report, { shards, stream: o.stream || o.file })}\n`);
  return report.verdict === 'GAPS' ? 1 : 0;
}

if (require.main === module) {
  main(process.argv.slice(2), process.env).then((code) => { process.exitCode = code; });
}

module.exports = { sigv4Authorization, readStream, formatTable, parseArgs, streamParams, Kinesis, main };

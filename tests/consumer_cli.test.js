'use strict';
// The reference consumer's CLI (tests/consumer/telkin-check.js) as a user runs it: hand-made
// records in telkin's format put into kinesalite, read back through ListShards / GetShardIterator
// / GetRecords, the per-sandbox table and --json checked; SigV4 against the shared known answers;
// --ca and session credentials against a small HTTPS Kinesis stand-in with a test CA.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const https = require('node:https');
const { Kinesalite, streamArn } = require('./kinesis');
const { makePki, tmpDir } = require('./prod_util');
const { sigv4Authorization, parseArgs } = require('./consumer/telkin-check');
const { telkinEvent, droppedEvent, ndjson, runCheck } = require('./consumer_util');

const SHARED = process.env.TELKIN_SHARED || path.join(__dirname, '..', '..', 'shared');

let kin;
let client;

test.before(async () => {
  kin = new Kinesalite();
  await kin.start();
  client = kin.client();
});

test.after(async () => { if (kin) await kin.close(); });

const put = (stream, records) => client.putRecords(stream, records.map(([partitionKey, data]) => ({ partitionKey, data })));

test('SigV4: the Authorization of the shared Kinesis known answers', () => {
  const { vectors } = JSON.parse(fs.readFileSync(path.join(SHARED, 'sigv4-kinesis-vectors.json'), 'utf8'));
  assert.ok(vectors.length >= 2);
  for (const v of vectors) {
    const headers = { ...v.headers, Host: v.host };
    if (v.session_token) headers['X-Amz-Security-Token'] = v.session_token;
    const auth = sigv4Authorization({
      method: v.method, path: v.path, headers, body: v.body, region: v.region, service: v.service,
      accessKeyId: v.access_key_id, secretAccessKey: v.secret_access_key,
    });
    assert.equal(auth, v.expected_authorization, v.name);
  }
});

test('kinesalite, 2 shards: every kind of record, complete with dropped, duplicates and foreign counted', { timeout: 60000 }, async () => {
  const stream = 'consumer-complete';
  await client.createStream(stream, 2);
  // sandbox A: event records 1-40 (with the trailing newline), one redelivered, 41-45 dropped and
  // reported by 46; sandbox B: ndjson records with and without the trailing newline.
  const a = [];
  for (let i = 1; i <= 40; i++) a.push(['sb-a', telkinEvent('sb-a', i)]);
  a.push(['sb-a', telkinEvent('sb-a', 17)]);
  a.push(['sb-a', droppedEvent('sb-a', 46, { droppedRecords: 5, seqRanges: [[41, 45]] })]);
  a.push(['sb-a', telkinEvent('sb-a', 47).trimEnd()]);
  const b = [
    ['sb-b', ndjson([1, 2, 3].map((i) => telkinEvent('sb-b', i, { fn: 'other' })))],
    ['sb-b', ndjson([4, 5].map((i) => telkinEvent('sb-b', i, { fn: 'other' })), { trailingNewline: false })],
    ['sb-b', telkinEvent('sb-b', 6, { fn: 'other', type: 'platform.report', record: { requestId: 'r' } })],
  ];
  await put(stream, [...a, ...b, ['x', 'a foreign record'], ['y', '{"json":"but not telkin"}']]);
  const r = await runCheck(stream, { endpoint: kin.endpoint });
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const rep = r.report;
  assert.equal(rep.shards, 2);
  assert.equal(rep.records, a.length + b.length + 2);
  assert.equal(rep.foreign, 2);
  assert.equal(rep.verdict, 'complete, 5 reported dropped');
  const by = Object.fromEntries(rep.sandboxes.map((s) => [s.sandbox, s]));
  assert.deepEqual(
    [by['sb-a'].events, by['sb-a'].duplicates, by['sb-a'].missing, by['sb-a'].covered, by['sb-a'].maxSeq, by['sb-a'].verdict],
    [42, 1, 0, 5, 47, 'complete, 5 reported dropped']);
  assert.deepEqual([by['sb-b'].events, by['sb-b'].function, by['sb-b'].verdict], [6, 'other', 'complete']);
});

test('kinesalite, by ARN: a gap is GAPS, exit status 1, the table names the missing numbers', { timeout: 60000 }, async () => {
  const stream = 'consumer-gaps';
  await client.createStream(stream, 1);
  await put(stream, [1, 2, 3, 5, 6, 9, 10].map((i) => ['sb-g', telkinEvent('sb-g', i)]));
  const arn = streamArn(stream, kin.region);
  const j = await runCheck(arn, { endpoint: kin.endpoint });
  assert.equal(j.code, 1, j.stderr);
  assert.equal(j.report.verdict, 'GAPS');
  assert.deepEqual(j.report.sandboxes[0].missingRanges, [[4, 4], [7, 8]]);
  assert.equal(j.report.sandboxes[0].missing, 3);
  // The table, as a person reads it.
  const table = await runCheck(arn, { endpoint: kin.endpoint, json: false });
  assert.equal(table.code, 1);
  const lines = table.stdout.trimEnd().split('\n');
  assert.match(lines[0], /^function\s+sandbox\s+events\s+duplicates\s+max seq\s+missing\s+dropped\s+verdict$/);
  assert.match(lines[1], /^fn-test\s+sb-g\s+7\s+0\s+10\s+3\s+0\s+GAPS$/);
  assert.ok(lines.includes('sb-g: missing 4, 7-8'), table.stdout);
  assert.equal(lines.at(-1), 'verdict: GAPS');
});

test('kinesalite, an empty stream: no telkin events, exit status 0', { timeout: 30000 }, async () => {
  await client.createStream('consumer-empty', 1);
  const r = await runCheck('consumer-empty', { endpoint: kin.endpoint });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.report.verdict, 'no telkin events');
});

test('a stream that does not exist: exit status 2 with Kinesis\'s error', { timeout: 30000 }, async () => {
  const r = await runCheck('no-such-stream', { endpoint: kin.endpoint });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /ResourceNotFoundException/);
});

test('--file: a concatenation of records (Firehose objects) and stdin', async () => {
  const dir = tmpDir('telkin-consumer-');
  const file = path.join(dir, 'objects.ndjson');
  fs.writeFileSync(file, [1, 2, 4].map((i) => telkinEvent('sb-f', i)).join(''));
  const r = await runCheck(undefined, { args: ['--file', file] });
  assert.equal(r.code, 1);
  assert.deepEqual(r.report.sandboxes[0].missingRanges, [[3, 3]]);
});

test('usage errors: exit status 2', async () => {
  assert.equal((await runCheck(undefined)).code, 2);
  assert.equal((await runCheck('s', { args: ['--bogus'] })).code, 2);
  assert.equal((await runCheck('s', { env: { AWS_REGION: 'us-east-1' } })).code, 2, 'no credentials and no endpoint');
  assert.throws(() => parseArgs(['a', 'b']), /one stream only/);
  assert.equal((await runCheck(undefined, { args: ['--help'] })).code, 0);
});

test('HTTPS with --ca and session credentials: signed requests, the token sent, every page read', { timeout: 30000 }, async (t) => {
  const pki = makePki();
  const seen = [];
  const pages = [[1, 2], [3], []];
  const server = https.createServer({ key: pki.good.key, cert: pki.good.cert }, (req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      const op = String(req.headers['x-amz-target']).split('.')[1];
      seen.push({ op, auth: req.headers.authorization, token: req.headers['x-amz-security-token'], body: JSON.parse(body) });
      let out = {};
      if (op === 'ListShards') out = { Shards: [{ ShardId: 'shardId-000000000000' }] };
      else if (op === 'GetShardIterator') out = { ShardIterator: 'it-0' };
      else if (op === 'GetRecords') {
        const n = Number(JSON.parse(body).ShardIterator.slice(3));
        const recs = pages[n].map((i) => ({ Data: Buffer.from(telkinEvent('sb-t', i)).toString('base64'), PartitionKey: 'sb-t' }));
        out = { Records: recs, NextShardIterator: `it-${n + 1}`, MillisBehindLatest: n < 2 ? 1000 : 0 };
      }
      res.writeHead(200, { 'Content-Type': 'application/x-amz-json-1.1' });
      res.end(JSON.stringify(out));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const r = await runCheck('arn:aws:kinesis:eu-west-1:111122223333:stream/tls-test', {
    endpoint: `https://localhost:${server.address().port}`, ca: pki.caFile,
    env: { AWS_ACCESS_KEY_ID: 'AKIDSESSION', AWS_SECRET_ACCESS_KEY: 'secret', AWS_SESSION_TOKEN: 'tok/en==' },
  });
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.report.verdict, 'complete');
  assert.equal(r.report.sandboxes[0].events, 3);
  assert.deepEqual(seen.map((s) => s.op), ['ListShards', 'GetShardIterator', 'GetRecords', 'GetRecords', 'GetRecords']);
  for (const s of seen) {
    assert.match(s.auth, /^AWS4-HMAC-SHA256 Credential=AKIDSESSION\/\d{8}\/eu-west-1\/kinesis\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$/);
    assert.equal(s.token, 'tok/en==');
  }
  assert.deepEqual(seen[0].body, { StreamARN: 'arn:aws:kinesis:eu-west-1:111122223333:stream/tls-test', StreamName: 'tls-test' });
  // Without --ca the test CA is not trusted: a read error, exit status 2.
  const untrusted = await runCheck('tls-test', {
    endpoint: `https://localhost:${server.address().port}`, env: { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' },
  });
  assert.equal(untrusted.code, 2);
  assert.match(untrusted.stderr, /certificate/i);
});

'use strict';
// Self-test of the kinesalite harness: start, create, put, read back decoded, restart without
// losing data (graceful and SIGKILL), and kinesalite's refusal of StreamARN-only requests.

const test = require('node:test');
const assert = require('node:assert/strict');
const { Kinesalite, streamArn } = require('./kinesis');

test('kinesalite harness keeps data across restarts and decodes records', { timeout: 60000 }, async () => {
  const k = new Kinesalite();
  try {
    await k.start();
    const c = k.client();
    const s = await c.createStream('harness', 2);
    assert.equal(s.StreamStatus, 'ACTIVE');
    assert.equal(s.StreamARN, streamArn('harness'));
    const recs = [];
    for (let i = 0; i < 1200; i++) recs.push({ partitionKey: `pk${i % 7}`, data: JSON.stringify({ i, s: 'caf\u00e9 \ud83d\ude80' }) });
    for (let i = 0; i < recs.length; i += 500) {
      const r = await c.putRecords('harness', recs.slice(i, i + 500));
      assert.equal(r.FailedRecordCount, 0);
    }
    await c.putRecords('harness', [{ partitionKey: 'x', data: 'not json' }]);
    const port = k.port;
    await k.restart();
    assert.equal(k.port, port, 'restart keeps the port');
    await k.stop({ hard: true });
    await k.start();
    assert.equal(k.port, port);
    const all = await c.readAll('harness');
    assert.equal(all.length, 1201);
    const seen = all.filter((r) => r.json).map((r) => r.json.i).sort((a, b) => a - b);
    assert.deepEqual(seen, recs.map((_, i) => i));
    assert.equal(all.find((r) => r.json === null).data, 'not json');
    assert.equal(all.find((r) => r.json && r.json.i === 5).json.s, 'caf\u00e9 \ud83d\ude80');
    // Per shard, records come back in sequence order.
    for (const shard of new Set(all.map((r) => r.shardId))) {
      const seqs = all.filter((r) => r.shardId === shard).map((r) => BigInt(r.sequenceNumber));
      for (let i = 1; i < seqs.length; i++) assert.ok(seqs[i] > seqs[i - 1]);
    }
    await assert.rejects(c.call('PutRecords', { StreamARN: streamArn('harness'), Records: [{ PartitionKey: 'a', Data: 'eA==' }] }),
      /ValidationException/);
  } finally {
    await k.close();
  }
});

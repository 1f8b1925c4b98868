#!/usr/bin/env node
// Runs kinesalite bound to 127.0.0.1 (the stock CLI binds every interface and cannot take port 0).
// Usage: node kinesalite_server.js <port|0> <leveldb-dir>
// Prints one JSON line {"port": N} on stdout once listening; exits on SIGTERM/SIGINT.
'use strict';
const kinesalite = require('kinesalite');

const port = Number(process.argv[2] || 0);
const dir = process.argv[3];
if (!dir) {
  console.error('usage: kinesalite_server.js <port> <dir>');
  process.exit(2);
}
const server = kinesalite({
  path: dir,
  createStreamMs: 0,
  deleteStreamMs: 0,
  updateStreamMs: 0,
  shardLimit: 100,
});
server.on('error', (e) => {
  console.error(`kinesalite: ${e.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    // leveldown flushes its write-ahead log on every write; closing the store is a courtesy.
    setTimeout(() => process.exit(0), 50).unref();
  });
}
// The parent's death closes our stdin: follow it rather than linger.
process.stdin.on('end', () => process.exit(0));
process.stdin.on('error', () => process.exit(0));
process.stdin.resume();

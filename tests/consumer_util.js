'use strict';
// Records in telkin's format for the consumer tests (tests/consumer_*.test.js, e2e oracle): one
// event object with the appended members, each followed by '\n' unless said otherwise, and the
// reference consumer (tests/consumer/telkin-check.js) run as a user runs it.

const path = require('node:path');
const { execFile } = require('node:child_process');

const CHECK_CLI = path.join(__dirname, 'consumer', 'telkin-check.js');

const APPENDED = { function: 'fn-test', version: '$LATEST', region: 'us-east-1' };

// One function event of `sandbox` numbered `seq`, as telkin ships it ('\n' at the end).
function telkinEvent(sandbox, seq, { type = 'function', record = `line ${seq}`, requestId = 'req-1', fn } = {}) {
  const ev = { time: '2026-12-01T10:00:00.000Z', type, record };
  if (requestId && (type === 'function' || type === 'extension')) ev.requestId = requestId;
  Object.assign(ev, APPENDED, fn ? { function: fn } : {}, { sandbox, seq });
  return `${JSON.stringify(ev)}\n`;
}

// telkin's own report of dropped events, numbered `seq` itself.
function droppedEvent(sandbox, seq, { droppedRecords, seqRanges, reason = 'queue full' }) {
  const ev = {
    time: '2026-12-01T10:00:01.000Z',
    type: 'telkin.dropped',
    record: { droppedRecords, droppedBytes: 300 * droppedRecords, platform: 0, function: droppedRecords, extension: 0, reason, seqRanges },
    ...APPENDED,
    sandbox,
    seq,
  };
  return `${JSON.stringify(ev)}\n`;
}

// Several events in one record (TELKIN_RECORD=ndjson), '\n'-separated, trailing '\n' or not.
function ndjson(lines, { trailingNewline = true } = {}) {
  const body = lines.map((l) => l.trimEnd()).join('\n');
  return trailingNewline ? `${body}\n` : body;
}

// A Kinesis event source mapping's event for lambda.js.
function kinesisEvent(datas) {
  return {
    Records: datas.map((d, i) => ({
      kinesis: { partitionKey: 'pk', sequenceNumber: String(i), data: Buffer.from(d).toString('base64') },
      eventSource: 'aws:kinesis',
      eventSourceARN: 'arn:aws:kinesis:us-east-1:000000000000:stream/test',
    })),
  };
}

/**
 * Runs telkin-check.js (with --json unless json: false) against `stream` (name or ARN) at `endpoint`.
 * Resolves {code, report, stdout, stderr}; report is null when stdout is not JSON.
 */
function runCheck(stream, { endpoint, ca, region, env = {}, args = [], json = true } = {}) {
  const argv = [CHECK_CLI, ...(json ? ['--json'] : []), ...args];
  if (endpoint) argv.push('--endpoint', endpoint);
  if (ca) argv.push('--ca', ca);
  if (region) argv.push('--region', region);
  if (stream !== undefined) argv.push(stream);
  return new Promise((resolve) => {
    execFile(process.execPath, argv, { env: { PATH: process.env.PATH, ...env }, timeout: 120000 }, (err, stdout, stderr) => {
      let report = null;
      try { report = JSON.parse(stdout); } catch { /* not JSON */ }
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, report, stdout, stderr });
    });
  });
}

module.exports = { telkinEvent, droppedEvent, ndjson, kinesisEvent, runCheck, CHECK_CLI };

#!/usr/bin/env node
'use strict';
// The demo: kinesalite + the Lambda simulator + telkin. Two sandboxes (one function with text
// logs, one with JSON logs) each run a few invocations and shut down; then every record in the
// stream is printed, decoded, one per line, followed by a one-line summary.
//
//   node tests/demo.js            (TELKIN_BIN, TELKIN_BIN_WRAPPER select the binary)
//   DEMO_VERBOSE=1                also echo telkin's own output

const path = require('node:path');
const net = require('node:net');
const { LambdaSim } = require('./lambda_sim');
const { Kinesalite } = require('./kinesis');
const { compare, appendedOf } = require('./compare');

const BIN = path.resolve(__dirname, process.env.TELKIN_BIN || '../build/telkin');
const WRAPPER = (process.env.TELKIN_BIN_WRAPPER || '').split(/\s+/).filter(Boolean);
const STREAM = 'telkin-demo';
const tty = process.stdout.isTTY;
const dim = (s) => (tty ? `\x1b[2m${s}\x1b[0m` : s);
const bold = (s) => (tty ? `\x1b[1m${s}\x1b[0m` : s);
const width = Math.max(100, (tty && process.stdout.columns) || 160);

const { freePort } = require('./ports');
const { Checker } = require('./consumer/check');

function oneLine(j) {
  const r = j.record;
  let what;
  if (typeof r === 'string') what = JSON.stringify(r.replace(/\n$/, ''));
  else if (j.type === 'function' || j.type === 'extension') what = `[${r.level}] ${JSON.stringify(r.message)}`;
  else if (r && typeof r === 'object') {
    const { requestId, ...rest } = r;
    what = (requestId ? `req=${requestId.slice(0, 8)} ` : '') + JSON.stringify(rest);
  } else what = JSON.stringify(r);
  // "requestId" telkin appended to a function or extension line: the invocation that wrote it.
  if (appendedOf(j).requestId) what = `req=${j.requestId.slice(0, 8)} ${what}`;
  const head = `${j.time.slice(11, 23)} ${j.sandbox.slice(0, 8)} #${String(j.seq).padEnd(3)} ` +
    `${j.function}:${j.version} ${j.type.padEnd(31)}`;
  const line = `${head} ${what}`;
  return line.length > width ? line.slice(0, width - 1) + '…' : line;
}

async function runSandbox(kin, { functionName, logFormat, invokes, lines }) {
  const sim = new LambdaSim({
    bin: BIN, wrapper: WRAPPER, functionName, functionVersion: '3', logFormat, region: kin.region,
    echo: !!process.env.DEMO_VERBOSE,
    env: {
      TELKIN_STREAM: STREAM,
      AWS_ENDPOINT_URL_KINESIS: kin.endpoint,
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'demo-secret',
      TELKIN_LISTEN_PORT: String(await freePort()),
    },
  });
  try {
    await sim.start();
    await sim.waitInit();
    console.log(dim(`  ${functionName}: ${logFormat} logs, telkin pid ${sim.pid}, cold start ` +
      `${sim.coldStartMs.toFixed(1)} ms (exec → first /event/next)`));
    for (let i = 0; i < invokes; i++) {
      const inv = await sim.invoke({ lines });
      console.log(dim(`    invoke ${i + 1}: request ${inv.requestId}, ${lines} log lines, ` +
        `/event/next ${inv.extensionNextAt - inv.runtimeDoneAt} ms after runtimeDone`));
    }
    const sd = await sim.shutdown();
    console.log(dim(`    SHUTDOWN (${sd.reason}): exit code ${sd.code}${sd.signal ? ' signal ' + sd.signal : ''} ` +
      `after ${sd.shutdownToExitMs} ms${sd.overrun ? ' — OVERRAN the deadline, killed' : ''}`));
    return sim;
  } catch (e) {
    console.error(`  ${functionName}: ${e.message}`);
    if (sim.stderrLines.length) console.error(dim(sim.stderrLines.slice(-10).map((l) => `    | ${l}`).join('\n')));
    sim.failed = e;
    return sim;
  } finally {
    await sim.close();
  }
}

async function main() {
  const kin = new Kinesalite();
  let rc = 0;
  try {
    await kin.start();
    const client = kin.client();
    await client.createStream(STREAM, 1);
    console.log(bold(`telkin demo: ${path.relative(process.cwd(), BIN) || BIN}${WRAPPER.length ? ' via ' + WRAPPER.join(' ') : ''}` +
      ` → Kinesis stream "${STREAM}" (kinesalite ${kin.endpoint})`));
    const sims = [];
    sims.push(await runSandbox(kin, { functionName: 'orders-api', logFormat: 'Text', invokes: 3, lines: 2 }));
    sims.push(await runSandbox(kin, { functionName: 'billing-worker', logFormat: 'JSON', invokes: 2, lines: 2 }));

    const records = await client.readAll(STREAM);
    console.log(bold(`\nrecords in the stream (${records.length}):`));
    for (const r of records) console.log(r.json ? oneLine(r.json) : `(not JSON) ${r.data.slice(0, width - 12)}`);

    let emitted = 0;
    let arrived = 0;
    let missing = 0;
    let dups = 0;
    let unexpected = 0;
    for (const sim of sims) {
      const sandboxRecords = records.filter((r) => r.json && r.json.function === sim.o.functionName);
      const cmp = compare(sim, sandboxRecords);
      emitted += cmp.expected;
      arrived += cmp.expected - cmp.missing.length;
      missing += cmp.missing.length;
      dups += cmp.duplicates;
      unexpected += cmp.unexpected.length;
      if (sim.failed || cmp.problems.length) rc = 1;
    }
    if (missing || unexpected) rc = 1;
    // What a consumer can prove from the stream alone (tests/consumer, README).
    const checker = new Checker();
    for (const r of records) checker.addData(r.data);
    const rep = checker.report();
    console.log(bold('\nreference consumer (tests/consumer/check.js), from the stream alone:'));
    for (const sb of rep.sandboxes) {
      console.log(`  ${sb.function.padEnd(15)} sandbox ${sb.sandbox.slice(0, 8)}  seq 1..${sb.maxSeq}  events ${sb.events}` +
        `  duplicates ${sb.duplicates}  missing ${sb.missing}  ${sb.verdict}`);
    }
    if (rep.verdict !== 'complete') rc = 1;
    console.log(bold(`\nsummary: events emitted ${emitted} / arrived ${arrived} / missing ${missing}` +
      (dups ? ` / duplicates ${dups}` : '') + (unexpected ? ` / unmatched ${unexpected}` : '') +
      ` — ${rc ? 'FAIL' : 'OK'}`));
  } catch (e) {
    console.error(`demo: ${e.stack || e.message}`);
    rc = 1;
  } finally {
    await kin.close();
  }
  process.exit(rc);
}

main();

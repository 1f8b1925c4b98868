#!/usr/bin/env node
'use strict';
// make bench: telkin's figures against its targets, printed, never asserted.
//
//   cold    exec -> first /event/next (LambdaSim's cold-start clock), telkin vs the floor program
//           (tests/floor_extension.c: register + listener + subscribe + /event/next, nothing else)
//   rss     VmHWM (/proc/<pid>/status, read while frozen, before SHUTDOWN) idle and after a
//           20 000-line invoke
//   tput    events/s from telkin's listener to a fast PutRecords sink (tests/fast_sink.js), one
//           telkin process (one thread, so one core), paced so that nothing is dropped: the
//           figure is what the sink received, not what telkin accepted
//   invoke  time from the hand-over of the batch that carries platform.runtimeDone to telkin's
//           /event/next, with nothing to ship; calibrated by the floor program waiting for the
//           same batch
//   strategy  TELKIN_FLUSH=end, periodic:1000 and auto on one simulated workload (a frequent phase
//           of invokes 100-300 ms apart, then a rare phase 11 s apart): time added after
//           runtimeDone (as 'invoke' measures it), log line emission -> arrival at the sink, and
//           events not yet at the sink when the sandbox froze
//   packing TELKIN_RECORD=event vs ndjson: Kinesis records, PUT payload units (25 KiB per record,
//           data + partition key, rounded up) and PutRecords requests per 100 000 events of a
//           realistic mix, counted at the sink
//
// usage: node bench.js [--only cold,rss,tput,invoke,strategy,packing] [--runs N] [--events N]
//                      [--invokes N] [--frequent N] [--rare N]
// env:   TELKIN_BIN (default ../build/telkin), FLOOR_BIN (default ../build/x86_64/floor_extension)
// Every child (extensions, the sink's thread) ends with this process; the run is bounded.

const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { LambdaSim } = require('./lambda_sim');
const { startSinkWorker, measureSink, eventKey, hrNowMs } = require('./fast_sink');

const TELKIN = path.resolve(__dirname, process.env.TELKIN_BIN || '../build/telkin');
const FLOOR = path.resolve(__dirname, process.env.FLOOR_BIN || '../build/x86_64/floor_extension');
const BUDGET_MS = 230000;

function parseArgs(argv) {
  const a = {
    only: ['cold', 'rss', 'tput', 'invoke', 'strategy', 'packing'], runs: 30, events: 500000, invokes: 100,
    frequent: 58, rare: 2,
  };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--only') a.only = v().split(',');
    else if (k === '--runs') a.runs = Number(v());
    else if (k === '--events') a.events = Number(v());
    else if (k === '--invokes') a.invokes = Number(v());
    else if (k === '--frequent') a.frequent = Number(v());
    else if (k === '--rare') a.rare = Number(v());
    else if (k === '--help' || k === '-h') a.help = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

// ------------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hrMs = (a, b) => Number(b - a) / 1e6;

function pct(xs, p) {
  const s = [...xs].sort((x, y) => x - y);
  if (!s.length) return NaN;
  const i = (s.length - 1) * p;
  const lo = Math.floor(i), hi = Math.ceil(i);
  return s[lo] + (s[hi] - s[lo]) * (i - lo);
}
const med = (xs) => pct(xs, 0.5);
const f = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}

function procStatus(pid) {
  const out = {};
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
      const m = /^(Vm\w+):\s+(\d+) kB/.exec(line);
      if (m) out[m[1]] = Number(m[2]);
    }
  } catch { /* gone */ }
  return out;
}

// utime + stime of a process, in ms.
function cpuMs(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const hz = 100; // USER_HZ on Linux
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / hz;
  } catch { return NaN; }
}

// telkin's exit summary (one stderr line); fields by name so that additions do not break it.
function summaryOf(sim) {
  const line = [...sim.stderrLines].reverse().find((l) => /events received \d+/.test(l)) || '';
  const num = (re) => { const m = re.exec(line); return m ? Number(m[1]) : undefined; };
  const dp = num(/dropped platform (\d+)/), df = num(/function (\d+) extension/), de = num(/extension (\d+)/);
  return {
    line,
    received: num(/events received (\d+)/),
    queued: num(/queued (\d+)/),
    shipped: num(/(?:records )?shipped (\d+)/),
    records: num(/in (\d+) records/),
    calls: num(/(?:in|and) (\d+) PutRecords/),
    dropped: [dp, df, de].every((x) => x !== undefined) ? dp + df + de : undefined,
    highWater: num(/high-water (\d+)/),
    lost: num(/lost at exit (\d+)/),
  };
}

function telkinEnv(sink, port, extra = {}) {
  return {
    TELKIN_STREAM: 'bench',
    AWS_ENDPOINT_URL_KINESIS: sink.endpoint,
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    TELKIN_LISTEN_PORT: String(port),
    ...extra,
  };
}

async function newSim(bin, env, o = {}) {
  const sim = new LambdaSim({ bin, env, initTimeoutMs: 5000, ...o });
  await sim.start();
  await sim.waitInit();
  return sim;
}

const rows = [];   // {name, value, target, ok, cmd}
function row(name, value, target, ok, cmd) { rows.push({ name, value, target, ok, cmd }); }
const CMD = (only) => `node tests/bench.js --only ${only}`;

// ------------------------------------------------------------------------------------------------
// a. Cold start

// Pin this process's main thread (and so the extensions it spawns) to one CPU, or undo it.
// The sink's thread keeps its own affinity. false when taskset is not there.
function pinMain(cpus) {
  try {
    execFileSync('taskset', ['-p', '-c', cpus, String(process.pid)], { stdio: 'ignore' });
    return true;
  } catch { return false; }
}

// Wrapper making sandbox.localdomain resolve from /etc/hosts, in a private mount namespace
// (root and unshare(1) needed): what Lambda's /etc/hosts provides. null when not possible.
function hostsWrapper() {
  try {
    if (process.getuid() !== 0) return null;
    execFileSync('unshare', ['-m', 'true'], { stdio: 'ignore' });
    const file = path.join(require('node:os').tmpdir(), `telkin-bench-hosts-${process.pid}`);
    fs.writeFileSync(file, fs.readFileSync('/etc/hosts', 'utf8') + '\n127.0.0.1 sandbox.localdomain\n');
    process.on('exit', () => { try { fs.unlinkSync(file); } catch { /* gone */ } });
    return ['unshare', '-m', 'sh', '-c', `mount --bind ${file} /etc/hosts && exec "$0"`];
  } catch { return null; }
}

// Cold starts, interleaved; also the three legs of each (the simulator's clock): spawn ->
// register read, register -> subscribe read, subscribe -> /event/next read.
async function coldRuns(sink, runs, wrapper = []) {
  const res = { telkin: [], floor: [], legs: { telkin: [[], [], []], floor: [[], [], []] } };
  let failures = 0;
  const one = async (which, keep) => {
    const bin = which === 'telkin' ? TELKIN : FLOOR;
    const sim = new LambdaSim({ bin, env: telkinEnv(sink, await freePort()), wrapper, initTimeoutMs: 5000 });
    const hr = {};
    sim.once('register', () => { hr.reg = process.hrtime.bigint(); });
    sim.once('subscribe', () => { hr.sub = process.hrtime.bigint(); });
    sim.once('next', () => { hr.next = process.hrtime.bigint(); });
    try {
      await sim.start();
      await sim.waitInit();
    } catch (e) {
      await sim.close();
      if (++failures > 3) throw e;
      console.log(`   (a ${which} run failed, not counted: ${e.message}; ${sim.stderrLines.slice(-2).join(' | ')})`);
      return one(which, keep);
    }
    await sim.close();
    if (keep) {
      res[which].push(sim.coldStartMs);
      const l = res.legs[which];
      l[0].push(hrMs(sim.timings.spawnHr, hr.reg));
      l[1].push(hrMs(hr.reg, hr.sub));
      l[2].push(hrMs(hr.sub, hr.next));
    }
  };
  for (let i = 0; i < 3; i++) { await one('telkin', false); await one('floor', false); }
  for (let i = 0; i < runs; i++) {
    const order = i % 2 ? ['floor', 'telkin'] : ['telkin', 'floor'];
    for (const w of order) await one(w, true);
  }
  return res;
}

// Per run: register -> /event/next, what the extension does after its process is up (no exec).
const after = (r, w) => r.legs[w][1].map((x, i) => x + r.legs[w][2][i]);

async function benchCold(sink, a) {
  const ncpu = require('node:os').availableParallelism?.() || require('node:os').cpus().length;
  const pinned = ncpu > 1 && pinMain(String(ncpu - 1));
  let hostsListed = false;
  try { hostsListed = /^\s*[^#\s]+\s+(.*\s)?sandbox\.localdomain(\s|$)/m.test(fs.readFileSync('/etc/hosts', 'utf8')); } catch { /* none */ }
  console.log(`\n-- cold start: exec -> first /event/next (LambdaSim), ${a.runs} runs each, interleaved, 3 warm-up` +
    (pinned ? `; simulator and extension pinned to CPU ${ncpu - 1} (less cross-CPU wake-up noise)` : ''));
  let res, gapHosts;
  try {
    res = await coldRuns(sink, a.runs);
    if (!hostsListed) {
      const w = hostsWrapper();
      if (w) {
        const h = await coldRuns(sink, Math.max(10, a.runs >> 1), w);
        gapHosts = { t: med(h.telkin), f: med(h.floor), h, own: med(after(h, 'telkin')) - med(after(h, 'floor')) };
      }
    }
  } finally {
    if (pinned) pinMain(`0-${ncpu - 1}`);
  }
  for (const w of ['telkin', 'floor']) {
    const slow = res[w].filter((x) => x > 100).length;
    console.log(`   ${w.padEnd(6)} median ${f(med(res[w]))} ms  p10 ${f(pct(res[w], 0.1))}  p90 ${f(pct(res[w], 0.9))}` +
      `  min ${f(Math.min(...res[w]))}  max ${f(Math.max(...res[w]))}${slow ? `  (${slow} runs over 100 ms)` : ''}`);
  }
  const legs = (w, r = res) => r.legs[w].map((l) => f(med(l))).join(' / ');
  console.log(`   legs, medians (spawn->register / register->subscribe / subscribe->next): telkin ${legs('telkin')} ms,` +
    ` floor ${legs('floor')} ms`);
  const ratio = med(res.telkin) / med(res.floor);
  const gap = med(res.telkin) - med(res.floor);
  const ownGap = med(after(res, 'telkin')) - med(after(res, 'floor'));
  console.log(`   ratio of medians ${f(ratio)}x, gap ${f(gap)} ms (the simulator's spawn and its answers are in both)`);
  if (!hostsListed) {
    console.log('   note: sandbox.localdomain is not in /etc/hosts here, so telkin\'s listener address lookup goes to DNS' +
      ' (musl: a UDP query, 2.5 s more when a packet is lost); the floor binds 127.0.0.1 without a lookup');
    if (gapHosts) {
      console.log(`   with sandbox.localdomain in /etc/hosts (private mount namespace; the unshare/sh/mount wrapper` +
        ` is in both, so only the legs after register compare): legs telkin ${legs('telkin', gapHosts.h)},` +
        ` floor ${legs('floor', gapHosts.h)} ms; register -> next gap ${f(gapHosts.own)} ms (${f(ownGap)} ms without)`);
    }
  }
  row('cold start telkin, median (p10/p90)', `${f(med(res.telkin))} ms (${f(pct(res.telkin, 0.1))}/${f(pct(res.telkin, 0.9))})`,
    '-', null, CMD('cold'));
  row('cold start floor, median (p10/p90)', `${f(med(res.floor))} ms (${f(pct(res.floor, 0.1))}/${f(pct(res.floor, 0.9))})`,
    '-', null, CMD('cold'));
  row('cold start ratio telkin/floor', `${f(ratio)}x (+${f(gap)} ms)`, '<= 1.2x', ratio <= 1.2, CMD('cold'));
  if (gapHosts) {
    row('  register->next gap, name in /etc/hosts', `+${f(gapHosts.own)} ms (+${f(ownGap)} without)`, '-', null, CMD('cold'));
  }
}

// ------------------------------------------------------------------------------------------------
// b. Peak RSS

async function benchRss(sink) {
  console.log('\n-- peak RSS (VmHWM, read while frozen): init + 5 invokes of 3 lines, then one invoke of 20 000 lines');
  const out = {};
  for (const [which, bin] of [['telkin', TELKIN], ['floor', FLOOR]]) {
    const sim = await newSim(bin, telkinEnv(sink, await freePort()));
    try {
      for (let i = 0; i < 5; i++) await sim.invoke({ lines: 3 });
      const idle = procStatus(sim.pid);
      const t0 = Date.now();
      await sim.invoke({ lines: 20000 });
      const burstMs = Date.now() - t0;
      const burst = procStatus(sim.pid); // frozen again: the invoke ended at /event/next
      const sd = await sim.shutdown();
      const s = which === 'telkin' ? summaryOf(sim) : {};
      out[which] = { idle, burst, s };
      console.log(`   ${which.padEnd(6)} idle VmHWM ${idle.VmHWM} kB (VmRSS ${idle.VmRSS}), after burst VmHWM ${burst.VmHWM} kB` +
        ` (VmRSS ${burst.VmRSS}); burst invoke ${burstMs} ms; exit ${sd.code}`);
      if (which === 'telkin') {
        console.log(`          telkin: shipped ${s.shipped} in ${s.calls} PutRecords, dropped ${s.dropped}, ` +
          `queue high-water ${s.highWater} B, lost at exit ${s.lost}`);
      }
    } finally {
      await sim.close();
    }
  }
  const t = out.telkin;
  const mb = (kb) => kb / 1024;
  row('peak RSS idle (VmHWM)', `${f(mb(t.idle.VmHWM))} MB (floor ${f(mb(out.floor.idle.VmHWM))})`, '<= 2 MB',
    mb(t.idle.VmHWM) <= 2, CMD('rss'));
  row('peak RSS 20k-line burst (VmHWM)', `${f(mb(t.burst.VmHWM))} MB, ${t.s.dropped ?? '?'} dropped`, '<= 16 MB',
    mb(t.burst.VmHWM) <= 16, CMD('rss'));
}

// ------------------------------------------------------------------------------------------------
// c. Throughput

// Telemetry API events of 200-300 bytes: text and JSON function logs, as Lambda sends them.
function makeBatches(nBatches, perBatch) {
  const rid = () => '8f5b5b8c-' + Math.random().toString(16).slice(2, 6) + '-4a8e-9c1d-2b7f0e3a6d59';
  const batches = [];
  let k = 0;
  for (let b = 0; b < nBatches; b++) {
    const evs = [];
    const reqId = rid();
    for (let i = 0; i < perBatch; i++, k++) {
      const t = new Date(Date.UTC(2025, 0, 1, 12, 0, 0, k % 1000)).toISOString();
      const msg = `processed order ${100000 + k} for customer c-${k % 977} in ${k % 53} ms: status=ok items=${k % 9} total=${(k % 10000) / 100} EUR`;
      if (k % 2) {
        evs.push(JSON.stringify({ time: t, type: 'function', record: `${t}\t${reqId}\tINFO\t${msg} "quoted" \\ path\n` }));
      } else {
        evs.push(JSON.stringify({ time: t, type: 'function', record: { timestamp: t, level: 'INFO', requestId: reqId, message: msg } }));
      }
    }
    batches.push(Buffer.from('[' + evs.join(',') + ']'));
  }
  return batches;
}

async function benchTput(sink, a) {
  const perBatch = 1000;
  const total = Math.ceil(a.events / perBatch) * perBatch;
  const batches = makeBatches(8, perBatch);
  const avgEv = batches.reduce((s, b) => s + b.length, 0) / (batches.length * perBatch);
  // Pacing: at most `window` events accepted by telkin and not yet at the sink. 12 000 events of
  // ~(avgEv + identity + header) bytes stay well inside the default 8 MiB queue: nothing is
  // dropped, so what the sink counts is what was sent.
  const window = 12000;
  console.log(`\n-- throughput: ${total} events in POSTs of ${perBatch} (avg ${f(avgEv, 0)} B/event) to telkin's listener` +
    ` during one invoke; at most ${window} events in telkin at a time; default queue (8 MiB)`);
  const port = await freePort();
  const sim = await newSim(TELKIN, telkinEnv(sink, port, { TELKIN_TYPES: 'function' }),
    { functionTimeoutMs: 120000, initLines: 0 });
  let result, hwm;
  try {
    await sim.invoke({ lines: 0 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const post = (body) => new Promise((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port, path: '/', method: 'POST', agent,
        headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
      }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
      req.on('error', reject);
      req.end(body);
    });
    await sim.invoke({
      lines: 0,
      beforeDone: async () => {
        const base = sink.stats().records;
        const at = () => sink.stats().records - base;
        let sent = 0, rejected = 0;
        const cpu0 = cpuMs(sim.pid);
        const t0 = process.hrtime.bigint();
        while (sent < total) {
          while (sent - at() + perBatch > window) await sleep(1);
          const st = await post(batches[(sent / perBatch) % batches.length]);
          if (st !== 200) rejected++;
          sent += perBatch;
        }
        const tAccepted = process.hrtime.bigint();
        let last = at(), lastChange = Date.now();
        while (at() < total) {
          await sleep(1);
          if (at() !== last) { last = at(); lastChange = Date.now(); }
          if (Date.now() - lastChange > 5000) break; // something was dropped
        }
        const t1 = process.hrtime.bigint();
        const cpu1 = cpuMs(sim.pid);
        hwm = procStatus(sim.pid).VmHWM;
        agent.destroy();
        const wall = hrMs(t0, t1);
        result = {
          sent, rejected, delivered: at(), wall, acceptMs: hrMs(t0, tAccepted),
          rate: at() / (wall / 1000), cpu: (cpu1 - cpu0) / wall,
        };
      },
    });
    await sim.shutdown();
  } finally {
    await sim.close();
  }
  const s = summaryOf(sim);
  const r = result;
  console.log(`   sent ${r.sent} (${r.rejected} POSTs refused), delivered to the sink ${r.delivered} in ${f(r.wall, 0)} ms ` +
    `(all accepted after ${f(r.acceptMs, 0)} ms): ${f(r.rate, 0)} events/s; telkin CPU ${f(r.cpu * 100, 0)}% of one core` +
    ` (${f(r.rate / r.cpu / 1000, 0)} k events per telkin CPU-second: below 100% the load generator and sink, sharing` +
    ' the other CPUs, are the limit)');
  console.log(`   telkin: received ${s.received}, shipped ${s.shipped} in ${s.calls} PutRecords ` +
    `(${f(s.shipped / s.calls, 0)}/call), dropped ${s.dropped}, queue high-water ${s.highWater} B, lost at exit ${s.lost}, ` +
    `VmHWM ${hwm} kB`);
  row('throughput listener -> sink (delivered)', `${f(r.rate / 1000, 1)} k events/s, ${s.dropped ?? '?'} dropped, CPU ${f(r.cpu * 100, 0)}%`,
    '>= 100 k/s', r.rate >= 100000, CMD('tput'));
}

// ------------------------------------------------------------------------------------------------
// d. Time added per invoke

async function perInvoke(bin, env, n) {
  const sim = await newSim(bin, env);
  const doneHr = new Map();
  let lastNext = 0n;
  sim.on('deliver', (d) => {
    for (const r of d.batch) {
      if (r.event.type === 'platform.runtimeDone') doneHr.set(r.event.record.requestId, d.hr);
    }
  });
  sim.on('next', () => { lastNext = process.hrtime.bigint(); });
  const ds = [];
  try {
    for (let i = 0; i < n + 5; i++) {
      const inv = await sim.invoke({ lines: 0, durationMs: 1 });
      const h = doneHr.get(inv.requestId);
      if (i >= 5 && h !== undefined) ds.push(hrMs(h, lastNext));
    }
    await sim.shutdown();
  } finally {
    await sim.close();
  }
  return { ds, sim };
}

async function benchInvoke(sink, a) {
  const n = a.invokes;
  console.log(`\n-- time added per invoke: ${n} invokes without function logs (5 warm-up); from the simulator handing` +
    ' the batch carrying platform.runtimeDone to its HTTP client, to the /event/next request read by the simulator');
  const t = await perInvoke(TELKIN, telkinEnv(sink, await freePort(), { TELKIN_TYPES: 'function' }), n);
  const fl = await perInvoke(FLOOR, { TELKIN_LISTEN_PORT: String(await freePort()), FLOOR_WAIT_RUNTIME_DONE: '1' }, n);
  // TELKIN_FLUSH=end: under the default (auto) these back-to-back invokes switch telkin to periodic
  // at the second one, and it would call /event/next without shipping (the strategy figures).
  const td = await perInvoke(TELKIN, telkinEnv(sink, await freePort(), { TELKIN_FLUSH: 'end' }), n);
  const show = (name, x) => console.log(`   ${name.padEnd(44)} median ${f(med(x), 3)} ms  p10 ${f(pct(x, 0.1), 3)}  p90 ${f(pct(x, 0.9), 3)}`);
  show('telkin, empty queue (TELKIN_TYPES=function)', t.ds);
  show('floor, waiting for runtimeDone (calibration)', fl.ds);
  show('telkin, default types, TELKIN_FLUSH=end', td.ds);
  const net = med(t.ds) - med(fl.ds);
  console.log(`   telkin's own share, empty queue: ${f(net, 3)} ms (median difference). Not counted: the Telemetry API's`);
  console.log('   buffering before the batch is sent (timeoutMs, >= 25 ms, the same for every subscriber and not the');
  console.log("   extension's doing) and the HTTP hops both programs make (the calibration removes them).");
  row('time added per invoke, empty queue', `${f(net, 3)} ms net (raw ${f(med(t.ds), 3)}, floor ${f(med(fl.ds), 3)})`,
    '<= 0.2 ms', net <= 0.2, CMD('invoke'));
  row('  same, default types, end (1 PutRecords/invoke)', `${f(med(td.ds) - med(fl.ds), 3)} ms net (raw ${f(med(td.ds), 3)})`,
    '-', null, CMD('invoke'));
}

// ------------------------------------------------------------------------------------------------

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.help) {
    console.log('usage: node bench.js [--only cold,rss,tput,invoke] [--runs N] [--events N] [--invokes N]');
    return;
  }
  for (const [what, bin] of [['telkin', TELKIN], ['floor program', FLOOR]]) {
    if (!fs.existsSync(bin)) throw new Error(`${what} not found at ${bin} (make build/telkin build/x86_64/floor_extension)`);
  }
  const t0 = Date.now();
  const sink = await startSinkWorker();
  let cpu = '';
  try { cpu = execFileSync('nproc', { encoding: 'utf8' }).trim() + ' CPUs'; } catch { /* no nproc */ }
  let load = '';
  try { load = `; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`; } catch { /* none */ }
  console.log(`telkin bench: ${TELKIN} (${fs.statSync(TELKIN).size} B), floor ${FLOOR} (${fs.statSync(FLOOR).size} B); ` +
    `node ${process.version}; ${cpu}${load} (other load skews every figure)`);

  // Cold start first: node's fork() costs more as its heap grows (measured: 1.5 ms -> 3.5 ms per
  // spawn after the sink measurement), and that constant would dilute the telkin/floor ratio.
  if (a.only.includes('cold')) await benchCold(sink, a);

  const m = await measureSink({ port: sink.port });
  console.log(`\n-- fast sink alone: ${m.requests} PutRecords of 500 records (${m.requestBytes} B) on one connection, one at a time: ` +
    `${f(m.recordsPerSec / 1000, 0)} k records/s, ${f(m.msPerRequest, 3)} ms/request`);
  row('fast sink capacity (1 conn, 500-record requests)', `${f(m.recordsPerSec / 1000, 0)} k records/s`, '>> 100 k/s',
    m.recordsPerSec >= 300000, 'node tests/fast_sink.js --measure');

  if (a.only.includes('rss')) await benchRss(sink);
  if (a.only.includes('tput')) await benchTput(sink, a);
  if (a.only.includes('invoke')) await benchInvoke(sink, a);
  await sink.close();

  const w = [Math.max(...rows.map((r) => r.name.length)), Math.max(...rows.map((r) => r.value.length)), 10];
  console.log(`\n${'figure'.padEnd(w[0])}  ${'value'.padEnd(w[1])}  ${'target'.padEnd(w[2])}  ${'   '}  command`);
  for (const r of rows) {
    const v = r.ok === null ? '   ' : r.ok ? 'ok ' : 'MISS';
    console.log(`${r.name.padEnd(w[0])}  ${r.value.padEnd(w[1])}  ${r.target.padEnd(w[2])}  ${v.padEnd(4)} ${r.cmd}`);
  }
  console.log(`(figures, not assertions; whole run ${f((Date.now() - t0) / 1000, 1)} s; make bench runs every one)`);
}

process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
setTimeout(() => { console.error(`bench: over the ${BUDGET_MS / 1000} s budget, stopping`); process.exit(1); }, BUDGET_MS).unref();

main().then(() => process.exit(0), (e) => { console.error(`bench: ${e.stack || e}`); process.exit(1); });

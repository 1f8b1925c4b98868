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
//           of invokes 100-300 ms apart, then a rare phase 11 s apart; each handler runs 1-10 ms):
//           time added to billed duration as Lambda bills it (the later of the runtime's /next and
//           the extension's /event/next, minus the runtime's; the simulator's inv.addedMs), the
//           part of it after the hand-over of runtimeDone (as 'invoke' measures it), the same for
//           the floor program, log line emission -> arrival at the sink, and events not yet at the
//           sink when the sandbox froze
//   packing TELKIN_RECORD=event vs ndjson: Kinesis records, PUT payload units (25 KiB per record,
//           data + partition key, rounded up) and PutRecords requests per 100 000 events of a
//           realistic mix, counted at the sink
//   tlsrtt  the PutRecords round trip over loopback TLS as telkin sees it: 'invoke''s TELKIN_FLUSH=end
//           figure (one PutRecords before each /event/next) against the fast sink over plain HTTP and
//           over HTTPS (https://localhost, TELKIN_CA_FILE = a test CA; ECDSA P-256 and RSA-2048
//           leaves), on a kept-alive connection, then with the sink closing the connection after each
//           answer (a new TLS connection per PutRecords: resumed by session ID, or full handshakes
//           when the sink keeps no sessions); handshakes and resumptions counted by the sink
//   pushback one 20 000-line invocation, then SHUTDOWN, into kinesis_stub.js with Kinesis's per-shard
//           write limits (1 000 records/s, 1 MiB/s, one second of burst), for 1, 2 and 4 shards, each
//           TELKIN_PARTITION_KEY and TELKIN_RECORD=event|ndjson: events that arrived before the
//           deadline beside the physical maximum (per shard: its limits times the time from the
//           first event to the deadline, plus the burst, capped by what was destined to it), and
//           whether arrived + reported lost == accepted
//
//   latency the time from a telemetry POST's last byte to telkin's answer (the simulator's 'aws'
//           sender, which drops a batch cut while a POST is unanswered), p50/p99/max, while a
//           function logs 20 000 lines in 1 s and telkin ships them to the fast sink (as events,
//           and packed as ndjson: 5 MiB PutRecords bodies); at full speed and with telkin held to
//           7.2 % of a core (a 128 MB function's share) by a cgroup v1 cpu quota from exec on
//           (root and a writable /sys/fs/cgroup/cpu needed, else that half is n/a); at 128 MB
//           telkin pins itself to one CPU (TELKIN_CPU_PIN=auto); per burst also the
//           extension's CPU, its run-queue wait, how often it moved between CPUs and the
//           periods the quota throttled
//   cpu     telkin's CPU for the reference invocation of issue 13 (20 000 lines, ~3.8 MB of
//           telemetry, 41 PutRecords; TELKIN_FLUSH=end), from /proc/<pid>/schedstat; then, with
//           valgrind, instructions per event under callgrind (the portable SHA-256: valgrind's CPUID
//           hides the SHA extensions), the difference of a run with and one without that invocation
//   mem     Lambda memory sizes: 128 MB, 512 MB and 1769 MB get 7.2 %, 28.9 % and 100 % of a core,
//           and an extension's CPU comes out of that share, so each extension (telkin, and the floor
//           program beside it) runs in a cgroup v1 cpu group of that quota (period 100 ms) from its
//           exec on; per size: cold start, time added to billed duration per invocation for end,
//           periodic:1000 and auto (as 'strategy' measures it, on 20 frequent invocations), and CPU
//           per 1000 events of the reference invocation. Needs root and a writable
//           /sys/fs/cgroup/cpu, else prints "skipped: no writable cgroup cpu controller"
//
// usage: node bench.js [--only cold,rss,tput,invoke,strategy,packing,tlsrtt,pushback,latency,cpu,mem] [--runs N] [--events N]
//                      [--invokes N] [--frequent N] [--rare N]
//                      pushback only: [--lines N] [--shards 1,2,4] [--keys sandbox,request,random]
//                      [--records event,ndjson]
//                      cpu: [--lines N]; mem: [--mem-invokes N]
// env:   TELKIN_BIN (default ../build/telkin), FLOOR_BIN (default ../build/x86_64/floor_extension)
// Every child (extensions, the sink's thread) ends with this process; the run is bounded.

const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const { LambdaSim } = require('./lambda_sim');
const { startSinkWorker, measureSink, eventKey, hrNowMs } = require('./fast_sink');
const { recordLines } = require('./compare');

const TELKIN = path.resolve(__dirname, process.env.TELKIN_BIN || '../build/telkin');
const FLOOR = path.resolve(__dirname, process.env.FLOOR_BIN || '../build/x86_64/floor_extension');
const BUDGET_MS = 900000;

function parseArgs(argv) {
  const a = {
    only: ['cold', 'rss', 'tput', 'invoke', 'strategy', 'packing', 'tlsrtt', 'pushback', 'latency', 'cpu', 'mem'], runs: 30, events: 500000, invokes: 100,
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
    else if (k === '--lines') a.lines = Number(v());
    else if (k === '--mem-invokes') a.memInvokes = Number(v());
    else if (k === '--shards') a.shards = v().split(',').map(Number);
    else if (k === '--keys') a.keys = v().split(',');
    else if (k === '--records') a.records = v().split(',');
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

const { freePort } = require('./ports');

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

// utime and stime of a process, in ms (10 ms ticks).
function userSysMs(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    const hz = 100; // USER_HZ on Linux
    // fields[7]: minflt, the page faults that needed no I/O (first touches of memory).
    return { user: (Number(fields[11]) * 1000) / hz, sys: (Number(fields[12]) * 1000) / hz, minflt: Number(fields[7]) };
  } catch { return { user: NaN, sys: NaN, minflt: NaN }; }
}

// utime + stime of a process, in ms.
function cpuMs(pid) {
  const u = userSysMs(pid);
  return u.user + u.sys;
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
    longestTurn: num(/longest loop turn (\d+) ms/),
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
// gapMs: a pause before each run (in a cpu group: the quota refills, so that no run starts
// throttled for what the previous one spent). res.cpu: each run's CPU to its first /event/next;
// res.settled: to SETTLE_MS after it (what start-up does after that call, the sandbox's set-up
// for telkin, is CPU the function's init shares too).
const SETTLE_MS = 50;
async function coldRuns(sink, runs, wrapper = [], gapMs = 0) {
  const res = { telkin: [], floor: [], legs: { telkin: [[], [], []], floor: [[], [], []] }, cpu: { telkin: [], floor: [] },
    settled: { telkin: [], floor: [] } };
  let failures = 0;
  const one = async (which, keep) => {
    const bin = which === 'telkin' ? TELKIN : FLOOR;
    const sim = new LambdaSim({ bin, env: telkinEnv(sink, await freePort()), wrapper, initTimeoutMs: 5000 });
    const hr = {};
    sim.once('register', () => { hr.reg = process.hrtime.bigint(); });
    sim.once('subscribe', () => { hr.sub = process.hrtime.bigint(); });
    sim.once('next', () => { hr.next = process.hrtime.bigint(); });
    let initCpu = NaN, settledCpu = NaN;
    try {
      if (gapMs) await sleep(gapMs);
      await sim.start();
      await sim.waitInit();
      initCpu = schedMs(sim.pid);
      await sleep(SETTLE_MS);
      settledCpu = schedMs(sim.pid);
    } catch (e) {
      await sim.close();
      if (++failures > 3) throw e;
      console.log(`   (a ${which} run failed, not counted: ${e.message}; ${sim.stderrLines.slice(-2).join(' | ')})`);
      return one(which, keep);
    }
    await sim.close();
    if (keep) {
      res[which].push(sim.coldStartMs);
      res.cpu[which].push(initCpu);
      res.settled[which].push(settledCpu);
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
  console.log(`   CPU, medians: to the first /event/next telkin ${f(med(res.cpu.telkin))} ms, floor ${f(med(res.cpu.floor))} ms;` +
    ` to ${SETTLE_MS} ms after it (telkin's sandbox set-up comes after that call) telkin ${f(med(res.settled.telkin))} ms,` +
    ` floor ${f(med(res.settled.floor))} ms`);
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
  row('start-up CPU to settled, telkin / floor', `${f(med(res.settled.telkin))} / ${f(med(res.settled.floor))} ms`, '-', null,
    CMD('cold'));
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

// POSTs to telkin's listener on one kept-alive connection, as Lambda delivers: post(body) -> status.
function listenerPoster(port) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const post = (body) => new Promise((resolve, reject) => {
    const req = http.request({
      host: '127.0.0.1', port, path: '/', method: 'POST', agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': body.length },
    }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    req.on('error', reject);
    req.end(body);
  });
  return { post, agent };
}

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
    const { post, agent } = listenerPoster(port);
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
// e. Shipping strategies (TELKIN_FLUSH)

// A small deterministic PRNG (mulberry32): every strategy gets the same workload.
function prng(seed) {
  let x = seed >>> 0;
  return () => {
    x = (x + 0x6d2b79f5) >>> 0;
    let t = x;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// The workload: `frequent` invokes 100-300 ms apart (from the previous freeze to the next invoke),
// then `rare` invokes 11 s apart (telkin's auto goes back to end past 10 s), 2-5 log lines each.
const RARE_GAP_MS = 11000;
// Each handler runs 1-10 ms of real time after its lines (a function that logs does some work;
// with none the runtime's /next would come before any extension could read the INVOKE). Its own
// generator, so that gaps and lines stay the workload they were.
function strategyWorkload(a) {
  const r = prng(20250101), rr = prng(20251201);
  const w = [];
  for (let i = 0; i < a.frequent + a.rare; i++) {
    const gapMs = i === 0 ? 0 : i < a.frequent ? 100 + Math.round(r() * 200) : RARE_GAP_MS;
    w.push({ gapMs, lines: 2 + Math.floor(r() * 4), rare: i >= a.frequent, runMs: 1 + Math.floor(rr() * 10) });
  }
  return w;
}

// One strategy on the workload, against its own capturing sink. Times are process.hrtime in ms
// (the sink's thread reads the same clock).
// bin FLOOR: the do-nothing extension (its /event/next at once), the calibration; group: a cpu
// group (cpuGroup) the extension runs in from its exec on.
async function runStrategy(flush, workload, { bin = TELKIN, group = null } = {}) {
  const sink = await startSinkWorker({ capture: 'events' });
  const sim = new LambdaSim({
    bin, env: telkinEnv(sink, await freePort(), { TELKIN_FLUSH: flush }), initTimeoutMs: 5000,
    wrapper: group ? group.wrapper : [],
  });
  const emitted = [];            // {key, t, fn, inv}: platform and function events (TELKIN_TYPES default)
  const doneAt = new Map();      // requestId -> hand-over of the batch carrying its runtimeDone
  const freezes = [];            // {t, inv, nextT}
  let lastNext = 0;
  sim.on('event', (rec) => {
    if (rec.category === 'platform' || rec.category === 'function') {
      emitted.push({ key: eventKey(rec.json), t: hrNowMs(), fn: rec.category === 'function', inv: sim.invokes.length - 1,
        type: rec.event.type, state: sim.state });
    }
  });
  sim.on('deliver', (d) => {
    for (const r of d.batch) {
      if (r.event.type === 'platform.runtimeDone' && !doneAt.has(r.event.record.requestId)) {
        doneAt.set(r.event.record.requestId, Number(d.hr) / 1e6);
      }
    }
  });
  sim.on('next', () => { lastNext = hrNowMs(); });
  sim.on('freeze', () => { freezes.push({ t: hrNowMs(), inv: sim.state === 'idle' ? sim.invokes.length - 1 : -1, nextT: lastNext }); });
  const added = [], afterDone = [];
  let shutdownT = Infinity, sd;
  const t0 = Date.now();
  try {
    await sim.start();
    await sim.waitInit();
    for (const step of workload) {
      if (step.gapMs) await sleep(step.gapMs);
      const inv = await sim.invoke({ lines: step.lines, runMs: step.runMs });
      // As Lambda bills (the simulator's inv.addedMs): the later of the runtime's /next and the
      // extension's /event/next, minus the runtime's. With end that includes the Telemetry API's
      // buffering of platform.runtimeDone (25 ms at most); afterDone is the part after its hand-over.
      added.push(inv.addedMs);
      const d = doneAt.get(inv.requestId);
      if (inv.addedMs > 0 && d !== undefined && lastNext >= d) afterDone.push(lastNext - d);
    }
    await sleep(300);
    shutdownT = hrNowMs();
    sd = await sim.shutdown();
    await sink.settle();
  } finally {
    await sim.close();
    await sink.close();
  }
  // First arrival of each event at the sink.
  const arrival = new Map();
  for (const rep of sink.captured) {
    for (const r of rep.records) for (const k of r.keys || []) if (!arrival.has(k)) arrival.set(k, rep.t);
  }
  // Function log lines of the invokes: emission -> arrival.
  const lat = [], latRare = [];
  let atShutdown = 0, lost = 0, lines = 0;
  for (const e of emitted) {
    if (!e.fn || e.inv < 0 || e.state !== 'invoke') continue;
    lines++;
    const at = arrival.get(e.key);
    if (at === undefined) { lost++; continue; }
    if (at >= shutdownT) { atShutdown++; continue; }
    lat.push(at - e.t);
    if (workload[e.inv] && workload[e.inv].rare) latRare.push(at - e.t);
  }
  // At each freeze after an invoke: events emitted before that invoke's /event/next (so not its
  // platform.report, which Lambda emits after the call) that were not at the sink yet.
  const left = [];
  const waited = new Set();
  for (const fz of freezes) {
    if (fz.inv < 0) continue;
    let n = 0;
    for (const e of emitted) {
      if (e.t >= fz.nextT) break;
      const at = arrival.get(e.key);
      if (at === undefined || at > fz.t) { n++; waited.add(e.key); }
    }
    left.push(n);
  }
  const s = summaryOf(sim);
  const requests = sink.captured.length;
  return {
    flush, added, afterDone, lat, latRare, atShutdown, lost, lines, left, waited: waited.size, events: emitted.length, s, sd, requests,
    wallS: (Date.now() - t0) / 1000,
  };
}

async function benchStrategy(a) {
  const workload = strategyWorkload(a);
  const freq = workload.filter((w) => !w.rare && w.gapMs);
  const nLines = workload.reduce((x, w) => x + w.lines, 0);
  console.log(`\n-- shipping strategies (TELKIN_FLUSH), one workload each, own capturing sink: ${workload.length} invokes` +
    ` (${nLines} log lines, 2-5 per invoke): ${a.frequent} frequent, ${Math.min(...freq.map((w) => w.gapMs))}-` +
    `${Math.max(...freq.map((w) => w.gapMs))} ms apart (freeze -> next invoke), then ${a.rare} rare, ` +
    `${RARE_GAP_MS / 1000} s apart (auto turns back to end past 10 s; a real rare phase has minutes between invokes,` +
    ` and periodic's wait grows with it); SHUTDOWN 0.3 s after the last invoke`);
  const res = [];
  for (const flush of ['end', 'periodic:1000', 'auto']) res.push(await runStrategy(flush, workload));
  const floor = await runStrategy('end', workload, { bin: FLOOR });
  const W = 14;
  console.log(`   ${'TELKIN_FLUSH'.padEnd(W)} ${'added to billed duration'.padEnd(24)} ${'after runtimeDone'.padEnd(18)} ${'log line -> sink'.padEnd(20)}` +
    ` ${'rare phase'.padEnd(11)} ${'undelivered at freezes'.padEnd(30)} ${'waited'.padEnd(8)} ${'at SHUTDOWN'.padEnd(12)} PutRecords`);
  console.log(`   ${''.padEnd(W)} ${'p50 / p99 ms'.padEnd(24)} ${'p50 / p99 ms'.padEnd(18)} ${'p50 / p99 ms'.padEnd(20)} ${'p50 ms'.padEnd(11)}` +
    ` ${'per freeze p50/max (freezes)'.padEnd(30)} ${'events'.padEnd(8)} ${'lines'.padEnd(12)}`);
  for (const r of res) {
    const leftF = r.left.filter((x) => x > 0).length;
    r.cells = {
      added: `${f(med(r.added), 3)} / ${f(pct(r.added, 0.99), 3)}`,
      afterDone: r.afterDone.length ? `${f(med(r.afterDone), 2)} / ${f(pct(r.afterDone, 0.99), 2)}` : '- (none)',
      lat: `${f(med(r.lat), 1)} / ${f(pct(r.lat, 0.99), 1)}`,
      rare: f(med(r.latRare), 1),
      left: `${f(med(r.left), 0)} / ${Math.max(0, ...r.left)} (${leftF} of ${r.left.length})`,
    };
    console.log(`   ${r.flush.padEnd(W)} ${r.cells.added.padEnd(24)} ${r.cells.afterDone.padEnd(18)} ${r.cells.lat.padEnd(20)} ${r.cells.rare.padEnd(11)}` +
      ` ${r.cells.left.padEnd(30)} ${String(r.waited).padEnd(8)} ${String(r.atShutdown).padEnd(12)} ${r.requests}` +
      `${r.lost ? `  (${r.lost} lines never arrived)` : ''}`);
  }
  console.log(`   ${'floor program'.padEnd(W)} ${`${f(med(floor.added), 3)} / ${f(pct(floor.added, 0.99), 3)}`.padEnd(24)} (a do-nothing` +
    ' extension: /event/next as soon as the INVOKE is read)');
  for (const r of res) {
    console.log(`   ${r.flush}: ${r.lines} lines; telkin shipped ${r.s.shipped} events in ${r.s.records ?? '?'} records and` +
      ` ${r.s.calls} PutRecords, dropped ${r.s.dropped}, lost at exit ${r.s.lost}; exit ${r.sd && r.sd.code}; ${f(r.wallS, 1)} s`);
  }
  console.log('   added to billed duration: as Lambda bills, the invoke ends at the later of the runtime\'s /next (here when');
  console.log('   the simulated handler, 1-10 ms of real time, is done) and the extension\'s /event/next; added = that end');
  console.log('   minus the runtime\'s (0 when /event/next came first, as telkin does with periodic). With end it includes');
  console.log("   the Telemetry API's buffering of platform.runtimeDone (up to timeoutMs, 25 ms), which any extension that");
  console.log('   waits for runtimeDone pays. after runtimeDone: from the hand-over of the batch carrying runtimeDone to');
  console.log("   /event/next, for the invokes telkin held (raw: the simulator's HTTP hops, ~0.5 ms, are in it; with end");
  console.log('   the PutRecords round trip to this local sink; a real Kinesis round trip is ~10-30 ms). log line -> sink: every');
  console.log('   function log line of the invokes, from its emission by the simulator to the arrival of the PutRecords');
  console.log("   carrying it (with the Telemetry API's 25 ms buffering), except lines that arrived only at SHUTDOWN (counted");
  console.log('   apart: their wait is set by when SHUTDOWN comes). undelivered at freezes: events emitted before the invoke\'s');
  console.log('   /event/next and not at the sink when the sandbox froze, per freeze after an invoke (median / max, and in how');
  console.log('   many freezes any); they wait frozen until the next thaw. waited: distinct events (platform and function) that');
  console.log("   did. Not counted: each invoke's platform.report, which Lambda emits after /event/next: it always waits.");
  for (const r of res) {
    row(`flush=${r.flush}: billed added p50/p99 | after runtimeDone | line->sink p50/p99 | undelivered/freeze`,
      `${r.cells.added} ms | ${r.cells.afterDone} ms | ${r.cells.lat} ms | ${r.cells.left}`,
      r.flush === 'end' ? '-' : 'p50 <= 0.5 ms', r.flush === 'end' ? null : med(r.added) <= 0.5, CMD('strategy'));
  }
  row('floor program: billed added p50/p99', `${f(med(floor.added), 3)} / ${f(pct(floor.added, 0.99), 3)} ms`, '-', null, CMD('strategy'));
}

// ------------------------------------------------------------------------------------------------
// f. Record packing (TELKIN_RECORD)

const PUT_UNIT = 25 * 1024; // bytes: Kinesis "PUT Payload Unit", 25 KB chunks of a record
const KIB = 1024;           // on-demand Data-In: each record rounded up to 1 KB (1,024 bytes)

// Telemetry API batches of a realistic mix, two per invoke as the simulator delivers them when an
// invoke's logs fit in one buffering window: at the thaw, the previous invoke's platform.report
// (emitted after /event/next, so held over the freeze) alone; then platform.start, N function log
// lines (150-300 bytes each; text and JSON format alternate by invoke, as functions differ) and
// platform.runtimeDone. perInvoke: [min, max] lines.
function makeMixBatches(totalEvents, perInvoke, seed) {
  const r = prng(seed);
  const hex = (n) => Array.from({ length: n }, () => Math.floor(r() * 16).toString(16)).join('');
  const uuid = () => `${hex(8)}-${hex(4)}-4${hex(3)}-a${hex(3)}-${hex(12)}`;
  const words = ['order', 'customer', 'payment', 'inventory', 'shipment', 'cache', 'session', 'token', 'retry', 'upstream',
    'latency', 'dynamodb', 'query', 'items', 'batch', 'checkout', 'validated', 'handler', 'response', 'request'];
  const msg = (len) => {
    let m = '';
    while (m.length < len) m += (m ? ' ' : '') + words[Math.floor(r() * words.length)] + (r() < 0.3 ? `=${Math.floor(r() * 100000)}` : '');
    return m.slice(0, len);
  };
  let clock = Date.UTC(2025, 0, 1, 12, 0, 0);
  const iso = () => new Date((clock += 1 + Math.floor(r() * 5))).toISOString();
  const batches = [];
  let events = 0, inv = 0, prevReport = null;
  while (events < totalEvents) {
    const rid = uuid();
    const json = inv % 2 === 1;
    if (prevReport) {
      batches.push({ body: Buffer.from(JSON.stringify([prevReport])), events: 1 });
      events++;
    }
    const evs = [];
    evs.push({ time: iso(), type: 'platform.start', record: { requestId: rid, version: '$LATEST' } });
    const n = perInvoke[0] + Math.floor(r() * (perInvoke[1] - perInvoke[0] + 1));
    for (let i = 0; i < n; i++) {
      const t = iso();
      const level = r() < 0.85 ? 'INFO' : r() < 0.7 ? 'WARN' : 'ERROR';
      if (json) {
        // {"timestamp","level","requestId","message"}: ~110 bytes of frame; message to 150-300 in all
        const m = msg(40 + Math.floor(r() * 150));
        evs.push({ time: t, type: 'function', record: { timestamp: t, level, requestId: rid, message: m } });
      } else {
        const m = msg(90 + Math.floor(r() * 150));
        evs.push({ time: t, type: 'function', record: `${t}\t${rid}\t${level}\t${m}\n` });
      }
    }
    const d = 5 + r() * 200;
    evs.push({ time: iso(), type: 'platform.runtimeDone', record: {
      requestId: rid, status: 'success', metrics: { durationMs: +d.toFixed(3), producedBytes: 42 },
      spans: [{ name: 'responseLatency', start: iso(), durationMs: +(d * 0.9).toFixed(3) },
        { name: 'responseDuration', start: iso(), durationMs: 0.051 }] } });
    prevReport = { time: iso(), type: 'platform.report', record: { requestId: rid, status: 'success', metrics: {
      durationMs: +d.toFixed(3), billedDurationMs: Math.ceil(d), memorySizeMB: 128, maxMemoryUsedMB: 40 + (inv % 7) } } };
    events += evs.length;
    batches.push({ body: Buffer.from(JSON.stringify(evs)), events: evs.length });
    inv++;
  }
  return { batches, events };
}

// Share one large batch's events into Telemetry API batches of at most `per` events (a log-heavy
// invoke: Lambda sends up to maxItems = 1000 per POST).
function rebatch(src, per) {
  const all = src.batches.flatMap((b) => JSON.parse(b.body));
  const out = [];
  for (let i = 0; i < all.length; i += per) {
    const evs = all.slice(i, i + per);
    out.push({ body: Buffer.from(JSON.stringify(evs)), events: evs.length });
  }
  return { batches: out, events: all.length };
}

// POST each batch to telkin's listener during one invoke and wait until the sink has all of its
// events before the next (each batch shipped before the next arrives, as with a fast Kinesis).
// Counted: the sink's requests while the batches are POSTed (the simulator's own invoke events
// are shipped before and after that window).
async function runPacking(mode, mix) {
  const sink = await startSinkWorker({ capture: 'sizes' });
  const port = await freePort();
  // periodic:10 ships each batch 10 ms after it arrives (end would gather up to 100 ms; the
  // runtimeDone that ends the gathering is not in these batches): one request per batch, as a
  // function whose invocations each end with a flush.
  const sim = await newSim(TELKIN, telkinEnv(sink, port, { TELKIN_RECORD: mode, TELKIN_FLUSH: 'periodic:10' }),
    { functionTimeoutMs: 120000, initLines: 0 });
  let waiter = null;
  sink.onCapture = () => { if (waiter) waiter(); };
  let c0 = 0, c1 = 0, stalled = 0;
  try {
    await sim.invoke({ lines: 0 });
    const { post, agent } = listenerPoster(port);
    await sim.invoke({
      lines: 0,
      beforeDone: async () => {
        await sleep(100); // the invoke's platform.start: delivered (25 ms buffering) and shipped
        await sink.settle();
        c0 = sink.captured.length;
        const base = sink.stats().events;
        let sent = 0;
        for (const b of mix.batches) {
          const st = await post(b.body);
          if (st !== 200) throw new Error(`telkin answered ${st}`);
          sent += b.events;
          const until = Date.now() + 2000;
          while (sink.stats().events - base < sent && Date.now() < until) {
            await new Promise((r) => { waiter = r; setTimeout(r, 50); });
            waiter = null;
          }
          if (sink.stats().events - base < sent) stalled++;
        }
        await sink.settle();
        c1 = sink.captured.length;
        agent.destroy();
      },
    });
    await sim.shutdown();
  } finally {
    await sim.close();
    await sink.close();
  }
  let records = 0, bytes = 0, units = 0, kib = 0, events = 0;
  const reps = sink.captured.slice(c0, c1);
  for (const rep of reps) {
    for (const r of rep.records) {
      records++; events += r.n; bytes += r.d + r.k;
      units += Math.ceil((r.d + r.k) / PUT_UNIT); kib += Math.ceil((r.d + r.k) / KIB);
    }
  }
  return { mode, records, bytes, units, kib, events, requests: reps.length, stalled, s: summaryOf(sim) };
}

async function benchPacking() {
  const N = 100000;     // figures are per 100 000 events
  const SAMPLE = 20000; // events actually sent (bounded run time), scaled to N
  const mixes = [
    ['per-invoke batches (2)', makeMixBatches(SAMPLE, [5, 40], 7)],
  ];
  mixes.push(['1000-event batches', rebatch(mixes[0][1], 1000)]);
  const m0 = mixes[0][1];
  const avg = m0.batches.reduce((x, b) => x + b.body.length, 0) / m0.events;
  console.log(`\n-- record packing (TELKIN_RECORD), counted at the sink: ${m0.events} events, two Telemetry API batches per` +
    ` invoke (the previous invoke's platform.report alone at the thaw, as the simulator delivers it; then platform.start,` +
    ` 5-40 function log lines of 150-300 B, text and JSON format by invoke, and runtimeDone; avg ${f(avg, 0)} B/event` +
    ` as Lambda sends it), then the same events in batches` +
    ` of 1000 (a log-heavy function); each batch POSTed to telkin's listener and shipped before the` +
    ` next; default partition key (sandbox: all events share it)`);
  console.log(`   PUT payload units: each record's data + partition key, rounded up to 25 KiB (${PUT_UNIT} B; AWS: "a PUT` +
    ' Payload Unit is counted in 25KB payload chunks that comprise a record"); on-demand Data-In: each record rounded up' +
    ' to 1 KiB. Per 100 000 events:');
  const W = 22;
  console.log(`   ${'batches'.padEnd(W)} ${'TELKIN_RECORD'.padEnd(14)} ${'records'.padStart(9)} ${'PUT units'.padStart(10)}` +
    ` ${'requests'.padStart(9)} ${'data+key MB'.padStart(12)} ${'on-demand MB'.padStart(13)} ${'events/record'.padStart(14)}`);
  for (const [label, mix] of mixes) {
    const out = {};
    for (const mode of ['event', 'ndjson']) {
      const r = await runPacking(mode, mix);
      const k = N / mix.events;
      out[mode] = r;
      console.log(`   ${label.padEnd(W)} ${mode.padEnd(14)} ${f(r.records * k, 0).padStart(9)} ${f(r.units * k, 0).padStart(10)}` +
        ` ${f(r.requests * k, 0).padStart(9)} ${f(r.bytes * k / 1e6, 2).padStart(12)} ${f(r.kib * k * KIB / 1e6, 2).padStart(13)}` +
        ` ${f(r.events / r.records, 1).padStart(14)}` +
        `${r.events !== mix.events ? `  (${r.events} of ${mix.events} events counted)` : ''}${r.stalled ? `  (${r.stalled} batches late)` : ''}`);
    }
    const e = out.event, n = out.ndjson, k = N / mix.events;
    row(`packing, ${label}: event -> ndjson, per 100k events`,
      `PUT units ${f(e.units * k, 0)} -> ${f(n.units * k, 0)} (${f(e.units / n.units, 1)}x), requests ${f(e.requests * k, 0)}` +
      ` -> ${f(n.requests * k, 0)}`, '-', null, CMD('packing'));
  }
}

// ------------------------------------------------------------------------------------------------
// g. PutRecords round trip over loopback TLS

// Invokes per configuration (at most --invokes; ~27 ms each): more where the differences are small.
const TLS_INVOKES_KEPT = 100, TLS_INVOKES_NEW = 40;

// perInvoke's measurement for several telkins at once, each with its own sink, invoked in turn,
// `block` invokes at a time (round-robin, the order rotated every round; the others wait frozen):
// drift in the machine's load hits every configuration alike, and blocks keep caches about as warm
// as perInvoke's back-to-back invokes. Per spec: {ds, all (every invoke, warm-up included), sim,
// atInit (its sink's stats once init was done)}. specs: {bin, env, sink, n}.
async function perInvokeMany(specs, block = 10) {
  const out = specs.map(() => ({ ds: [], all: [], sim: null, atInit: null }));
  try {
    for (let k = 0; k < specs.length; k++) {
      const o = out[k];
      o.sim = await newSim(specs[k].bin, specs[k].env);
      o.atInit = specs[k].sink.stats();
      o.doneHr = new Map();
      o.lastNext = 0n;
      o.sim.on('deliver', (d) => {
        for (const r of d.batch) {
          if (r.event.type === 'platform.runtimeDone') o.doneHr.set(r.event.record.requestId, d.hr);
        }
      });
      o.sim.on('next', () => { o.lastNext = process.hrtime.bigint(); });
    }
    const left = () => out.some((o, k) => o.all.length < specs[k].n + 5);
    for (let round = 0; left(); round++) {
      for (let j = 0; j < specs.length; j++) {
        const k = (round + j) % specs.length;
        const o = out[k];
        for (let b = 0; b < block && o.all.length < specs[k].n + 5; b++) {
          const inv = await o.sim.invoke({ lines: 0, durationMs: 1 });
          const h = o.doneHr.get(inv.requestId);
          o.all.push(h !== undefined ? hrMs(h, o.lastNext) : NaN);
          if (o.all.length > 5 && h !== undefined) o.ds.push(hrMs(h, o.lastNext));
        }
      }
    }
    for (const o of out) await o.sim.shutdown();
  } finally {
    for (const o of out) if (o.sim) await o.sim.close();
  }
  return out;
}

async function benchTlsRtt(a) {
  const nKept = Math.min(a.invokes, TLS_INVOKES_KEPT), nNew = Math.min(a.invokes, TLS_INVOKES_NEW);
  const { makePki } = require('./prod_util');
  const t0 = Date.now();
  let pki;
  try { pki = makePki(); } catch (e) {
    console.log(`\n-- PutRecords round trip over loopback TLS: skipped, no test PKI (openssl CLI): ${e.message.split('\n')[0]}`);
    return;
  }
  const pkiMs = Date.now() - t0;
  console.log(`\n-- PutRecords round trip over loopback TLS: ${nKept} invokes per line kept alive, ${nNew} with a new` +
    ` connection each (5 warm-up), 'invoke''s default types,` +
    ' TELKIN_FLUSH=end figure (one PutRecords of the invoke\'s platform events before /event/next); each line its own' +
    ' telkin and fast sink (sink thread), all up at once and invoked in turn, 10 invokes at a time; endpoints' +
    ' http(s)://localhost:PORT, TELKIN_CA_FILE = a test CA (ECDSA P-256,' +
    ` made with the openssl CLI in ${pkiMs} ms), leaf as named`);
  // [label, sink options]
  const configs = [
    ['http, kept alive', {}],
    ['https ECDSA P-256, kept alive', { tls: pki.goodEc }],
    ['https RSA-2048, kept alive', { tls: pki.good }],
    ['http, sink closes after each answer', { closeEach: true }],
    ['https ECDSA, closes, session resumed', { tls: pki.goodEc, closeEach: true }],
    ['https ECDSA, closes, full handshake', { tls: pki.goodEc, closeEach: true, sessionCache: false }],
    ['https RSA, closes, full handshake', { tls: pki.good, closeEach: true, sessionCache: false }],
  ];
  const res = {};
  const sinks = [];
  try {
    const specs = [];
    for (const [, so] of configs) {
      const sink = await startSinkWorker(so);
      sinks.push(sink);
      // http://localhost too: a reconnect resolves the same name over HTTP and HTTPS.
      specs.push({ sink, bin: TELKIN, n: so.closeEach ? nNew : nKept, env: telkinEnv(sink, await freePort(), {
        TELKIN_FLUSH: 'end', AWS_ENDPOINT_URL_KINESIS: sink.endpoint.replace('127.0.0.1', 'localhost'),
        ...(so.tls ? { TELKIN_CA_FILE: pki.caFile } : {}),
      }) });
    }
    const out = await perInvokeMany(specs);
    configs.forEach(([label], k) => {
      const s = summaryOf(out[k].sim);
      const hs = /connections (\d+) \(TLS handshakes (\d+)\)/.exec(s.line);
      res[label] = { ...out[k], st: sinks[k].stats(), s, info: sinks[k].tlsInfo, conns: hs ? Number(hs[1]) : NaN,
        hss: hs ? Number(hs[2]) : NaN };
    });
  } finally {
    for (const sink of sinks) await sink.close();
  }
  const W = 38;
  console.log(`   ${''.padEnd(W)} ${'median'.padStart(8)} ${'p10'.padStart(7)} ${'p90'.padStart(7)} ${'first'.padStart(7)}` +
    '   sink: PutRecords, TCP conns, TLS handshakes (resumed), conns at init end; telkin: connections (handshakes)');
  for (const [label, so] of configs) {
    const x = res[label];
    const tlsPart = so.tls ? `, ${x.st.tlsHandshakes} (${x.st.tlsResumed})` : '';
    console.log(`   ${label.padEnd(W)} ${f(med(x.ds), 3).padStart(8)} ${f(pct(x.ds, 0.1), 3).padStart(7)}` +
      ` ${f(pct(x.ds, 0.9), 3).padStart(7)} ${f(x.all[0], 3).padStart(7)}   ${x.st.requests}, ${x.st.connections}${tlsPart},` +
      ` ${x.atInit.connections};` +
      ` ${x.conns} (${x.hss})${x.s.dropped ? `  (${x.s.dropped} dropped)` : ''}`);
  }
  const info = res['https ECDSA P-256, kept alive'].info || {};
  const infoR = res['https RSA-2048, kept alive'].info || {};
  console.log(`   negotiated: ${info.protocol} ${info.cipher} (ECDSA leaf), ${infoR.protocol} ${infoR.cipher} (RSA leaf)`);
  const m = (l) => med(res[l].ds);
  const p90 = (l) => pct(res[l].ds, 0.9);
  const d = (l, base) => m(l) - m(base);
  const sg = (x) => `${x >= 0 ? '+' : ''}${f(x, 3)}`;
  const H = 'http, kept alive', HC = 'http, sink closes after each answer';
  const E = 'https ECDSA P-256, kept alive', R = 'https RSA-2048, kept alive';
  const ER = 'https ECDSA, closes, session resumed', EF = 'https ECDSA, closes, full handshake', RF = 'https RSA, closes, full handshake';
  const d10 = (l, base) => pct(res[l].ds, 0.1) - pct(res[base].ds, 0.1);
  console.log(`   TLS cost per PutRecords on a kept-alive connection (median differences): ECDSA ${f(d(E, H), 3)} ms,` +
    ` RSA ${f(d(R, H), 3)} ms (p10 differences, less moved by load: ${f(d10(E, H), 3)}, ${f(d10(R, H), 3)} ms)`);
  console.log(`   a new connection per PutRecords, over plain HTTP's (${f(d(HC, H), 3)} ms for TCP alone): resumed TLS` +
    ` ${f(d(ER, HC), 3)} ms, full handshake ECDSA ${f(d(EF, HC), 3)} ms, RSA ${f(d(RF, HC), 3)} ms`);
  const initConns = Math.max(...Object.values(res).map((x) => x.atInit.connections));
  console.log(`   first: the first invoke (one sample, cold code paths in telkin, the simulator and the sink);` +
    (initConns ? ' some connections were opened during init' : ' no connection is opened during init (the init phase\'s' +
      ' events come after the first /event/next), so the first invoke\'s PutRecords opens it: TCP + full handshake'));
  console.log('   Loopback only: a real Kinesis adds network round trips (one more for a resumed handshake, two for a full');
  console.log('   one, each ~1-30 ms). The sink is node (OpenSSL) on another thread: its side of the crypto is in every figure.');
  const c = CMD('tlsrtt');
  const fig = (l) => `${f(m(l), 3)} ms (p90 ${f(p90(l), 3)})`;
  row('tlsrtt: http kept alive, median (p90)', fig(H), '-', null, c);
  row('tlsrtt: https ECDSA P-256 kept alive, median (p90)', `${fig(E)}, ${sg(d(E, H))} ms TLS`, '-', null, c);
  row('tlsrtt: https RSA-2048 kept alive, median (p90)', `${fig(R)}, ${sg(d(R, H))} ms TLS`, '-', null, c);
  row('tlsrtt: http new conn/PutRecords, median (p90)', `${fig(HC)}, ${sg(d(HC, H))} ms TCP`, '-', null, c);
  const hsOf = (l) => `${res[l].st.tlsHandshakes} hs, ${res[l].st.tlsResumed} resumed`;
  row('tlsrtt: https ECDSA new conn, resumed, median (p90)', `${fig(ER)}, ${sg(d(ER, HC))} ms over http (${hsOf(ER)})`, '-', null, c);
  row('tlsrtt: https ECDSA new conn, full hs, median (p90)', `${fig(EF)}, ${sg(d(EF, HC))} ms over http (${hsOf(EF)})`, '-', null, c);
  row('tlsrtt: https RSA new conn, full hs, median (p90)', `${fig(RF)}, ${sg(d(RF, HC))} ms over http (${hsOf(RF)})`, '-', null, c);
  row('tlsrtt: first invoke http / ECDSA / RSA (kept alive)', `${f(res[H].all[0], 3)} / ${f(res[E].all[0], 3)} / ` +
    `${f(res[R].all[0], 3)} ms`, '-', null, c);
}


// ------------------------------------------------------------------------------------------------
// pushback: one 20 000-line invocation into a stream with Kinesis's per-shard write limits
// (tests/kinesis_stub.js: 1 000 records/s and 1 MiB/s per shard, one second of burst), then
// SHUTDOWN with Lambda's 2 s deadline. What arrives before the deadline, beside the physical
// maximum: per shard, what its limits let through from the first event to the deadline (one
// second of burst, as an idle shard holds, plus the rate times that time), capped by what was
// destined to it. Events, not Kinesis records: with ndjson a record packs up to 25 KiB of events.

// The stub runs in a worker thread: the simulator writing 20 000 lines keeps this thread busy, and
// a stub on the same event loop would answer late, as a real Kinesis does not.
const PUSHBACK_STUB = `
const { parentPort, workerData } = require('node:worker_threads');
const { KinesisStub } = require(workerData.stubPath);
const { recordLines } = require(workerData.comparePath);
(async () => {
  const stub = await new KinesisStub().start();
  parentPort.on('message', (m) => {
    if (m.op === 'limits') { stub.shardLimits({ shards: m.shards }); parentPort.postMessage({ op: 'limits' }); return; }
    if (m.op !== 'report') return;
    const demand = stub.demand.map((set) => {
      let n = 0, bytes = 0;
      for (const l of set) { bytes += Buffer.byteLength(l); if (l && !l.includes('"telkin.dropped"')) n++; }
      return { n, bytes, size: set.size };
    });
    const arrived = new Set();
    let reports = 0, lastAt = 0;
    for (const r of stub.accepted) {
      if (r.at > m.deadlineMs) continue;
      lastAt = Math.max(lastAt, r.at);
      for (const l of recordLines(r.data)) { if (l.includes('"telkin.dropped"')) reports++; else arrived.add(l); }
    }
    parentPort.postMessage({ op: 'report', demand, arrived: arrived.size, reports, lastAt, requests: stub.requests.length,
      limits: stub.limits });
    stub.close();
  });
  parentPort.postMessage({ op: 'ready', endpoint: stub.endpoint });
})();
`;

async function runPushback({ shards, pk, record, lines }) {
  const { Worker } = require('node:worker_threads');
  const w = new Worker(PUSHBACK_STUB, { eval: true, workerData: { stubPath: path.join(__dirname, 'kinesis_stub.js'), comparePath: path.join(__dirname, 'compare.js') } });
  const next = (op) => new Promise((resolve) => { const h = (m) => { if (m.op === op) { w.off('message', h); resolve(m); } }; w.on('message', h); });
  const { endpoint } = await next('ready');
  const env = {
    TELKIN_STREAM: 'pushback', AWS_ENDPOINT_URL_KINESIS: endpoint, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', TELKIN_LISTEN_PORT: String(await freePort()),
    TELKIN_PARTITION_KEY: pk, TELKIN_RECORD: record,
  };
  const sim = new LambdaSim({ bin: TELKIN, env, initTimeoutMs: 5000, functionTimeoutMs: 30000 });
  let sd, inv, rep;
  try {
    await sim.start();
    await sim.waitInit();
    // The stream was idle until now: every shard's bucket is full (one second of capacity).
    w.postMessage({ op: 'limits', shards });
    await next('limits');
    inv = await sim.invoke({ lines });
    sd = await sim.shutdown();
    w.postMessage({ op: 'report', deadlineMs: sd.deadlineMs });
    rep = await next('report');
  } finally {
    await sim.close();
    await w.terminate();
  }
  const T = (sd.deadlineMs - inv.startedAt) / 1000;
  const L = rep.limits;
  const recMax = 25600;
  let physical = 0;
  for (const dm of rep.demand) {
    if (!dm.n) continue;
    const avg = dm.bytes / dm.size + 1; // a newline (ndjson) or the share of a partition key
    const perRecord = record === 'ndjson' ? Math.max(1, Math.floor(recMax / avg)) : 1;
    physical += Math.min(dm.n, L.recordsPerSec * (T + 1) * perRecord, (L.bytesPerSec * (T + 1)) / avg);
  }
  return { shards, pk, record, T, physical: Math.floor(physical), arrived: rep.arrived, s: summaryOf(sim), sd,
    reports: rep.reports, requests: rep.requests, lastMs: rep.lastAt - sd.sentAt };
}

async function benchPushback(a) {
  const lines = a.lines || 20000;
  console.log(`\n-- pushback: one ${lines}-line invocation (TELKIN_FLUSH=auto, i.e. end for a first invocation), then SHUTDOWN ` +
    '(2 s deadline); stub with Kinesis\'s limits per shard: 1 000 records/s, 1 MiB/s, one second of burst');
  console.log('   shards  partition key  TELKIN_RECORD  arrived / physical max (%)   lost (reported)  accounted  telkin.dropped  requests  last arrival');
  for (const record of a.records || ['event', 'ndjson']) {
    for (const pk of a.keys || ['sandbox', 'request', 'random']) {
      for (const shards of a.shards || [1, 2, 4]) {
        const r = await runPushback({ shards, pk, record, lines });
        const pct = (100 * r.arrived) / r.physical;
        const accounted = r.arrived + (r.s.lost || 0) === r.s.queued ? 'exact' : `MISMATCH ${r.arrived}+${r.s.lost}!=${r.s.queued}`;
        console.log(`   ${String(shards).padStart(6)}  ${pk.padEnd(13)}  ${record.padEnd(13)}  ${String(r.arrived).padStart(6)} / ${String(r.physical).padStart(6)} (${f(pct, 1).padStart(5)} %)` +
          `      ${String(r.s.lost).padStart(6)}        ${accounted.padEnd(9)}  ${String(r.reports).padStart(14)}  ${String(r.requests).padStart(8)}  ` +
          `${r.lastMs} ms after SHUTDOWN (exit ${r.sd.shutdownToExitMs} ms)`);
        if (shards === 1 && pk === 'sandbox') {
          row(`pushback, 1 shard, ${record}: arrived of the physical max`, `${r.arrived} of ${r.physical} (${f(pct, 1)} %)`, '>= 95 %', pct >= 95, CMD('pushback'));
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------

// ------------------------------------------------------------------------------------------------
// h. Answer latency of the telemetry listener

// A cgroup v1 cpu group with quota/period, or null when it cannot be made.
function cpuGroup(quotaUs, periodUs) {
  const dir = `/sys/fs/cgroup/cpu/telkin-bench-${process.pid}`;
  try {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(periodUs));
    fs.writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quotaUs));
  } catch { return null; }
  const rm = () => { try { fs.rmdirSync(dir); } catch { /* busy or gone */ } };
  process.on('exit', rm);
  return {
    dir,
    // A command prefix that moves the process into the group, then execs the extension (same pid).
    wrapper: ['sh', '-c', `echo $$ > ${dir}/tasks && exec "$0"`],
    throttled() {
      const st = fs.readFileSync(path.join(dir, 'cpu.stat'), 'utf8');
      const n = (k) => Number((new RegExp(`^${k} (\\d+)`, 'm').exec(st) || [])[1]);
      return { periods: n('nr_periods'), throttled: n('nr_throttled'), ms: n('throttled_time') / 1e6 };
    },
    close: rm,
  };
}

// Two bursts of 20 000 lines in one process: the first (its memory touched for the first time,
// the kernel zeroing each page) and a later one (what a sandbox's later bursts cost). Each: the
// POSTs' answer times, failures, the sender's drops, the extension's CPU and the group's
// throttling during it.
async function latencyRun(sink, { record, lineBytes, quota, bin = TELKIN }) {
  const env = telkinEnv(sink, await freePort(), { TELKIN_RECORD: record, TELKIN_FLUSH: 'end' });
  if (bin === FLOOR) env.FLOOR_FUNCTION_LOGS = '1'; // the same burst, with telkin's buffering
  // The quota applies from exec, as a function's share does from the sandbox's start: start-up,
  // the warm-up invocations and every page first touched are paid inside it.
  const group = quota ? cpuGroup(7200, 100000) : null;
  const sim = new LambdaSim({ bin, env, initTimeoutMs: 5000, sender: 'aws', functionTimeoutMs: 60000,
    ...(group ? { wrapper: group.wrapper } : {}) });
  const pad = 'x'.repeat(Math.max(0, lineBytes - 120));
  const lost = () => sim.emitted.filter((r) => r.dropped && r.category === 'function').length;
  const burst = async (tag) => {
    const before = group && group.throttled();
    const cpu0 = schedMs(sim.pid), from = sim.deliveries.length, drops0 = sim.busyDrops || 0, lost0 = lost();
    const wait0 = runDelayMs(sim.pid), moves0 = migrations(sim.pid);
    const t0 = Date.now();
    await sim.invoke({
      lines: 0,
      beforeDone: async () => {
        for (let i = 0; i < 100; i++) {   // 20 000 lines in about a second
          sim.writeFunctionLogs(200, `${tag}${i}`, (m) => `${m} ${pad}`);
          await sleep(10);
        }
        await sleep(200);
      },
    });
    const wall = Date.now() - t0;
    const cpu = schedMs(sim.pid) - cpu0, waited = runDelayMs(sim.pid) - wait0, moves = migrations(sim.pid) - moves0;
    const th = group && group.throttled();
    const ds = sim.deliveries.slice(from);
    return { waited, moves,
      n: ds.length, answers: ds.filter((d) => d.answerMs !== null).map((d) => d.answerMs),
      failed: ds.filter((d) => !(d.status >= 200 && d.status < 300)).length,
      busyDrops: (sim.busyDrops || 0) - drops0, lost: lost() - lost0, cpu, wall,
      throttled: th && { periods: th.periods - before.periods, throttled: th.throttled - before.throttled, ms: th.ms - before.ms },
    };
  };
  try {
    if (quota && !group) return null;
    await sim.start();
    await sim.waitInit();
    for (let i = 0; i < 3; i++) await sim.invoke({ lines: 3 });
    const first = await burst('lat');
    const later = await burst('again');
    await sim.shutdown();
    const s = summaryOf(sim);
    for (const r of [first, later]) Object.assign(r, { calls: s.calls, turn: s.longestTurn });
    return { first, later };
  } catch (e) {
    throw new Error(`${e.message}\n--- telkin stderr ---\n${sim.stderrLines.slice(-15).join('\n')}`);
  } finally {
    await sim.close();
    if (group) { await sleep(50); group.close(); }
  }
}

async function benchLatency(sink) {
  console.log("\n-- telemetry POST answer time (last byte sent -> response head, simulator's 'aws' sender): 20 000 function lines in ~1 s");
  console.log('   (writeFunctionLogs 200 every 10 ms), TELKIN_FLUSH=end, buffering 25 ms / 1000 items / 1 MiB as telkin subscribes');
  console.log('   (the floor program is sent the same burst, answers every POST once read and ships nothing: what the machine');
  console.log('   and the simulator add; at 7.2 % it is in the same quota); each run a first burst, then a later one in the same');
  console.log('   process (the first touches telkin\'s buffers for the first time: the kernel zeroes each page then)');
  for (const [quota, bin] of [[false, FLOOR], [false, TELKIN], [true, FLOOR], [true, TELKIN]]) {
    for (const [record, lineBytes] of [['event', 300], ['ndjson', 1000]]) {
      // Three runs pooled: one run's ~40 POSTs make a thin p99.
      const runs = [];
      for (let i = 0; i < 3; i++) runs.push(await latencyRun(sink, { record, lineBytes, quota, bin }));
      const label = `${bin === FLOOR ? 'floor, ' : ''}${quota ? '7.2 % CPU' : 'full speed'}, ` +
        `${bin === FLOOR ? '' : record + ' '}${lineBytes} B lines`;
      if (!runs[0]) {
        console.log(`   ${label}: n/a (no writable cgroup v1 cpu controller)`);
        row(`POST answer p99, ${label}`, 'n/a', '<< 25 ms', null, CMD('latency'));
        continue;
      }
      for (const which of ['first', 'later']) {
        const rs = runs.map((x) => x[which]);
        const r = rs.reduce((acc, x) => {
          for (const k of ['n', 'failed', 'busyDrops', 'lost', 'calls', 'cpu', 'wall', 'waited', 'moves']) acc[k] = (acc[k] || 0) + x[k];
          acc.turn = Math.max(acc.turn || 0, x.turn || 0);
          return acc;
        }, {});
        r.throttled = rs[0].throttled && rs.reduce((acc, x) => ({ periods: acc.periods + x.throttled.periods,
          throttled: acc.throttled + x.throttled.throttled, ms: acc.ms + x.throttled.ms }), { periods: 0, throttled: 0, ms: 0 });
        const all = rs.flatMap((x) => x.answers);
        Object.assign(r, { p50: pct(all, 0.5), p99: pct(all, 0.99), max: Math.max(...all) });
        const name = which === 'first' ? label : '  later burst, same process';
        console.log(`   ${name.padEnd(36)} ${r.n} POSTs in 3 runs: answer p50 ${f(r.p50)} ms, p99 ${f(r.p99)} ms, max ${f(r.max)} ms; ` +
          `failed ${r.failed}, batches dropped by the sender (cut while a POST was unanswered) ${r.busyDrops} ` +
          `(${r.lost} lines); ${bin === FLOOR ? 'floor' : 'telkin'} CPU ${f(r.cpu, 0)} ms in ${r.wall} ms, ` +
          `runnable but waiting for a CPU ${f(r.waited, 0)} ms, moved between CPUs ${r.moves} times` +
          (bin === FLOOR || which === 'later' ? '' : `; both bursts: ${r.calls} PutRecords, longest loop turn ${r.turn} ms`) +
          (r.throttled ? `; throttled in ${r.throttled.throttled} of ${r.throttled.periods} periods (${f(r.throttled.ms, 0)} ms)` : ''));
        row(`POST answer p50/p99/max, ${which === 'first' ? label : label + ', later burst'}`,
          `${f(r.p50)}/${f(r.p99)}/${f(r.max)} ms, ${r.busyDrops} dropped`,
          bin === FLOOR ? '' : '<< 25 ms', bin === FLOOR ? null : r.p99 < 12.5, CMD('latency'));
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// i. CPU per event (the reference invocation of issue 13), and Lambda memory sizes

// Time a process has spent runnable but waiting for a CPU, in ms (/proc/<pid>/schedstat's second
// field: run queue delay; a throttled cpu group's time is not in it). NaN when not there.
function runDelayMs(pid) {
  try { return Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[1]) / 1e6; } catch { return NaN; }
}

// How many times the scheduler has moved a process to another CPU (/proc/<pid>/sched,
// se.nr_migrations; NaN when not there). Under a cpu quota each CPU holds its own slice of it.
function migrations(pid) {
  try {
    return Number((/^se\.nr_migrations\s*:\s*(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/sched`, 'utf8')) || [])[1]);
  } catch { return NaN; }
}

// A process's CPU time in ms: the scheduler's ns count (/proc/<pid>/schedstat), else utime+stime.
function schedMs(pid) {
  try {
    const ns = Number(fs.readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
    if (Number.isFinite(ns) && ns > 0) return ns / 1e6;
  } catch { /* none */ }
  return cpuMs(pid);
}

const REF_LINES = 20000; // the reference invocation: 20 000 lines, ~3.8 MB of telemetry, 41 PutRecords

// One invocation of `lines` lines with TELKIN_FLUSH=end (everything shipped before /event/next),
// after 3 small warm-up invocations: the extension's CPU for it (schedstat, read while frozen),
// the invocation's wall time, and the cpu group's throttling during it. again: the same
// invocation once more in the same process (again.cpu, again.minflt): the sandbox's later
// bursts, whose memory is already touched.
async function cpuRun(sink, { lines, bin = TELKIN, wrapper = [], group = null, initTimeoutMs = 5000, env = {}, again = false }) {
  const sim = new LambdaSim({ bin, env: telkinEnv(sink, await freePort(), { TELKIN_FLUSH: 'end', ...env }), wrapper,
    initTimeoutMs, functionTimeoutMs: 300000, invokeTimeoutMs: 300000 });
  try {
    await sim.start();
    await sim.waitInit();
    for (let i = 0; i < 3; i++) await sim.invoke({ lines: 3 });
    const th0 = group && group.throttled();
    const cpu0 = schedMs(sim.pid), us0 = userSysMs(sim.pid);
    const t0 = process.hrtime.bigint();
    const inv = await sim.invoke({ lines });
    const wall = hrMs(t0, process.hrtime.bigint());
    const cpu = schedMs(sim.pid) - cpu0, us1 = userSysMs(sim.pid);
    const th1 = group && group.throttled();
    let second = null;
    if (again) {
      const c0 = schedMs(sim.pid), f0 = userSysMs(sim.pid).minflt;
      await sim.invoke({ lines });
      second = { cpu: schedMs(sim.pid) - c0, minflt: userSysMs(sim.pid).minflt - f0 };
    }
    await sim.shutdown();
    return { cpu, user: us1.user - us0.user, sys: us1.sys - us0.sys, minflt: us1.minflt - us0.minflt, wall, added: inv.addedMs, s: summaryOf(sim), sim, again: second,
      throttled: th1 && { periods: th1.periods - th0.periods, throttled: th1.throttled - th0.throttled } };
  } finally {
    await sim.close();
  }
}

// TELKIN_PROFILE_BIN: an unstripped build of the same sources, for callgrind_annotate to name functions.
const CALLGRIND_BIN = process.env.TELKIN_PROFILE_BIN ? path.resolve(process.env.TELKIN_PROFILE_BIN) : TELKIN;

// Instructions of one process run under callgrind ("totals:" of its output file), and the file.
async function callgrindRun(sink, lines) {
  const out = path.join(require('node:os').tmpdir(), `telkin-bench-cg-${process.pid}-${lines}.out`);
  const wrapper = ['valgrind', '--tool=callgrind', `--callgrind-out-file=${out}`];
  // TELKIN_SANDBOX=0: valgrind makes system calls of its own that the seccomp filter refuses.
  const r = await cpuRun(sink, { lines, wrapper, initTimeoutMs: 60000, env: { TELKIN_SANDBOX: '0' }, bin: CALLGRIND_BIN });
  const m = /^(?:totals|summary): (\d+)/m.exec(fs.readFileSync(out, 'utf8'));
  return { ...r, instr: m ? Number(m[1]) : NaN, out };
}

function hasValgrind() {
  try { execFileSync('valgrind', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; }
}

async function benchCpu(sink, a) {
  const lines = a.lines || REF_LINES;
  const runs = Math.max(3, Math.min(a.runs, 7));
  console.log(`\n-- CPU per event: one ${lines}-line invocation (TELKIN_FLUSH=end, TELKIN_RECORD=event), telkin's CPU` +
    ` (/proc/<pid>/schedstat) from the thaw to the freeze, ${runs} runs; then under callgrind`);
  const xs = [], ys = [];
  let last, user = 0, sys = 0, minflt = 0, minflt2 = 0;
  for (let i = 0; i < runs; i++) {
    last = await cpuRun(sink, { lines, again: true });
    xs.push(last.cpu);
    ys.push(last.again.cpu);
    minflt2 += last.again.minflt;
    user += last.user;
    sys += last.sys;
    minflt += last.minflt;
  }
  const s = last.s;
  console.log(`   CPU median ${f(med(xs))} ms (min ${f(Math.min(...xs))}, max ${f(Math.max(...xs))}): ${f(med(xs) / lines * 1000, 3)} ms` +
    ` per 1000 events, ${f(med(xs) / lines * 1e6, 0)} ns per event; shipped ${s.shipped} (${s.calls} PutRecords); invoke` +
    ` ${f(last.wall, 0)} ms wall`);
  console.log(`   of which user ${f(user / runs, 1)} ms, kernel ${f(sys / runs, 1)} ms per run (10 ms ticks, averaged; the kernel part` +
    ' includes the loopback TCP of the sink\'s side, which a remote Kinesis does not cost);' +
    ` ${f(minflt / runs, 0)} page faults per run (first touches of memory: each costs ~12 us on this machine kind's VMs)`);
  console.log(`   the same invocation again in the same process (a sandbox's later bursts: the memory is touched already):` +
    ` CPU median ${f(med(ys))} ms (min ${f(Math.min(...ys))}, max ${f(Math.max(...ys))}), ${f(minflt2 / runs, 0)} page faults`);
  row(`CPU per event, ${lines}-line invocation`, `${f(med(xs) / lines * 1e6, 0)} ns (${f(med(xs), 1)} ms in all, ${s.calls} PutRecords)`,
    '<= 1.3 us', med(xs) / lines * 1e6 <= 1312, CMD('cpu'));
  row(`  the same, again in the same process`, `${f(med(ys) / lines * 1e6, 0)} ns (${f(med(ys), 1)} ms in all)`,
    '-', null, CMD('cpu'));
  if (!hasValgrind()) { console.log('   callgrind: skipped (no valgrind)'); return; }
  // Two runs, with and without the big invocation: the difference is the invocation alone. Under
  // valgrind the CPU does not show the SHA extensions (its CPUID hides them): the portable SHA-256.
  const big = await callgrindRun(sink, lines);
  const small = await callgrindRun(sink, 0);
  try { fs.unlinkSync(small.out); } catch { /* gone */ }
  const per = (big.instr - small.instr) / lines;
  console.log(`   callgrind (portable SHA-256: valgrind's CPUID hides the SHA extensions): ${big.instr} instructions with the` +
    ` invocation, ${small.instr} without: ${f(per, 0)} per event; profile: callgrind_annotate ${big.out}`);
  row(`instructions per event, callgrind (portable SHA-256)`, `${f(per, 0)}`, '<= 20 000', per <= 20000, CMD('cpu'));
}

// Lambda gives a function CPU in proportion to its memory: 1769 MB is one vCPU. The extension's CPU
// comes out of the function's share, so the extension runs in a cgroup v1 cpu group of that share.
const MEM_SIZES = [[128, 7200], [512, 28900], [1769, 100000]]; // MB, cfs_quota_us per 100 ms period

async function benchMem(a) {
  console.log('\n-- memory sizes: telkin (and, beside it, the do-nothing extension) in a cgroup v1 cpu group of the share' +
    ' Lambda gives the function (period 100 ms; quota 7.2 / 28.9 / 100 ms for 128 / 512 / 1769 MB); the simulator outside it');
  const probe = cpuGroup(100000, 100000);
  if (!probe) {
    console.log('   skipped: no writable cgroup cpu controller');
    row('memory sizes (cold start, added per invoke, CPU/1000 events)', 'skipped: no writable cgroup cpu controller', '-', null, CMD('mem'));
    return;
  }
  probe.close();
  const workload = strategyWorkload({ frequent: a.memInvokes || 20, rare: 0 });
  const sink = await startSinkWorker();
  try {
    for (const [mb, quota] of MEM_SIZES) {
      const group = cpuGroup(quota, 100000);
      try {
        const cold = await coldRuns(sink, Math.min(a.runs, 10), group.wrapper, 150);
        const added = {};
        for (const flush of ['end', 'periodic:1000', 'auto']) added[flush] = (await runStrategy(flush, workload, { group })).added;
        const floorAdded = (await runStrategy('end', workload, { bin: FLOOR, group })).added;
        const c = await cpuRun(sink, { lines: REF_LINES, group, wrapper: group.wrapper });
        const fc = await cpuRun(sink, { lines: REF_LINES, bin: FLOOR, group, wrapper: group.wrapper });
        const ad = (xs) => `${f(med(xs), 2)}/${f(pct(xs, 0.99), 2)}`;
        console.log(`   ${String(mb).padStart(4)} MB (${f(quota / 1000, 1)} %): cold start telkin ${f(med(cold.telkin))} ms,` +
          ` floor ${f(med(cold.floor))} ms (CPU to the first /event/next ${f(med(cold.cpu.telkin))} / ${f(med(cold.cpu.floor))} ms);` +
          ` added per invoke p50/p99 ms: end ${ad(added.end)}, periodic:1000` +
          ` ${ad(added['periodic:1000'])}, auto ${ad(added.auto)}, floor ${ad(floorAdded)}; CPU per 1000 events telkin` +
          ` ${f(c.cpu / REF_LINES * 1000, 2)} ms (the ${REF_LINES}-line invoke ${f(c.wall, 0)} ms wall, throttled in` +
          ` ${c.throttled.throttled} of ${c.throttled.periods} periods), floor ${f(fc.cpu / REF_LINES * 1000, 2)} ms`);
        row(`${mb} MB: cold start telkin / floor`, `${f(med(cold.telkin))} / ${f(med(cold.floor))} ms`, '~ floor', null, CMD('mem'));
        row(`${mb} MB: added p50/p99, end | periodic:1000 | auto | floor`, `${ad(added.end)} | ${ad(added['periodic:1000'])} |` +
          ` ${ad(added.auto)} | ${ad(floorAdded)} ms`, 'periodic p50 <= 0.5 ms', med(added['periodic:1000']) <= 0.5, CMD('mem'));
        row(`${mb} MB: CPU per 1000 events telkin / floor`, `${f(c.cpu / REF_LINES * 1000, 2)} / ${f(fc.cpu / REF_LINES * 1000, 2)} ms` +
          ` (invoke ${f(c.wall, 0)} ms wall)`, '-', null, CMD('mem'));
      } finally {
        group.close();
      }
    }
  } finally {
    await sink.close();
  }
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.help) {
    console.log('usage: node bench.js [--only cold,rss,tput,invoke,strategy,packing,tlsrtt,pushback,latency,cpu,mem] [--runs N] [--events N] [--invokes N]' +
      ' [--frequent N] [--rare N]');
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
  if (a.only.includes('latency')) await benchLatency(sink);
  if (a.only.includes('cpu')) await benchCpu(sink, a);
  await sink.close();
  if (a.only.includes('packing')) await benchPacking();
  if (a.only.includes('strategy')) await benchStrategy(a);
  if (a.only.includes('tlsrtt')) await benchTlsRtt(a);
  if (a.only.includes('pushback')) await benchPushback(a);
  if (a.only.includes('mem')) await benchMem(a);

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

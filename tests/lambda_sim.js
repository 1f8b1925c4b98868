#!/usr/bin/env node
'use strict';
// A simulator of the AWS Lambda execution environment for ONE external extension process.
//
// It serves the Runtime API's extension-facing parts on 127.0.0.1:<free port>:
//   Extensions API 2020-01-01  register, event/next (long poll), init/error, exit/error
//   Telemetry API  2022-07-01  subscribe (PUT /2022-07-01/telemetry), events in schema 2022-12-13
// launches the extension executable with the environment Lambda gives it, plays the runtime's part
// (init, invokes, shutdown), emits the telemetry Lambda would emit and delivers it to the
// subscriber in batches, freezes the process (SIGSTOP) between invokes as Lambda does, and records
// everything for assertions: every event emitted, every delivery and its HTTP status, the
// extension's stdout/stderr, init/exit errors, cold start and shutdown timings.
//
// Module: const { LambdaSim } = require('./lambda_sim');  CLI: node lambda_sim.js --help

const http = require('node:http');
const path = require('node:path');
const crypto = require('node:crypto');
const { spawn } = require('node:child_process');
const { EventEmitter } = require('node:events');
const readline = require('node:readline');

const SCHEMA_VERSIONS = ['2022-07-01', '2022-12-13', '2025-01-29'];
const TELEMETRY_TYPES = ['platform', 'function', 'extension'];
const EXTENSION_EVENTS = ['INVOKE', 'SHUTDOWN'];
// Telemetry API buffering limits (documented): defaults and [min, max].
const BUFFERING = {
  maxItems: { def: 1000, min: 1000, max: 10000 },
  maxBytes: { def: 262144, min: 262144, max: 1048576 },
  timeoutMs: { def: 1000, min: 25, max: 30000 },
};
const SANDBOX_HOSTS = new Set(['sandbox.localdomain', 'sandbox', 'localhost', '127.0.0.1']);

const liveChildren = new Set();
process.on('exit', () => {
  for (const c of liveChildren) {
    try { process.kill(c.pid, 'SIGCONT'); c.kill('SIGKILL'); } catch { /* gone */ }
  }
});

// On a signal, exit through process.exit so that the 'exit' handler above kills the children.
for (const [sig, n] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  if (!process.listenerCount(sig)) process.once(sig, () => process.exit(128 + n));
}

const nowIso = () => new Date().toISOString();
const ms3 = (x) => Math.round(x * 1000) / 1000;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function categoryOf(type) {
  if (type.startsWith('platform.')) return 'platform';
  return type; // 'function' | 'extension'
}

function deferred() {
  let resolve, reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  return { promise, resolve, reject };
}

function withTimeout(promise, ms, what) {
  let t;
  return Promise.race([
    promise,
    new Promise((_, rej) => { t = setTimeout(() => rej(new Error(`timeout after ${ms} ms: ${what}`)), ms); }),
  ]).finally(() => clearTimeout(t));
}

// A log message with characters that exercise JSON escaping (quote, backslash, tab, non-ASCII,
// astral plane, a control character).
function defaultMessage(marker, i) {
  const flavours = [
    'plain ascii payload',
    'quote " backslash \\ tab \t done',
    'unicode caf\u00e9 \u00fcber \u65e5\u672c \ud83d\ude80',
    'control \u0001 bell \u0007 and slash /',
    'json-looking {"a":1,"b":[true,null]}',
  ];
  return `${marker} ${flavours[i % flavours.length]}`;
}

class LambdaSim extends EventEmitter {
  /**
   * @param {object} o
   * @param {string} o.bin                 extension executable (its file name is the extension name)
   * @param {string[]} [o.wrapper]         command prefix, e.g. ['qemu-aarch64-static']
   * @param {object} [o.env]               extra environment for the extension
   * @param {boolean} [o.inheritEnv=false] start from process.env (PATH etc. are always passed)
   * @param {string} [o.functionName='telkin-sim-fn']
   * @param {string} [o.functionVersion='$LATEST']
   * @param {number} [o.memoryMB=128]
   * @param {string} [o.region='us-east-1']
   * @param {string} [o.logFormat='Text']  'Text' | 'JSON' (AWS_LAMBDA_LOG_FORMAT)
   * @param {boolean} [o.freeze=true]      SIGSTOP the extension between invokes
   * @param {number} [o.shutdownDeadlineMs=2000]
   * @param {string} [o.shutdownReason='spindown']
   * @param {boolean} [o.flushBeforeShutdown=true] deliver held telemetry before the SHUTDOWN event
   * @param {number} [o.initTimeoutMs=10000]
   * @param {number} [o.invokeTimeoutMs=30000]
   * @param {number} [o.functionTimeoutMs=3000] INVOKE deadlineMs = now + this
   * @param {number} [o.deliveryRetries=3]  retries of a failed batch before it is dropped
   * @param {number} [o.deliveryTimeoutMs=5000]
   * @param {number} [o.maxQueueBytes=33554432] telemetry held for the subscriber before dropping
   * @param {number} [o.initLines=2]       function log lines written during init
   * @param {boolean} [o.echo=false]       echo the extension's output to our stderr
   * @param {string} [o.id]                marker prefix (default: random)
   */
  constructor(o) {
    super();
    if (!o || !o.bin) throw new Error('LambdaSim: bin is required');
    o = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
    this.o = {
      wrapper: [], env: {}, inheritEnv: false, functionName: 'telkin-sim-fn', functionVersion: '$LATEST',
      memoryMB: 128, region: 'us-east-1', logFormat: 'Text', freeze: true, shutdownDeadlineMs: 2000,
      shutdownReason: 'spindown', flushBeforeShutdown: true, initTimeoutMs: 10000, invokeTimeoutMs: 30000,
      functionTimeoutMs: 3000, deliveryRetries: 3, deliveryTimeoutMs: 5000, maxQueueBytes: 32 << 20,
      initLines: 2, echo: false, handler: 'index.handler', ...o,
    };
    this.extensionName = path.basename(this.o.bin);
    this.id = this.o.id || crypto.randomBytes(4).toString('hex');
    this.state = 'created'; // created → init → idle ⇄ invoke → shutdown → exited
    this.port = 0;
    this.server = null;
    this.child = null;
    this.pid = 0;

    // Records for assertions.
    this.emitted = [];        // {seq, event, json, bytes, category, phase, requestId, acked, deliveredAt}
    this.deliveries = [];     // {at, items, bytes, status, error, attempt, ms}
    this.requests = [];       // every Runtime API request: {at, method, url, status}
    this.stdoutLines = [];
    this.stderrLines = [];
    this.initErrors = [];     // {errorType, body, at}
    this.exitErrors = [];
    this.subscriptions = [];  // accepted subscribe bodies
    this.registration = null; // {id, events, at}
    this.invokes = [];
    this.timings = {};        // spawnAt, registerAt, firstNextAt, coldStartMs, ...
    this.exit = null;         // {code, signal, at}
    this.frozen = false;
    this.freezeCount = 0;

    this._sub = null;         // active subscriber
    this._queue = [];         // events waiting for the subscriber
    this._queueBytes = 0;
    this._inFlight = false;
    this._flushNow = false;
    this._timer = null;
    this._firstQueuedAt = 0;
    this._preSub = [];        // everything emitted before a subscription exists
    this._pendingNext = null; // {res, at}
    this._nextWaiters = [];
    this._idle = deferred();
    this._exited = deferred();
    this._runtimeDone = false;
    this._seq = 0;
    this._agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  get runtimeApi() { return `127.0.0.1:${this.port}`; }
  get coldStartMs() { return this.timings.coldStartMs; }

  // ----------------------------------------------------------------------------------------------
  // Lifecycle

  async start() {
    if (this.state !== 'created') throw new Error('already started');
    this.server = http.createServer((req, res) => this._route(req, res));
    // Lambda's Runtime API (Go net/http) keeps idle connections indefinitely: a frozen extension
    // must find its keep-alive connection still usable after a thaw.
    this.server.keepAliveTimeout = 0;
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 0;
    this.server.timeout = 0;
    await new Promise((res, rej) => {
      this.server.once('error', rej);
      this.server.listen(0, '127.0.0.1', () => { this.server.off('error', rej); res(); });
    });
    this.port = this.server.address().port;
    this.state = 'init';
    this.timings.startAt = Date.now();
    this._emit('platform.initStart', {
      initializationType: 'on-demand',
      phase: 'init',
      runtimeVersion: 'nodejs:20.v32',
      runtimeVersionArn: `arn:aws:lambda:${this.o.region}::runtime:` +
        '0000000000000000000000000000000000000000000000000000000000000000',
      functionName: this.o.functionName,
      functionVersion: this.o.functionVersion,
    });
    this._spawn();
    return this;
  }

  _spawn() {
    const o = this.o;
    const base = o.inheritEnv ? { ...process.env } : { PATH: process.env.PATH || '/usr/bin:/bin' };
    const env = {
      ...base,
      AWS_LAMBDA_RUNTIME_API: this.runtimeApi,
      AWS_LAMBDA_FUNCTION_NAME: o.functionName,
      AWS_LAMBDA_FUNCTION_VERSION: o.functionVersion,
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(o.memoryMB),
      AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
      AWS_LAMBDA_LOG_FORMAT: o.logFormat,
      AWS_REGION: o.region,
      AWS_DEFAULT_REGION: o.region,
      AWS_EXECUTION_ENV: 'AWS_Lambda_nodejs20.x',
      LAMBDA_TASK_ROOT: '/var/task',
      ...o.env,
    };
    for (const [k, v] of Object.entries(env)) if (v === undefined || v === null) delete env[k];
    const argv = [...o.wrapper, o.bin];
    this.timings.spawnAt = Date.now();
    this.timings.spawnHr = process.hrtime.bigint();
    const child = spawn(argv[0], argv.slice(1), { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    liveChildren.add(child);
    child.on('error', (e) => {
      this.spawnError = e;
      this._onExit(null, null, e);
    });
    if (child.pid) this.pid = child.pid;
    for (const [stream, store] of [[child.stdout, this.stdoutLines], [child.stderr, this.stderrLines]]) {
      const rl = readline.createInterface({ input: stream, crlfDelay: Infinity });
      rl.on('line', (line) => {
        store.push(line);
        if (o.echo) process.stderr.write(`[${this.extensionName}] ${line}\n`);
        // Lambda captures extension output as "extension" telemetry events.
        if (this.state !== 'exited') this._emit('extension', line);
        this.emit('line', line);
      });
    }
    child.on('exit', (code, signal) => this._onExit(code, signal));
  }

  _onExit(code, signal, error) {
    if (this.exit) return;
    liveChildren.delete(this.child);
    this.exit = { code, signal, at: Date.now(), error: error ? error.message : undefined };
    this.state = 'exited';
    this.frozen = false;
    this._clearTimer();
    if (this._pendingNext) { this._pendingNext.res.destroy(); this._pendingNext = null; }
    const err = new Error(`extension exited (code ${code}, signal ${signal})${error ? ': ' + error.message : ''}`);
    for (const w of this._nextWaiters.splice(0)) w.reject(err);
    this._idle.reject(err);
    this._idle.promise.catch(() => {});
    this._exited.resolve(this.exit);
    this.emit('exit', this.exit);
  }

  // Resolves once init is complete: the extension registered and called /event/next.
  async waitInit({ timeoutMs = this.o.initTimeoutMs } = {}) {
    await withTimeout(this._idle.promise, timeoutMs, 'extension init (register + first /event/next)');
    return this;
  }

  // Resolves with {code, signal, at} when the process exits.
  waitExit({ timeoutMs = 10000 } = {}) {
    return withTimeout(this._exited.promise, timeoutMs, 'extension exit');
  }

  // ----------------------------------------------------------------------------------------------
  // Freeze / thaw

  _freeze() {
    if (!this.o.freeze || this.frozen || !this.child || this.exit) return;
    try { process.kill(this.child.pid, 'SIGSTOP'); } catch { return; }
    this.frozen = true;
    this.freezeCount++;
    this._clearTimer();
    this.emit('freeze');
  }

  _thaw() {
    if (!this.frozen) return;
    this.frozen = false;
    try { process.kill(this.child.pid, 'SIGCONT'); } catch { /* gone */ }
    this.emit('thaw');
    this._pump();
  }

  // ----------------------------------------------------------------------------------------------
  // Invoke

  /**
   * One invocation. Resolves after the runtime is done and the extension has called /event/next
   * (then platform.report is emitted and the sandbox frozen).
   * @param {object} [p]
   * @param {number} [p.lines=3]     function log lines
   * @param {function} [p.message]   (marker, i) => message text
   * @param {number} [p.chunk=500]   lines written between yields to the event loop
   * @param {string} [p.status='success'] runtimeDone/report status
   * @param {number} [p.durationMs]  simulated handler duration (default ~ real elapsed time)
   * @param {function} [p.beforeDone] async hook run after the log lines, before runtimeDone
   * @param {string|function} [p.level='INFO'] log level of each line (or i => level)
   */
  async invoke(p = {}) {
    if (this.state !== 'idle') throw new Error(`invoke: sandbox is ${this.state}, not idle`);
    const lines = p.lines ?? 3;
    const chunk = p.chunk ?? 500;
    const index = this.invokes.length;
    const requestId = crypto.randomUUID();
    const inv = {
      index, requestId, startedAt: Date.now(), events: [], lines: [], runtimeDoneSeq: -1,
      extensionNextAt: 0, runtimeDoneAt: 0, ackedBeforeNext: null, unackedBeforeNext: [],
    };
    this.invokes.push(inv);
    this.state = 'invoke';
    this._runtimeDone = false;
    this._currentInvoke = inv;
    const nextCalled = this._waitNextCall();
    this._thaw();

    const traceId = `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${crypto.randomBytes(12).toString('hex')}` +
      `;Parent=${crypto.randomBytes(8).toString('hex')};Sampled=1`;
    this._respondNext({
      eventType: 'INVOKE',
      deadlineMs: Date.now() + this.o.functionTimeoutMs,
      requestId,
      invokedFunctionArn: `arn:aws:lambda:${this.o.region}:123456789012:function:${this.o.functionName}`,
      tracing: { type: 'X-Amzn-Trace-Id', value: traceId },
    });

    const t0 = process.hrtime.bigint();
    inv.events.push(this._emit('platform.start', { requestId, version: this.o.functionVersion }));
    const msg = p.message || defaultMessage;
    for (let i = 0; i < lines; i++) {
      const marker = `sim:${this.id}:${index}:${i}`;
      inv.lines.push(marker);
      const level = typeof p.level === 'function' ? p.level(i) : (p.level || 'INFO');
      inv.events.push(this._emitFunctionLog(msg(marker, i), requestId, level));
      if (chunk && (i + 1) % chunk === 0) await new Promise((r) => setImmediate(r));
      if (this.exit) throw new Error('extension exited during invoke');
    }
    if (p.beforeDone) await p.beforeDone(inv);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e6;
    // Simulated handler time: what writing the logs took plus a little "work".
    const durationMs = ms3(p.durationMs ?? elapsed + 1 + Math.random() * 20);
    const status = p.status || 'success';
    const doneRec = {
      requestId,
      status,
      metrics: { durationMs, producedBytes: 42 },
      spans: [
        { name: 'responseLatency', start: new Date(inv.startedAt).toISOString(), durationMs: ms3(durationMs * 0.9) },
        { name: 'responseDuration', start: nowIso(), durationMs: 0.051 },
      ],
    };
    if (status !== 'success') doneRec.errorType = p.errorType || 'Runtime.Unknown';
    const done = this._emit('platform.runtimeDone', doneRec);
    inv.events.push(done);
    inv.runtimeDoneSeq = done.seq;
    inv.runtimeDoneAt = Date.now();
    inv.durationMs = durationMs;
    inv.status = status;
    this._runtimeDone = true;
    this._maybeEndInvoke();

    await withTimeout(nextCalled, this.o.invokeTimeoutMs, `extension /event/next after invoke ${index}`);
    await this._idleAgain;
    return inv;
  }

  // Called when the runtime finished, and again whenever /event/next arrives.
  _maybeEndInvoke() {
    const inv = this._currentInvoke;
    if (!inv || this.state !== 'invoke' || !this._runtimeDone || !this._pendingNext) return;
    inv.extensionNextAt = this._pendingNext.at;
    // Which of this invoke's events (through runtimeDone) had the extension acknowledged?
    inv.unackedBeforeNext = inv.events.filter((e) => e.seq <= inv.runtimeDoneSeq && this._wanted(e) && !e.acked);
    inv.ackedBeforeNext = inv.unackedBeforeNext.length === 0;
    const d = inv.durationMs;
    const metrics = {
      durationMs: d,
      billedDurationMs: Math.ceil(d),
      memorySizeMB: this.o.memoryMB,
      maxMemoryUsedMB: Math.min(this.o.memoryMB, 40 + inv.index % 7),
    };
    if (inv.index === 0) metrics.initDurationMs = this.timings.initDurationMs;
    const rep = { requestId: inv.requestId, status: inv.status, metrics };
    if (inv.status !== 'success') rep.errorType = 'Runtime.Unknown';
    inv.report = this._emit('platform.report', rep);
    inv.events.push(inv.report);
    this._currentInvoke = null;
    this.state = 'idle';
    this._freeze();
  }

  _waitNextCall() {
    const d = deferred();
    this._nextWaiters.push(d);
    this._idleAgain = d.promise;
    return d.promise;
  }

  _emitFunctionLog(message, requestId, level) {
    if (this.o.logFormat === 'JSON') {
      return this._emit('function', { timestamp: nowIso(), level, requestId, message });
    }
    return this._emit('function', `${nowIso()}\t${requestId ?? 'undefined'}\t${level}\t${message}\n`);
  }

  // Write function log lines outside an invoke (e.g. while the runtime handles SIGTERM).
  writeFunctionLogs(n, tag = 'extra') {
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push(this._emitFunctionLog(defaultMessage(`sim:${this.id}:${tag}:${i}`, i), undefined, 'INFO'));
    }
    return out;
  }

  // ----------------------------------------------------------------------------------------------
  // Shutdown

  /**
   * Deliver SHUTDOWN; wait for the process to exit; SIGKILL it at the deadline.
   * @returns {{code, signal, shutdownToExitMs, overrun, deadlineMs, reason}}
   */
  async shutdown(p = {}) {
    const reason = p.reason ?? this.o.shutdownReason;
    const deadlineAfter = p.deadlineMs ?? this.o.shutdownDeadlineMs;
    if (this.exit) return { ...this.exit, alreadyExited: true };
    if (!this._pendingNext) {
      // Wait (bounded) for the extension to be at /event/next.
      await withTimeout(this._idle.promise, p.waitNextMs ?? 5000, 'extension at /event/next before SHUTDOWN')
        .catch(() => {});
      if (!this._pendingNext && this.state === 'invoke') await this._idleAgain;
    }
    this.state = 'shutdown';
    this._thaw();
    if (this.o.flushBeforeShutdown && (p.flush ?? true)) {
      this._flushNow = true;
      this._pump();
      await withTimeout(this._drained(), p.flushTimeoutMs ?? 2000, 'telemetry flush before SHUTDOWN').catch(() => {});
      this._flushNow = false;
    }
    const sentAt = Date.now();
    const deadlineMs = sentAt + deadlineAfter;
    this.timings.shutdownAt = sentAt;
    const delivered = this._respondNext({ eventType: 'SHUTDOWN', shutdownReason: reason, deadlineMs });
    // The runtime (SIGTERM handler) may go on logging while extensions shut down.
    if (p.logsDuringShutdown) {
      const n = p.logsDuringShutdown;
      for (let i = 0; i < n; i += 500) {
        this.writeFunctionLogs(Math.min(500, n - i), `shutdown${i}`);
        await new Promise((r) => setImmediate(r));
      }
    }
    let overrun = false;
    const left = deadlineMs - Date.now();
    try {
      await withTimeout(this._exited.promise, Math.max(left, 1), 'exit before SHUTDOWN deadline');
    } catch {
      overrun = true;
      try { process.kill(this.child.pid, 'SIGKILL'); } catch { /* gone */ }
      await withTimeout(this._exited.promise, 5000, 'exit after SIGKILL');
    }
    const result = {
      code: this.exit.code, signal: this.exit.signal, reason, deadlineMs, sentAt,
      shutdownDelivered: delivered, shutdownToExitMs: this.exit.at - sentAt, overrun,
    };
    this.shutdownResult = result;
    return result;
  }

  // Resolves when every queued event has been delivered (or dropped) and nothing is in flight.
  _drained() {
    if (!this._queue.length && !this._inFlight) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if ((!this._queue.length && !this._inFlight) || this.exit) { this.off('delivery', check); resolve(); }
      };
      this.on('delivery', check);
    });
  }

  // Kill everything (idempotent); used in test teardown.
  async close() {
    if (this.child && !this.exit) {
      try { process.kill(this.child.pid, 'SIGCONT'); } catch { /* gone */ }
      try { this.child.kill('SIGKILL'); } catch { /* gone */ }
      await withTimeout(this._exited.promise, 5000, 'exit after SIGKILL').catch(() => {});
    }
    this._clearTimer();
    if (this._pendingNext) { this._pendingNext.res.destroy(); this._pendingNext = null; }
    this._agent.destroy();
    if (this.server) {
      this.server.closeAllConnections?.();
      await new Promise((r) => this.server.close(() => r()));
      this.server = null;
    }
  }

  // ----------------------------------------------------------------------------------------------
  // Telemetry: emission, buffering, delivery

  _emit(type, record) {
    const event = { time: nowIso(), type, record };
    const json = JSON.stringify(event);
    const rec = {
      seq: this._seq++, event, json, bytes: Buffer.byteLength(json), category: categoryOf(type),
      state: this.state, acked: false, deliveredAt: 0, dropped: false,
    };
    this.emitted.push(rec);
    if (this._sub) {
      if (this._sub.types.includes(rec.category)) this._enqueue(rec);
    } else {
      this._preSub.push(rec);
    }
    this.emit('event', rec);
    return rec;
  }

  _wanted(rec) { return !!this._sub && this._sub.types.includes(rec.category); }

  _enqueue(rec) {
    if (this._queueBytes + rec.bytes > this.o.maxQueueBytes) {
      rec.dropped = true;
      this._noteDrop(1, rec.bytes, 'Some logs were dropped because the buffer is full.');
      return;
    }
    if (!this._queue.length) this._firstQueuedAt = Date.now();
    this._queue.push(rec);
    this._queueBytes += rec.bytes;
    this._pump();
  }

  _noteDrop(records, bytes, reason) {
    this.droppedRecords = (this.droppedRecords || 0) + records;
    this.droppedBytes = (this.droppedBytes || 0) + bytes;
    // Coalesce: one platform.logsDropped per burst of drops.
    if (this._dropPending) {
      this._dropPending.records += records;
      this._dropPending.bytes += bytes;
      return;
    }
    this._dropPending = { records, bytes, reason };
    setImmediate(() => {
      const d = this._dropPending;
      this._dropPending = null;
      if (this.state === 'exited') return;
      this._emit('platform.logsDropped', { reason: d.reason, droppedRecords: d.records, droppedBytes: d.bytes });
    });
  }

  _clearTimer() {
    if (this._timer) { clearTimeout(this._timer); this._timer = null; }
  }

  _pump() {
    const sub = this._sub;
    if (!sub || this._inFlight || !this._queue.length || this.frozen || this.exit) return;
    const b = sub.buffering;
    const age = Date.now() - this._firstQueuedAt;
    const full = this._queue.length >= b.maxItems || this._queueBytes >= b.maxBytes;
    if (!(full || this._flushNow || age >= b.timeoutMs)) {
      if (!this._timer) {
        this._timer = setTimeout(() => { this._timer = null; this._pump(); }, b.timeoutMs - age);
      }
      return;
    }
    this._clearTimer();
    // A batch: as many events as fit in maxItems and maxBytes (the JSON array's size).
    let n = 0;
    let bytes = 2;
    while (n < this._queue.length && n < b.maxItems) {
      const add = this._queue[n].bytes + (n ? 1 : 0);
      if (n && bytes + add > b.maxBytes) break;
      bytes += add;
      n++;
    }
    const batch = this._queue.splice(0, n);
    this._queueBytes -= batch.reduce((s, r) => s + r.bytes, 0);
    this._firstQueuedAt = Date.now();
    this._inFlight = true;
    this._deliver(batch, bytes, 0);
  }

  _deliver(batch, bytes, attempt) {
    const sub = this._sub;
    const body = '[' + batch.map((r) => r.json).join(',') + ']';
    const started = Date.now();
    const d = { at: started, items: batch.length, bytes, attempt, status: 0, error: null, ms: 0 };
    this.deliveries.push(d);
    let settled = false;
    const finish = (status, error) => {
      if (settled) return;
      settled = true;
      d.status = status;
      d.error = error ? String(error.message || error) : null;
      d.ms = Date.now() - started;
      if (status >= 200 && status < 300) {
        const now = Date.now();
        for (const r of batch) { r.acked = true; r.deliveredAt = now; }
        this._inFlight = false;
        this.emit('delivery', d);
        this._pump();
        return;
      }
      if (this.exit || this.state === 'exited') {
        // Nobody left to deliver to: the events are simply not delivered.
        this._inFlight = false;
        this.emit('delivery', d);
        return;
      }
      if (attempt < this.o.deliveryRetries) {
        const delay = 50 * 2 ** attempt;
        this.emit('delivery', d);
        setTimeout(() => this._deliver(batch, bytes, attempt + 1), delay);
        return;
      }
      for (const r of batch) r.dropped = true;
      this._inFlight = false;
      this._noteDrop(batch.length, bytes - 2 - (batch.length - 1),
        'Consumer seems to have fallen behind as it has not acknowledged receipt of logs.');
      this.emit('delivery', d);
      this._pump();
    };
    const req = http.request({
      host: '127.0.0.1', port: sub.port, path: sub.path, method: 'POST', agent: this._agent,
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      res.resume();
      res.on('end', () => finish(res.statusCode));
      res.on('error', (e) => finish(0, e));
    });
    const onTimeout = () => {
      // A frozen extension cannot answer: only time out while it runs.
      if (this.frozen) { req.setTimeout(this.o.deliveryTimeoutMs, onTimeout); return; }
      req.destroy(new Error('delivery timeout'));
    };
    req.setTimeout(this.o.deliveryTimeoutMs, onTimeout);
    req.on('error', (e) => finish(0, e));
    // For timing (bench.js): the moment the batch is handed to the HTTP client.
    this.emit('deliver', { batch, bytes, attempt, hr: process.hrtime.bigint() });
    req.end(body);
  }

  // ----------------------------------------------------------------------------------------------
  // Runtime API

  _route(req, res) {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => { size += c.length; if (size <= 1 << 20) chunks.push(c); });
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const url = new URL(req.url, 'http://x');
      const entry = { at: Date.now(), method: req.method, url: req.url, status: 0 };
      this.requests.push(entry);
      const send = (status, obj, headers = {}) => {
        entry.status = status;
        const text = typeof obj === 'string' ? obj : JSON.stringify(obj);
        res.writeHead(status, {
          'Content-Type': typeof obj === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
          'Content-Length': Buffer.byteLength(text), ...headers,
        });
        res.end(text);
      };
      const fail = (status, errorType, errorMessage) => send(status, { errorMessage, errorType });
      const p = url.pathname.replace(/\/+$/, '');
      try {
        if (p === '/2020-01-01/extension/register') {
          if (req.method !== 'POST') return fail(405, 'MethodNotAllowed', 'Method not allowed');
          return this._register(req, body, send, fail);
        }
        if (p === '/2020-01-01/extension/event/next') {
          if (req.method !== 'GET') return fail(405, 'MethodNotAllowed', 'Method not allowed');
          return this._next(req, res, entry, fail);
        }
        if (p === '/2020-01-01/extension/init/error' || p === '/2020-01-01/extension/exit/error') {
          if (req.method !== 'POST') return fail(405, 'MethodNotAllowed', 'Method not allowed');
          return this._extError(p.endsWith('init/error') ? 'init' : 'exit', req, body, send, fail);
        }
        if (p === '/2022-07-01/telemetry') {
          if (req.method !== 'PUT') return fail(405, 'MethodNotAllowed', 'Method not allowed');
          return this._subscribe(req, body, send, fail);
        }
        entry.status = 404;
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
      } catch (e) {
        fail(500, 'ServiceError', String(e && e.stack || e));
      }
    });
  }

  // Identifier checks shared by the authenticated calls (403 as the Runtime API does).
  _checkId(req, fail) {
    const id = req.headers['lambda-extension-identifier'];
    if (!id) { fail(403, 'Extension.MissingExtensionIdentifier', 'Missing Lambda-Extension-Identifier header'); return null; }
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) {
      fail(403, 'Extension.InvalidExtensionIdentifier', 'Invalid Lambda-Extension-Identifier'); return null;
    }
    if (!this.registration || this.registration.id !== id) {
      fail(403, 'Extension.UnknownExtensionIdentifier', `Unknown extension ${id}`); return null;
    }
    return id;
  }

  _register(req, body, send, fail) {
    const name = req.headers['lambda-extension-name'];
    if (!name) return fail(400, 'Extension.InvalidExtensionName', 'Empty extension name');
    let parsed;
    try { parsed = JSON.parse(body); } catch (e) { return fail(400, 'InvalidRequestFormat', e.message); }
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
      return fail(400, 'InvalidRequestFormat', 'request body must be a JSON object');
    }
    if (parsed.configurationKeys && parsed.configurationKeys.length) {
      return fail(400, 'InvalidRequestFormat', 'configurationKeys are deprecated; use environment variables instead');
    }
    const events = parsed.events ?? [];
    if (!Array.isArray(events)) return fail(400, 'InvalidRequestFormat', 'events must be an array');
    for (const e of events) {
      if (!EXTENSION_EVENTS.includes(e)) return fail(400, 'Extension.InvalidEventType', `${e}: invalid event type`);
    }
    if (name !== this.extensionName) {
      return fail(403, 'Extension.InvalidExtensionName',
        `Extension name ${JSON.stringify(name)} does not match an extension executable (expected ${JSON.stringify(this.extensionName)})`);
    }
    if (this.state !== 'init') return fail(403, 'Extension.RegistrationClosed', 'Extension registration closed already');
    if (this.registration) return fail(403, 'Extension.InvalidExtensionState', 'Extension with this name already registered');
    const id = crypto.randomUUID();
    this.registration = { id, events: [...events], at: Date.now(), name };
    this.timings.registerAt = Date.now();
    this.emit('register', this.registration);
    send(200, { functionName: this.o.functionName, functionVersion: this.o.functionVersion, handler: this.o.handler },
      { 'Lambda-Extension-Identifier': id });
    // With every extension registered, Lambda starts the runtime's init.
    setImmediate(() => this._runtimeInit());
  }

  _runtimeInit() {
    if (this.state !== 'init') return;
    for (let i = 0; i < this.o.initLines; i++) {
      this._emitFunctionLog(defaultMessage(`sim:${this.id}:init:${i}`, i), undefined, 'INFO');
    }
    this._emit('platform.initRuntimeDone', { initializationType: 'on-demand', phase: 'init', status: 'success' });
    this._runtimeInitDone = true;
    this._maybeEndInit();
  }

  _maybeEndInit() {
    if (this.state !== 'init' || !this._runtimeInitDone || !this._pendingNext) return;
    const durationMs = ms3(Date.now() - this.timings.startAt);
    this.timings.initDurationMs = durationMs;
    this._emit('platform.initReport', {
      initializationType: 'on-demand', phase: 'init', status: 'success', metrics: { durationMs },
    });
    this.state = 'idle';
    this._idle.resolve();
    this._freeze();
  }

  _next(req, res, entry, fail) {
    if (!this._checkId(req, fail)) return;
    if (!this.registration.events.length) {
      return fail(403, 'Extension.InvalidExtensionState', 'Extension is not registered for any event');
    }
    const at = Date.now();
    if (!this.timings.firstNextAt) {
      this.timings.firstNextAt = at;
      this.timings.coldStartMs = Number(process.hrtime.bigint() - this.timings.spawnHr) / 1e6;
    }
    if (this._pendingNext) this._pendingNext.res.destroy();
    this._pendingNext = { res, at, entry };
    res.on('close', () => {
      if (this._pendingNext && this._pendingNext.res === res && !res.writableEnded) this._pendingNext = null;
    });
    for (const w of this._nextWaiters.splice(0)) w.resolve(at);
    this.emit('next');
    if (this.state === 'init') this._maybeEndInit();
    else if (this.state === 'invoke') this._maybeEndInvoke();
  }

  _respondNext(ev) {
    const p = this._pendingNext;
    if (!p) return false;
    this._pendingNext = null;
    const text = JSON.stringify(ev);
    p.entry.status = 200;
    p.res.writeHead(200, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
      'Lambda-Extension-Event-Identifier': crypto.randomUUID(),
    });
    p.res.end(text);
    this.emit('extensionEvent', ev);
    return true;
  }

  _extError(kind, req, body, send, fail) {
    if (!this._checkId(req, fail)) return;
    const errorType = req.headers['lambda-extension-function-error-type'];
    if (!errorType) return fail(400, 'Extension.MissingHeader', 'Lambda-Extension-Function-Error-Type not found');
    if (kind === 'init' && this.state !== 'init') {
      return fail(403, 'Extension.InvalidExtensionState', 'init/error is only valid during init');
    }
    const rec = { errorType, body, at: Date.now() };
    (kind === 'init' ? this.initErrors : this.exitErrors).push(rec);
    this.emit(kind === 'init' ? 'initError' : 'exitError', rec);
    send(202, { status: 'OK' });
  }

  _subscribe(req, body, send, fail) {
    if (!this._checkId(req, fail)) return;
    let s;
    try { s = JSON.parse(body); } catch (e) { return fail(400, 'ValidationError', `Invalid JSON: ${e.message}`); }
    if (!s || typeof s !== 'object' || Array.isArray(s)) return fail(400, 'ValidationError', 'body must be a JSON object');
    if (!SCHEMA_VERSIONS.includes(s.schemaVersion)) {
      return fail(400, 'ValidationError', `schemaVersion must be one of ${SCHEMA_VERSIONS.join(', ')}`);
    }
    const dst = s.destination;
    if (!dst || typeof dst !== 'object') return fail(400, 'ValidationError', 'destination is required');
    if (dst.protocol !== 'HTTP') {
      return fail(400, 'ValidationError', dst.protocol === 'TCP'
        ? 'destination.protocol TCP is not supported by this simulator' : 'destination.protocol must be HTTP or TCP');
    }
    let u;
    try { u = new URL(dst.URI); } catch { return fail(400, 'ValidationError', 'destination.URI is not a valid URI'); }
    if (u.protocol !== 'http:') return fail(400, 'ValidationError', 'destination.URI must use http://');
    if (!SANDBOX_HOSTS.has(u.hostname)) {
      return fail(400, 'ValidationError', 'destination.URI host must be sandbox.localdomain');
    }
    const port = Number(u.port || 80);
    if (!(port >= 1 && port <= 65535) || port === this.port) {
      return fail(400, 'ValidationError', 'destination.URI port is invalid');
    }
    if (!Array.isArray(s.types) || !s.types.length || !s.types.every((t) => TELEMETRY_TYPES.includes(t))) {
      return fail(400, 'ValidationError', `types must be a non-empty array of ${TELEMETRY_TYPES.join(', ')}`);
    }
    const buffering = {};
    const b = s.buffering ?? {};
    if (typeof b !== 'object' || Array.isArray(b) || b === null) return fail(400, 'ValidationError', 'buffering must be an object');
    for (const [k, lim] of Object.entries(BUFFERING)) {
      const v = b[k] ?? lim.def;
      if (!Number.isInteger(v) || v < lim.min || v > lim.max) {
        return fail(400, 'ValidationError', `buffering.${k} must be an integer between ${lim.min} and ${lim.max}`);
      }
      buffering[k] = v;
    }
    if (this.state !== 'init') {
      return fail(403, 'Telemetry.SubscriptionClosed', 'Telemetry API subscription is closed already');
    }
    const types = [...new Set(s.types)];
    this._sub = { types, buffering, port, path: (u.pathname || '/') + u.search, uri: dst.URI, schemaVersion: s.schemaVersion };
    this.subscriptions.push({ ...s, at: Date.now() });
    this.timings.subscribeAt = Date.now();
    this.emit('subscribe', this._sub);
    send(200, 'OK');
    // Lambda delivers what was emitted since the sandbox started (init events) to the subscriber.
    const backlog = this._preSub.splice(0);
    for (const rec of backlog) if (types.includes(rec.category)) this._enqueue(rec);
    this._emit('platform.telemetrySubscription', { name: this.extensionName, state: 'Subscribed', types });
  }

  // ----------------------------------------------------------------------------------------------
  // Reporting helpers

  // Events of the given categories, emitted; [] of event objects as delivered (parsed JSON).
  eventsOf(categories = TELEMETRY_TYPES) {
    return this.emitted.filter((r) => categories.includes(r.category));
  }

  summary() {
    const acked = this.emitted.filter((r) => r.acked).length;
    return {
      extension: this.extensionName,
      pid: this.pid,
      coldStartMs: this.timings.coldStartMs && ms3(this.timings.coldStartMs),
      initDurationMs: this.timings.initDurationMs,
      subscription: this._sub && { types: this._sub.types, buffering: this._sub.buffering, uri: this._sub.uri },
      invokes: this.invokes.length,
      emitted: this.emitted.length,
      delivered: acked,
      dropped: this.emitted.filter((r) => r.dropped).length,
      deliveries: this.deliveries.length,
      failedDeliveries: this.deliveries.filter((d) => !(d.status >= 200 && d.status < 300)).length,
      freezes: this.freezeCount,
      initErrors: this.initErrors.map((e) => e.errorType),
      exitErrors: this.exitErrors.map((e) => e.errorType),
      shutdown: this.shutdownResult,
      exit: this.exit,
    };
  }
}

// ------------------------------------------------------------------------------------------------
// CLI

function parseArgs(argv) {
  const a = { invokes: 3, lines: 5, logFormat: 'Text', env: {}, wrapper: [], echo: true };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => argv[++i];
    if (k === '--bin') a.bin = v();
    else if (k === '--wrapper') a.wrapper.push(...v().split(' ').filter(Boolean));
    else if (k === '--invokes') a.invokes = Number(v());
    else if (k === '--lines') a.lines = Number(v());
    else if (k === '--log-format') a.logFormat = v();
    else if (k === '--env') { const [n, ...rest] = v().split('='); a.env[n] = rest.join('='); }
    else if (k === '--deadline-ms') a.shutdownDeadlineMs = Number(v());
    else if (k === '--reason') a.shutdownReason = v();
    else if (k === '--no-freeze') a.freeze = false;
    else if (k === '--quiet') a.echo = false;
    else if (k === '--cold-start-only') a.coldStartOnly = true;
    else if (k === '--json') a.json = true;
    else if (k === '--help' || k === '-h') a.help = true;
    else throw new Error(`unknown argument ${k}`);
  }
  return a;
}

async function main() {
  const a = parseArgs(process.argv.slice(2));
  if (a.help || !a.bin) {
    console.log(`usage: node lambda_sim.js --bin PATH [--wrapper CMD] [--invokes N] [--lines N]
       [--log-format Text|JSON] [--env K=V]... [--deadline-ms MS] [--reason R] [--no-freeze]
       [--quiet] [--cold-start-only] [--json]
Runs one external extension through init, N invokes and SHUTDOWN, then prints a summary.`);
    process.exit(a.help ? 0 : 2);
  }
  const sim = new LambdaSim({
    bin: path.resolve(a.bin), wrapper: a.wrapper, env: a.env, logFormat: a.logFormat, echo: a.echo,
    freeze: a.freeze ?? true, shutdownDeadlineMs: a.shutdownDeadlineMs, shutdownReason: a.shutdownReason,
  });
  let rc = 0;
  try {
    await sim.start();
    await sim.waitInit();
    if (!a.coldStartOnly) {
      for (let i = 0; i < a.invokes; i++) await sim.invoke({ lines: a.lines });
    }
    const r = await sim.shutdown();
    if (r.overrun || r.code !== 0) rc = 1;
  } catch (e) {
    console.error(`lambda_sim: ${e.message}`);
    rc = 1;
  } finally {
    await sim.close();
  }
  const s = sim.summary();
  if (a.json) console.log(JSON.stringify(s));
  else console.log(JSON.stringify(s, null, 2));
  process.exit(rc);
}

if (require.main === module) main();

module.exports = { LambdaSim, BUFFERING, SCHEMA_VERSIONS, TELEMETRY_TYPES, categoryOf, defaultMessage };

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
// Every execution mode is DATA (MODES below), played by this one class (option `mode`):
//   on-demand                 the classic lifecycle above
//   provisioned-concurrency   + a frozen gap between init and the first invoke (gap(), 'gap' hook)
//   snap-start                init once, snapshot at the end of init; restore() resumes it with
//                             rotated container credentials, restore events, a new telemetry
//                             sender ('restore' hook for the Kinesis side)
//   lambda-managed-instances  SHUTDOWN-only registration, schema 2025-01-29 only, never frozen,
//                             invokeConcurrent(n) with interleaved log lines, no INVOKE/runtimeDone
// and in any mode with INVOKE events: invoke({timeout}) / invoke({crash}) reset the environment
// (SHUTDOWN timeout/failure). Container credentials are served by the simulator itself.
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

// Lambda's execution modes, as data: one simulator class plays every one of them. What differs:
//   initializationType  AWS_LAMBDA_INITIALIZATION_TYPE and the init events' initializationType
//   registerEvents      events an extension may register for; any other known event is refused
//                       with registerRefusal(event) -> {status, body} (the platform's exact answer)
//   schemas             Telemetry API schemaVersions accepted; others refused with schemaRefusal
//                       ({status, text}: raw body, may be invalid JSON as the platform's is)
//   subscribeBody       the body of a successful subscribe answer
//   freeze              SIGSTOP the extension between invocations
//   invokeEvent         the extension gets INVOKE events; runtimeDone is emitted per invocation
//   credentials         'env': the test provides AWS_ACCESS_KEY_ID/... (as Lambda sets them);
//                       'container': the simulator serves the container credentials provider
//                       itself (AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN)
//                       and removes the key variables from the extension's environment
//   maxConcurrency      invocations at once in one environment (invokeConcurrent)
//   readyEvent          platform.extension {name, state: Ready, events} before initReport
//   restore             'snapshot': init once, snapshot at the end of init (every process in
//                       /event/next), restore() thaws the same process as a restored environment:
//                       credentials rotated, restore events, a new telemetry sender, 'restore' hook
//   runtime             AWS_EXECUTION_ENV and runtimeVersion (SnapStart: Java, Python, .NET only)
//   gap                 'provisioned': a frozen gap between init and the first invoke ('gap' hook,
//                       where a test kills every Kinesis connection silently)
const NODE20 = { executionEnv: 'AWS_Lambda_nodejs20.x', version: 'nodejs:20.v32' };
const INVALID_EVENT_403 = (e) => ({
  status: 403, body: { errorMessage: `${e}: ErrorInvalidEventType`, errorType: 'Extension.InvalidEventType' },
});
const MODES = {
  'on-demand': {
    initializationType: 'on-demand', registerEvents: ['INVOKE', 'SHUTDOWN'], registerRefusal: INVALID_EVENT_403,
    schemas: SCHEMA_VERSIONS, schemaRefusal: null, subscribeBody: 'OK', freeze: true, invokeEvent: true,
    credentials: 'env', maxConcurrency: 1, readyEvent: false, restore: null, gap: null, runtime: NODE20,
  },
  'provisioned-concurrency': {
    initializationType: 'provisioned-concurrency', registerEvents: ['INVOKE', 'SHUTDOWN'],
    registerRefusal: INVALID_EVENT_403, schemas: SCHEMA_VERSIONS, schemaRefusal: null, subscribeBody: 'OK',
    freeze: true, invokeEvent: true, credentials: 'env', maxConcurrency: 1, readyEvent: false, restore: null,
    gap: 'provisioned', gapMs: 3000, runtime: NODE20,
  },
  'snap-start': {
    initializationType: 'snap-start', registerEvents: ['INVOKE', 'SHUTDOWN'], registerRefusal: INVALID_EVENT_403,
    schemas: SCHEMA_VERSIONS, schemaRefusal: null, subscribeBody: 'OK', freeze: true, invokeEvent: true,
    credentials: 'container', maxConcurrency: 1, readyEvent: false, restore: 'snapshot', restoreGapMs: 1000, gap: null,
    runtime: { executionEnv: 'AWS_Lambda_java21', version: 'java:21.v27' },
  },
  'lambda-managed-instances': {
    initializationType: 'lambda-managed-instances', registerEvents: ['SHUTDOWN'], registerRefusal: INVALID_EVENT_403,
    schemas: ['2025-01-29'],
    // What AWS's emulator answers (managed-instances-emulator.json): 400, a body that is not JSON.
    schemaRefusal: {
      status: 400,
      text: '{"errorMessage":"request body has an error: doesn\'t match schema: Error at \\"/schemaVersion\\": ' +
        'value must be "2025-01-29"","errorType":"ValidationError"}',
    },
    subscribeBody: '"OK"', freeze: false, invokeEvent: false, credentials: 'container', maxConcurrency: 1600,
    readyEvent: true, restore: null, gap: null, runtime: NODE20,
  },
};
const CREDENTIALS_PATH = '/2021-04-23/credentials';

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
   * @param {string} [o.sender='retrying'] the telemetry sender's model:
   *                                       'retrying': a new connection when it has none, the POST to
   *                                       the subscription's path, deliveryRetries retries after a
   *                                       connection error, a timeout or a status >= 400, then the
   *                                       batch is dropped (platform.logsDropped); batches wait in
   *                                       the queue while one is in flight;
   *                                       'aws': as AWS's own Telemetry API sender (its Lambda
   *                                       emulator, Managed Instances part, internal/telemetry/
   *                                       internal/{subscriber,batch,client}.go): one kept-alive
   *                                       connection, POST / with Host 127.0.0.1:<port>, Content-
   *                                       Type application/json and Sequence-Id (base64 of the
   *                                       body's SHA-256), NO retries (a failed POST drops its
   *                                       batch), and a batch is cut when full or timeoutMs old
   *                                       whether or not the previous POST was answered: cut while
   *                                       one is unanswered, it is dropped (platform.logsDropped)
   * @param {number} [o.deliveryRetries=3]  retries of a failed batch before it is dropped (retrying)
   * @param {number} [o.deliveryTimeoutMs=5000]
   * @param {number} [o.maxQueueBytes=33554432] telemetry held for the subscriber before dropping
   * @param {number} [o.initLines=2]       function log lines written during init
   * @param {boolean} [o.echo=false]       echo the extension's output to our stderr
   * @param {string} [o.id]                marker prefix (default: random)
   * @param {string} [o.mode='on-demand']  execution mode, a key of MODES
   * @param {string} [o.credentials]       'env' | 'container' (default: the mode's)
   * @param {number} [o.gapMs]             provisioned-concurrency: the frozen gap before the first invoke
   * @param {number} [o.restoreGapMs]      snap-start: time between snapshot and restore
   * @param {function} [o.onGap]           async ({ms}) => …, run while frozen in the gap
   * @param {function} [o.onRestore]       async ({generation, credentials, previous}) => …, run
   *                                       while frozen, after the credentials were rotated
   * @param {number} [o.credentialsTtlMs=3600000] Expiration of the served credentials
   */
  constructor(o) {
    super();
    if (!o || !o.bin) throw new Error('LambdaSim: bin is required');
    o = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
    this.o = {
      wrapper: [], env: {}, inheritEnv: false, functionName: 'telkin-sim-fn', functionVersion: '$LATEST',
      memoryMB: 128, region: 'us-east-1', logFormat: 'Text', shutdownDeadlineMs: 2000,
      shutdownReason: 'spindown', flushBeforeShutdown: true, initTimeoutMs: 10000, invokeTimeoutMs: 30000,
      functionTimeoutMs: 3000, deliveryRetries: 3, deliveryTimeoutMs: 5000, maxQueueBytes: 32 << 20,
      initLines: 2, echo: false, handler: 'index.handler', mode: 'on-demand', credentialsTtlMs: 3600e3,
      sender: 'retrying', ...o,
    };
    if (!['aws', 'retrying'].includes(this.o.sender)) throw new Error(`LambdaSim: unknown sender ${this.o.sender}`);
    if (this.o.sender === 'aws') this.o.deliveryRetries = 0;
    const mode = MODES[this.o.mode];
    if (!mode) throw new Error(`LambdaSim: unknown mode ${this.o.mode} (one of ${Object.keys(MODES).join(', ')})`);
    this.mode = mode;
    this.o.freeze = this.o.freeze ?? mode.freeze;
    this.o.credentials = this.o.credentials ?? mode.credentials;
    this.o.gapMs = this.o.gapMs ?? mode.gapMs ?? 0;
    this.o.restoreGapMs = this.o.restoreGapMs ?? mode.restoreGapMs ?? 0;
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
    this.registerAttempts = [];  // every register call: {at, events, status, body}
    this.subscribeAttempts = []; // every subscribe call: {at, schemaVersion, status, text}
    this.credentialRequests = []; // container provider: {at, authorization, status, generation}
    this.credentialsToken = crypto.randomBytes(24).toString('base64url');
    this.generation = 0;         // credentials generation served (1 at start, +1 per restore)
    this.credentials = null;
    this.credentialHistory = [];
    this.snapshot = null;        // snap-start / provisioned: {seq, at} where init ended
    this.restores = [];          // {at, seq, gapMs, generation}
    this.gaps = [];              // {at, ms}
    this.resetReason = null;     // 'timeout' | 'failure' once the environment is being reset
    this._oldAgents = [];

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
  get runtimeVersion() { return this.mode.runtime.version; }
  get runtimeVersionArn() {
    return `arn:aws:lambda:${this.o.region}::runtime:0000000000000000000000000000000000000000000000000000000000000000`;
  }
  get functionArn() { return `arn:aws:lambda:${this.o.region}:123456789012:function:${this.o.functionName}`; }
  get credentialsUri() { return `http://${this.runtimeApi}${CREDENTIALS_PATH}`; }
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
    if (this.o.credentials === 'container') this.rotateCredentials();
    const initType = this.mode.initializationType;
    if (this.mode.readyEvent) {
      // Managed Instances: the shape and member order AWS's emulator sends.
      this._emit('platform.initStart', {
        initializationType: initType, runtimeVersion: this.runtimeVersion, runtimeVersionArn: this.runtimeVersionArn,
        functionName: this.o.functionName, functionVersion: this.o.functionVersion,
        instanceId: this.o.functionVersion, instanceMaxMemory: this.o.memoryMB * 1048576, phase: 'init',
      });
    } else {
      this._emit('platform.initStart', {
        initializationType: initType,
        phase: 'init',
        runtimeVersion: this.runtimeVersion,
        runtimeVersionArn: this.runtimeVersionArn,
        functionName: this.o.functionName,
        functionVersion: this.o.functionVersion,
      });
    }
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
      AWS_LAMBDA_INITIALIZATION_TYPE: this.mode.initializationType,
      AWS_LAMBDA_LOG_FORMAT: o.logFormat,
      AWS_REGION: o.region,
      AWS_DEFAULT_REGION: o.region,
      AWS_EXECUTION_ENV: this.mode.runtime.executionEnv,
      LAMBDA_TASK_ROOT: '/var/task',
      ...o.env,
    };
    if (o.credentials === 'container') {
      // As on SnapStart and Managed Instances: no key variables, the container provider instead.
      for (const k of ['AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']) delete env[k];
      env.AWS_CONTAINER_CREDENTIALS_FULL_URI = this.credentialsUri;
      env.AWS_CONTAINER_AUTHORIZATION_TOKEN = this.credentialsToken;
      for (const k of ['AWS_CONTAINER_CREDENTIALS_FULL_URI', 'AWS_CONTAINER_AUTHORIZATION_TOKEN']) {
        if (k in o.env) env[k] = o.env[k]; // a test may still override (null deletes)
      }
    }
    if (this.mode.maxConcurrency > 1 && !('AWS_LAMBDA_MAX_CONCURRENCY' in o.env)) env.AWS_LAMBDA_MAX_CONCURRENCY = String(this.mode.maxConcurrency);
    for (const [k, v] of Object.entries(env)) if (v === undefined || v === null) delete env[k];
    this.childEnv = env;
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
   * @param {number} [p.runMs]       real handler time: wait this long after the log lines (and
   *                                 beforeDone) before the runtime is done
   * @param {string|function} [p.level='INFO'] log level of each line (or i => level)
   * @param {boolean} [p.timeout]    the function overruns its deadline (functionTimeoutMs): after the
   *                                 deadline, runtimeDone {status: timeout} (unless p.runtimeDone
   *                                 === false) and report; then the environment is reset: SHUTDOWN
   *                                 {shutdownReason: timeout} at the extension's /event/next. Resolves
   *                                 after the extension exited; inv.shutdown is shutdown()'s result.
   * @param {boolean} [p.crash]      the runtime exits: runtimeDone {status: failure, errorType:
   *                                 Runtime.ExitError}, report, reset with shutdownReason failure
   * @param {number} [p.functionTimeoutMs] this invocation's deadline (default o.functionTimeoutMs)
   * Managed Instances: the same as invokeConcurrent(1, p)[0]. SnapStart: restores first if not yet
   * restored; provisioned concurrency: the frozen gap first if not yet taken.
   */
  async invoke(p = {}) {
    if (!this.mode.invokeEvent) return (await this.invokeConcurrent(1, p))[0];
    if (this.mode.restore && !this.restores.length && this.state === 'idle') await this.restore();
    if (this.mode.gap && !this.gaps.length && this.state === 'idle') await this.gap();
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
    nextCalled.then((at) => { inv.firstNextAt = at; }, () => {});
    this._thaw();
    inv.deadlineMs = Date.now() + (p.functionTimeoutMs ?? this.o.functionTimeoutMs);

    const traceId = `Root=1-${Math.floor(Date.now() / 1000).toString(16)}-${crypto.randomBytes(12).toString('hex')}` +
      `;Parent=${crypto.randomBytes(8).toString('hex')};Sampled=1`;
    this._respondNext({
      eventType: 'INVOKE',
      deadlineMs: inv.deadlineMs,
      requestId,
      invokedFunctionArn: this.functionArn,
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
    if (p.runMs) await new Promise((r) => setTimeout(r, p.runMs));
    if (p.timeout || p.crash) return this._invokeFails(inv, p, t0);
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
    inv.runtimeDoneHr = process.hrtime.bigint(); // the runtime's /next: its part of the invoke ends
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
    // As Lambda bills: the invoke ends at the later of the runtime's /next and the extension's
    // /event/next; what the extension adds is that end minus the runtime's (0 when its /event/next
    // came first, as with TELKIN_FLUSH=periodic). ms, from the high-resolution clock.
    inv.extensionNextHr = this._pendingNext.hr;
    inv.addedMs = Math.max(0, Number(inv.extensionNextHr - inv.runtimeDoneHr) / 1e6);
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
    if (inv.index === 0 && this.mode.restore && this.restores.length) {
      // SnapStart: the first invoke of a restored environment reports the restore, not the init.
      metrics.restoreDurationMs = this.restores[0].durationMs;
      metrics.billedRestoreDurationMs = Math.ceil(this.restores[0].durationMs);
    } else if (inv.index === 0 && this.mode.initializationType === 'on-demand') {
      metrics.initDurationMs = this.timings.initDurationMs;
    }
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
    d.promise.catch(() => {});
    return d.promise;
  }

  // The function overran its deadline (p.timeout) or the runtime crashed (p.crash): the platform
  // reports it and resets the environment (SHUTDOWN at the extension's next /event/next).
  async _invokeFails(inv, p, t0) {
    const { requestId } = inv;
    let status;
    let errorType;
    if (p.crash) {
      status = 'failure';
      errorType = 'Runtime.ExitError';
    } else {
      status = 'timeout';
      const left = inv.deadlineMs - Date.now();
      if (left > 0) await sleep(left);
    }
    this._currentInvoke = null; // no normal end of this invoke (no freeze, no report at next)
    const durationMs = ms3(Number(process.hrtime.bigint() - t0) / 1e6);
    inv.durationMs = durationMs;
    inv.status = status;
    inv.deadlinePassedAt = Date.now();
    inv.nextBeforeDeadline = !!inv.firstNextAt && inv.firstNextAt <= inv.deadlineMs;
    if (p.runtimeDone !== false) {
      const rec = { requestId, status, metrics: { durationMs, producedBytes: 0 } };
      if (errorType) rec.errorType = errorType;
      const done = this._emit('platform.runtimeDone', rec);
      inv.events.push(done);
      inv.runtimeDoneSeq = done.seq;
      inv.runtimeDoneAt = Date.now();
    }
    const rep = {
      requestId, status,
      metrics: { durationMs, billedDurationMs: Math.ceil(durationMs), memorySizeMB: this.o.memoryMB, maxMemoryUsedMB: 41 },
    };
    if (errorType) rep.errorType = errorType;
    inv.report = this._emit('platform.report', rep);
    inv.events.push(inv.report);
    this.resetReason = p.crash ? 'failure' : 'timeout';
    inv.shutdown = await this.shutdown({ reason: this.resetReason, waitNextMs: p.waitNextMs });
    return inv;
  }

  /**
   * Managed Instances: n invocations at once in this (never frozen) environment. Request k starts
   * in round k; each started request writes one log line per round until it has written p.lines,
   * then ends with platform.report: starts, lines and reports of different requests interleave.
   * No INVOKE event and no platform.runtimeDone (the extension is registered for SHUTDOWN only).
   * @param {number} n
   * @param {object} [p]  {lines=3, message, level, roundMs=0 (sleep between rounds; 0: setImmediate)}
   * @returns {Promise<object[]>} one inv per request: {index, requestId, events, lines, report}
   */
  async invokeConcurrent(n, p = {}) {
    if (n < 1 || n > this.mode.maxConcurrency) {
      throw new Error(`invokeConcurrent: ${n} invocations at once; mode ${this.o.mode} allows ${this.mode.maxConcurrency}`);
    }
    if (this.mode.invokeEvent) {
      // One at a time, with INVOKE events (n == 1 here).
      return [await this.invoke(p)];
    }
    if (this.state !== 'idle' && this.state !== 'invoke') throw new Error(`invokeConcurrent: sandbox is ${this.state}`);
    const lines = p.lines ?? 3;
    const msg = p.message || defaultMessage;
    this._active = (this._active || 0) + n;
    this.state = 'invoke';
    const invs = [];
    for (let k = 0; k < n; k++) {
      invs.push({
        index: this.invokes.length, requestId: crypto.randomUUID(), startedAt: 0, events: [], lines: [],
        written: 0, concurrent: n, runtimeDoneSeq: -1,
      });
      this.invokes.push(invs[k]);
    }
    for (let round = 0; invs.some((v) => !v.report); round++) {
      if (this.exit) throw new Error('extension exited during invokes');
      if (round < n) {
        const v = invs[round];
        v.startedAt = Date.now();
        v.t0 = process.hrtime.bigint();
        v.events.push(this._emit('platform.start', { requestId: v.requestId, version: this.o.functionVersion, functionArn: this.functionArn }));
      }
      for (const v of invs.slice(0, round + 1)) {
        if (v.report) continue;
        if (v.written < lines) {
          const i = v.written++;
          const marker = `sim:${this.id}:${v.index}:${i}`;
          v.lines.push(marker);
          const level = typeof p.level === 'function' ? p.level(i) : (p.level || 'INFO');
          v.events.push(this._emitFunctionLog(msg(marker, i), v.requestId, level));
        } else {
          const durationMs = ms3(Number(process.hrtime.bigint() - v.t0) / 1e6 + 1);
          v.durationMs = durationMs;
          v.status = 'success';
          v.report = this._emit('platform.report', {
            requestId: v.requestId, status: 'success', metrics: { durationMs },
            spans: [
              { name: 'responseLatency', start: new Date(v.startedAt).toISOString(), durationMs: ms3(durationMs * 0.99) },
              { name: 'responseDuration', start: nowIso(), durationMs: 0.045 },
            ],
          });
          v.events.push(v.report);
        }
      }
      if (p.roundMs) await sleep(p.roundMs); else await new Promise((r) => setImmediate(r));
    }
    this._active -= n;
    if (!this._active && this.state === 'invoke') this.state = 'idle';
    return invs;
  }

  // The credentials the container provider serves from now on (generation + 1).
  rotateCredentials() {
    const previous = this.credentials;
    const g = ++this.generation;
    const tag = `${this.id.toUpperCase()}G${g}`;
    this.credentials = {
      generation: g,
      AccessKeyId: `ASIASIM${tag}`.slice(0, 20).padEnd(20, 'X'),
      SecretAccessKey: `simSecret${g}/${crypto.randomBytes(15).toString('base64')}`,
      Token: `IQoJsimSessionToken${tag}${crypto.randomBytes(48).toString('base64')}`,
      Expiration: new Date(Date.now() + this.o.credentialsTtlMs).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    };
    this.credentialHistory.push(this.credentials);
    this.emit('credentials', this.credentials, previous);
    return this.credentials;
  }

  // Which generation of served credentials a key id is (0: none of ours).
  credentialGeneration(accessKeyId) {
    const c = this.credentialHistory.find((x) => x.AccessKeyId === accessKeyId);
    return c ? c.generation : 0;
  }

  async _hook(name, info) {
    this.emit(name, info);
    const fn = this.o[`on${name[0].toUpperCase()}${name.slice(1)}`];
    if (fn) await fn(info, this);
  }

  /**
   * Provisioned concurrency: the environment, initialized long before, sits frozen until the first
   * invoke. The 'gap' hook (o.onGap, event 'gap') runs at its start: e.g. the Kinesis side kills
   * every connection silently.
   */
  async gap({ ms = this.o.gapMs } = {}) {
    if (this.state !== 'idle') throw new Error(`gap: sandbox is ${this.state}, not idle`);
    const g = { at: Date.now(), ms, seq: this._seq };
    this.gaps.push(g);
    await this._hook('gap', g);
    await sleep(ms);
    return g;
  }

  /**
   * SnapStart: resume an environment from the snapshot taken at the end of init. Here the same
   * (frozen) process is thawed: the container provider serves new credentials (the old ones are
   * expired), the platform's telemetry sender starts anew (its kept-alive connection to the
   * listener is abandoned, never closed), the 'restore' hook runs (o.onRestore, event 'restore':
   * e.g. the Kinesis side drops every connection silently and refuses the old credentials), then
   * restoreStart, restoreRuntimeDone and restoreReport are emitted. The extension gets no event:
   * it wakes with its next INVOKE (the next invoke()).
   * @param {object} [p]  {gapMs: time between snapshot and restore, lines: afterRestore hook log
   *                      lines (default 1), status: restoreRuntimeDone status (default success)}
   */
  async restore(p = {}) {
    if (!this.mode.restore) throw new Error(`restore: mode ${this.o.mode} has no snapshots`);
    if (this.state !== 'idle' || !this.snapshot || this.restores.length || this.invokes.length) {
      throw new Error(`restore: sandbox is ${this.state}${this.restores.length ? ', restored already' : ''}, not at the snapshot`);
    }
    const gapMs = p.gapMs ?? this.o.restoreGapMs;
    await sleep(gapMs);
    const previous = this.credentials;
    if (this.o.credentials === 'container') this.rotateCredentials();
    this._oldAgents.push(this._agent);
    this._agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const r = { at: Date.now(), seq: this._seq, gapMs, generation: this.generation, credentials: this.credentials, previous };
    this.restores.push(r);
    await this._hook('restore', r);
    const t0 = Date.now();
    this.state = 'restore';
    this._emit('platform.restoreStart', {
      functionName: this.o.functionName, functionVersion: this.o.functionVersion,
      runtimeVersion: this.runtimeVersion, runtimeVersionArn: this.runtimeVersionArn,
    });
    this._thaw();
    const lines = p.lines ?? 1;
    for (let i = 0; i < lines; i++) {
      this._emitFunctionLog(defaultMessage(`sim:${this.id}:restore${this.restores.length - 1}:${i}`, i), undefined, 'INFO');
    }
    await sleep(5);
    const status = p.status || 'success';
    this._emit('platform.restoreRuntimeDone', { status });
    r.durationMs = ms3(Date.now() - t0 + 0.5);
    this._emit('platform.restoreReport', { status, metrics: { durationMs: r.durationMs } });
    this.state = 'idle';
    return r;
  }

  _emitFunctionLog(message, requestId, level) {
    const rec = this.o.logFormat === 'JSON'
      ? this._emit('function', { timestamp: nowIso(), level, requestId, message })
      : this._emit('function', `${nowIso()}\t${requestId ?? 'undefined'}\t${level}\t${message}\n`);
    rec.requestId = requestId; // the invocation that wrote it: the truth for telkin's "requestId"
    return rec;
  }

  // Write function log lines now: outside an invoke (e.g. while the runtime handles SIGTERM), or
  // from a hook while one runs (then they are that invocation's, before its runtimeDone).
  writeFunctionLogs(n, tag = 'extra', message = defaultMessage) {
    const inv = this._currentInvoke;
    const requestId = inv && !this._runtimeDone ? inv.requestId : undefined;
    const out = [];
    for (let i = 0; i < n; i++) {
      out.push(this._emitFunctionLog(message(`sim:${this.id}:${tag}:${i}`, i), requestId, 'INFO'));
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
    const reason = p.reason ?? this.resetReason ?? this.o.shutdownReason;
    const deadlineAfter = p.deadlineMs ?? this.o.shutdownDeadlineMs;
    if (this.exit) return { ...this.exit, alreadyExited: true };
    if (!this._pendingNext) {
      // Wait (bounded) for the extension to be at /event/next.
      await withTimeout(this._idle.promise, p.waitNextMs ?? 5000, 'extension at /event/next before SHUTDOWN')
        .catch(() => {});
      // The platform waits (bounded) for the extension to call /event/next, to answer with SHUTDOWN.
      if (!this._pendingNext && this.state === 'invoke') {
        await withTimeout(this._idleAgain, p.waitNextMs ?? 5000, 'extension at /event/next before SHUTDOWN').catch(() => {});
      }
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
    for (const a of this._oldAgents.splice(0)) a.destroy();
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
    if (this.o.sender === 'aws') return this._pumpAws();
    if (!sub || this._inFlight || !this._queue.length || this.frozen || this.exit) return;
    if (!this._batchDue()) return;
    const { batch, bytes } = this._cut();
    this._inFlight = true;
    this._deliver(batch, bytes, 0);
  }

  // Is a batch due (full, old enough, or a flush)? If not, a timer comes back when it will be.
  _batchDue() {
    const b = this._sub.buffering;
    const age = Date.now() - this._firstQueuedAt;
    const full = this._queue.length >= b.maxItems || this._queueBytes >= b.maxBytes;
    if (!(full || this._flushNow || age >= b.timeoutMs)) {
      if (!this._timer) {
        this._timer = setTimeout(() => { this._timer = null; this._pump(); }, b.timeoutMs - age);
      }
      return false;
    }
    this._clearTimer();
    return true;
  }

  // A batch: as many queued events as fit in maxItems and maxBytes (the JSON array's size).
  _cut() {
    const b = this._sub.buffering;
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
    return { batch, bytes };
  }

  // sender 'aws': cut on size or age whatever the sender is doing; the single sender takes a cut
  // batch only when its previous POST was answered (an unbuffered channel), else it is dropped.
  // The flush before SHUTDOWN waits for the answer instead.
  _pumpAws() {
    const sub = this._sub;
    if (!sub || !this._queue.length || this.frozen || this.exit) return;
    if (this._inFlight && this._flushNow) return; // the answer's _pump comes back here
    if (!this._batchDue()) return;
    const { batch, bytes } = this._cut();
    if (this._inFlight) {
      for (const r of batch) r.dropped = true;
      this.busyDrops = (this.busyDrops || 0) + 1;
      this._noteDrop(batch.length, bytes - 2 - (batch.length - 1),
        'Some logs were dropped because the downstream consumer is slower than the logs production rate');
    } else {
      this._inFlight = true;
      this._deliver(batch, bytes, 0);
    }
    if (this._queue.length) setImmediate(() => this._pump());
  }

  _deliver(batch, bytes, attempt) {
    const sub = this._sub;
    const body = '[' + batch.map((r) => r.json).join(',') + ']';
    const started = Date.now();
    const d = { at: started, items: batch.length, bytes, attempt, status: 0, error: null, ms: 0, answerMs: null };
    let sentHr = 0n;
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
    const aws = this.o.sender === 'aws';
    const headers = { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) };
    if (aws) {
      headers.Host = `127.0.0.1:${sub.port}`;
      headers['Sequence-Id'] = crypto.createHash('sha256').update(body).digest('base64');
    }
    const req = http.request({
      host: '127.0.0.1', port: sub.port, path: aws ? '/' : sub.path, method: 'POST', agent: this._agent, headers,
    }, (res) => {
      // From the request's last byte handed to the kernel to the response head: telkin's answer time.
      if (sentHr) d.answerMs = Number(process.hrtime.bigint() - sentHr) / 1e6;
      d.localPort = res.socket && res.socket.localPort; // which connection of the sender
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
    req.on('finish', () => { sentHr = process.hrtime.bigint(); });
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
        if (p === CREDENTIALS_PATH && this.o.credentials === 'container') return this._serveCredentials(req, send);
        entry.status = 404;
        res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8' });
        res.end('404 page not found\n');
      } catch (e) {
        fail(500, 'ServiceError', String(e && e.stack || e));
      }
    });
  }

  // The container credentials provider (SnapStart, Managed Instances): the current generation's
  // credentials for the right Authorization token; 401 otherwise.
  _serveCredentials(req, send) {
    const rec = { at: Date.now(), method: req.method, authorization: req.headers.authorization, status: 0, generation: 0 };
    this.credentialRequests.push(rec);
    if (req.method !== 'GET') { rec.status = 405; return send(405, { message: 'Method not allowed' }); }
    if (req.headers.authorization !== this.credentialsToken) {
      rec.status = 401;
      return send(401, { message: 'Authorization token is invalid' });
    }
    const c = this.credentials;
    rec.status = 200;
    rec.generation = c.generation;
    this.emit('credentialsRequest', rec);
    return send(200, { AccessKeyId: c.AccessKeyId, SecretAccessKey: c.SecretAccessKey, Token: c.Token, Expiration: c.Expiration });
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

  _register(req, body, send0, fail0) {
    const attempt = { at: Date.now(), events: null, status: 0, body: null };
    this.registerAttempts.push(attempt);
    const send = (status, obj, headers) => { attempt.status = status; attempt.body = obj; return send0(status, obj, headers); };
    const fail = (status, errorType, errorMessage) => send(status, { errorMessage, errorType });
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
    attempt.events = [...events];
    for (const e of events) {
      if (!EXTENSION_EVENTS.includes(e)) return fail(400, 'Extension.InvalidEventType', `${e}: invalid event type`);
    }
    for (const e of events) {
      // An event this mode does not offer (INVOKE on Managed Instances): the platform's exact answer.
      if (!this.mode.registerEvents.includes(e)) {
        const r = this.mode.registerRefusal(e);
        return send(r.status, r.body);
      }
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
    this._emit('platform.initRuntimeDone', this.mode.readyEvent
      ? { initializationType: this.mode.initializationType, status: 'success', phase: 'init' } // the emulator's order
      : { initializationType: this.mode.initializationType, phase: 'init', status: 'success' });
    this._runtimeInitDone = true;
    this._maybeEndInit();
  }

  _maybeEndInit() {
    if (this.state !== 'init' || !this._runtimeInitDone || !this._pendingNext) return;
    const durationMs = ms3(Date.now() - this.timings.startAt);
    this.timings.initDurationMs = durationMs;
    // Where init ended: the extension is in /event/next (SnapStart takes its snapshot here).
    this.snapshot = { seq: this._seq, at: Date.now() };
    if (this.mode.readyEvent) {
      this._emit('platform.extension', { name: this.extensionName, state: 'Ready', events: [...this.registration.events] });
      this._emit('platform.initReport', {
        initializationType: this.mode.initializationType, metrics: { durationMs }, phase: 'init', status: 'success',
      });
    } else {
      this._emit('platform.initReport', {
        initializationType: this.mode.initializationType, phase: 'init', status: 'success', metrics: { durationMs },
      });
    }
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
    this._pendingNext = { res, at, hr: process.hrtime.bigint(), entry };
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

  _subscribe(req, body, send0, fail0) {
    const attempt = { at: Date.now(), schemaVersion: undefined, status: 0, text: null };
    this.subscribeAttempts.push(attempt);
    const send = (status, obj, headers) => {
      attempt.status = status;
      attempt.text = typeof obj === 'string' ? obj : JSON.stringify(obj);
      return send0(status, obj, headers);
    };
    const fail = (status, errorType, errorMessage) => send(status, { errorMessage, errorType });
    if (!this._checkId(req, fail)) return;
    let s;
    try { s = JSON.parse(body); } catch (e) { return fail(400, 'ValidationError', `Invalid JSON: ${e.message}`); }
    if (!s || typeof s !== 'object' || Array.isArray(s)) return fail(400, 'ValidationError', 'body must be a JSON object');
    attempt.schemaVersion = s.schemaVersion;
    if (SCHEMA_VERSIONS.includes(s.schemaVersion) && !this.mode.schemas.includes(s.schemaVersion) && this.mode.schemaRefusal) {
      const r = this.mode.schemaRefusal;
      return send(r.status, r.text, { 'Content-Type': 'application/json' });
    }
    if (!this.mode.schemas.includes(s.schemaVersion)) {
      return fail(400, 'ValidationError', `schemaVersion must be one of ${this.mode.schemas.join(', ')}`);
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
    send(200, this.mode.subscribeBody);
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
      mode: this.o.mode,
      pid: this.pid,
      register: this.registerAttempts.map((a) => `${JSON.stringify(a.events)}:${a.status}`),
      subscribe: this.subscribeAttempts.map((a) => `${a.schemaVersion}:${a.status}`),
      restores: this.restores.length,
      gaps: this.gaps.length,
      credentialRequests: this.credentialRequests.length,
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
    else if (k === '--mode') a.mode = v();
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
       [--quiet] [--cold-start-only] [--json] [--mode ${Object.keys(MODES).join('|')}]
Runs one external extension through init, N invokes and SHUTDOWN, then prints a summary.`);
    process.exit(a.help ? 0 : 2);
  }
  const sim = new LambdaSim({
    bin: path.resolve(a.bin), wrapper: a.wrapper, env: a.env, logFormat: a.logFormat, echo: a.echo,
    freeze: a.freeze, mode: a.mode, shutdownDeadlineMs: a.shutdownDeadlineMs, shutdownReason: a.shutdownReason,
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

module.exports = {
  LambdaSim, MODES, BUFFERING, SCHEMA_VERSIONS, TELEMETRY_TYPES, CREDENTIALS_PATH, categoryOf, defaultMessage,
};

// temporary: perf profile of the second 20k-line invocation (not committed)
const { LambdaSim } = require('./lambda_sim');
const { startSinkWorker } = require('./fast_sink');
const { spawn } = require('node:child_process');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
(async () => {
  const sink = await startSinkWorker();
  const sim = new LambdaSim({ bin: process.env.BIN || '/tmp/new/telkin', env: { TELKIN_STREAM: 'bench', AWS_ENDPOINT_URL_KINESIS: sink.endpoint, AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', TELKIN_LISTEN_PORT: String(20000 + Math.floor(Math.random() * 20000)), TELKIN_FLUSH: 'end' }, functionTimeoutMs: 300000, invokeTimeoutMs: 300000 });
  await sim.start(); await sim.waitInit();
  for (let i = 0; i < 3; i++) await sim.invoke({ lines: 3 });
  await sim.invoke({ lines: 20000 });
  for (let k = 0; k < (+process.env.REPS || 5); k++) {
    const perf = spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '4000', '-p', String(sim.pid), '-o', `/tmp/perf2.${k}.data`], { stdio: 'ignore' });
    await sleep(300);
    await sim.invoke({ lines: 20000 });
    perf.kill('SIGINT');
    await new Promise((r) => perf.on('exit', r));
  }
  await sim.shutdown(); await sim.close(); process.exit(0);
})();

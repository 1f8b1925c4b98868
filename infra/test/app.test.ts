// The CDK app (bin/telkin.ts) as the CLI runs it: context in CDK_CONTEXT_JSON, output in
// CDK_OUTDIR. No AWS credentials: the app must synthesize without them.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const INFRA = path.join(__dirname, '..');
const LAYER_DIR = process.env.TELKIN_LAYER_DIR ?? path.join(INFRA, '..', 'build');

function runApp(context: Record<string, string>) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'telkin-app-'));
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
  env.CDK_OUTDIR = out;
  env.CDK_CONTEXT_JSON = JSON.stringify({ layerDir: LAYER_DIR, ...context });
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bin/telkin.ts'], {
    cwd: INFRA, env, encoding: 'utf8',
  });
  let template: any;
  const file = path.join(out, `${context.stackName ?? 'Telkin'}.template.json`);
  if (fs.existsSync(file)) template = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.rmSync(out, { recursive: true, force: true });
  return { status: r.status, stderr: r.stderr, template };
}

function only(template: any, type: string): any {
  const found = Object.values(template.Resources).filter((r: any) => r.Type === type);
  assert.equal(found.length, 1, `one ${type}`);
  return found[0];
}

test('app defaults: stack Telkin, ON_DEMAND stream telemetry-kinesis-stream, managed key', () => {
  const r = runApp({});
  assert.equal(r.status, 0, r.stderr);
  const s = only(r.template, 'AWS::Kinesis::Stream').Properties;
  assert.equal(s.Name, 'telemetry-kinesis-stream');
  assert.deepEqual(s.StreamModeDetails, { StreamMode: 'ON_DEMAND' });
  assert.deepEqual(s.StreamEncryption, { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' });
});

test('app context: provisioned stream with shards, own name, new customer key, arm64 sample', () => {
  const r = runApp({
    stackName: 'TelkinCtx', streamName: 'ctx-stream', streamMode: 'provisioned', shardCount: '4',
    encryptionKey: 'create', sampleArchitecture: 'arm64',
  });
  assert.equal(r.status, 0, r.stderr);
  const s = only(r.template, 'AWS::Kinesis::Stream').Properties;
  assert.equal(s.Name, 'ctx-stream');
  assert.deepEqual(s.StreamModeDetails, { StreamMode: 'PROVISIONED' });
  assert.equal(s.ShardCount, 4);
  assert.equal(s.StreamEncryption.KeyId['Fn::GetAtt'][1], 'Arn');
  only(r.template, 'AWS::KMS::Key');
  assert.deepEqual(only(r.template, 'AWS::Lambda::Function').Properties.Architectures, ['arm64']);
});

test('app context: consumerFunction=true adds the reference consumer and its mapping', () => {
  const r = runApp({ stackName: 'TelkinConsumer', consumerFunction: 'true' });
  assert.equal(r.status, 0, r.stderr);
  const fns = Object.values(r.template.Resources).filter((x: any) => x.Type === 'AWS::Lambda::Function');
  assert.equal(fns.length, 2);
  assert.ok(fns.some((f: any) => f.Properties.Handler === 'lambda.handler'));
  only(r.template, 'AWS::Lambda::EventSourceMapping');
  assert.equal(Object.values(runApp({}).template.Resources)
    .filter((x: any) => x.Type === 'AWS::Lambda::EventSourceMapping').length, 0);
});

test('app context: bad values are refused', () => {
  for (const [ctx, msg] of [
    [{ streamMode: 'sometimes' }, /streamMode must be/],
    [{ streamMode: 'provisioned', shardCount: '0' }, /shardCount must be a positive integer/],
    [{ sampleArchitecture: 'mips' }, /sampleArchitecture must be/],
    [{ consumerFunction: 'yes' }, /consumerFunction must be true or false/],
  ] as Array<[Record<string, string>, RegExp]>) {
    const r = runApp(ctx);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, msg);
  }
});

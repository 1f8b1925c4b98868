// Offline assertions on the synthesized template (aws-cdk-lib/assertions; no AWS account needed).
// The layer zips come from `make layer` (build/ beside infra/, or $TELKIN_LAYER_DIR).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { StreamMode } from 'aws-cdk-lib/aws-kinesis';
import { Runtime } from 'aws-cdk-lib/aws-lambda';
import { TelkinStack, TelkinStackProps, SSM_NAMES, DEFAULT_STREAM_NAME } from '../lib/telkin-stack';
import {
  CURRENT_RUNTIMES, LAYER_COMPATIBLE_RUNTIMES, MAX_LAYER_COMPATIBLE_RUNTIMES,
} from '../lib/runtimes';

const LAYER_DIR = process.env.TELKIN_LAYER_DIR ?? path.join(__dirname, '..', '..', 'build');
const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

function synth(props: TelkinStackProps = {}): Template {
  const app = new App();
  const stack = new TelkinStack(app, 'Test', { layerDir: LAYER_DIR, ...props });
  return Template.fromStack(stack);
}

function logicalId(t: Template, type: string, props: object = {}): string {
  const found = Object.keys(t.findResources(type, { Properties: props }));
  assert.equal(found.length, 1, `one ${type} matching ${JSON.stringify(props)}`);
  return found[0];
}

const defaults = synth();

test('default stack has exactly the expected resources', () => {
  const counts: Record<string, number> = {
    'AWS::Kinesis::Stream': 1,
    'AWS::Lambda::LayerVersion': 2,
    'AWS::IAM::ManagedPolicy': 1,
    'AWS::SSM::Parameter': 4,
    'AWS::Lambda::Function': 1,
    'AWS::Logs::LogGroup': 1,
    'AWS::IAM::Role': 1,
    'AWS::IAM::Policy': 0,
    'AWS::KMS::Key': 0,
  };
  for (const [type, n] of Object.entries(counts)) defaults.resourceCountIs(type, n);
});

test('stream defaults: name, ON_DEMAND, encrypted with the AWS managed key', () => {
  defaults.hasResourceProperties('AWS::Kinesis::Stream', Match.objectEquals({
    Name: DEFAULT_STREAM_NAME,
    RetentionPeriodHours: 24,
    StreamModeDetails: { StreamMode: 'ON_DEMAND' },
    StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
  }));
});

test('stream name is configurable', () => {
  synth({ streamName: 'my-telemetry' })
    .hasResourceProperties('AWS::Kinesis::Stream', { Name: 'my-telemetry' });
});

test('PROVISIONED mode takes a shard count', () => {
  const t = synth({ streamMode: StreamMode.PROVISIONED, shardCount: 3 });
  t.hasResourceProperties('AWS::Kinesis::Stream', {
    StreamModeDetails: { StreamMode: 'PROVISIONED' },
    ShardCount: 3,
    StreamEncryption: { EncryptionType: 'KMS', KeyId: 'alias/aws/kinesis' },
  });
  synth({ streamMode: StreamMode.PROVISIONED })
    .hasResourceProperties('AWS::Kinesis::Stream', { ShardCount: 1 });
});

test('ON_DEMAND mode refuses a shard count', () => {
  assert.throws(() => synth({ shardCount: 2 }), /PROVISIONED streams only/);
});

test('producer policy: exactly kinesis:PutRecords on the stream ARN', () => {
  const stream = logicalId(defaults, 'AWS::Kinesis::Stream');
  defaults.hasResourceProperties('AWS::IAM::ManagedPolicy', {
    PolicyDocument: Match.objectEquals({
      Version: '2012-10-17',
      Statement: [{
        Sid: 'PutTelemetryRecords',
        Effect: 'Allow',
        Action: 'kinesis:PutRecords',
        Resource: { 'Fn::GetAtt': [stream, 'Arn'] },
      }],
    }),
  });
});

test('customer key created on request: stream uses it, policy adds kms:GenerateDataKey on it', () => {
  const t = synth({ encryptionKey: 'create' });
  t.resourceCountIs('AWS::KMS::Key', 1);
  const key = logicalId(t, 'AWS::KMS::Key', { EnableKeyRotation: true });
  const stream = logicalId(t, 'AWS::Kinesis::Stream');
  t.hasResourceProperties('AWS::Kinesis::Stream', {
    StreamEncryption: { EncryptionType: 'KMS', KeyId: { 'Fn::GetAtt': [key, 'Arn'] } },
  });
  t.hasResourceProperties('AWS::IAM::ManagedPolicy', {
    PolicyDocument: Match.objectEquals({
      Version: '2012-10-17',
      Statement: [
        { Sid: 'PutTelemetryRecords', Effect: 'Allow', Action: 'kinesis:PutRecords',
          Resource: { 'Fn::GetAtt': [stream, 'Arn'] } },
        { Sid: 'EncryptTelemetryRecords', Effect: 'Allow', Action: 'kms:GenerateDataKey',
          Resource: { 'Fn::GetAtt': [key, 'Arn'] } },
      ],
    }),
  });
});

test('existing customer key by ARN: stream uses it, policy adds kms:GenerateDataKey on it', () => {
  const t = synth({ encryptionKey: KEY_ARN, streamMode: StreamMode.PROVISIONED, shardCount: 2 });
  t.resourceCountIs('AWS::KMS::Key', 0);
  t.hasResourceProperties('AWS::Kinesis::Stream', {
    StreamEncryption: { EncryptionType: 'KMS', KeyId: KEY_ARN },
    StreamModeDetails: { StreamMode: 'PROVISIONED' },
    ShardCount: 2,
  });
  const stream = logicalId(t, 'AWS::Kinesis::Stream');
  t.hasResourceProperties('AWS::IAM::ManagedPolicy', {
    PolicyDocument: Match.objectEquals({
      Version: '2012-10-17',
      Statement: [
        { Sid: 'PutTelemetryRecords', Effect: 'Allow', Action: 'kinesis:PutRecords',
          Resource: { 'Fn::GetAtt': [stream, 'Arn'] } },
        { Sid: 'EncryptTelemetryRecords', Effect: 'Allow', Action: 'kms:GenerateDataKey',
          Resource: KEY_ARN },
      ],
    }),
  });
});

test('one layer per architecture, each declaring its architecture and the runtimes', () => {
  for (const arch of ['x86_64', 'arm64']) {
    defaults.hasResourceProperties('AWS::Lambda::LayerVersion', {
      LayerName: `telkin-${arch}`,
      CompatibleArchitectures: [arch],
      CompatibleRuntimes: [...LAYER_COMPATIBLE_RUNTIMES],
    });
  }
  const layers = defaults.findResources('AWS::Lambda::LayerVersion');
  const keys = Object.values(layers).map((r) => r.Properties.Content.S3Key);
  assert.equal(new Set(keys).size, 2, 'the two layers have different contents');
  for (const k of keys) assert.match(k, /^[0-9a-f]{64}\.zip$/);
});

test('runtime lists: all known to aws-cdk-lib, at most 15 declared, OS-only runtimes included', () => {
  const known = new Set(Object.values(Runtime).filter((r) => r instanceof Runtime).map((r) => r.name));
  for (const id of CURRENT_RUNTIMES) assert.ok(known.has(id), `${id} known to aws-cdk-lib`);
  assert.ok(LAYER_COMPATIBLE_RUNTIMES.length <= MAX_LAYER_COMPATIBLE_RUNTIMES);
  assert.equal(new Set(CURRENT_RUNTIMES).size, CURRENT_RUNTIMES.length, 'no duplicates');
  for (const id of LAYER_COMPATIBLE_RUNTIMES) assert.ok(CURRENT_RUNTIMES.includes(id), `${id} current`);
  for (const id of ['provided.al2023', 'provided.al2']) {
    assert.ok(LAYER_COMPATIBLE_RUNTIMES.includes(id), `${id} declared`);
  }
});

test('SSM String parameters publish the layer and policy ARNs', () => {
  const x86 = logicalId(defaults, 'AWS::Lambda::LayerVersion', { LayerName: 'telkin-x86_64' });
  const arm = logicalId(defaults, 'AWS::Lambda::LayerVersion', { LayerName: 'telkin-arm64' });
  const policy = logicalId(defaults, 'AWS::IAM::ManagedPolicy');
  const want: Array<[string, object]> = [
    [SSM_NAMES.layerArn, { Ref: x86 }],
    [SSM_NAMES.layerArnX86_64, { Ref: x86 }],
    [SSM_NAMES.layerArnArm64, { Ref: arm }],
    [SSM_NAMES.policyArn, { Ref: policy }],
  ];
  assert.deepEqual(Object.values(SSM_NAMES).sort(), [
    '/telemetry/kinesis/extension/arm64/arn',
    '/telemetry/kinesis/extension/arn',
    '/telemetry/kinesis/extension/x86_64/arn',
    '/telemetry/kinesis/runtime/policy/arn',
  ]);
  for (const [name, value] of want) {
    defaults.hasResourceProperties('AWS::SSM::Parameter', { Name: name, Type: 'String', Value: value });
  }
});

test('sample function: layer, JSON logs, TELKIN_STREAM, policy attached, 1-day log retention', () => {
  const stream = logicalId(defaults, 'AWS::Kinesis::Stream');
  const x86 = logicalId(defaults, 'AWS::Lambda::LayerVersion', { LayerName: 'telkin-x86_64' });
  const policy = logicalId(defaults, 'AWS::IAM::ManagedPolicy');
  const logGroup = logicalId(defaults, 'AWS::Logs::LogGroup');
  defaults.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 1 });
  defaults.hasResourceProperties('AWS::Lambda::Function', {
    Runtime: Match.stringLikeRegexp('^nodejs'),
    Architectures: ['x86_64'],
    Layers: [{ Ref: x86 }],
    LoggingConfig: { LogFormat: 'JSON', LogGroup: { Ref: logGroup } },
    Environment: { Variables: Match.objectEquals({ TELKIN_STREAM: { Ref: stream } }) },
    Code: { ZipFile: Match.stringLikeRegexp('console\\.log') },
  });
  defaults.hasResourceProperties('AWS::IAM::Role', {
    ManagedPolicyArns: Match.arrayWith([{ Ref: policy }]),
  });
});

test('sample function on arm64 uses the arm64 layer; it can be left out', () => {
  const t = synth({ sampleArchitecture: 'arm64' });
  const arm = logicalId(t, 'AWS::Lambda::LayerVersion', { LayerName: 'telkin-arm64' });
  t.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['arm64'], Layers: [{ Ref: arm }] });
  const none = synth({ sampleFunction: false });
  none.resourceCountIs('AWS::Lambda::Function', 0);
  none.resourceCountIs('AWS::Logs::LogGroup', 0);
  none.resourceCountIs('AWS::Lambda::LayerVersion', 2);
  none.resourceCountIs('AWS::SSM::Parameter', 4);
});

test('a missing layer zip is reported with the make target that builds it', () => {
  const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'telkin-nolayer-'));
  try {
    assert.throws(() => synth({ layerDir: empty }), /telkin-layer-x86_64\.zip is missing: run `make layer`/);
  } finally {
    fs.rmSync(empty, { recursive: true, force: true });
  }
});

test('reference consumer: absent by default', () => {
  defaults.resourceCountIs('AWS::Lambda::EventSourceMapping', 0);
  defaults.resourceCountIs('AWS::Lambda::Function', 1);
  assert.equal(Object.keys(defaults.findResources('AWS::Lambda::Function', {
    Properties: { Handler: 'lambda.handler' },
  })).length, 0);
});

test('reference consumer on request: handler, runtime, mapping on the stream, read on the stream only', () => {
  const t = synth({ consumerFunction: true, sampleFunction: false });
  const stream = logicalId(t, 'AWS::Kinesis::Stream');
  t.resourceCountIs('AWS::Lambda::Function', 1);
  t.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
  const fn = logicalId(t, 'AWS::Lambda::Function', { Handler: 'lambda.handler' });
  t.hasResourceProperties('AWS::Lambda::Function', {
    Handler: 'lambda.handler',
    Runtime: Match.stringLikeRegexp('^nodejs'),
    Code: { S3Key: Match.stringLikeRegexp('^[0-9a-f]{64}\\.zip$') },
  });
  t.hasResourceProperties('AWS::Lambda::EventSourceMapping', Match.objectLike({
    FunctionName: { Ref: fn },
    EventSourceArn: { 'Fn::GetAtt': [stream, 'Arn'] },
    StartingPosition: 'TRIM_HORIZON',
    ParallelizationFactor: 1,
  }));
  // The role's only inline policy: read actions, on this stream's ARN and nothing else.
  const policies = Object.values(t.findResources('AWS::IAM::Policy'));
  assert.equal(policies.length, 1);
  const statements = policies[0].Properties.PolicyDocument.Statement;
  for (const st of statements) {
    assert.equal(st.Effect, 'Allow');
    assert.deepEqual(st.Resource, { 'Fn::GetAtt': [stream, 'Arn'] }, JSON.stringify(st));
    for (const a of [st.Action].flat()) {
      assert.match(a, /^kinesis:(Describe|Get|List|SubscribeToShard)/, `${a} is a read action`);
    }
  }
  const actions = statements.flatMap((st: any) => [st.Action].flat());
  for (const a of ['kinesis:GetRecords', 'kinesis:GetShardIterator', 'kinesis:DescribeStream', 'kinesis:ListShards']) {
    assert.ok(actions.includes(a), `${a} granted`);
  }
  assert.ok(!actions.some((a: string) => /Put|Delete|Create|Update|\*/.test(a)), 'no write action');
  // The consumer's role has no producer policy.
  const role = logicalId(t, 'AWS::IAM::Role');
  const policy = logicalId(t, 'AWS::IAM::ManagedPolicy');
  assert.ok(!JSON.stringify(t.findResources('AWS::IAM::Role')[role]).includes(policy));
});

test('reference consumer with a customer managed key: decrypt on that key only', () => {
  const t = synth({ consumerFunction: true, sampleFunction: false, encryptionKey: 'create' });
  const key = logicalId(t, 'AWS::KMS::Key');
  const statements = Object.values(t.findResources('AWS::IAM::Policy'))
    .flatMap((p: any) => p.Properties.PolicyDocument.Statement);
  const kmsStatements = statements.filter((st: any) => [st.Action].flat().some((a: string) => a.startsWith('kms:')));
  assert.equal(kmsStatements.length, 1);
  assert.deepEqual([kmsStatements[0].Action].flat(), ['kms:Decrypt']);
  assert.deepEqual(kmsStatements[0].Resource, { 'Fn::GetAtt': [key, 'Arn'] });
});

#!/usr/bin/env node
// The CDK app. Settings come from context (cdk.json, or -c key=value on the command line):
//   stackName           default Telkin
//   streamName          default telemetry-kinesis-stream
//   streamMode          on-demand (default) | provisioned
//   shardCount          provisioned mode only, default 1
//   encryptionKey       unset: AWS managed key; 'create': a new customer managed key; or a key ARN
//   layerDir            folder holding telkin-layer-<arch>.zip, default ../build
//   sampleFunction      true (default) | false
//   sampleArchitecture  x86_64 (default) | arm64
//   consumerFunction    false (default) | true: the reference consumer on the stream (EMF metrics)
// The stack is environment-agnostic (no account or region lookups): synth needs no credentials.
import { App } from 'aws-cdk-lib';
import { StreamMode } from 'aws-cdk-lib/aws-kinesis';
import { TelkinStack, TelkinArch } from '../lib/telkin-stack';

const app = new App();
const ctx = (key: string): string | undefined => {
  const v = app.node.tryGetContext(key);
  return v === undefined || v === null || v === '' ? undefined : String(v);
};

const mode = (ctx('streamMode') ?? 'on-demand').toLowerCase();
if (mode !== 'on-demand' && mode !== 'provisioned') {
  throw new Error(`streamMode must be on-demand or provisioned, not ${mode}`);
}
const shards = ctx('shardCount');
if (shards !== undefined && !/^[1-9][0-9]*$/.test(shards)) {
  throw new Error(`shardCount must be a positive integer, not ${shards}`);
}
const consumer = ctx('consumerFunction') ?? 'false';
if (consumer !== 'true' && consumer !== 'false') {
  throw new Error(`consumerFunction must be true or false, not ${consumer}`);
}
const arch = ctx('sampleArchitecture') ?? 'x86_64';
if (arch !== 'x86_64' && arch !== 'arm64') {
  throw new Error(`sampleArchitecture must be x86_64 or arm64, not ${arch}`);
}

new TelkinStack(app, ctx('stackName') ?? 'Telkin', {
  description: 'telkin: Lambda Telemetry API extension shipping to Kinesis Data Streams',
  streamName: ctx('streamName'),
  streamMode: mode === 'provisioned' ? StreamMode.PROVISIONED : StreamMode.ON_DEMAND,
  shardCount: shards === undefined ? undefined : Number(shards),
  encryptionKey: ctx('encryptionKey'),
  layerDir: ctx('layerDir'),
  sampleFunction: ctx('sampleFunction') !== 'false',
  sampleArchitecture: arch as TelkinArch,
  consumerFunction: consumer === 'true',
});

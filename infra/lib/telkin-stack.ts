// The telkin stack: the Kinesis stream, one layer per architecture, the producer policy, the SSM
// parameters that publish their ARNs, and a sample function wired to all of it.
import * as path from 'node:path';
import * as fs from 'node:fs';
import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kinesis from 'aws-cdk-lib/aws-kinesis';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { KinesisEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import { LAYER_COMPATIBLE_RUNTIMES } from './runtimes';

export const DEFAULT_STREAM_NAME = 'telemetry-kinesis-stream';

/** The SSM parameter names other stacks and scripts read. */
export const SSM_NAMES = {
  layerArn: '/telemetry/kinesis/extension/arn', // the x86_64 layer, as the original published
  layerArnArm64: '/telemetry/kinesis/extension/arm64/arn',
  layerArnX86_64: '/telemetry/kinesis/extension/x86_64/arn',
  policyArn: '/telemetry/kinesis/runtime/policy/arn',
} as const;

export type TelkinArch = 'x86_64' | 'arm64';
export const ARCHES: readonly TelkinArch[] = ['x86_64', 'arm64'];

export interface TelkinStackProps extends StackProps {
  /** Kinesis stream name. Default `telemetry-kinesis-stream`. */
  readonly streamName?: string;
  /** Capacity mode. Default ON_DEMAND. */
  readonly streamMode?: kinesis.StreamMode;
  /** Shard count, PROVISIONED mode only. Default 1. */
  readonly shardCount?: number;
  /**
   * Server-side encryption key. Unset: the AWS managed key (alias/aws/kinesis).
   * 'create': a new customer managed key (rotation on). Otherwise: the ARN of an existing key.
   */
  readonly encryptionKey?: 'create' | string;
  /** Folder holding telkin-layer-<arch>.zip. Default ../build beside infra/. */
  readonly layerDir?: string;
  /** Deploy the sample function. Default true. */
  readonly sampleFunction?: boolean;
  /** The sample function's architecture. Default x86_64. */
  readonly sampleArchitecture?: TelkinArch;
  /**
   * Deploy the reference consumer (tests/consumer/lambda.js) on the stream: it checks every
   * sandbox's sequence numbers and publishes Events, Duplicates, Gaps, Dropped, LateEvents and
   * LateDropped as EMF metrics (namespace telkin/consumer). Default false.
   */
  readonly consumerFunction?: boolean;
  /** Folder holding the consumer's code (lambda.js, check.js). Default ../tests/consumer. */
  readonly consumerDir?: string;
}

function toRuntime(id: string): lambda.Runtime {
  const known = Object.values(lambda.Runtime).find(
    (r): r is lambda.Runtime => r instanceof lambda.Runtime && r.name === id,
  );
  if (!known) throw new Error(`runtime ${id} is not known to aws-cdk-lib`);
  return known;
}

const LAMBDA_ARCH: Record<TelkinArch, lambda.Architecture> = {
  x86_64: lambda.Architecture.X86_64,
  arm64: lambda.Architecture.ARM_64,
};

// The sample function: logs a few lines; the extension ships the function's telemetry (these
// lines included, as JSON log records) to the stream.
const SAMPLE_CODE = `
exports.handler = async (event, context) => {
  console.log('telkin sample: invoked', context.awsRequestId);
  console.info('telkin sample: event keys', Object.keys(event || {}).join(',') || '(none)');
  console.warn('telkin sample: this line is a warning');
  console.log('telkin sample: stream', process.env.TELKIN_STREAM);
  return { ok: true };
};
`;

export class TelkinStack extends Stack {
  readonly stream: kinesis.Stream;
  readonly key?: kms.IKey;
  readonly layers: Record<TelkinArch, lambda.LayerVersion>;
  readonly policy: iam.ManagedPolicy;
  readonly sample?: lambda.Function;
  readonly consumer?: lambda.Function;

  constructor(scope: Construct, id: string, props: TelkinStackProps = {}) {
    super(scope, id, props);

    const streamName = props.streamName ?? DEFAULT_STREAM_NAME;
    const streamMode = props.streamMode ?? kinesis.StreamMode.ON_DEMAND;
    if (streamMode === kinesis.StreamMode.ON_DEMAND && props.shardCount !== undefined) {
      throw new Error('shardCount applies to PROVISIONED streams only');
    }

    // Stream, encrypted at rest either way.
    if (props.encryptionKey === 'create') {
      this.key = new kms.Key(this, 'StreamKey', {
        description: `telkin: server-side encryption of Kinesis stream ${streamName}`,
        enableKeyRotation: true,
      });
    } else if (props.encryptionKey) {
      this.key = kms.Key.fromKeyArn(this, 'StreamKey', props.encryptionKey);
    }
    this.stream = new kinesis.Stream(this, 'Stream', {
      streamName,
      streamMode,
      shardCount: streamMode === kinesis.StreamMode.PROVISIONED ? (props.shardCount ?? 1) : undefined,
      encryption: this.key ? kinesis.StreamEncryption.KMS : kinesis.StreamEncryption.MANAGED,
      encryptionKey: this.key,
    });

    // One layer per architecture: extensions/telkin, a static binary.
    const layerDir = props.layerDir ?? path.join(__dirname, '..', '..', 'build');
    const compatibleRuntimes = LAYER_COMPATIBLE_RUNTIMES.map(toRuntime);
    const layers = {} as Record<TelkinArch, lambda.LayerVersion>;
    for (const arch of ARCHES) {
      const zip = path.join(layerDir, `telkin-layer-${arch}.zip`);
      if (!fs.existsSync(zip)) {
        throw new Error(`${zip} is missing: run \`make layer\` in the repository root first`);
      }
      layers[arch] = new lambda.LayerVersion(this, `Layer-${arch}`, {
        layerVersionName: `telkin-${arch}`,
        description: `telkin: Lambda Telemetry API to Kinesis Data Streams extension (${arch}, static)`,
        code: lambda.Code.fromAsset(zip),
        compatibleArchitectures: [LAMBDA_ARCH[arch]],
        compatibleRuntimes,
      });
    }
    this.layers = layers;

    // Least privilege for the extension: PutRecords on this stream, and GenerateDataKey on its
    // key when the key is the customer's (the AWS managed key needs no IAM permission).
    const statements = [
      new iam.PolicyStatement({
        sid: 'PutTelemetryRecords',
        actions: ['kinesis:PutRecords'],
        resources: [this.stream.streamArn],
      }),
    ];
    if (this.key) {
      statements.push(new iam.PolicyStatement({
        sid: 'EncryptTelemetryRecords',
        actions: ['kms:GenerateDataKey'],
        resources: [this.key.keyArn],
      }));
    }
    this.policy = new iam.ManagedPolicy(this, 'ProducerPolicy', {
      description: `telkin: put Lambda telemetry records on Kinesis stream ${streamName}`,
      statements,
    });

    // Published ARNs.
    const param = (id: string, name: string, value: string, description: string) =>
      new ssm.StringParameter(this, id, { parameterName: name, stringValue: value, description });
    param('LayerArnParam', SSM_NAMES.layerArn, layers.x86_64.layerVersionArn,
      'telkin layer version ARN (x86_64)');
    param('LayerArnArm64Param', SSM_NAMES.layerArnArm64, layers.arm64.layerVersionArn,
      'telkin layer version ARN (arm64)');
    param('LayerArnX8664Param', SSM_NAMES.layerArnX86_64, layers.x86_64.layerVersionArn,
      'telkin layer version ARN (x86_64)');
    param('PolicyArnParam', SSM_NAMES.policyArn, this.policy.managedPolicyArn,
      'telkin producer policy ARN: attach it to the role of each function using the layer');

    // A sample function using the layer.
    if (props.sampleFunction ?? true) {
      const arch = props.sampleArchitecture ?? 'x86_64';
      const logGroup = new logs.LogGroup(this, 'SampleLogs', {
        retention: logs.RetentionDays.ONE_DAY,
      });
      this.sample = new lambda.Function(this, 'Sample', {
        description: 'telkin sample: logs a few lines; the telkin layer ships its telemetry to Kinesis',
        runtime: lambda.Runtime.NODEJS_24_X,
        architecture: LAMBDA_ARCH[arch],
        handler: 'index.handler',
        code: lambda.Code.fromInline(SAMPLE_CODE),
        layers: [layers[arch]],
        loggingFormat: lambda.LoggingFormat.JSON,
        logGroup,
        environment: { TELKIN_STREAM: this.stream.streamName },
      });
      this.sample.role!.addManagedPolicy(this.policy);
      new CfnOutput(this, 'SampleFunctionName', { value: this.sample.functionName });
    }

    // The reference consumer: one invocation at a time per shard, in order, from the oldest record
    // (its checks need a shard's batches in order; see the README, "Checking completeness").
    // The event source mapping grants the role read on this stream (and decrypt on a customer key).
    if (props.consumerFunction ?? false) {
      const consumerLogs = new logs.LogGroup(this, 'ConsumerLogs', { retention: logs.RetentionDays.ONE_WEEK });
      this.consumer = new lambda.Function(this, 'Consumer', {
        description: 'telkin reference consumer: checks sequence numbers per sandbox, EMF metrics Gaps, Duplicates, Events',
        runtime: lambda.Runtime.NODEJS_24_X,
        architecture: lambda.Architecture.ARM_64,
        handler: 'lambda.handler',
        code: lambda.Code.fromAsset(props.consumerDir ?? path.join(__dirname, '..', '..', 'tests', 'consumer')),
        memorySize: 256,
        timeout: Duration.minutes(1),
        logGroup: consumerLogs,
      });
      this.consumer.addEventSource(new KinesisEventSource(this.stream, {
        startingPosition: lambda.StartingPosition.TRIM_HORIZON,
        batchSize: 1000,
        maxBatchingWindow: Duration.seconds(5),
        parallelizationFactor: 1,
        retryAttempts: 2,
      }));
      new CfnOutput(this, 'ConsumerFunctionName', { value: this.consumer.functionName });
    }

    new CfnOutput(this, 'StreamName', { value: this.stream.streamName });
    new CfnOutput(this, 'LayerArnX8664', { value: layers.x86_64.layerVersionArn });
    new CfnOutput(this, 'LayerArnArm64', { value: layers.arm64.layerVersionArn });
    new CfnOutput(this, 'PolicyArn', { value: this.policy.managedPolicyArn });
  }
}

// The Lambda runtimes telkin works with, in one place.
//
// telkin is a static executable with no dependency on the runtime's language or libraries, so it
// runs as an external extension beside any managed runtime and beside OS-only runtimes.
//
// CURRENT_RUNTIMES: every runtime identifier aws-cdk-lib 2.276.0 lists as not deprecated (less
// dotnet9, which Lambda offers for container images only, and container images take no layers).
// This is what the documentation lists as supported.
//
// LAYER_COMPATIBLE_RUNTIMES: what each layer version declares. The Lambda API takes at most 15
// (PublishLayerVersion CompatibleRuntimes); the list only feeds ListLayers/ListLayerVersions
// filtering and does not restrict which functions may use the layer. It holds the OS-only
// runtimes and the newest releases of each language, newest first.

export const MAX_LAYER_COMPATIBLE_RUNTIMES = 15;

export const CURRENT_RUNTIMES: readonly string[] = [
  'provided.al2023',
  'provided.al2',
  'nodejs24.x',
  'nodejs22.x',
  'nodejs20.x',
  'python3.15',
  'python3.14',
  'python3.13',
  'python3.12',
  'python3.11',
  'python3.10',
  'java25',
  'java21',
  'java17',
  'java11',
  'java8.al2',
  'java17.al2023',
  'java11.al2023',
  'java8.al2023',
  'dotnet10',
  'dotnet8',
  'ruby4.0',
  'ruby3.4',
  'ruby3.3',
  'ruby3.2',
];

export const LAYER_COMPATIBLE_RUNTIMES: readonly string[] = [
  'provided.al2023',
  'provided.al2',
  'nodejs24.x',
  'nodejs22.x',
  'nodejs20.x',
  'python3.14',
  'python3.13',
  'python3.12',
  'java25',
  'java21',
  'java17',
  'dotnet10',
  'dotnet8',
  'ruby3.4',
  'ruby3.3',
];

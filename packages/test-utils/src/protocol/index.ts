/**
 * Sample documents for tests (this package's and others'): a realistic manifest with golden
 * vectors, a key set with one key per role, a desired state. Exported as `@edgefleet/test-utils/protocol`;
 * never imported by production code.
 */
import {
  createDesiredState,
  createKeySet,
  createManifest,
  createTrust,
  type DesiredStatePayload,
  encodeTensor,
  generateSigningKey,
  type ManifestInput,
  type ManifestPayload,
  type SignedDocument,
  type SigningKey,
  signDesiredState,
  signManifest,
  type Trust,
} from '@edgefleet/protocol';

/** A fixed clock for tests: 2026-06-01T00:00:00Z. */
export const TEST_NOW = Date.parse('2026-06-01T00:00:00Z');

export interface TestFleetKeys {
  readonly root: SigningKey;
  readonly manifest: SigningKey;
  readonly desiredState: SigningKey;
  readonly trust: Trust;
}

/** One fresh key per role, and the trust a device pinned to them would hold. */
export function createTestKeys(now = TEST_NOW): TestFleetKeys {
  const root = generateSigningKey();
  const manifest = generateSigningKey();
  const desiredState = generateSigningKey();
  const keySet = createKeySet({
    version: 1,
    now,
    roles: { root: { keys: [root] }, manifest: { keys: [manifest] }, 'desired-state': { keys: [desiredState] } },
  });
  return { root, manifest, desiredState, trust: createTrust(keySet) };
}

/** A manifest shaped like Silero VAD v5's, with one golden vector. */
export function sampleManifest(overrides: Partial<ManifestInput> = {}): ManifestPayload {
  return createManifest({
    name: 'silero-vad',
    version: '5.0.0',
    now: TEST_NOW,
    artifact: { sha256: 'a'.repeat(64), size: 2_327_524, mediaType: 'application/x-onnx' },
    files: [{ name: 'labels.json', role: 'labels', sha256: 'b'.repeat(64), size: 42, mediaType: 'application/json' }],
    model: {
      format: 'onnx',
      irVersion: 8,
      opsets: [{ domain: '', version: 16 }],
      inputs: [
        { name: 'input', dtype: 'float32', shape: [1, 'samples'] },
        { name: 'state', dtype: 'float32', shape: [2, 1, 128] },
        { name: 'sr', dtype: 'int64', shape: [] },
      ],
      outputs: [
        { name: 'output', dtype: 'float32', shape: [1, 1] },
        { name: 'stateN', dtype: 'float32', shape: [2, 1, 128] },
      ],
      operators: ['Conv', 'If', 'LSTM', 'Sigmoid'],
      quantization: { quantized: false, formats: [] },
    },
    runtime: { executionProviders: ['webgpu', 'wasm'] },
    acceptance: {
      tolerance: { absolute: 1e-4, relative: 1e-3 },
      vectors: [
        {
          inputs: [
            encodeTensor('input', 'float32', [1, 4], Float32Array.from([0.1, -0.2, 0.3, -0.4])),
            encodeTensor('state', 'float32', [2, 1, 128], new Float32Array(256)),
            encodeTensor('sr', 'int64', [], BigInt64Array.from([16000n])),
          ],
          outputs: [
            encodeTensor('output', 'float32', [1, 1], Float32Array.from([0.1243])),
            encodeTensor('stateN', 'float32', [2, 1, 128], new Float32Array(256).fill(0.5)),
          ],
        },
      ],
    },
    metadata: { 'source.package': '@ricky0123/vad-web' },
    ...overrides,
  });
}

export function sampleSignedManifest(keys: TestFleetKeys, overrides: Partial<ManifestInput> = {}): SignedDocument<ManifestPayload> {
  return signManifest(sampleManifest(overrides), [keys.manifest]);
}

export function sampleSignedDesiredState(
  keys: TestFleetKeys,
  overrides: Partial<Omit<DesiredStatePayload, 'type'>> = {},
): SignedDocument<DesiredStatePayload> {
  return signDesiredState(
    {
      ...createDesiredState({
        deviceId: 'cam-042',
        sequence: 7,
        now: TEST_NOW,
        models: [{ manifest: sampleSignedManifest(keys), rolloutId: 'ro-1' }],
      }),
      ...overrides,
    },
    [keys.desiredState],
  );
}

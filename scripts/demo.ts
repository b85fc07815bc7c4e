/**
 * `pnpm demo`: what the workspace can show today, end to end on one machine with no network.
 *
 * A fleet's keys are made, a real ONNX model is built and run in onnxruntime-web to record its
 * golden outputs, a signed manifest and a signed desired-state document are issued for a device,
 * and the "device" side verifies them, checks the bytes, re-runs the acceptance test and refuses
 * each attack of the threat model with its own error code. The fleet server, broker and runtime
 * issues turn this into the full fleet demo.
 */
import { createHash } from 'node:crypto';
import {
  checkVersionFloor,
  compareWithTolerance,
  createDesiredState,
  createKeySet,
  createManifest,
  createTopicScheme,
  createTrust,
  decodeTensor,
  EdgefleetError,
  encodeMessage,
  encodeTensor,
  generateSigningKey,
  revokedKeyIds,
  type SigningKey,
  signDesiredState,
  signKeySet,
  signManifest,
  verifyDesiredState,
  verifyKeySetUpdate,
  verifyManifest,
} from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import * as ort from 'onnxruntime-web';

const DEVICE = 'demo-cam-001';
const step = (text: string) => console.log(`\n▶ ${text}`);
const line = (text: string) => console.log(`  ${text}`);
const short = (hex: string) => `${hex.slice(0, 12)}…`;

function refused(what: string, attempt: () => unknown): void {
  try {
    attempt();
  } catch (error) {
    if (error instanceof EdgefleetError) {
      line(`✗ ${what}: refused with ${error.code}`);
      return;
    }
    throw error;
  }
  throw new Error(`demo failure: "${what}" was accepted`);
}

async function runModel(bytes: Uint8Array, input: Float32Array): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const { scores } = await session.run({ features: new ort.Tensor('float32', input, [2, 4]) });
    return scores?.data as Float32Array;
  } finally {
    await session.release();
  }
}

async function main(): Promise<void> {
  console.log('edgefleet demo: signed model delivery, verified the way a device verifies it');

  step('Fleet keys (one per role) and the key set devices are provisioned with');
  const root = generateSigningKey();
  const manifestKey = generateSigningKey();
  const desiredKey = generateSigningKey();
  const roles = (manifest: SigningKey) => ({
    root: { keys: [root] },
    manifest: { keys: [manifest] },
    'desired-state': { keys: [desiredKey] },
  });
  const trust = createTrust(createKeySet({ version: 1, roles: roles(manifestKey) }));
  line(`root ${short(root.keyId)}  manifest ${short(manifestKey.keyId)}  desired-state ${short(desiredKey.keyId)}`);

  step('A real ONNX model: MatMul → Add → Relu, float32 [batch,4] → [batch,3]');
  const model = mlpModel();
  const sha256 = createHash('sha256').update(model.bytes).digest('hex');
  const goldenInput = seededValues(8, 2026);
  const goldenOutput = await runModel(model.bytes, goldenInput);
  line(`${model.bytes.length} bytes, sha256 ${short(sha256)}`);
  line(
    `onnxruntime-web ${ort.env.versions.web} (WASM) scores for the golden input: [${Array.from(goldenOutput, (v) => v.toFixed(4)).join(', ')}]`,
  );

  step('Signed manifest with the golden vector as the on-device acceptance test');
  const manifest = signManifest(
    createManifest({
      name: 'demo-mlp',
      version: '1.0.0',
      artifact: { sha256, size: model.bytes.length, mediaType: 'application/x-onnx' },
      files: [],
      model: {
        format: 'onnx',
        irVersion: 8,
        opsets: [{ domain: '', version: 17 }],
        inputs: [{ name: 'features', dtype: 'float32', shape: ['batch', 4] }],
        outputs: [{ name: 'scores', dtype: 'float32', shape: ['batch', 3] }],
        operators: ['Add', 'MatMul', 'Relu'],
        quantization: { quantized: false, formats: [] },
      },
      runtime: { executionProviders: ['wasm'] },
      acceptance: {
        tolerance: { absolute: 1e-5, relative: 1e-4 },
        vectors: [
          {
            inputs: [encodeTensor('features', 'float32', [2, 4], goldenInput)],
            outputs: [encodeTensor('scores', 'float32', [2, 3], goldenOutput)],
          },
        ],
      },
    }),
    [manifestKey],
  );
  line(`demo-mlp@1.0.0 signed by ${short(manifestKey.keyId)}, expires ${manifest.payload.expiresAt}`);

  step(`Desired state for ${DEVICE}, as the server would publish it (retained)`);
  const topics = createTopicScheme();
  const desired = signDesiredState(createDesiredState({ deviceId: DEVICE, sequence: 1, models: [{ manifest }] }), [desiredKey]);
  const payload = encodeMessage('desired', desired);
  line(`topic ${topics.build('desired', DEVICE)}  (${payload.length} bytes, sequence 1)`);

  step(`${DEVICE} verifies the document, the bytes and the acceptance test`);
  const verified = verifyDesiredState(JSON.parse(new TextDecoder().decode(payload)), trust, { deviceId: DEVICE, lastSequence: 0 });
  const [wanted] = verified.manifests;
  if (!wanted) throw new Error('demo failure: no manifest in the desired state');
  line(`✓ signatures, validity window, addressee and sequence: install ${wanted.name}@${wanted.version}`);
  const received = createHash('sha256').update(model.bytes).digest('hex');
  line(`✓ downloaded ${model.bytes.length} bytes, sha256 ${received === wanted.artifact.sha256 ? 'matches' : 'DIFFERS'}`);
  const vector = wanted.acceptance?.vectors[0];
  const input = vector?.inputs[0];
  const expected = vector?.outputs[0];
  if (!input || !expected || !wanted.acceptance) throw new Error('demo failure: no golden vector');
  const actual = await runModel(model.bytes, decodeTensor(input).data as Float32Array);
  const report = compareWithTolerance(decodeTensor(expected).data, actual, wanted.acceptance.tolerance);
  line(
    `${report.ok ? '✓' : '✗'} acceptance test on WASM: max |error| ${report.maxAbsoluteError.toExponential(2)} (tolerance ${wanted.acceptance.tolerance.absolute} + ${wanted.acceptance.tolerance.relative}·|expected|)`,
  );
  if (!report.ok) throw new Error('demo failure: acceptance test failed');

  step('Attacks from the threat model, each refused with its own code');
  const tampered = structuredClone(desired);
  const tamperedModel = tampered.payload.models[0];
  if (tamperedModel) tamperedModel.manifest.payload.artifact.sha256 = 'f'.repeat(64);
  refused('manifest altered to point at other bytes', () => verifyDesiredState(tampered, trust, { deviceId: DEVICE }));
  refused('manifest signed by an unknown key (arbitrary model)', () =>
    verifyManifest(signManifest(manifest.payload, [generateSigningKey()]), trust),
  );
  refused('document for another device', () => verifyDesiredState(desired, trust, { deviceId: 'demo-cam-002' }));
  refused('the same document replayed (sequence 1 again)', () => verifyDesiredState(desired, trust, { deviceId: DEVICE, lastSequence: 1 }));
  refused('the document replayed a year later (freeze)', () =>
    verifyDesiredState(desired, trust, { deviceId: DEVICE, now: Date.now() + 365 * 24 * 3600 * 1000 }),
  );
  refused('version 0.9.0 without a signed rollback', () => checkVersionFloor('demo-mlp', '0.9.0', '1.0.0', false));
  const substituted = createHash('sha256')
    .update(Buffer.concat([model.bytes, Buffer.from([0])]))
    .digest('hex');
  line(`✗ bytes with one extra byte: sha256 ${short(substituted)} ≠ ${short(wanted.artifact.sha256)}, nothing stored`);

  step('Key rotation: the manifest key is replaced, signed by the root key');
  const newManifestKey = generateSigningKey();
  const rotated = verifyKeySetUpdate(trust, signKeySet(createKeySet({ version: 2, roles: roles(newManifestKey) }), [root]));
  line(`✓ key set v2 accepted; revoked manifest key(s): ${revokedKeyIds(trust, rotated, 'manifest').map(short).join(', ')}`);
  refused('a manifest signed by the revoked key', () => verifyManifest(manifest, rotated));
  line(`✓ re-signed by the new key: ${verifyManifest(signManifest(manifest.payload, [newManifestKey]), rotated).name} verifies`);

  console.log('\nDone. Every message above is checked by the same code on the server, in Node devices and in browsers.');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

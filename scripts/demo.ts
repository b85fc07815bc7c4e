/**
 * `pnpm demo`: what the workspace can show today, end to end on one machine with no network.
 *
 * A fleet's keys are made; a real model (Silero VAD v5, shipped by an npm package) gets a signed
 * manifest whose golden vectors are computed with onnxruntime-web; a device runtime downloads it
 * over HTTP from a local artifact server, verifies it, runs the acceptance test on the execution
 * provider it will really use, activates it and runs it; then the server goes away, the device
 * restarts and keeps serving offline; and every attack of the threat model is refused with its
 * own error code while the active model keeps serving. The fleet server, broker and agent issues
 * turn this into the full fleet demo.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createDesiredState,
  createKeySet,
  createTopicScheme,
  createTrust,
  EdgefleetError,
  encodeMessage,
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
import { createRuntime, type Runtime } from '@edgefleet/runtime';
import {
  createArtifactServer,
  goldenVector,
  manifestFor,
  readModel,
  SILERO_INPUTS,
  SILERO_OUTPUTS,
  SILERO_VAD_V5_PATH,
  sileroFrame,
} from '@edgefleet/test-utils';
import * as ort from 'onnxruntime-web';

const DEVICE = 'demo-cam-001';
const step = (text: string) => console.log(`\n▶ ${text}`);
const line = (text: string) => console.log(`  ${text}`);
const short = (hex: string) => `${hex.slice(0, 12)}…`;

async function refused(what: string, attempt: () => unknown): Promise<void> {
  try {
    await attempt();
  } catch (error) {
    if (error instanceof EdgefleetError) {
      line(`✗ ${what}: refused with ${error.code}`);
      return;
    }
    throw error;
  }
  throw new Error(`demo failure: "${what}" was accepted`);
}

/** Speech probability of three frames: a voiced chirp, silence, another chirp. */
async function listen(runtime: Runtime): Promise<string> {
  const probabilities: string[] = [];
  let state: Float32Array = new Float32Array(256);
  for (const frame of [sileroFrame(1).input, new Float32Array(512), sileroFrame(4).input]) {
    const outputs = await runtime.run('silero-vad', {
      input: { dtype: 'float32', shape: [1, 512], data: frame },
      state: { dtype: 'float32', shape: [2, 1, 128], data: state },
      sr: { dtype: 'int64', shape: [], data: BigInt64Array.from([16000n]) },
    });
    state = outputs.stateN?.data as Float32Array;
    probabilities.push(Number((outputs.output?.data as Float32Array | undefined)?.[0] ?? Number.NaN).toFixed(4));
  }
  return probabilities.join(', ');
}

async function main(): Promise<void> {
  console.log('edgefleet demo: a signed model delivered to a device, verified, run offline, and defended');

  step('Fleet keys (one per role) and the key set devices are provisioned with');
  const root = generateSigningKey();
  const manifestKey = generateSigningKey();
  const desiredKey = generateSigningKey();
  const roles = (manifest: SigningKey) => ({
    root: { keys: [root] },
    manifest: { keys: [manifest] },
    'desired-state': { keys: [desiredKey] },
  });
  const keySet = createKeySet({ version: 1, roles: roles(manifestKey) });
  const trust = createTrust(keySet);
  line(`root ${short(root.keyId)}  manifest ${short(manifestKey.keyId)}  desired-state ${short(desiredKey.keyId)}`);

  step('Silero VAD v5 (from @ricky0123/vad-web) gets a signed manifest with golden vectors');
  const bytes = readModel(SILERO_VAD_V5_PATH);
  const frame = sileroFrame(1);
  const reference = await ort.InferenceSession.create(bytes);
  const golden = await reference.run({
    input: new ort.Tensor('float32', frame.input, [1, 512]),
    state: new ort.Tensor('float32', frame.state, [2, 1, 128]),
    sr: new ort.Tensor('int64', frame.sr, []),
  });
  await reference.release();
  const manifestOf = (version: string) =>
    manifestFor({
      name: 'silero-vad',
      version,
      bytes,
      inputs: SILERO_INPUTS,
      outputs: SILERO_OUTPUTS,
      key: manifestKey,
      tolerance: { absolute: 1e-4, relative: 1e-3 },
      vectors: [
        goldenVector(
          {
            input: { dtype: 'float32', shape: [1, 512], data: frame.input },
            state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
            sr: { dtype: 'int64', shape: [], data: frame.sr },
          },
          { output: { dtype: 'float32', shape: [1, 1], data: Float32Array.from(golden.output?.data as Float32Array) } },
        ),
      ],
    });
  const manifest = manifestOf('5.0.0');
  line(
    `${bytes.length} bytes, sha256 ${short(manifest.payload.artifact.sha256)}, golden output ${(golden.output?.data as Float32Array | undefined)?.[0]?.toFixed(4)} (onnxruntime-web ${ort.env.versions.web})`,
  );

  step(`Desired state for ${DEVICE}, as the server will publish it (retained, signed)`);
  const topics = createTopicScheme();
  const desired = signDesiredState(createDesiredState({ deviceId: DEVICE, sequence: 1, models: [{ manifest }] }), [desiredKey]);
  line(`topic ${topics.build('desired', DEVICE)}  (${encodeMessage('desired', desired).length} bytes, sequence 1)`);
  const verified = verifyDesiredState(desired, trust, { deviceId: DEVICE, lastSequence: 0 });
  line(
    `✓ device verified signatures, validity, addressee and sequence: install ${verified.manifests.map((m) => `${m.name}@${m.version}`).join(', ')}`,
  );

  const server = await createArtifactServer();
  const url = `${server.url}/v1/artifacts/${manifest.payload.artifact.sha256}`;
  server.set(new URL(url).pathname, bytes);
  const dir = await mkdtemp(join(tmpdir(), 'edgefleet-demo-'));
  try {
    step(`${DEVICE} installs it from ${server.url}: download → sha256 → store → acceptance test → activate`);
    const runtime = await createRuntime({ dir, trust: keySet, deviceId: DEVICE });
    runtime.on('acceptance-passed', ({ executionProvider, maxAbsoluteError }) =>
      line(`✓ acceptance test on ${executionProvider}: max |error| ${maxAbsoluteError.toExponential(2)} against the golden output`),
    );
    let lastReported = 0;
    const info = await runtime.install(manifest, url, {
      onProgress: ({ bytes: received, total }) => {
        if (received === total || received - lastReported > total / 3) {
          lastReported = received;
          line(`… ${received} / ${total} bytes`);
        }
      },
    });
    line(`✓ active: ${info.name}@${info.active?.version} on ${info.active?.executionProvider} (${info.active?.engine}), store ${dir}`);
    const before = await listen(runtime);
    line(`speech probabilities of three frames: ${before}`);
    await runtime.close();

    step('The server goes away and the device restarts: it serves from its store, offline');
    await server.close();
    const offline = await createRuntime({
      dir,
      trust: keySet,
      deviceId: DEVICE,
      fetch: () => Promise.reject(new TypeError('network is down')),
    });
    const after = await listen(offline);
    line(`${after === before ? '✓' : '✗'} restored ${offline.models()[0]?.active?.version} and got the same outputs: ${after}`);
    if (after !== before) throw new Error('demo failure: outputs changed across the restart');

    step('Attacks from the threat model, each refused with its own code; the active model keeps serving');
    await offline.close();
    const device = await createRuntime({ dir, trust: keySet, deviceId: DEVICE });
    // The next release: Silero VAD v6 (also shipped by @ricky0123/vad-web), signed as 6.0.0.
    const v6 = readModel(SILERO_VAD_V5_PATH.replace('silero_vad_v5.onnx', 'silero_vad_v6.onnx'));
    const next = manifestFor({
      name: 'silero-vad',
      version: '6.0.0',
      bytes: v6,
      inputs: SILERO_INPUTS,
      outputs: SILERO_OUTPUTS,
      key: manifestKey,
    });
    const evil = await createArtifactServer();
    evil.set(
      '/tampered',
      v6.map((b, i) => (i === 5000 ? b ^ 1 : b)),
    );
    evil.set('/endless', v6, { endless: true });
    await refused('bytes that are not the signed ones (substituted model)', () => device.install(next, `${evil.url}/tampered`));
    await refused('a server that never stops sending (endless data)', () => device.install(next, `${evil.url}/endless`));
    await refused('a manifest signed by an unknown key (arbitrary model)', () =>
      device.install(signManifest(next.payload, [generateSigningKey()]), `${evil.url}/tampered`),
    );
    const tampered = structuredClone(next);
    tampered.payload.runtime.executionProviders = ['cpu'];
    await refused('a manifest edited after signing', () => device.install(tampered, `${evil.url}/tampered`));
    await refused('version 4.0.0 without a signed rollback (rollback attack)', () =>
      device.install(manifestOf('4.0.0'), `${evil.url}/tampered`),
    );
    await refused('the desired state replayed (sequence 1 again)', () =>
      verifyDesiredState(desired, trust, { deviceId: DEVICE, lastSequence: 1 }),
    );
    await refused('the desired state replayed a year later (freeze)', () =>
      verifyDesiredState(desired, trust, { deviceId: DEVICE, now: Date.now() + 365 * 24 * 3600 * 1000 }),
    );
    await refused('a desired state for another device', () => verifyDesiredState(desired, trust, { deviceId: 'demo-cam-002' }));
    await evil.close();
    line(`✓ still serving ${device.models()[0]?.active?.version}: ${await listen(device)}`);
    await device.close();

    step('Key rotation: the manifest key is replaced, signed by the root key');
    const newManifestKey = generateSigningKey();
    const rotated = verifyKeySetUpdate(trust, signKeySet(createKeySet({ version: 2, roles: roles(newManifestKey) }), [root]));
    line(`✓ key set v2 accepted; revoked manifest key(s): ${revokedKeyIds(trust, rotated, 'manifest').map(short).join(', ')}`);
    await refused('a manifest signed by the revoked key', () => verifyManifest(manifest, rotated));
    line(`✓ re-signed by the new key: ${verifyManifest(signManifest(manifest.payload, [newManifestKey]), rotated).name} verifies`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  console.log('\nDone. The same checks run on the server, in Node devices and in browsers (see docs/protocol.md and docs/runtime.md).');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

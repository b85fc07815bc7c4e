/**
 * (About 730 lines: the runtime's behaviour end to end through its public API, on one harness that
 * reopens the same store; each module has its own smaller tests beside it.)
 */
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromWire, type NumericProfile, type WireProfile } from '@edgefleet/drift';
import {
  createDesiredState,
  encodeGoldenVectors,
  GOLDEN_VECTORS_FILE,
  generateSigningKey,
  type ManifestPayload,
  signDesiredState,
  signManifest,
} from '@edgefleet/protocol';
import {
  type ArtifactServer,
  createArtifactServer,
  goldenVector,
  heavyMlpModel,
  int8LinearModel,
  MLP_INPUTS,
  MLP_OUTPUTS,
  manifestFor,
  mlpModel,
  readModel,
  SILERO_INPUTS,
  SILERO_LEGACY_INPUTS,
  SILERO_LEGACY_OUTPUTS,
  SILERO_OUTPUTS,
  SILERO_VAD_LEGACY_PATH,
  SILERO_VAD_V5_PATH,
  seededValues,
  sileroFrame,
} from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOrtEngine, type OrtModule } from '../engine/ort-engine.ts';
import type { Engine } from '../engine/types.ts';
import { createWasmEngine } from '../node.ts';
import { createFileModelStore } from '../store/fs-store.ts';
import type { ModelStore } from '../store/types.ts';
import { createRuntime, type Runtime, type RuntimeEvents, type RuntimeOptions } from './index.ts';

const keys = createTestKeys(Date.now() - 60_000);
const engine = createWasmEngine(1);
const fastDownloads = { attempts: 3, initialBackoffMs: 5, maxBackoffMs: 20, deadlineBaseMs: 2_000, minBytesPerSecond: 1024 * 1024 };
const features = { dtype: 'float32' as const, shape: [2, 4], data: seededValues(8, 99) };

let server: ArtifactServer;
beforeAll(async () => {
  server = await createArtifactServer();
});
afterAll(async () => {
  await server.close();
});

/** Raw onnxruntime-web output of a model: the reference the runtime must reproduce. */
async function rawRun(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  try {
    return (await session.run(feeds)) as Record<string, ort.Tensor>;
  } finally {
    await session.release();
  }
}

/** An MLP version served at /<name>/<version>, with golden vectors computed by raw onnxruntime. */
async function mlpRelease(version: string, seed: number, overrides: Partial<Parameters<typeof manifestFor>[0]> = {}) {
  const model = mlpModel(seed);
  const input = seededValues(8, 2026);
  const raw = await rawRun(model.bytes, { features: new ort.Tensor('float32', input, [2, 4]) });
  const expected = raw.scores?.data as Float32Array;
  const manifest = manifestFor({
    name: 'mlp',
    version,
    bytes: model.bytes,
    inputs: MLP_INPUTS,
    outputs: MLP_OUTPUTS,
    key: keys.manifest,
    vectors: [
      goldenVector(
        { features: { dtype: 'float32', shape: [2, 4], data: input } },
        { scores: { dtype: 'float32', shape: [2, 3], data: expected } },
      ),
    ],
    executionProviders: ['wasm'],
    ...overrides,
  });
  const path = `/mlp/${version}-${seed}-${Math.random().toString(36).slice(2)}`;
  server.set(path, model.bytes);
  return { manifest, url: `${server.url}${path}`, model, expected: model.reference(features.data) };
}

interface Harness {
  runtime: Runtime;
  dir: string;
  events: { [K in keyof RuntimeEvents]?: RuntimeEvents[K][] };
  reopen(overrides?: Partial<RuntimeOptions>): Promise<Harness>;
}

async function start(overrides: Partial<RuntimeOptions> = {}, dir?: string): Promise<Harness> {
  const folder = dir ?? (await mkdtemp(join(tmpdir(), 'edgefleet-runtime-')));
  const events: Harness['events'] = {};
  const record =
    <K extends keyof RuntimeEvents>(name: K) =>
    (payload: RuntimeEvents[K]) => {
      const seen = (events[name] ?? []) as RuntimeEvents[K][];
      seen.push(payload);
      events[name] = seen as Harness['events'][K];
    };
  const runtime = await createRuntime({
    store: await createFileModelStore({ dir: folder }),
    engines: [engine],
    trust: keys.trust,
    deviceId: 'dev-1',
    download: fastDownloads,
    // Attached before restore, so start-up events are recorded too.
    listeners: { restored: record('restored'), 'restore-failed': record('restore-failed'), 'rolled-back': record('rolled-back') },
    ...overrides,
  });
  for (const name of [
    'activated',
    'acceptance-passed',
    'acceptance-failed',
    'execution-provider-fallback',
    'install-failed',
    'download-progress',
    'telemetry-window',
  ] as const) {
    runtime.on(name, record(name));
  }
  return {
    runtime,
    dir: folder,
    events,
    reopen: async (more = {}) => {
      await runtime.close();
      return start({ ...overrides, ...more }, folder);
    },
  };
}

async function scores(runtime: Runtime): Promise<number[]> {
  const outputs = await runtime.run('mlp', { features });
  return Array.from(outputs.scores?.data as Float32Array);
}

function expectClose(actual: number[], expected: Float32Array): void {
  expect(actual).toHaveLength(expected.length);
  for (const [i, value] of actual.entries()) expect(Math.abs(value - (expected[i] ?? 0))).toBeLessThan(1e-5);
}

describe('runtime: install, run, restore', () => {
  it('folds every run into a telemetry window per version, closed on time, on flush and on close; errors by code', async () => {
    const opened = Math.floor(Date.now() / 60_000) * 60_000 + 60_000; // a whole minute, after the manifest was signed
    let clock = opened;
    const h = await start({ now: () => clock, telemetry: { windowMs: 60_000 } });
    const release = await mlpRelease('1.0.0', 7);
    await h.runtime.install(release.manifest, release.url);
    for (let i = 0; i < 5; i++) await scores(h.runtime);
    await expect(h.runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 5], data: new Float32Array(10) } })).rejects.toThrow();
    expect(h.events['telemetry-window']).toBeUndefined();
    clock += 61_000; // the next run finds its window over: it closes, and a new one starts
    await scores(h.runtime);
    const first = h.events['telemetry-window']?.[0];
    expect(first).toMatchObject({
      model: { name: 'mlp', version: '1.0.0' },
      runs: 6,
      executionProvider: 'wasm',
      start: new Date(opened).toISOString(),
    });
    expect(Object.keys(first?.errors ?? {})).toHaveLength(1);
    expect(first?.features.map((f) => f.name)).toContain('features.mean');
    expect(h.runtime.flushTelemetry()).toHaveLength(1);
    expect(h.events['telemetry-window']?.[1]?.runs).toBe(1);
    expect(h.runtime.flushTelemetry()).toEqual([]); // nothing ran since
    await scores(h.runtime);
    // Runs in flight while their window closes are counted once, in the next window.
    const inFlight = Array.from({ length: 8 }, () => scores(h.runtime));
    const flushed = h.runtime.flushTelemetry();
    await Promise.all(inFlight);
    const after = h.runtime.flushTelemetry();
    expect([...flushed, ...after].reduce((sum, w) => sum + w.runs, 0)).toBe(9);
    await scores(h.runtime);
    await h.runtime.close();
    expect(h.events['telemetry-window']?.at(-1)?.runs).toBe(1);

    const quiet = await start({ telemetry: { enabled: false } });
    const again = await mlpRelease('1.0.0', 7);
    await quiet.runtime.install(again.manifest, again.url);
    await scores(quiet.runtime);
    expect(quiet.runtime.flushTelemetry()).toEqual([]);
    await quiet.runtime.close();
  });

  it('counts every run with its latency, and profiles features on a time sample when runs come faster than profileEveryMs', async () => {
    const countOf = (window: { readonly features: readonly { name: string; profile: WireProfile }[] } | undefined, name: string) =>
      (fromWire(window?.features.find((f) => f.name === name)?.profile) as NumericProfile).moments.count;
    for (const [profileEveryMs, profiled] of [
      [0, 5],
      [3_600_000, 1],
    ] as const) {
      const h = await start({ telemetry: { profileEveryMs } });
      const release = await mlpRelease('1.0.0', 7);
      await h.runtime.install(release.manifest, release.url);
      for (let i = 0; i < 5; i++) await scores(h.runtime);
      const [window] = h.runtime.flushTelemetry();
      expect(window?.runs).toBe(5);
      expect((fromWire(window?.latencyMs) as NumericProfile).moments.count).toBe(5);
      expect(countOf(window, 'features.mean')).toBe(profiled);
      await h.runtime.close();
    }
  });

  it('leaves a run out of telemetry when asked (telemetry: false): neither its latency, its features nor its error count', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7);
    await h.runtime.install(release.manifest, release.url);
    for (let i = 0; i < 3; i++) await scores(h.runtime);
    const warmup = await h.runtime.run('mlp', { features }, { telemetry: false });
    expect(Array.from(warmup.scores?.data as Float32Array)).toEqual(await scores(h.runtime));
    await expect(
      h.runtime.run('mlp', { features: { dtype: 'float32', shape: [1, 3], data: new Float32Array(3) } }, { telemetry: false }),
    ).rejects.toMatchObject({ code: 'EF_INPUT_INVALID' });
    const [window] = h.runtime.flushTelemetry();
    expect(window?.runs).toBe(4);
    expect(window?.errors).toEqual({});
    expect((fromWire(window?.latencyMs) as NumericProfile).moments.count).toBe(4);
    await h.runtime.close();
  });

  it('probes latency at install: a version far heavier than the one it replaces reports a ratio well above 1', async () => {
    const h = await start();
    const light = await mlpRelease('1.0.0', 7);
    await h.runtime.install(light.manifest, light.url);
    // The first version has nothing to compare with: its own p95 only.
    const first = h.events.activated?.[0]?.latency;
    expect(first?.runs).toBe(20);
    expect(first?.p95Ms).toBeGreaterThan(0);
    expect(first?.ratio).toBeUndefined();

    const heavy = heavyMlpModel(512, 6);
    const input = seededValues(32 * 4, 2026); // a batch of 32 rows
    const raw = await rawRun(heavy.bytes, { features: new ort.Tensor('float32', input, [32, 4]) });
    const manifest = manifestFor({
      name: 'mlp',
      version: '2.0.0',
      bytes: heavy.bytes,
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      key: keys.manifest,
      vectors: [
        goldenVector(
          { features: { dtype: 'float32', shape: [32, 4], data: input } },
          { scores: { dtype: 'float32', shape: [32, 3], data: raw.scores?.data as Float32Array } },
        ),
      ],
      executionProviders: ['wasm'],
    });
    server.set('/mlp/heavy', heavy.bytes);
    await h.runtime.install(manifest, `${server.url}/mlp/heavy`);
    const probe = h.events.activated?.[1]?.latency;
    // 1.6 million multiply-adds a row against 12, 32 rows: measured side by side, far slower.
    expect(probe?.previousP95Ms).toBeGreaterThan(0);
    expect(probe?.ratio).toBeCloseTo((probe?.p95Ms ?? 0) / (probe?.previousP95Ms ?? 1), 9);
    expect(probe?.ratio).toBeGreaterThan(3);
    await h.runtime.close();
  });

  it('installs a signed model from a URL, passes its acceptance test and runs it', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7);
    const info = await h.runtime.install(release.manifest, release.url);
    expect(info).toMatchObject({
      name: 'mlp',
      state: 'active',
      active: { version: '1.0.0', executionProvider: 'wasm', engine: 'onnxruntime-web' },
      floor: '1.0.0',
    });
    expect(h.events['acceptance-passed']?.[0]).toMatchObject({ model: { name: 'mlp', version: '1.0.0' }, executionProvider: 'wasm' });
    expect(h.events['download-progress']?.at(-1)).toMatchObject({ bytes: release.model.bytes.length, total: release.model.bytes.length });
    expectClose(await scores(h.runtime), release.expected);
    expect(h.runtime.models()).toEqual([info]);
    await h.runtime.close();
  });

  it('serves the active version after a restart with no network at all', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7);
    await h.runtime.install(release.manifest, release.url);
    const before = await scores(h.runtime);
    const offline = await h.reopen({ fetch: () => Promise.reject(new Error('offline')) });
    expect(offline.events.restored?.[0]).toMatchObject({ model: { name: 'mlp', version: '1.0.0' }, executionProvider: 'wasm' });
    expect(await scores(offline.runtime)).toEqual(before);
    await offline.runtime.close();
  });

  it('does not download again when asked to install what already runs', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7);
    await h.runtime.install(release.manifest, release.url);
    const requests = server.requests.length;
    await h.runtime.install(release.manifest, release.url);
    expect(server.requests.length).toBe(requests);
    await h.runtime.close();
  });

  it('runs several models side by side and releases the sessions of replaced versions', async () => {
    const released: string[] = [];
    const counting: Engine = {
      name: engine.name,
      probe: () => engine.probe(),
      async createSession(bytes, ep) {
        const session = await engine.createSession(bytes, ep);
        return {
          ...session,
          run: session.run,
          release: async () => {
            released.push(`${bytes.length}`);
            await session.release();
          },
        };
      },
    };
    const h = await start({ engines: [counting] });
    const v1 = await mlpRelease('1.0.0', 7);
    const v2 = await mlpRelease('2.0.0', 8);
    await h.runtime.install(v1.manifest, v1.url);
    const int8 = int8LinearModel();
    await h.runtime.install(
      manifestFor({
        name: 'int8-linear',
        version: '1.0.0',
        bytes: int8.bytes,
        inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', 8] }],
        outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 4] }],
        key: keys.manifest,
        quantized: true,
      }),
      int8.bytes,
    );
    const before = released.length;
    await h.runtime.install(v2.manifest, v2.url);
    expect(released.length).toBe(before + 1); // v1's session, and only it
    expect(h.runtime.models().map((m) => `${m.name}@${m.active?.version}`)).toEqual(['int8-linear@1.0.0', 'mlp@2.0.0']);
    const { y } = await h.runtime.run('int8-linear', { x: { dtype: 'float32', shape: [1, 8], data: seededValues(8, 1) } });
    expect(y?.shape).toEqual([1, 4]);
    expectClose(await scores(h.runtime), v2.expected);
    await h.runtime.close();
  });

  it('runs Silero VAD v5 after verifying it against golden vectors, with the same outputs as raw onnxruntime', async () => {
    const bytes = readModel(SILERO_VAD_V5_PATH);
    const frame = sileroFrame(3);
    const raw = await rawRun(bytes, {
      input: new ort.Tensor('float32', frame.input, [1, 512]),
      state: new ort.Tensor('float32', frame.state, [2, 1, 128]),
      sr: new ort.Tensor('int64', frame.sr, []),
    });
    const manifest = manifestFor({
      name: 'silero-vad',
      version: '5.0.0',
      bytes,
      inputs: SILERO_INPUTS,
      outputs: SILERO_OUTPUTS,
      key: keys.manifest,
      vectors: [
        goldenVector(
          {
            input: { dtype: 'float32', shape: [1, 512], data: frame.input },
            state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
            sr: { dtype: 'int64', shape: [], data: frame.sr },
          },
          { output: { dtype: 'float32', shape: [1, 1], data: raw.output?.data as Float32Array } },
        ),
      ],
    });
    const h = await start();
    await h.runtime.install(manifest, bytes);
    const outputs = await h.runtime.run('silero-vad', {
      input: { dtype: 'float32', shape: [1, 512], data: frame.input },
      state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
      sr: { dtype: 'int64', shape: [], data: frame.sr },
    });
    expect(outputs.output?.data).toEqual(raw.output?.data);
    await h.runtime.close();
  });
});

describe('runtime: nothing unverified runs, the previous version keeps serving', () => {
  async function withActive() {
    const h = await start();
    const v1 = await mlpRelease('1.0.0', 7);
    await h.runtime.install(v1.manifest, v1.url);
    const serving = async () => {
      expect(h.runtime.models()[0]?.active?.version).toBe('1.0.0');
      expectClose(await scores(h.runtime), v1.expected);
    };
    return { h, v1, serving };
  }

  it('refuses tampered bytes (EF_ARTIFACT_HASH_MISMATCH) and stores nothing', async () => {
    const { h, serving } = await withActive();
    const v2 = await mlpRelease('2.0.0', 8);
    const tampered = mlpModel(9).bytes;
    server.set('/tampered', tampered.length === v2.model.bytes.length ? tampered : v2.model.bytes.map((b, i) => (i === 100 ? b ^ 1 : b)));
    await expect(h.runtime.install(v2.manifest, `${server.url}/tampered`)).rejects.toMatchObject({ code: 'EF_ARTIFACT_HASH_MISMATCH' });
    await serving();
    expect(h.events['install-failed']?.[0]).toMatchObject({ model: { version: '2.0.0' }, error: { code: 'EF_ARTIFACT_HASH_MISMATCH' } });
    expect(await readdir(join(h.dir, 'artifacts'))).toHaveLength(1);
    await h.runtime.close();
  });

  it('refuses a tampered manifest (EF_SIGNATURE_INVALID) before downloading', async () => {
    const { h, serving } = await withActive();
    const v2 = await mlpRelease('2.0.0', 8);
    const tampered = structuredClone(v2.manifest);
    tampered.payload.runtime.executionProviders = ['wasm', 'cpu'];
    const requests = server.requests.length;
    await expect(h.runtime.install(tampered, v2.url)).rejects.toMatchObject({ code: 'EF_SIGNATURE_INVALID' });
    expect(server.requests.length).toBe(requests);
    await serving();
    await h.runtime.close();
  });

  it('refuses a manifest signed by an unknown key (EF_SIGNATURE_UNKNOWN_KEY)', async () => {
    const { h, serving } = await withActive();
    const v2 = await mlpRelease('2.0.0', 8);
    await expect(h.runtime.install(signManifest(v2.manifest.payload, [generateSigningKey()]), v2.url)).rejects.toMatchObject({
      code: 'EF_SIGNATURE_UNKNOWN_KEY',
    });
    await serving();
    await h.runtime.close();
  });

  it('refuses an expired manifest (EF_DOCUMENT_EXPIRED)', async () => {
    const { h, serving } = await withActive();
    const v2 = await mlpRelease('2.0.0', 8, { now: Date.now() - 10 * 60_000, ttlMs: 60_000 });
    await expect(h.runtime.install(v2.manifest, v2.url)).rejects.toMatchObject({ code: 'EF_DOCUMENT_EXPIRED' });
    await serving();
    await h.runtime.close();
  });

  it('refuses an older version, also after a restart, unless a signed rollback allows it', async () => {
    const h = await start();
    const v2 = await mlpRelease('2.0.0', 8);
    const v1 = await mlpRelease('1.0.0', 7);
    await h.runtime.install(v2.manifest, v2.url);
    await expect(h.runtime.install(v1.manifest, v1.url)).rejects.toMatchObject({ code: 'EF_MODEL_VERSION_ROLLBACK' });
    const restarted = await h.reopen();
    await expect(restarted.runtime.install(v1.manifest, v1.url)).rejects.toMatchObject({ code: 'EF_MODEL_VERSION_ROLLBACK' });
    const rollback = (deviceId: string, rollbackFlag: boolean) =>
      signDesiredState(createDesiredState({ deviceId, sequence: 2, rollback: rollbackFlag, models: [{ manifest: v1.manifest }] }), [
        keys.desiredState,
      ]);
    await expect(restarted.runtime.install(v1.manifest, v1.url, { rollback: rollback('dev-1', false) })).rejects.toMatchObject({
      code: 'EF_MODEL_VERSION_ROLLBACK',
    });
    await expect(restarted.runtime.install(v1.manifest, v1.url, { rollback: rollback('dev-2', true) })).rejects.toMatchObject({
      code: 'EF_DESIRED_STATE_WRONG_DEVICE',
    });
    const info = await restarted.runtime.install(v1.manifest, v1.url, { rollback: rollback('dev-1', true) });
    expect(info).toMatchObject({ active: { version: '1.0.0' }, previous: { version: '2.0.0' }, floor: '1.0.0' });
    await restarted.runtime.close();
  });

  it('aborts an oversize stream (EF_DOWNLOAD_TOO_LARGE) and a slow one (EF_DOWNLOAD_TIMEOUT)', async () => {
    const { h, serving } = await withActive();
    const v2 = await mlpRelease('2.0.0', 8);
    server.set('/endless', v2.model.bytes, { endless: true });
    await expect(h.runtime.install(v2.manifest, `${server.url}/endless`)).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TOO_LARGE' });
    server.set('/drip', v2.model.bytes, { bytesPerSecond: 20 });
    const slow = await h.reopen({ download: { ...fastDownloads, deadlineBaseMs: 300 } });
    await expect(slow.runtime.install(v2.manifest, `${server.url}/drip`)).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TIMEOUT' });
    expect(slow.runtime.models()[0]?.active?.version).toBe('1.0.0');
    expect(await readdir(join(h.dir, 'tmp'))).toEqual([]);
    await slow.runtime.close();
    void serving;
  });

  it('keeps the previous version when the candidate fails its acceptance test (EF_ACCEPTANCE_FAILED)', async () => {
    const { h, serving } = await withActive();
    const good = await mlpRelease('2.0.0', 8);
    const payload = structuredClone(good.manifest.payload) as ManifestPayload;
    const wrong = goldenVector(
      { features: { dtype: 'float32', shape: [2, 4], data: seededValues(8, 2026) } },
      { scores: { dtype: 'float32', shape: [2, 3], data: new Float32Array(6).fill(0.5) } },
    );
    payload.acceptance = { tolerance: { absolute: 1e-4, relative: 1e-3 }, vectors: [wrong] };
    await expect(h.runtime.install(signManifest(payload, [keys.manifest]), good.url)).rejects.toMatchObject({
      code: 'EF_ACCEPTANCE_FAILED',
    });
    expect(h.events['acceptance-failed']?.[0]?.reason).toMatch(/output "scores"\[\d\] is .*, expected 0\.5/);
    await serving();
    await h.runtime.close();
  });

  it('runs the acceptance test from a golden vectors file and never activates a model whose file is wrong or unreadable', async () => {
    const { h, serving } = await withActive();
    const model = mlpModel(8);
    const input = seededValues(8, 2026);
    const right = Float32Array.from(model.reference(input));
    const vectorsOf = (scores: Float32Array) =>
      encodeGoldenVectors([
        goldenVector(
          { features: { dtype: 'float32', shape: [2, 4], data: input } },
          { scores: { dtype: 'float32', shape: [2, 3], data: scores } },
        ),
      ]);
    const release = (version: string, file: Uint8Array) => {
      const manifest = manifestFor({
        name: 'mlp',
        version,
        bytes: model.bytes,
        inputs: MLP_INPUTS,
        outputs: MLP_OUTPUTS,
        key: keys.manifest,
        vectorsFile: file,
        executionProviders: ['wasm'],
      });
      const path = `/vectors/${version}-${Math.random().toString(36).slice(2)}`;
      server.set(`${path}/model`, model.bytes);
      server.set(`${path}/vectors`, file);
      return { manifest, url: `${server.url}${path}/model`, files: { [GOLDEN_VECTORS_FILE.name]: `${server.url}${path}/vectors` } };
    };
    // Deliberately wrong expected outputs, signed and hash-listed like the model: refused.
    const wrong = release('2.0.0', vectorsOf(new Float32Array(6).fill(0.5)));
    await expect(h.runtime.install(wrong.manifest, wrong.url, { files: wrong.files })).rejects.toMatchObject({
      code: 'EF_ACCEPTANCE_FAILED',
    });
    await serving();
    // A file that is not golden vectors at all, or vectors for inputs the model does not have: refused.
    for (const [version, bytes] of [
      ['2.0.1', new TextEncoder().encode('{"type":"edgefleet.golden-vectors/v1","vectors":"none"}')],
      ['2.0.2', new TextEncoder().encode('not json')],
      [
        '2.0.3',
        encodeGoldenVectors([
          goldenVector(
            { other: { dtype: 'float32', shape: [2, 4], data: input } },
            { scores: { dtype: 'float32', shape: [2, 3], data: right } },
          ),
        ]),
      ],
    ] as const) {
      const broken = release(version, bytes);
      await expect(h.runtime.install(broken.manifest, broken.url, { files: broken.files })).rejects.toMatchObject({
        code: 'EF_ACCEPTANCE_DATA_INVALID',
      });
      await serving();
    }
    expect(h.events.activated).toHaveLength(1);
    // The right outputs pass, on the provider that serves, and the latency probe uses the file's inputs.
    const good = release('2.1.0', vectorsOf(right));
    await h.runtime.install(good.manifest, good.url, { files: good.files });
    expect(h.events['acceptance-passed']?.at(-1)).toMatchObject({ model: { version: '2.1.0' }, executionProvider: 'wasm' });
    expect(h.events.activated?.at(-1)?.latency?.runs).toBeGreaterThan(0);
    expectClose(await scores(h.runtime), Float32Array.from(model.reference(features.data)));
    await h.runtime.close();
  });

  it('refuses a model built for another device class before downloading (EF_MODEL_TARGET_MISMATCH)', async () => {
    const h = await start({ deviceClass: 'pi-4' });
    const release = await mlpRelease('1.0.0', 7, { deviceClasses: ['jetson-orin'] });
    const requests = server.requests.length;
    await expect(h.runtime.install(release.manifest, release.url)).rejects.toMatchObject({ code: 'EF_MODEL_TARGET_MISMATCH' });
    expect(server.requests.length).toBe(requests);
    await h.runtime.close();
  });

  it('reports a full disk (EF_STORE_FULL) and keeps serving', async () => {
    const { h, v1, serving } = await withActive();
    await h.runtime.close();
    const real = await createFileModelStore({ dir: h.dir });
    const full: ModelStore = {
      ...real,
      writeRecord: async () => {
        throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      },
    };
    const runtime = await createRuntime({ store: full, engines: [engine], trust: keys.trust, download: fastDownloads });
    const v2 = await mlpRelease('2.0.0', 8);
    await expect(runtime.install(v2.manifest, v2.url)).rejects.toMatchObject({ code: 'EF_STORE_FULL' });
    expect(runtime.models()[0]).toMatchObject({ state: 'active', active: { version: '1.0.0' }, lastError: { code: 'EF_STORE_FULL' } });
    expectClose(await scores(runtime), v1.expected);
    await runtime.close();
    void serving;
  });

  it('falls back to the previous version when the active one is corrupted at rest', async () => {
    const h = await start();
    const v1 = await mlpRelease('1.0.0', 7);
    const v2 = await mlpRelease('2.0.0', 8);
    await h.runtime.install(v1.manifest, v1.url);
    await h.runtime.install(v2.manifest, v2.url);
    await writeFile(join(h.dir, 'artifacts', v2.manifest.payload.artifact.sha256), 'bit rot');
    const restarted = await h.reopen();
    expect(restarted.events['restore-failed']?.[0]).toMatchObject({ version: '2.0.0', error: { code: 'EF_STORE_CORRUPT' } });
    expect(restarted.events['rolled-back']?.[0]).toMatchObject({ model: { version: '1.0.0' }, from: '2.0.0' });
    expectClose(await scores(restarted.runtime), v1.expected);
    await restarted.runtime.close();
  });
});

describe('runtime: rollback, fallback, inputs', () => {
  it('rolls back to the previous version and forward again', async () => {
    const h = await start();
    const v1 = await mlpRelease('1.0.0', 7);
    const v2 = await mlpRelease('2.0.0', 8);
    await expect(h.runtime.rollback('mlp')).rejects.toMatchObject({ code: 'EF_ROLLBACK_UNAVAILABLE' });
    await h.runtime.install(v1.manifest, v1.url);
    await expect(h.runtime.rollback('mlp')).rejects.toMatchObject({ code: 'EF_ROLLBACK_UNAVAILABLE' });
    await h.runtime.install(v2.manifest, v2.url);
    expect(await h.runtime.rollback('mlp')).toMatchObject({ active: { version: '1.0.0' }, previous: { version: '2.0.0' } });
    expectClose(await scores(h.runtime), v1.expected);
    const restarted = await h.reopen();
    expectClose(await scores(restarted.runtime), v1.expected);
    expect(await restarted.runtime.rollback('mlp')).toMatchObject({ active: { version: '2.0.0' } });
    await restarted.runtime.close();
  });

  it('falls back from an unavailable WebGPU to WASM and says why', async () => {
    const withWebGpu = createOrtEngine({
      name: 'onnxruntime-web',
      ort: ort as unknown as OrtModule,
      providers: [
        { executionProvider: 'webgpu', probe: async () => 'no WebGPU adapter (navigator.gpu is missing)' },
        { executionProvider: 'wasm' },
      ],
    });
    const h = await start({ engines: [withWebGpu] });
    const release = await mlpRelease('1.0.0', 7, { executionProviders: ['webgpu', 'wasm'] });
    expect(await h.runtime.install(release.manifest, release.url)).toMatchObject({ active: { executionProvider: 'wasm' } });
    expect(h.events['execution-provider-fallback']?.[0]).toMatchObject({
      from: 'webgpu',
      to: 'wasm',
      reason: expect.stringContaining('no WebGPU adapter'),
    });
    await h.runtime.close();
  });

  it('refuses a model whose execution providers this device lacks (EF_ENGINE_UNAVAILABLE)', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7, { executionProviders: ['webgpu'] });
    await expect(h.runtime.install(release.manifest, release.url)).rejects.toMatchObject({ code: 'EF_ENGINE_UNAVAILABLE' });
    expect(h.runtime.models()).toEqual([]);
    await h.runtime.close();
  });

  it('checks inputs against the manifest and names the input at fault (EF_INPUT_INVALID)', async () => {
    const h = await start();
    const release = await mlpRelease('1.0.0', 7);
    await h.runtime.install(release.manifest, release.url);
    const bad = async (feeds: Record<string, unknown>) => h.runtime.run('mlp', feeds);
    await expect(bad({})).rejects.toThrow(/needs input "features" \(float32 \[batch, 4\]\)/);
    await expect(bad({ features, extra: features })).rejects.toThrow(/has no input "extra"/);
    await expect(bad({ features: { ...features, dtype: 'int32' } })).rejects.toThrow(/"features" must be float32, got int32/);
    await expect(bad({ features: { ...features, shape: [2, 5] } })).rejects.toThrow(/must have shape \[batch, 4\], got \[2, 5\]/);
    await expect(bad({ features: { ...features, data: new Float64Array(8) } })).rejects.toThrow(
      /data must be a Float32Array, got Float64Array/,
    );
    await expect(bad({ features: { ...features, shape: [3, 4] } })).rejects.toThrow(/has 8 elements, shape \[3, 4\] needs 12/);
    await expect(bad({ features: new ort.Tensor('float32', features.data, [2, 4]) })).resolves.toHaveProperty('scores');
    await expect(h.runtime.run('nope', { features })).rejects.toMatchObject({ code: 'EF_MODEL_NOT_INSTALLED' });
    await h.runtime.close();
  });

  it('checks a symbolic dimension shared by several inputs (Silero legacy batch), and takes a scalar as onnxruntime does', async () => {
    const bytes = readModel(SILERO_VAD_LEGACY_PATH);
    const frame = sileroFrame(2);
    const state = (batch: number) => ({ dtype: 'float32' as const, shape: [2, batch, 64], data: new Float32Array(2 * batch * 64) });
    const feeds = (batch: number, sr: { shape: number[] }) => ({
      input: { dtype: 'float32' as const, shape: [1, 512], data: frame.input },
      sr: { dtype: 'int64' as const, shape: sr.shape, data: frame.sr },
      h: state(batch),
      c: state(1),
    });
    const raw = await rawRun(bytes, {
      input: new ort.Tensor('float32', frame.input, [1, 512]),
      sr: new ort.Tensor('int64', frame.sr, []),
      h: new ort.Tensor('float32', new Float32Array(128), [2, 1, 64]),
      c: new ort.Tensor('float32', new Float32Array(128), [2, 1, 64]),
    });
    const manifest = manifestFor({
      name: 'silero-legacy',
      version: '4.0.0',
      bytes,
      inputs: SILERO_LEGACY_INPUTS,
      outputs: SILERO_LEGACY_OUTPUTS,
      key: keys.manifest,
      executionProviders: ['wasm'],
    });
    const h = await start();
    await h.runtime.install(manifest, bytes);
    // "batch" is 1 for input and c, 2 for h: refused before onnxruntime sees it, naming the dimension.
    const mismatch = await h.runtime.run('silero-legacy', feeds(2, { shape: [] })).catch((error: unknown) => error);
    expect(mismatch).toMatchObject({ code: 'EF_INPUT_INVALID' });
    expect(String(mismatch)).toMatch(/dimension "batch" is 1 in input "input" but 2 in input "h"/);
    // A scalar given as [1] (or [1, 1]): onnxruntime takes any one-element tensor for a declared scalar.
    for (const shape of [[], [1], [1, 1]]) {
      const outputs = await h.runtime.run('silero-legacy', feeds(1, { shape }));
      expect(outputs.output?.data, JSON.stringify(shape)).toEqual(raw.output?.data);
    }
    await expect(
      h.runtime.run('silero-legacy', {
        ...feeds(1, { shape: [] }),
        sr: { dtype: 'int64', shape: [2], data: BigInt64Array.from([16000n, 16000n]) },
      }),
    ).rejects.toThrow(/"sr" must have shape \[\] \(one element\), got \[2\]/);
    await h.runtime.close();
  });

  it('keeps only the artifacts of the active and previous versions', async () => {
    const h = await start();
    for (const [version, seed] of [
      ['1.0.0', 7],
      ['2.0.0', 8],
      ['3.0.0', 9],
    ] as const) {
      const release = await mlpRelease(version, seed);
      await h.runtime.install(release.manifest, release.url);
    }
    expect(await readdir(join(h.dir, 'artifacts'))).toHaveLength(2);
    await h.runtime.remove('mlp');
    expect(await readdir(join(h.dir, 'artifacts'))).toHaveLength(0);
    expect(h.runtime.models()).toEqual([]);
    await h.runtime.close();
  });
});

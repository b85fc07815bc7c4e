/**
 * Variants on a device, through the runtime's public API with real onnxruntime-web (WASM) sessions:
 * the float32 MLP as the reference and its int8 build (DynamicQuantizeLinear + MatMulInteger) as a
 * variant. Which one serves, the fallback when one fails, and what a restart keeps.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionProvider, ManifestVariant } from '@edgefleet/protocol';
import {
  type ArtifactServer,
  createArtifactServer,
  goldenVector,
  MLP_INPUTS,
  MLP_OUTPUTS,
  manifestFor,
  mlpModel,
  quantizedMlpModel,
  seededValues,
  sha256Hex,
} from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createWasmEngine } from '../node.ts';
import { createRuntime, type Runtime, type RuntimeEvents, type RuntimeOptions } from '../runtime/index.ts';
import { createFileModelStore } from '../store/fs-store.ts';
import { planVariants } from './variants.ts';

const keys = createTestKeys(Date.now() - 60_000);
const engine = createWasmEngine(1);
const float = mlpModel(7);
const int8 = quantizedMlpModel(7);
const input = seededValues(8, 2026);
const features = { dtype: 'float32' as const, shape: [2, 4], data: input };

let server: ArtifactServer;
beforeAll(async () => {
  server = await createArtifactServer();
  server.set('/float', float.bytes);
  server.set('/int8', int8.bytes);
});
afterAll(async () => {
  await server.close();
});

function variant(overrides: Partial<ManifestVariant> = {}): ManifestVariant {
  return {
    name: 'int8',
    sha256: sha256Hex(int8.bytes),
    size: int8.bytes.length,
    mediaType: 'application/x-onnx',
    precision: 'int8',
    executionProviders: ['wasm', 'cpu'],
    // The int8 build's error on these inputs is about 1e-2: its budget says so.
    tolerance: { absolute: 0.05, relative: 0 },
    ...overrides,
  };
}

/** Version `version` of the MLP: golden outputs from the float model, the given variants listed. */
function release(version: string, variants: ManifestVariant[]) {
  return manifestFor({
    name: 'mlp',
    version,
    bytes: float.bytes,
    inputs: MLP_INPUTS,
    outputs: MLP_OUTPUTS,
    key: keys.manifest,
    vectors: [
      goldenVector(
        { features: { dtype: 'float32', shape: [2, 4], data: input } },
        { scores: { dtype: 'float32', shape: [2, 3], data: float.reference(input) } },
      ),
    ],
    executionProviders: ['wasm', 'cpu'],
    variants,
  });
}

async function start(dir: string, overrides: Partial<RuntimeOptions> = {}) {
  const events: { [K in keyof RuntimeEvents]?: RuntimeEvents[K][] } = {};
  const record =
    <K extends keyof RuntimeEvents>(name: K) =>
    (payload: RuntimeEvents[K]) => {
      const seen = (events[name] ?? []) as RuntimeEvents[K][];
      seen.push(payload);
      events[name] = seen as (typeof events)[K];
    };
  const runtime: Runtime = await createRuntime({
    store: await createFileModelStore({ dir }),
    engines: [engine],
    trust: keys.trust,
    listeners: { restored: record('restored') },
    ...overrides,
  });
  for (const name of ['variant-fallback', 'activated', 'download-progress'] as const) runtime.on(name, record(name));
  return { runtime, events };
}

async function scores(runtime: Runtime): Promise<Float32Array> {
  return (await runtime.run('mlp', { features })).scores?.data as Float32Array;
}

const withServer = () => ({ variants: { int8: `${server.url}/int8` } });

describe('variants on a device', () => {
  it('serves the variant it can run, within its tolerance of the reference, downloads nothing else, and keeps it across a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-variants-'));
    const { runtime, events } = await start(dir);
    await runtime.install(release('1.0.0', [variant()]), `${server.url}/float`, withServer());
    expect(runtime.models()[0]?.active).toMatchObject({ version: '1.0.0', variant: 'int8', sha256: sha256Hex(float.bytes) });
    expect(events.activated?.[0]).toMatchObject({ variant: 'int8', executionProvider: 'wasm' });
    // Only the variant was downloaded: the reference stays on the server.
    expect(new Set(events['download-progress']?.map((e) => e.file))).toEqual(new Set(['variant int8']));
    const served = await scores(runtime);
    const reference = float.reference(input);
    let worst = 0;
    for (const [i, value] of served.entries()) worst = Math.max(worst, Math.abs(value - (reference[i] ?? 0)));
    expect(worst).toBeGreaterThan(0); // it is the int8 build that answers, not the float one
    expect(worst).toBeLessThan(0.05);
    await runtime.close();

    const again = await start(dir);
    expect(again.events.restored?.[0]).toMatchObject({ variant: 'int8' });
    expect(Array.from(await scores(again.runtime))).toEqual(Array.from(served));
    await again.runtime.close();
  });

  it('falls back to the next candidate when a variant fails its acceptance test, and says why', async () => {
    const { runtime, events } = await start(await mkdtemp(join(tmpdir(), 'edgefleet-variants-')));
    // A budget the int8 build cannot meet: its error is larger than 1e-6.
    await runtime.install(release('1.0.0', [variant({ tolerance: { absolute: 1e-6, relative: 0 } })]), `${server.url}/float`, withServer());
    expect(runtime.models()[0]?.active?.variant).toBe('reference');
    expect(events['variant-fallback']).toEqual([
      expect.objectContaining({ from: 'int8', to: 'reference', reason: expect.stringContaining('EF_ACCEPTANCE_FAILED') }),
    ]);
    const served = await scores(runtime);
    const reference = float.reference(input);
    for (const [i, value] of served.entries()) expect(Math.abs(value - (reference[i] ?? 0))).toBeLessThan(1e-5);
    await runtime.close();
  });

  it('falls back when a variant cannot be downloaded or is not what the manifest says', async () => {
    const { runtime, events } = await start(await mkdtemp(join(tmpdir(), 'edgefleet-variants-')));
    const tampered = variant({ name: 'int8-tampered', sha256: 'ab'.repeat(32) });
    await runtime.install(release('1.0.0', [tampered, variant()]), `${server.url}/float`, {
      variants: { 'int8-tampered': `${server.url}/int8`, int8: `${server.url}/int8` },
    });
    expect(runtime.models()[0]?.active?.variant).toBe('int8');
    expect(events['variant-fallback']?.map((e) => [e.from, e.to])).toEqual([['int8-tampered', 'int8']]);
    await runtime.close();
  });

  it('passes over variants for providers this device lacks or larger than its budget, and refuses with every reason when nothing passes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-variants-'));
    const { runtime, events } = await start(dir, { variants: { maxBytes: 100 } });
    await runtime.install(
      release('1.0.0', [
        variant({ name: 'fp16', executionProviders: ['webgpu'], precision: 'float16', sha256: 'cd'.repeat(32) }),
        variant(),
      ]),
      `${server.url}/float`,
      withServer(),
    );
    // Neither was tried: webgpu is not offered in Node, and the int8 build is over 100 bytes.
    expect(runtime.models()[0]?.active?.variant).toBe('reference');
    expect(events['variant-fallback']).toBeUndefined();
    await runtime.close();

    const strict = await start(await mkdtemp(join(tmpdir(), 'edgefleet-variants-')));
    // The reference itself fails (a wrong golden output), after the variant failed too.
    const broken = manifestFor({
      name: 'mlp',
      version: '1.0.0',
      bytes: float.bytes,
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      key: keys.manifest,
      vectors: [
        goldenVector(
          { features: { dtype: 'float32', shape: [2, 4], data: input } },
          { scores: { dtype: 'float32', shape: [2, 3], data: new Float32Array(6).fill(9) } },
        ),
      ],
      executionProviders: ['wasm'],
      variants: [variant()],
    });
    const failure = await strict.runtime.install(broken, `${server.url}/float`, withServer()).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: 'EF_ACCEPTANCE_FAILED', details: { variants: [expect.stringMatching(/^int8: /)] } });
    expect(strict.runtime.models()).toEqual([]);
    await strict.runtime.close();
  });
});

describe('planVariants', () => {
  const order: ExecutionProvider[] = ['webgpu', 'wasm'];
  const rank = (available: ExecutionProvider[]) => ({
    rank: (allowed: readonly ExecutionProvider[]) => {
      const at = order.filter((ep) => available.includes(ep)).findIndex((ep) => allowed.includes(ep));
      return at < 0 ? Number.POSITIVE_INFINITY : at;
    },
  });
  const manifest = release('1.0.0', [
    variant({ name: 'int8', executionProviders: ['wasm'] }),
    variant({ name: 'fp16', executionProviders: ['webgpu'], precision: 'float16', sha256: 'cd'.repeat(32) }),
  ]).payload;

  it('puts the variant for the best provider here first, then the manifest order, the reference last among equals', () => {
    const names = (available: ExecutionProvider[]) => planVariants(manifest, rank(available)).candidates.map((c) => c.name);
    // The reference allows wasm and cpu: with a GPU, fp16 leads; without, int8 ties the reference and comes first.
    expect(names(['webgpu', 'wasm'])).toEqual(['fp16', 'int8', 'reference']);
    expect(names(['wasm'])).toEqual(['int8', 'reference']);
    expect(planVariants(manifest, rank(['wasm'])).skipped).toEqual([{ name: 'fp16', reason: 'none of webgpu is available here' }]);
    // Each candidate carries its own providers and tolerance into the acceptance test.
    const fp16 = planVariants(manifest, rank(['webgpu', 'wasm'])).candidates[0];
    expect(fp16?.manifest.runtime.executionProviders).toEqual(['webgpu']);
    expect(fp16?.manifest.acceptance?.tolerance).toEqual({ absolute: 0.05, relative: 0 });
  });
});

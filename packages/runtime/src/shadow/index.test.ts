/**
 * Shadow runs through the runtime's public API, on real onnxruntime-web (WASM) sessions: a
 * candidate beside the active MLP, compared on the live inputs and folded into telemetry windows,
 * never answering, kept across a restart, ended when it goes live.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromWire, type NumericProfile } from '@edgefleet/drift';
import {
  type ArtifactServer,
  createArtifactServer,
  goldenVector,
  MLP_INPUTS,
  MLP_OUTPUTS,
  manifestFor,
  mlpModel,
  seededValues,
} from '@edgefleet/test-utils';
import { createTestKeys } from '@edgefleet/test-utils/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createNativeEngine, createWasmEngine } from '../node.ts';
import { createRuntime, type Runtime, type RuntimeOptions } from '../runtime/index.ts';
import { createFileModelStore } from '../store/fs-store.ts';

const keys = createTestKeys(Date.now() - 60_000);
const engine = createWasmEngine(1);
const input = seededValues(8, 2026);

let server: ArtifactServer;
beforeAll(async () => {
  server = await createArtifactServer();
  for (const seed of [7, 8]) server.set(`/mlp-${seed}`, mlpModel(seed).bytes);
});
afterAll(async () => {
  await server.close();
});

function release(version: string, seed: number, executionProviders: ('wasm' | 'cpu')[] = ['wasm']) {
  const model = mlpModel(seed);
  return manifestFor({
    name: 'mlp',
    version,
    bytes: model.bytes,
    inputs: MLP_INPUTS,
    outputs: MLP_OUTPUTS,
    key: keys.manifest,
    vectors: [
      goldenVector(
        { features: { dtype: 'float32', shape: [2, 4], data: input } },
        { scores: { dtype: 'float32', shape: [2, 3], data: model.reference(input) } },
      ),
    ],
    executionProviders,
  });
}

async function start(dir: string, overrides: Partial<RuntimeOptions> = {}): Promise<Runtime> {
  return createRuntime({
    store: await createFileModelStore({ dir }),
    engines: [engine],
    trust: keys.trust,
    latencyProbeRuns: 0,
    ...overrides,
  });
}

/** Rows of [batch, 4] inputs, each a run. */
const batches = Array.from({ length: 40 }, (_, i) => seededValues(8, 100 + i, 2));

interface Totals {
  version?: string;
  runs: number;
  skipped: number;
  errors: number;
  rows: number;
  agreed: number;
  overlap: number;
  maxAbsDiff: number;
  ratios: number;
}

/**
 * Sums the shadow summaries of every window the runtime closes (each poll flushes): `until(n)`
 * waits until n samples are accounted for (run, skipped or failed), the observable end of the
 * shadow runs that follow the live ones on later turns.
 */
function shadowTotals(runtime: Runtime) {
  const totals: Totals = { runs: 0, skipped: 0, errors: 0, rows: 0, agreed: 0, overlap: 0, maxAbsDiff: 0, ratios: 0 };
  const take = () => {
    for (const window of runtime.flushTelemetry()) {
      const shadow = window.shadow;
      if (!shadow) continue;
      totals.version = shadow.version;
      totals.runs += shadow.runs;
      totals.skipped += shadow.skipped;
      totals.errors += shadow.errors;
      totals.rows += shadow.rows;
      totals.agreed += shadow.agreed;
      totals.overlap += shadow.overlap;
      totals.maxAbsDiff = Math.max(totals.maxAbsDiff, shadow.maxAbsDiff);
      totals.ratios += (fromWire(shadow.latencyRatio as never) as NumericProfile).moments.count;
    }
    return totals.runs + totals.skipped + totals.errors;
  };
  return {
    totals,
    take,
    async until(samples: number): Promise<Totals> {
      const deadline = Date.now() + 20_000;
      while (take() < samples) {
        if (Date.now() > deadline) throw new Error(`${samples} shadow samples expected; ${JSON.stringify(totals)} accounted for`);
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      return totals;
    },
  };
}

/** Runs every batch, one at a time, each once its shadow sample is accounted for. */
async function traffic(
  runtime: Runtime,
  totals = shadowTotals(runtime),
  sampled = true,
): Promise<{ answers: Float32Array[]; totals: Totals }> {
  const answers: Float32Array[] = [];
  for (const [i, data] of batches.entries()) {
    answers.push((await runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data } })).scores?.data as Float32Array);
    if (sampled) await totals.until(i + 1);
  }
  return { answers, totals: totals.totals };
}

/** Rows where two models pick the same class, counted independently from their reference implementations. */
function agreement(a: number, b: number): { rows: number; agreed: number } {
  let agreed = 0;
  let rows = 0;
  for (const data of batches) {
    const [x, y] = [mlpModel(a).reference(data), mlpModel(b).reference(data)];
    for (let r = 0; r < 2; r++) {
      const ra = Array.from(x.subarray(r * 3, r * 3 + 3));
      const rb = Array.from(y.subarray(r * 3, r * 3 + 3));
      rows++;
      if (ra.indexOf(Math.max(...ra)) === rb.indexOf(Math.max(...rb))) agreed++;
    }
  }
  return { rows, agreed };
}

describe('shadow runs', () => {
  it('runs a candidate on the live inputs without answering, and folds how it compares into the telemetry window', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'edgefleet-shadow-'));
    const runtime = await start(dir, { shadow: { budget: 1 } });
    await runtime.install(release('1.0.0', 7), `${server.url}/mlp-7`);
    const installed = await runtime.installShadow(release('1.1.0', 8), `${server.url}/mlp-8`, { rate: 1 });
    expect(installed.active?.version).toBe('1.0.0');
    expect(installed.shadow).toMatchObject({ version: '1.1.0', variant: 'reference', executionProvider: 'wasm', rate: 1 });
    const { answers, totals: shadow } = await traffic(runtime);
    // The caller only ever gets the active version's answers.
    for (const [i, data] of batches.entries()) {
      const expected = mlpModel(7).reference(data);
      for (const [j, value] of (answers[i] as Float32Array).entries()) expect(Math.abs(value - (expected[j] ?? 0))).toBeLessThan(1e-5);
    }
    const expected = agreement(7, 8);
    expect(shadow).toMatchObject({
      version: '1.1.0',
      runs: 40,
      skipped: 0,
      errors: 0,
      rows: expected.rows,
      agreed: expected.agreed,
      ratios: 40,
    });
    expect(expected.agreed).toBeLessThan(expected.rows); // other weights: some rows differ
    expect(shadow.maxAbsDiff).toBeGreaterThan(0);

    // Kept across a restart, and ended once it goes live.
    await runtime.close();
    const again = await start(dir, { shadow: { budget: 1 } });
    expect(again.models()[0]?.shadow?.version).toBe('1.1.0');
    await again.install(release('1.1.0', 8), `${server.url}/mlp-8`);
    expect(again.models()[0]).toMatchObject({ active: { version: '1.1.0' } });
    expect(again.models()[0]?.shadow).toBeUndefined();
    await again.close();
    const third = await start(dir);
    expect(third.models()[0]?.shadow).toBeUndefined();
    await third.close();
  });

  it('agrees fully with an identical candidate, samples at its rate, and skips what the budget does not allow', async () => {
    const runtime = await start(await mkdtemp(join(tmpdir(), 'edgefleet-shadow-')), { shadow: { budget: 1 } });
    await runtime.install(release('1.0.0', 7), `${server.url}/mlp-7`);
    // The same weights under another version: agreement on every row, no difference.
    await runtime.installShadow(release('1.0.1', 7), `${server.url}/mlp-7`, { rate: 1 });
    const { totals: same } = await traffic(runtime);
    expect(same).toMatchObject({ version: '1.0.1', runs: 40, rows: 80, agreed: 80, maxAbsDiff: 0 });
    expect(same.overlap).toBeCloseTo(80, 10);
    // Rate 0: the candidate never runs; then one sample at rate 1, the witness that it could have.
    await runtime.installShadow(release('1.0.1', 7), `${server.url}/mlp-7`, { rate: 0 });
    const quiet = shadowTotals(runtime);
    await traffic(runtime, quiet, false);
    await runtime.installShadow(release('1.0.1', 7), `${server.url}/mlp-7`, { rate: 1 });
    await runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data: input } });
    expect(await quiet.until(1)).toMatchObject({ runs: 1, skipped: 0 });
    await runtime.removeShadow('mlp');
    expect(runtime.models()[0]?.shadow).toBeUndefined();
    await expect(runtime.installShadow(release('1.0.2', 7), `${server.url}/mlp-7`, { rate: 2 })).rejects.toMatchObject({
      code: 'EF_SCHEMA_INVALID',
    });
    await runtime.close();

    // A budget of nothing: every sample is skipped, and counted (the witness that samples were taken).
    const frugal = await start(await mkdtemp(join(tmpdir(), 'edgefleet-shadow-')), { shadow: { budget: 0 } });
    await frugal.install(release('1.0.0', 7), `${server.url}/mlp-7`);
    await frugal.installShadow(release('1.0.1', 7), `${server.url}/mlp-7`, { rate: 1 });
    const { totals: frugalTotals } = await traffic(frugal);
    expect(frugalTotals).toMatchObject({ runs: 0, skipped: 40 });
    await frugal.close();
  });

  it('never runs while the model is busy: samples taken under concurrent runs are skipped', async () => {
    // onnxruntime-node computes on its own threads: runs overlap across turns of the event loop,
    // as they do in an app serving several requests at once.
    const native = await createNativeEngine(1);
    if (!native) throw new Error('onnxruntime-node is a dev dependency of @edgefleet/runtime and must load in tests');
    const runtime = await start(await mkdtemp(join(tmpdir(), 'edgefleet-shadow-')), { shadow: { budget: 1 }, engines: [native] });
    await runtime.install(release('1.0.0', 7, ['cpu']), `${server.url}/mlp-7`);
    await runtime.installShadow(release('1.1.0', 8, ['cpu']), `${server.url}/mlp-8`, { rate: 1 });
    // A steady stream of overlapping runs: whenever a sample's turn comes, another run is in flight.
    let stop = false;
    const pumps = Array.from({ length: 4 }, async () => {
      let count = 0;
      while (!stop) {
        await runtime.run('mlp', { features: { dtype: 'float32', shape: [2, 4], data: input } });
        count++;
      }
      return count;
    });
    const totals = shadowTotals(runtime);
    await totals.until(50); // fifty samples taken under the load
    stop = true;
    const counted = (await Promise.all(pumps)).reduce((a, b) => a + b, 0);
    // Every sample is accounted for; most found the model busy.
    const shadow = await totals.until(counted);
    expect(shadow.runs + shadow.skipped).toBe(counted);
    expect(shadow.skipped).toBeGreaterThan(shadow.runs);
    await runtime.close();
  });

  it('refuses a shadow with no active version to compare with, and says so in a shadow-failed event', async () => {
    const runtime = await start(await mkdtemp(join(tmpdir(), 'edgefleet-shadow-')));
    const failed: { model: { name: string; version: string }; error: { code: string } }[] = [];
    runtime.on('shadow-failed', (event) => failed.push(event));
    await expect(runtime.installShadow(release('1.1.0', 8), `${server.url}/mlp-8`)).rejects.toMatchObject({
      code: 'EF_MODEL_NOT_INSTALLED',
    });
    // A fleet's rollout counts a member by these events: every refusal emits one, exactly once.
    expect(failed).toEqual([
      { model: { name: 'mlp', version: '1.1.0' }, error: expect.objectContaining({ code: 'EF_MODEL_NOT_INSTALLED' }) },
    ]);
    await runtime.close();
  });
});

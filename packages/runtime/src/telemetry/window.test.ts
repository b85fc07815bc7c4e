import { detectDrift, fromWire, type NumericProfile } from '@edgefleet/drift';
import { FeatureProfileWire, matches, NumericProfileWire } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import * as ort from 'onnxruntime-web';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Feeds, Outputs } from '../engine/types.ts';
import { WindowProfile } from './window.ts';

let session: ort.InferenceSession;
beforeAll(async () => {
  session = await ort.InferenceSession.create(mlpModel(7).bytes);
});
afterAll(() => session.release());

/** One real run of the MLP (features [4, 4] → scores [4, 3]) on inputs shifted by `shift`. */
async function run(seed: number, shift = 0): Promise<{ feeds: Feeds; outputs: Outputs }> {
  // Nearby xorshift seeds give correlated first values: scramble the seed first.
  const input = seededValues(16, Math.imul(seed, 2654435761) >>> 0).map((x) => x + shift);
  const result = await session.run({ features: new ort.Tensor('float32', input, [4, 4]) });
  const scores = result.scores as ort.Tensor;
  return {
    feeds: { features: { dtype: 'float32', shape: [4, 4], data: input } },
    outputs: { scores: { dtype: 'float32', shape: [...scores.dims], data: scores.data as Float32Array } },
  };
}

async function windowOf(runs: number, seed: number, shift = 0): Promise<WindowProfile> {
  const window = new WindowProfile({ name: 'mlp', version: '1.0.0' }, Date.parse('2026-11-26T00:00:00Z'));
  for (let i = 0; i < runs; i++) {
    const { feeds, outputs } = await run(seed * 10_000 + i, shift);
    window.recordRun(feeds, outputs, 0.2 + (i % 7) * 0.05);
  }
  return window;
}

describe('telemetry window of a model version', () => {
  it('folds every run into latency, input summaries and the class distribution of the outputs, keeping no inputs', async () => {
    const window = await windowOf(300, 1);
    window.recordError('EF_INPUT_SHAPE', 0.01);
    window.recordError('EF_INPUT_SHAPE', 0.01);
    const closed = window.close(Date.parse('2026-11-26T00:01:00Z'));
    expect(closed).toMatchObject({
      model: { name: 'mlp', version: '1.0.0' },
      start: '2026-11-26T00:00:00.000Z',
      end: '2026-11-26T00:01:00.000Z',
    });
    expect(closed.runs).toBe(302);
    expect(closed.errors).toEqual({ EF_INPUT_SHAPE: 2 });
    const latency = fromWire(closed.latencyMs) as NumericProfile;
    expect(latency.moments.count).toBe(302);
    expect(closed.features.map((f) => f.name).sort()).toEqual([
      'features.energy',
      'features.mean',
      'features.std',
      'scores.class',
      'scores.top',
    ]);
    // What goes on the wire is what the protocol's telemetry message allows.
    expect(matches(NumericProfileWire, closed.latencyMs)).toBe(true);
    for (const { profile } of closed.features) expect(matches(FeatureProfileWire, profile)).toBe(true);
    const classes = fromWire(closed.features.find((f) => f.name === 'scores.class')?.profile);
    expect(classes.kind).toBe('categorical');
    if (classes.kind === 'categorical') expect(Object.values(classes.categories.counts).reduce((a, b) => a + b, 0)).toBe(300 * 4);
    // Nothing of the raw inputs travels: summaries only, a few KB for 300 runs.
    expect(JSON.stringify(closed).length).toBeLessThan(12_000);
  });

  it('shows a shifted input in its features and leaves an unshifted one alone', async () => {
    const reference = (await windowOf(400, 2)).close(0);
    const same = (await windowOf(400, 3)).close(0);
    const shifted = (await windowOf(400, 4, 0.3)).close(0);
    const mean = (w: typeof reference) => fromWire(w.features.find((f) => f.name === 'features.mean')?.profile);
    expect(detectDrift(mean(reference), mean(same)).drifted).toBe(false);
    expect(detectDrift(mean(reference), mean(shifted)).drifted).toBe(true);
  });
});

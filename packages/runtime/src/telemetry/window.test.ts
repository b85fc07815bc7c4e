import { detectDrift, fromWire, type NumericProfile } from '@edgefleet/drift';
import { FeatureProfileWire, matches, NumericProfileWire, type TelemetrySpec } from '@edgefleet/protocol';
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
  const input = seededValues(16, seed).map((x) => x + shift);
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
    window.recordError('EF_INPUT_INVALID', 0.01);
    window.recordError('EF_INPUT_INVALID', 0.01);
    const closed = window.close(Date.parse('2026-11-26T00:01:00Z'));
    expect(closed).toMatchObject({
      model: { name: 'mlp', version: '1.0.0' },
      start: '2026-11-26T00:00:00.000Z',
      end: '2026-11-26T00:01:00.000Z',
    });
    expect(closed.runs).toBe(302);
    expect(closed.errors).toEqual({ EF_INPUT_INVALID: 2 });
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

  it('profiles the features a manifest declares: tabular columns by index, classes by label, summaries, top scores', async () => {
    const spec: TelemetrySpec = {
      features: [
        { name: 'age', source: 'input', tensor: 'features', kind: 'column', index: 0 },
        { name: 'region', source: 'input', tensor: 'features', kind: 'column', index: 3, type: 'categorical', labels: ['north', 'south'] },
        { name: 'overall', source: 'input', tensor: 'features', kind: 'summary', stat: 'std' },
        { name: 'label', source: 'output', tensor: 'scores', kind: 'class', labels: ['cat', 'dog', 'bird'] },
        { name: 'confidence', source: 'output', tensor: 'scores', kind: 'top' },
      ],
    };
    const window = new WindowProfile({ name: 'mlp', version: '1.0.0' }, 0, spec);
    // Two rows: age 31 and 58, region codes 1 and 0; row 0 is a "dog", row 1 a "cat".
    const feeds: Feeds = { features: { dtype: 'float32', shape: [2, 4], data: new Float32Array([31, 0.5, 0.25, 1, 58, 0.5, 0.25, 0]) } };
    const outputs: Outputs = { scores: { dtype: 'float32', shape: [2, 3], data: new Float32Array([0.1, 0.7, 0.2, 0.9, 0.05, 0.05]) } };
    window.recordRun(feeds, outputs, 1);
    window.recordRun(feeds, outputs, 1);
    const closed = window.close(60_000);
    const profile = (name: string) => fromWire(closed.features.find((f) => f.name === name)?.profile);
    // Only the declared features: no default summaries unless the manifest asks for them.
    expect(closed.features.map((f) => f.name).sort()).toEqual(['age', 'confidence', 'label', 'overall', 'region']);
    const age = profile('age') as NumericProfile;
    expect([age.moments.count, age.moments.mean, age.moments.min, age.moments.max]).toEqual([4, 44.5, 31, 58]);
    expect(profile('region')).toMatchObject({ kind: 'categorical', categories: { counts: { north: 2, south: 2 } } });
    expect(profile('label')).toMatchObject({ kind: 'categorical', categories: { counts: { cat: 2, dog: 2 } } });
    const confidence = profile('confidence') as NumericProfile;
    expect(confidence.moments.max).toBeCloseTo(0.9, 6);
    expect(confidence.moments.min).toBeCloseTo(0.7, 6);
    expect((profile('overall') as NumericProfile).moments.count).toBe(2);

    const withDefaults = new WindowProfile({ name: 'mlp', version: '1.0.0' }, 0, {
      ...spec,
      features: spec.features.slice(0, 1),
      defaults: true,
    });
    withDefaults.recordRun(feeds, outputs, 1);
    // The tensor a feature reads gets no default summaries; the others keep theirs.
    expect(
      withDefaults
        .close(1)
        .features.map((f) => f.name)
        .sort(),
    ).toEqual(['age', 'scores.class', 'scores.top']);
  });
});

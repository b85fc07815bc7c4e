/**
 * Real telemetry windows without a device: the runtime's own WindowProfile folds N runs of a
 * 4-feature, 3-class model (deterministic values), and `windowMessage` wraps the result the way the
 * agent does. For ingest tests and the ingest benchmark. And the tabular model's telemetry features
 * and reference datasets, for the drift tests.
 */
import { telemetryMessage } from '@edgefleet/agent';
import { encodeMessage, type TelemetrySpec } from '@edgefleet/protocol';
import { type ClosedWindow, WindowProfile } from '@edgefleet/runtime';
import { splitmix } from '@edgefleet/test-utils';

export function sampleWindow(runs = 60, seed = 11): ClosedWindow {
  const profile = new WindowProfile({ name: 'mlp', version: '1.0.0' }, Date.parse('2026-11-26T00:00:00Z'));
  const uniform = splitmix(seed);
  for (let i = 0; i < runs; i++) {
    profile.recordRun(
      { features: { dtype: 'float32', shape: [1, 4], data: Float32Array.from({ length: 4 }, uniform) } },
      { scores: { dtype: 'float32', shape: [1, 3], data: Float32Array.from({ length: 3 }, uniform) } },
      0.2 + uniform(),
    );
  }
  return profile.close(Date.parse('2026-11-26T00:01:00Z'));
}

export function windowMessage(closed: ClosedWindow, deviceId: string, bootId: string, seq: number): Buffer {
  return Buffer.from(
    encodeMessage('telemetry', telemetryMessage({ ...closed, executionProvider: 'wasm' }, { deviceId, bootId, seq, dropped: 0 })),
  );
}

/** The tabular model's telemetry (mlpModel: a `features` tensor of 4 columns, `scores` of 3 classes). */
export const TABULAR_FEATURES = [
  { name: 'age', source: 'input', tensor: 'features', kind: 'column', index: 0 },
  { name: 'income', source: 'input', tensor: 'features', kind: 'column', index: 1 },
  { name: 'tenure', source: 'input', tensor: 'features', kind: 'column', index: 2 },
  { name: 'visits', source: 'input', tensor: 'features', kind: 'column', index: 3 },
] as const satisfies TelemetrySpec['features'];

/**
 * A reference dataset drawn from what simulated devices see before a shift: N(0, 1) columns, and,
 * with `labels`, a uniform class column named `label`.
 */
export function referenceCsv(rows: number, options: { seed?: number; labels?: readonly string[] } = {}): string {
  const random = splitmix(options.seed ?? 99);
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const labels = options.labels;
  const lines = [`age,income,tenure,visits${labels ? ',label' : ''}`];
  for (let i = 0; i < rows; i++) {
    const row = `${normal()},${normal()},${normal()},${normal()}`;
    lines.push(labels ? `${row},${labels[Math.floor(random() * labels.length)]}` : row);
  }
  return lines.join('\n');
}

/**
 * Real telemetry windows without a device: the runtime's own WindowProfile folds N runs of a
 * 4-feature, 3-class model (deterministic values), and `windowMessage` wraps the result the way the
 * agent does. For ingest tests and the ingest benchmark.
 */
import { telemetryMessage } from '@edgefleet/agent';
import { encodeMessage } from '@edgefleet/protocol';
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

/**
 * Real telemetry windows without a device: the runtime's own WindowProfile folds N runs of a
 * 4-feature, 3-class model (deterministic values), and `windowMessage` wraps the result the way the
 * agent does. For ingest tests and the ingest benchmark.
 */
import { encodeMessage, type TelemetryWindow } from '@edgefleet/protocol';
import { type TelemetryWindow as ClosedWindow, WindowProfile } from '@edgefleet/runtime';

export function sampleWindow(runs = 60, seed = 11): ClosedWindow {
  const profile = new WindowProfile({ name: 'mlp', version: '1.0.0' }, Date.parse('2026-11-26T00:00:00Z'));
  let state = seed;
  const uniform = () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
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
  const message: TelemetryWindow = {
    type: 'edgefleet.telemetry/v1',
    deviceId,
    bootId,
    seq,
    windowStart: closed.start,
    windowEnd: closed.end,
    model: closed.model,
    executionProvider: 'wasm',
    runs: closed.runs,
    errors: [],
    latencyMs: closed.latencyMs as TelemetryWindow['latencyMs'],
    features: closed.features as TelemetryWindow['features'],
    dropped: 0,
  };
  return Buffer.from(encodeMessage('telemetry', message));
}

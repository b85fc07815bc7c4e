import { EdgefleetError } from '@edgefleet/protocol';
import { describe, expect, it } from 'vitest';
import type { Outputs } from '../engine/types.ts';
import type { ModelState, TelemetryWindowEvent } from '../runtime/types.ts';
import { createTelemetryRecorder } from './recorder.ts';

function stateFor(version: string): ModelState {
  const payload = { name: 'm', version, model: { inputs: [], outputs: [] } };
  return {
    record: {
      name: 'm',
      active: { version, sha256: 'a'.repeat(64), manifest: { payload }, files: {}, executionProvider: 'wasm', activatedAt: '' },
    },
    installing: false,
    lastProfiled: Number.NEGATIVE_INFINITY,
  } as unknown as ModelState;
}

const feeds = { x: { dtype: 'float32' as const, shape: [2], data: new Float32Array([1, 2]) } };
const outputs: Outputs = { y: { dtype: 'float32', shape: [1], data: new Float32Array([0.5]) } };

describe('telemetry recorder', () => {
  it('keeps one window per version, closes it on the clock, on a new version, on flush and on close', async () => {
    let now = 1_000_000;
    const emitted: TelemetryWindowEvent[] = [];
    const errors: unknown[] = [];
    const recorder = createTelemetryRecorder({
      settings: { enabled: true, windowMs: 60_000, profileEveryMs: 0 },
      now: () => now,
      emitWindow: (w) => emitted.push(w),
      onError: (e) => errors.push(e),
    });
    const v1 = stateFor('1.0.0');
    const run = async (state: ModelState) => {
      const running = Promise.resolve(outputs);
      recorder.track(state, feeds, running, performance.now());
      await running;
      await Promise.resolve();
    };
    await run(v1);
    await run(v1);
    now += 60_000; // the window's time is up: it closes at the next run
    await run(v1);
    expect(emitted.map((w) => [w.model.version, w.runs, w.executionProvider])).toEqual([['1.0.0', 2, 'wasm']]);

    recorder.recordFailure(v1, new EdgefleetError('EF_INPUT_INVALID', 'bad'), performance.now());
    recorder.recordFailure(v1, new Error('not coded'), performance.now());
    await run(stateFor('2.0.0')); // another version: its own window
    const flushed = recorder.flush();
    expect(flushed.map((w) => [w.model.version, w.runs, w.errors])).toEqual([
      ['1.0.0', 3, { EF_INPUT_INVALID: 1, EF_INTERNAL_ERROR: 1 }],
      ['2.0.0', 1, {}],
    ]);
    expect(recorder.flush()).toEqual([]); // nothing left open

    const failing = Promise.reject(new EdgefleetError('EF_INFERENCE_FAILED', 'engine said no'));
    recorder.track(v1, feeds, failing, performance.now());
    await failing.catch(() => undefined);
    recorder.close();
    expect(emitted.at(-1)).toMatchObject({ runs: 1, errors: { EF_INFERENCE_FAILED: 1 } });
    expect(errors).toEqual([]);
  });
});

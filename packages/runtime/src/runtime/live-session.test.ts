import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { describe, expect, it } from 'vitest';
import { createWasmEngine } from '../node.ts';
import { LiveSession } from './live-session.ts';

const feeds = { features: { dtype: 'float32' as const, shape: [1, 4], data: seededValues(4, 11) } };

describe('live session', () => {
  it('answers runs already in flight when it is retired, and releases the session only after them', async () => {
    const engine = createWasmEngine(1);
    const live = new LiveSession(await engine.createSession(mlpModel(7).bytes, 'wasm'), engine.name);
    const expected = await live.run(feeds);
    const inFlight = [live.run(feeds), live.run(feeds)];
    await live.retire(); // a new version was activated while two runs were computing
    for (const outputs of await Promise.all(inFlight)) {
      expect(Array.from(outputs.scores?.data as Float32Array)).toEqual(Array.from(expected.scores?.data as Float32Array));
    }
    // Released once the last of them answered: the session refuses further work.
    await live.whenReleased();
    await expect(live.run(feeds)).rejects.toMatchObject({ code: 'EF_INFERENCE_FAILED' });
  });

  it('hands a failed run to the caller as the engine reported it, and still counts it as finished', async () => {
    const engine = createWasmEngine(1);
    const live = new LiveSession(await engine.createSession(mlpModel(7).bytes, 'wasm'), engine.name);
    const wrong = { features: { dtype: 'float32' as const, shape: [1, 3], data: new Float32Array(3) } };
    await expect(live.run(wrong)).rejects.toMatchObject({ code: 'EF_INFERENCE_FAILED' });
    await live.retire(); // nothing in flight after the failure: released now
    await expect(live.run(feeds)).rejects.toMatchObject({ code: 'EF_INFERENCE_FAILED' });
  });
});

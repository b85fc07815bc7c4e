import { encodeTensor } from '@edgefleet/protocol';
import { identityModel } from '@edgefleet/test-utils';
import { describe, expect, it } from 'vitest';
import { createModelCheck } from './model-check.ts';

const outputs = [{ name: 'y', dtype: 'float32' as const, shape: [1, 4] }];
const sample = [[encodeTensor('x', 'float32', [1, 4], Float32Array.from([1, 2, 3, 4]))]];

describe('model check (onnxruntime in a worker thread)', () => {
  it('loads a model and runs its samples into golden vectors', async () => {
    const check = createModelCheck({ timeoutMs: 30_000 });
    try {
      const [vector] = await check.check(identityModel().bytes, sample, outputs);
      expect(vector?.outputs).toEqual([encodeTensor('y', 'float32', [1, 4], Float32Array.from([1, 2, 3, 4]))]);
      // A sample the model cannot take is the upload's fault, named by its index.
      await expect(
        check.check(identityModel().bytes, [[encodeTensor('x', 'float32', [1, 5], new Float32Array(5))]], outputs),
      ).rejects.toMatchObject({ code: 'EF_TENSOR_INVALID' });
    } finally {
      await check.close();
    }
  });

  it('stops its idle worker (onnxruntime holds tens of MB) and starts a fresh one for the next upload', async () => {
    const check = createModelCheck({ timeoutMs: 30_000, idleMs: 1 });
    try {
      const ports = () => process.getActiveResourcesInfo().filter((r) => r === 'MessagePort').length;
      const before = ports();
      await check.check(identityModel().bytes, [], outputs);
      // The witness: the worker's message port is there while it lives, and goes once it is stopped.
      expect(ports()).toBe(before + 1);
      const deadline = Date.now() + 10_000;
      while (ports() > before && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(ports()).toBe(before);
      const [vector] = await check.check(identityModel().bytes, sample, outputs);
      expect(vector?.outputs[0]?.name).toBe('y');
    } finally {
      await check.close();
    }
  });

  it('gives up on a model that takes longer than its time bound, with a code that names the setting', async () => {
    const check = createModelCheck({ timeoutMs: 1 });
    try {
      for (let attempt = 0; attempt < 2; attempt++) {
        const slow = await check.check(identityModel().bytes, sample, outputs).catch((error: unknown) => error);
        expect(slow).toMatchObject({ code: 'EF_MODEL_INVALID' });
        expect(String((slow as Error).message)).toMatch(/within 1 ms \(EDGEFLEET_MODEL_LOAD_TIMEOUT_MS\)/);
      }
    } finally {
      await check.close();
    }
  });
});

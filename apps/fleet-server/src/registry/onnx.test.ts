import { mkdtemp, open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildOnnxModel, int8LinearModel, mlpModel, PADDLE_OCR_DET_PATH, readModel, SILERO_VAD_V5_PATH } from '@edgefleet/test-utils';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readOnnxSummary } from './onnx.ts';

const dir = await mkdtemp(join(tmpdir(), 'edgefleet-onnx-'));
let counter = 0;

async function summarize(bytes: Uint8Array) {
  const path = join(dir, `m${counter++}.onnx`);
  await writeFile(path, bytes);
  const handle = await open(path, 'r');
  try {
    return await readOnnxSummary(handle);
  } finally {
    await handle.close();
  }
}

describe('ONNX summary', () => {
  it('reads Silero VAD v5: inputs, outputs, opsets, operators', async () => {
    const summary = await summarize(readModel(SILERO_VAD_V5_PATH));
    expect(summary.inputs).toEqual([
      { name: 'input', dtype: 'float32', shape: [expect.anything(), expect.anything()] },
      { name: 'state', dtype: 'float32', shape: [2, expect.anything(), 128] },
      { name: 'sr', dtype: 'int64', shape: [] },
    ]);
    expect(summary.outputs.map((o) => o.name)).toEqual(['output', 'stateN']);
    expect(summary.opsets.find((o) => o.domain === '')?.version).toBeGreaterThanOrEqual(13);
    expect(summary.operators).toContain('If');
    expect(summary.quantization.quantized).toBe(false);
  });

  it('reads the PaddleOCR v4 detector with dynamic image dims', async () => {
    const summary = await summarize(readModel(PADDLE_OCR_DET_PATH));
    expect(summary.inputs).toEqual([{ name: 'x', dtype: 'float32', shape: [expect.anything(), 3, expect.anything(), expect.anything()] }]);
    expect(summary.nodeCount).toBeGreaterThan(100);
    expect(summary.operators).toContain('Conv');
  });

  it('detects integer quantization (DynamicQuantizeLinear + MatMulInteger)', async () => {
    const summary = await summarize(int8LinearModel().bytes);
    expect(summary.quantization).toEqual({ quantized: true, formats: ['integer-ops', 'dynamic'] });
  });

  it('detects QDQ quantization', async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [1, 4] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [1, 4] }],
      initializers: [
        { name: 's', dtype: 'float32', dims: [], data: Float32Array.from([0.1]) },
        { name: 'z', dtype: 'int8', dims: [], data: Int8Array.from([0]) },
      ],
      nodes: [
        { op: 'QuantizeLinear', inputs: ['x', 's', 'z'], outputs: ['q'] },
        { op: 'DequantizeLinear', inputs: ['q', 's', 'z'], outputs: ['y'] },
      ],
    });
    expect((await summarize(bytes)).quantization).toEqual({ quantized: true, formats: ['qdq'] });
  });

  it('keeps initializers that old exporters list as inputs out of the inputs', async () => {
    const model = mlpModel();
    const summary = await summarize(model.bytes);
    expect(summary.inputs.map((i) => i.name)).toEqual(['features']);
    expect(summary.inputs[0]?.shape).toEqual(['batch', 4]);
  });

  it('refuses a model whose initializer lives in an external file, without reading it', async () => {
    const bytes = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [1, 3] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [1, 3] }],
      initializers: [{ name: 'w', dtype: 'float32', dims: [3], data: new Float32Array(3) }],
      externalData: { w: '../../etc/passwd' },
      nodes: [{ op: 'Add', inputs: ['x', 'w'], outputs: ['y'] }],
    });
    await expect(summarize(bytes)).rejects.toMatchObject({ code: 'EF_ONNX_EXTERNAL_DATA' });
  });

  it.each([
    ['random bytes', Uint8Array.from({ length: 1000 }, (_, i) => (i * 131 + 7) % 256)],
    ['an empty file', new Uint8Array(0)],
    ['a truncated Silero', readModel(SILERO_VAD_V5_PATH).subarray(0, 100_000)],
    ['a JSON file', new TextEncoder().encode('{"model": "not onnx"}')],
  ])('refuses %s with EF_ONNX_INVALID', async (_name, bytes) => {
    await expect(summarize(bytes)).rejects.toMatchObject({ code: 'EF_ONNX_INVALID' });
  });

  it('answers arbitrary bytes with a coded error only, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
        try {
          await summarize(bytes);
        } catch (error) {
          expect(['EF_ONNX_INVALID', 'EF_ONNX_EXTERNAL_DATA']).toContain((error as { code?: string }).code);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('answers single-byte corruptions of a real model with a summary or a coded error', async () => {
    const model = mlpModel().bytes;
    await fc.assert(
      fc.asyncProperty(fc.nat(model.length - 1), fc.integer({ min: 0, max: 255 }), async (at, value) => {
        const corrupted = model.slice();
        corrupted[at] = value;
        try {
          await summarize(corrupted);
        } catch (error) {
          expect(['EF_ONNX_INVALID', 'EF_ONNX_EXTERNAL_DATA']).toContain((error as { code?: string }).code);
        }
      }),
      { numRuns: 200 },
    );
  });
});

import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { buildOnnxModel } from '../onnx/index.ts';
import { type FixtureModel, heavyMlpModel, identityModel, int8LinearModel, mlpModel, seededValues } from './index.ts';

async function runFixture(model: FixtureModel, input: Float32Array): Promise<ort.Tensor> {
  const session = await ort.InferenceSession.create(model.bytes);
  try {
    const outputs = await session.run({ [model.inputName]: new ort.Tensor('float32', input, [...model.inputShape]) });
    const output = outputs[model.outputName];
    if (!output) throw new Error(`no output ${model.outputName}`);
    return output;
  } finally {
    await session.release();
  }
}

describe('fixture models in onnxruntime-web (WASM)', () => {
  it('runs the identity model', async () => {
    const model = identityModel();
    const input = Float32Array.from([1, -2, 3.5, 0]);
    expect(Array.from((await runFixture(model, input)).data as Float32Array)).toEqual(Array.from(input));
  });

  it('runs the MLP with a dynamic batch and matches the reference within 1e-6', async () => {
    const model = mlpModel();
    const input = seededValues(8, 42);
    const output = await runFixture(model, input);
    expect(output.dims).toEqual([2, 3]);
    const expected = model.reference(input);
    for (const [i, value] of (output.data as Float32Array).entries()) expect(value).toBeCloseTo(expected[i] ?? Number.NaN, 6);
  });

  it('runs the heavy MLP (same signature as the MLP, thousands of times the work) and matches its reference', async () => {
    const model = heavyMlpModel(64, 3);
    const input = seededValues(8, 42);
    const output = await runFixture(model, input);
    expect(output.dims).toEqual([2, 3]);
    const expected = model.reference(input);
    for (const [i, value] of (output.data as Float32Array).entries()) expect(value).toBeCloseTo(expected[i] ?? Number.NaN, 4);
    expect(expected.some((v) => v !== 0)).toBe(true);
  });

  it('runs the int8 quantized layer (DynamicQuantizeLinear + MatMulInteger) close to its float reference', async () => {
    const model = int8LinearModel();
    const input = seededValues(16, 5);
    const output = await runFixture(model, input);
    expect(output.dims).toEqual([2, 4]);
    const expected = model.reference(input);
    const worst = Math.max(...Array.from(output.data as Float32Array, (v, i) => Math.abs(v - (expected[i] ?? 0))));
    // Quantization error for 8 products of |x|,|w| <= 1 at 8 bits: a few hundredths at most.
    expect(worst).toBeLessThan(0.05);
    expect(worst).toBeGreaterThan(0); // it really is quantized arithmetic, not float
  });

  it('builds a model with symbolic dims that onnxruntime reports as declared', async () => {
    const session = await ort.InferenceSession.create(
      buildOnnxModel({
        inputs: [{ name: 'a', dtype: 'int64', shape: ['n'] }],
        outputs: [{ name: 'b', dtype: 'int64', shape: ['n'] }],
        nodes: [{ op: 'Neg', inputs: ['a'], outputs: ['b'] }],
      }),
    );
    expect(session.inputNames).toEqual(['a']);
    const { b } = await session.run({ a: new ort.Tensor('int64', BigInt64Array.from([1n, -2n]), [2]) });
    expect(Array.from(b?.data as BigInt64Array)).toEqual([-1n, 2n]);
    await session.release();
  });
});

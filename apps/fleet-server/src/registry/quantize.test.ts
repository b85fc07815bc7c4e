/**
 * The int8 quantizer on real onnxruntime-web sessions: what the rewritten graph computes is checked
 * against the quantization arithmetic written out here (ONNX's DynamicQuantizeLinear and
 * MatMulInteger definitions), and against the float model it approximates.
 */
import { open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildOnnxModel,
  heavyMlpModel,
  identityModel,
  MLP_INPUTS,
  MLP_OUTPUTS,
  mlpModel,
  PADDLE_OCR_REC_PATH,
  readModel,
  SILERO_VAD_V5_PATH,
  seededValues,
} from '@edgefleet/test-utils';
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';
import { readOnnxSummary } from './onnx.ts';
import { quantizeDynamicInt8, quantizeWeights } from './quantize.ts';

ort.env.wasm.numThreads = 1;

async function run(bytes: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ['wasm'] });
  try {
    return (await session.run(feeds)) as Record<string, ort.Tensor>;
  } finally {
    await session.release();
  }
}

/** ONNX DynamicQuantizeLinear: uint8, the range widened to include 0, round half to even. */
function dynamicQuantize(x: Float32Array): { q: Uint8Array; scale: number; zero: number } {
  const min = Math.min(0, ...x);
  const max = Math.max(0, ...x);
  const scale = Math.fround((max - min) / 255);
  const even = (v: number) => {
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  const zero = Math.max(0, Math.min(255, even(-min / scale)));
  return { q: Uint8Array.from(x, (v) => Math.max(0, Math.min(255, even(v / scale) + zero))), scale, zero };
}

/** y = relu(dequant(quant(x) · W_q) + b) for the MLP fixture's weights, quantized per column. */
function int8Reference(seed: number, x: Float32Array): Float32Array {
  const weights = seededValues(12, seed, 0.5);
  const bias = seededValues(3, seed + 4, 0.1);
  const { q: wq, scales } = quantizeWeights(weights, 4, 3);
  const { q, scale, zero } = dynamicQuantize(x);
  const rows = x.length / 4;
  const out = new Float32Array(rows * 3);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < 3; c++) {
      let acc = 0;
      for (let k = 0; k < 4; k++) acc += ((q[r * 4 + k] as number) - zero) * (wq[k * 3 + c] as number);
      out[r * 3 + c] = Math.max(0, Math.fround(acc * Math.fround(scale * (scales[c] as number))) + (bias[c] as number));
    }
  }
  return out;
}

const maxError = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs((a[i] as number) - (b[i] as number)));
  return worst;
};

describe('dynamic int8 quantization', () => {
  it('rewrites MatMul with constant weights into DynamicQuantizeLinear + MatMulInteger that computes exactly the int8 arithmetic', async () => {
    const model = mlpModel(7);
    const result = quantizeDynamicInt8(model.bytes);
    expect(result).toMatchObject({ quantized: 1, skipped: [], weights: 12 });
    const x = seededValues(5 * 4, 31);
    const { scores } = await run(result.bytes, { features: new ort.Tensor('float32', x, [5, 4]) });
    expect(scores?.dims).toEqual([5, 3]);
    expect(maxError(scores?.data as Float32Array, int8Reference(7, x))).toBeLessThan(1e-5);
    // And it approximates the float model: int8 error, not another function.
    const float = model.reference(x);
    expect(maxError(scores?.data as Float32Array, float)).toBeLessThan(0.02);
    expect(maxError(scores?.data as Float32Array, float)).toBeGreaterThan(0);
    // The registry reads it as a dynamically quantized model with the same signature.
    const path = join(tmpdir(), `edgefleet-int8-${process.pid}.onnx`);
    await writeFile(path, result.bytes);
    const handle = await open(path, 'r');
    const summary = await readOnnxSummary(handle).finally(() => handle.close());
    expect(summary.inputs).toEqual(MLP_INPUTS);
    expect(summary.outputs).toEqual(MLP_OUTPUTS);
    expect(summary.quantization.quantized).toBe(true);
    expect(summary.operators).toEqual(expect.arrayContaining(['DynamicQuantizeLinear', 'MatMulInteger']));
    expect(summary.operators).not.toContain('MatMul');
  });

  it('makes a wide network about 4x smaller and keeps its answers within the int8 error', async () => {
    const model = heavyMlpModel(256, 4, 5);
    const result = quantizeDynamicInt8(model.bytes);
    expect(result.quantized).toBe(5);
    expect(result.bytes.length / model.bytes.length).toBeLessThan(0.3);
    const x = seededValues(8 * 4, 77);
    const { scores } = await run(result.bytes, { features: new ort.Tensor('float32', x, [8, 4]) });
    const float = model.reference(x);
    const range = Math.max(...float.map(Math.abs));
    expect(maxError(scores?.data as Float32Array, float) / range).toBeLessThan(0.05);
  });

  it('quantizes a Gemm with transB, alpha, beta and a bias', async () => {
    const b = seededValues(3 * 6, 4, 0.8); // [N=3, K=6], transposed
    const c = seededValues(3, 5, 0.5);
    const bytes = buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', 6] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 3] }],
      initializers: [
        { name: 'B', dtype: 'float32', dims: [3, 6], data: b },
        { name: 'C', dtype: 'float32', dims: [3], data: c },
      ],
      nodes: [
        { op: 'Gemm', inputs: ['x', 'B', 'C'], outputs: ['y'], attributes: { transB: 1, alpha: { float: 0.5 }, beta: { float: 2 } } },
      ],
    });
    const x = seededValues(4 * 6, 8);
    const float = new Float32Array(4 * 3);
    for (let r = 0; r < 4; r++) {
      for (let n = 0; n < 3; n++) {
        let sum = 0;
        for (let k = 0; k < 6; k++) sum += (x[r * 6 + k] as number) * (b[n * 6 + k] as number);
        float[r * 3 + n] = 0.5 * sum + 2 * (c[n] as number);
      }
    }
    const before = await run(bytes, { x: new ort.Tensor('float32', x, [4, 6]) });
    expect(maxError(before.y?.data as Float32Array, float)).toBeLessThan(1e-5);
    const result = quantizeDynamicInt8(bytes);
    expect(result.quantized).toBe(1);
    const { y } = await run(result.bytes, { x: new ort.Tensor('float32', x, [4, 6]) });
    expect(maxError(y?.data as Float32Array, float)).toBeLessThan(0.03);
  });

  it('refuses a shipped model whose layers live in subgraphs (Silero VAD v5: one If branch per sample rate), saying what to do', () => {
    expect(() => quantizeDynamicInt8(readModel(SILERO_VAD_V5_PATH))).toThrow(
      expect.objectContaining({
        code: 'EF_VARIANT_INVALID',
        message: expect.stringContaining('upload an int8 build of the model as a variant'),
      }),
    );
  });

  it('quantizes a shipped model (PaddleOCR v4 recognizer: opset 9, weights in Constant nodes), which reads the same text', async () => {
    const bytes = readModel(PADDLE_OCR_REC_PATH);
    const result = quantizeDynamicInt8(bytes);
    // Its linear layers; the attention products (both operands computed) stay in float.
    expect(result.quantized).toBe(9);
    expect(result.skipped.every((s) => s.reason.includes('not a float32 constant'))).toBe(true);
    expect(result.bytes.length).toBeLessThan(bytes.length * 0.75);
    const x = Float32Array.from({ length: 3 * 48 * 320 }, (_, i) => Math.sin(i * 0.37) * 0.8);
    const float = await run(bytes, { x: new ort.Tensor('float32', x, [1, 3, 48, 320]) });
    const int8 = await run(result.bytes, { x: new ort.Tensor('float32', x, [1, 3, 48, 320]) });
    const [a, b] = [Object.values(float)[0] as ort.Tensor, Object.values(int8)[0] as ort.Tensor];
    expect(b.dims).toEqual(a.dims);
    const classes = a.dims.at(-1) as number;
    const argmax = (data: Float32Array, row: number) => {
      let best = 0;
      for (let c = 1; c < classes; c++) if ((data[row * classes + c] as number) > (data[row * classes + best] as number)) best = c;
      return best;
    };
    const steps = (a.data as Float32Array).length / classes;
    for (let row = 0; row < steps; row++) expect(argmax(b.data as Float32Array, row)).toBe(argmax(a.data as Float32Array, row));
    expect(maxError(a.data as Float32Array, b.data as Float32Array)).toBeLessThan(0.1);
  });

  it('refuses a model with nothing to quantize, or an operator set older than DynamicQuantizeLinear, with EF_VARIANT_INVALID', () => {
    expect(() => quantizeDynamicInt8(identityModel().bytes)).toThrow(expect.objectContaining({ code: 'EF_VARIANT_INVALID' }));
    const old = buildOnnxModel({
      opset: 10,
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      initializers: [{ name: 'W', dtype: 'float32', dims: [4, 3], data: seededValues(12) }],
      nodes: [{ op: 'MatMul', inputs: ['features', 'W'], outputs: ['scores'] }],
    });
    expect(() => quantizeDynamicInt8(old)).not.toThrow(); // moved to 11: MatMul is the same there
    const padded = buildOnnxModel({
      opset: 10,
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      initializers: [{ name: 'W', dtype: 'float32', dims: [4, 3], data: seededValues(12) }],
      nodes: [
        { op: 'Pad', inputs: ['features'], outputs: ['padded'], attributes: { pads: [0, 0, 0, 0] } },
        { op: 'MatMul', inputs: ['padded', 'W'], outputs: ['scores'] },
      ],
    });
    expect(() => quantizeDynamicInt8(padded)).toThrow(/uses Pad, whose definition changed by opset 11/);
    const ancient = buildOnnxModel({
      ...{ opset: 6 },
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      nodes: [{ op: 'Identity', inputs: ['features'], outputs: ['scores'] }],
    });
    expect(() => quantizeDynamicInt8(ancient)).toThrow(/operator set at 7 or above/);
    expect(() => quantizeDynamicInt8(Uint8Array.from([0x3a, 0x05, 1, 2]))).toThrow(expect.objectContaining({ code: 'EF_ONNX_INVALID' }));
  });
});

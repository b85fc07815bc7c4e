/**
 * Small real models the tests build themselves, each with a reference implementation in plain
 * TypeScript so a test can check what onnxruntime computes.
 */
import { splitmix } from '@edgefleet/drift';
import type { TensorSpec } from '@edgefleet/protocol';
import { buildOnnxModel } from '../onnx/index.ts';

/** The inputs and outputs of mlpModel and heavyMlpModel, as a manifest declares them. */
export const MLP_INPUTS: TensorSpec[] = [{ name: 'features', dtype: 'float32', shape: ['batch', 4] }];
export const MLP_OUTPUTS: TensorSpec[] = [{ name: 'scores', dtype: 'float32', shape: ['batch', 3] }];

export interface FixtureModel {
  readonly bytes: Uint8Array;
  /** What the model computes, written out in TypeScript. */
  readonly reference: (input: Float32Array) => Float32Array;
  readonly inputName: string;
  readonly outputName: string;
  readonly inputShape: readonly number[];
}

/** The tests' one PRNG: @edgefleet/drift's splitmix32 (the simulator, which ships, draws from it too). */
export { splitmix };

/** `count` deterministic values in [-scale, scale), from splitmix: fixture weights and inputs never change. */
export function seededValues(count: number, seed = 1, scale = 1): Float32Array {
  const random = splitmix(seed);
  return Float32Array.from({ length: count }, () => (random() * 2 - 1) * scale);
}

/** y = x, float32 [1, 4]. */
export function identityModel(): FixtureModel {
  return {
    bytes: buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: [1, 4] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: [1, 4] }],
      nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }],
    }),
    reference: (x) => Float32Array.from(x),
    inputName: 'x',
    outputName: 'y',
    inputShape: [1, 4],
  };
}

/**
 * y = relu(x · W + b): float32 [batch, 4] → [batch, 3], with a dynamic batch dimension. Another
 * seed gives other weights: another "version" of the model.
 */
export function mlpModel(seed = 7): FixtureModel {
  const weights = seededValues(12, seed, 0.5);
  const bias = seededValues(3, seed + 4, 0.1);
  return {
    bytes: buildOnnxModel({
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      initializers: [
        { name: 'W', dtype: 'float32', dims: [4, 3], data: weights },
        { name: 'b', dtype: 'float32', dims: [3], data: bias },
      ],
      nodes: [
        { op: 'MatMul', inputs: ['features', 'W'], outputs: ['xw'] },
        { op: 'Add', inputs: ['xw', 'b'], outputs: ['pre'] },
        { op: 'Relu', inputs: ['pre'], outputs: ['scores'] },
      ],
    }),
    reference: (x) => {
      const rows = x.length / 4;
      const out = new Float32Array(rows * 3);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < 3; c++) {
          let sum = bias[c] ?? 0;
          for (let k = 0; k < 4; k++) sum += (x[r * 4 + k] ?? 0) * (weights[k * 3 + c] ?? 0);
          out[r * 3 + c] = Math.max(0, sum);
        }
      }
      return out;
    },
    inputName: 'features',
    outputName: 'scores',
    inputShape: [2, 4],
  };
}

/**
 * The same signature as {@link mlpModel} (features [batch, 4] → scores [batch, 3]) with a deep,
 * wide hidden stack: a version that computes the same kind of answer far more slowly (about
 * `layers · width²` multiply-adds per row instead of 12), for latency gates.
 */
export function heavyMlpModel(width = 256, layers = 6, seed = 11): FixtureModel {
  const dims = [4, ...Array.from({ length: layers }, () => width), 3];
  const weights = dims
    .slice(1)
    .map((out, index) => seededValues((dims[index] as number) * out, seed + index, 1 / Math.sqrt(dims[index] as number)));
  const nodes: { op: string; inputs: string[]; outputs: string[] }[] = [];
  let current = 'features';
  weights.forEach((_, index) => {
    const last = index === weights.length - 1;
    nodes.push({ op: 'MatMul', inputs: [current, `W${index}`], outputs: [last ? 'scores' : `h${index}`] });
    if (!last) {
      nodes.push({ op: 'Relu', inputs: [`h${index}`], outputs: [`r${index}`] });
      current = `r${index}`;
    }
  });
  return {
    bytes: buildOnnxModel({
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      initializers: weights.map((data, index) => ({
        name: `W${index}`,
        dtype: 'float32' as const,
        dims: [dims[index] as number, dims[index + 1] as number],
        data,
      })),
      nodes,
    }),
    reference: (x) => {
      const rows = x.length / 4;
      let activations = Float32Array.from(x);
      weights.forEach((w, index) => {
        const [inner, outer] = [dims[index] as number, dims[index + 1] as number];
        const next = new Float32Array(rows * outer);
        for (let r = 0; r < rows; r++) {
          for (let c = 0; c < outer; c++) {
            let sum = 0;
            for (let k = 0; k < inner; k++) sum += (activations[r * inner + k] ?? 0) * (w[k * outer + c] ?? 0);
            next[r * outer + c] = index === weights.length - 1 ? sum : Math.max(0, sum);
          }
        }
        activations = next;
      });
      return activations;
    },
    inputName: 'features',
    outputName: 'scores',
    inputShape: [2, 4],
  };
}

/**
 * An int8 dynamically quantized linear layer, as onnxruntime's quantize_dynamic writes it:
 * DynamicQuantizeLinear(x) → MatMulInteger(x_q, W_q) → Cast → Mul(scale_x · scale_w).
 * float32 [batch, 8] → [batch, 4].
 */
export function int8LinearModel(): FixtureModel {
  const floatWeights = seededValues(32, 3, 1);
  // 7-bit weights, as quantizers make them for CPUs without VNNI (full range saturates there:
  // onnxruntime-node answered 0.45 off on an AVX2-only CPU).
  const weightScale = Math.max(...floatWeights.map(Math.abs)) / 63;
  const quantized = Int8Array.from(floatWeights, (w) => Math.round(w / weightScale));
  return {
    bytes: buildOnnxModel({
      inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', 8] }],
      outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 4] }],
      initializers: [
        { name: 'W_q', dtype: 'int8', dims: [8, 4], data: quantized },
        { name: 'W_zero', dtype: 'int8', dims: [], data: Int8Array.from([0]) },
        { name: 'W_scale', dtype: 'float32', dims: [], data: Float32Array.from([weightScale]) },
      ],
      nodes: [
        { op: 'DynamicQuantizeLinear', inputs: ['x'], outputs: ['x_q', 'x_scale', 'x_zero'] },
        { op: 'MatMulInteger', inputs: ['x_q', 'W_q', 'x_zero', 'W_zero'], outputs: ['acc'] },
        { op: 'Cast', inputs: ['acc'], outputs: ['acc_f'], attributes: { to: 1 } },
        { op: 'Mul', inputs: ['x_scale', 'W_scale'], outputs: ['scale'] },
        { op: 'Mul', inputs: ['acc_f', 'scale'], outputs: ['y'] },
      ],
    }),
    // The float computation the quantized graph approximates (within quantization error).
    reference: (x) => {
      const rows = x.length / 8;
      const out = new Float32Array(rows * 4);
      for (let r = 0; r < rows; r++) {
        for (let c = 0; c < 4; c++) {
          let sum = 0;
          for (let k = 0; k < 8; k++) sum += (x[r * 8 + k] ?? 0) * (floatWeights[k * 4 + c] ?? 0);
          out[r * 4 + c] = sum;
        }
      }
      return out;
    },
    inputName: 'x',
    outputName: 'y',
    inputShape: [2, 8],
  };
}

/**
 * {@link mlpModel} quantized as onnxruntime's quantize_dynamic does it (int8 weights, symmetric,
 * per tensor): the same network, another artifact. Its reference is the float model's: what a
 * variant's tolerance is measured against.
 */
export function quantizedMlpModel(seed = 7): FixtureModel {
  const float = mlpModel(seed);
  const weights = seededValues(12, seed, 0.5);
  const bias = seededValues(3, seed + 4, 0.1);
  // 7-bit weights (onnxruntime's reduce_range): full range saturates on CPUs without VNNI.
  const weightScale = Math.max(...weights.map(Math.abs)) / 63;
  return {
    ...float,
    bytes: buildOnnxModel({
      inputs: MLP_INPUTS,
      outputs: MLP_OUTPUTS,
      initializers: [
        { name: 'W_q', dtype: 'int8', dims: [4, 3], data: Int8Array.from(weights, (w) => Math.round(w / weightScale)) },
        { name: 'W_zero', dtype: 'int8', dims: [], data: Int8Array.from([0]) },
        { name: 'W_scale', dtype: 'float32', dims: [], data: Float32Array.from([weightScale]) },
        { name: 'b', dtype: 'float32', dims: [3], data: bias },
      ],
      nodes: [
        { op: 'DynamicQuantizeLinear', inputs: ['features'], outputs: ['x_q', 'x_scale', 'x_zero'] },
        { op: 'MatMulInteger', inputs: ['x_q', 'W_q', 'x_zero', 'W_zero'], outputs: ['acc'] },
        { op: 'Cast', inputs: ['acc'], outputs: ['acc_f'], attributes: { to: 1 } },
        { op: 'Mul', inputs: ['x_scale', 'W_scale'], outputs: ['scale'] },
        { op: 'Mul', inputs: ['acc_f', 'scale'], outputs: ['xw'] },
        { op: 'Add', inputs: ['xw', 'b'], outputs: ['pre'] },
        { op: 'Relu', inputs: ['pre'], outputs: ['scores'] },
      ],
    }),
  };
}

/**
 * Golden outputs computed on the server from sample inputs, with the engine family devices use
 * (onnxruntime-web, WASM): the acceptance test a device runs then compares like with like.
 */
import { decodeTensor, EdgefleetError, encodeTensor, type GoldenVector, type TensorData, type TensorSpec } from '@edgefleet/protocol';
import * as ort from 'onnxruntime-web';

export async function computeGoldenVectors(model: Uint8Array, samples: TensorData[][], outputs: TensorSpec[]): Promise<GoldenVector[]> {
  const session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'] }).catch((cause: unknown) => {
    throw new EdgefleetError('EF_ONNX_INVALID', `onnxruntime-web cannot load the model: ${(cause as Error).message}`, { cause });
  });
  try {
    const vectors: GoldenVector[] = [];
    for (const [index, inputs] of samples.entries()) {
      const feeds: Record<string, ort.Tensor> = {};
      for (const input of inputs) {
        const decoded = decodeTensor(input);
        feeds[input.name] = new ort.Tensor(decoded.dtype, decoded.data as Float32Array, [...decoded.shape]);
      }
      const results = await session.run(feeds).catch((cause: unknown) => {
        throw new EdgefleetError('EF_TENSOR_INVALID', `sample input ${index} does not run on the model: ${(cause as Error).message}`, {
          cause,
        });
      });
      const expected: TensorData[] = [];
      for (const spec of outputs) {
        const tensor = results[spec.name];
        if (!tensor || spec.dtype === 'string' || tensor.type === 'string') continue; // strings cannot be golden vectors
        expected.push(encodeTensor(spec.name, spec.dtype, tensor.dims, tensor.data as Float32Array));
      }
      vectors.push({ inputs, outputs: expected });
    }
    return vectors;
  } finally {
    await session.release();
  }
}

/**
 * The evaluation's onnxruntime side: a worker thread holding one session (evaluate-worker.mjs),
 * and a batch of samples turned into feeds (one tensor per input when the model takes a batch, one
 * run per sample otherwise) and back into each sample's output row.
 */
import { Worker } from 'node:worker_threads';
import { EdgefleetError, type TensorSpec } from '@edgefleet/protocol';
import type { BatchInput } from './dataset.ts';

type Feed = { name: string; dtype: string; shape: number[]; data: ArrayLike<number | bigint> };
type Output = { name: string; type: string; dims: number[]; data: ArrayLike<number | bigint> };

/** A worker with one session; every call has the timeout, and a stuck worker is terminated. */
export function startSession(timeoutMs: number) {
  const worker = new Worker(new URL('./evaluate-worker.mjs', import.meta.url));
  let nextId = 0;
  const pending = new Map<number, { resolve(value: unknown): void; reject(error: Error): void }>();
  const fail = (error: Error) => {
    for (const job of pending.values()) job.reject(error);
    pending.clear();
  };
  worker.on('message', (answer: { id: number; ok: boolean; message?: string }) => {
    const job = pending.get(answer.id);
    pending.delete(answer.id);
    if (answer.ok) job?.resolve(answer);
    else job?.reject(new Error(answer.message));
  });
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`onnxruntime stopped (worker exit code ${code})`)));
  const call = <T>(message: Record<string, unknown>): Promise<T> => {
    const id = nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        void worker.terminate();
        reject(new Error(`onnxruntime did not answer within ${timeoutMs} ms (EDGEFLEET_MODEL_LOAD_TIMEOUT_MS)`));
      }, timeoutMs);
      pending.set(id, {
        resolve: (value) => {
          clearTimeout(timer);
          resolve(value as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      worker.postMessage({ ...message, id });
    });
  };
  return {
    open: (model: Uint8Array) => call<{ inputs: string[]; outputs: string[] }>({ type: 'open', model }),
    run: (runs: Feed[][]) => call<{ results: Output[][] }>({ type: 'run', runs }),
    close: () => worker.terminate(),
  };
}

const TYPED: Record<string, (values: number[]) => ArrayLike<number | bigint>> = {
  float32: (v) => Float32Array.from(v),
  float64: (v) => Float64Array.from(v),
  int8: (v) => Int8Array.from(v),
  uint8: (v) => Uint8Array.from(v),
  int16: (v) => Int16Array.from(v),
  uint16: (v) => Uint16Array.from(v),
  int32: (v) => Int32Array.from(v),
  uint32: (v) => Uint32Array.from(v),
  int64: (v) => BigInt64Array.from(v, (x) => BigInt(Math.trunc(x))),
  uint64: (v) => BigUint64Array.from(v, (x) => BigInt(Math.max(0, Math.trunc(x)))),
  bool: (v) => Uint8Array.from(v, (x) => (x ? 1 : 0)),
};

function typed(spec: TensorSpec, values: number[]): ArrayLike<number | bigint> {
  const make = TYPED[spec.dtype];
  if (!make)
    throw new EdgefleetError(
      'EF_EVALUATION_FAILED',
      `input "${spec.name}" is ${spec.dtype}; evaluation feeds numeric inputs other than float16`,
    );
  return make(values);
}

/** The shape one sample runs with: a batch axis of 1 when the model declares one. */
function sampleShape(spec: TensorSpec, rowShape: readonly number[]): number[] {
  return spec.shape.length === rowShape.length + 1 ? [1, ...rowShape] : [...rowShape];
}

/** Can this batch run as one tensor per input? Only with a free first axis and rows of one shape. */
function batchable(specs: readonly TensorSpec[], inputs: ReadonlyMap<string, BatchInput>): boolean {
  return specs.every((spec) => {
    const input = inputs.get(spec.name);
    const first = spec.shape[0];
    return (
      input !== undefined &&
      spec.shape.length === input.rowShape.length + 1 &&
      (typeof first === 'string' || (typeof first === 'number' && first < 0)) &&
      input.shapes.every((s) => s.join() === input.rowShape.join())
    );
  });
}

/** Runs one batch (one tensor per input, or one run per sample); each sample's output row. */
export async function runBatch(
  session: ReturnType<typeof startSession>,
  specs: readonly TensorSpec[],
  outputName: string,
  inputs: ReadonlyMap<string, BatchInput>,
  count: number,
  batching: boolean,
  before: number,
): Promise<ArrayLike<number | bigint>[]> {
  const pick = (outputs: Output[], sample: number) => {
    const output = outputs.find((o) => o.name === outputName);
    if (!output) throw new EdgefleetError('EF_EVALUATION_FAILED', `sample ${sample}: the model produced no output "${outputName}"`);
    return output;
  };
  let answer: { results: Output[][] };
  if (batching && batchable(specs, inputs)) {
    const feeds = specs.map((spec) => {
      const input = inputs.get(spec.name) as BatchInput;
      return { name: spec.name, dtype: spec.dtype, shape: [count, ...input.rowShape], data: typed(spec, input.values) };
    });
    answer = await session.run([feeds]).catch((cause: unknown) => {
      throw new Error(`batch run failed: ${(cause as Error).message}`);
    });
    const output = pick(answer.results[0] ?? [], before + 1);
    const size = output.data.length / count;
    if (output.dims[0] !== count || !Number.isInteger(size)) throw new Error(`output "${outputName}" does not have one row per sample`);
    return Array.from({ length: count }, (_, i) => sliceOf(output.data, i * size, (i + 1) * size));
  }
  const runs: Feed[][] = [];
  const offsets = new Map(specs.map((spec) => [spec.name, 0]));
  for (let i = 0; i < count; i++) {
    runs.push(
      specs.map((spec) => {
        const input = inputs.get(spec.name) as BatchInput;
        const shape = input.shapes[i] as number[];
        const size = shape.reduce((a, b) => a * b, 1);
        const from = offsets.get(spec.name) as number;
        offsets.set(spec.name, from + size);
        return {
          name: spec.name,
          dtype: spec.dtype,
          shape: sampleShape(spec, shape),
          data: typed(spec, input.values.slice(from, from + size)),
        };
      }),
    );
  }
  try {
    answer = await session.run(runs);
  } catch (cause) {
    throw new EdgefleetError(
      'EF_EVALUATION_FAILED',
      `samples ${before + 1}-${before + count} do not run on the model: ${(cause as Error).message.slice(0, 300)}`,
      { cause },
    );
  }
  return answer.results.map((outputs, i) => pick(outputs, before + i + 1).data);
}

function sliceOf(data: ArrayLike<number | bigint>, from: number, to: number): ArrayLike<number | bigint> {
  const sliceable = data as unknown as { subarray?: (a: number, b: number) => ArrayLike<number | bigint> };
  return sliceable.subarray ? sliceable.subarray(from, to) : Array.prototype.slice.call(data, from, to);
}

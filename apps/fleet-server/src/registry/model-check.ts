/**
 * Registration loads every model in onnxruntime before signing it (THREATS 17): a file that parses
 * as ONNX but that no device could load (unknown operators, absurd dimensions, inconsistent shapes)
 * is refused at upload, not discovered on the fleet. Sample inputs run in the same session and
 * their outputs become the golden vectors, computed with the engine family devices use
 * (onnxruntime-web, WASM), so the acceptance test compares like with like.
 *
 * Bounds: the model loads in a worker thread, so a hang or a crash of onnxruntime never stalls the
 * server; a job that takes longer than `timeoutMs` kills the worker (a fresh one serves the next
 * upload). Memory is bounded by the worker's 4 GiB wasm32 address space (onnxruntime-web's WASM
 * build cannot allocate beyond it) and by the upload limit on the model's size.
 */
import { Worker } from 'node:worker_threads';
import { decodeTensor, EdgefleetError, encodeTensor, type GoldenVector, type TensorData, type TensorSpec } from '@edgefleet/protocol';

interface Job {
  readonly id: number;
  resolve(result: WorkerAnswer): void;
  reject(error: Error): void;
}

type WorkerAnswer =
  | {
      id: number;
      ok: true;
      inputs: string[];
      outputs: string[];
      results: { name: string; type: string; dims: number[]; data: ArrayLike<number | bigint> }[][];
    }
  | { id: number; ok: false; stage: 'load' | 'run'; index?: number; message: string };

export interface ModelCheck {
  /** Loads the model and runs the samples; the golden vectors of the samples (none without samples). */
  check(model: Uint8Array, samples: readonly (readonly TensorData[])[], outputs: readonly TensorSpec[]): Promise<GoldenVector[]>;
  close(): Promise<void>;
}

export function createModelCheck(options: {
  timeoutMs: number;
  /** An idle worker (onnxruntime's WASM heap, tens of MB) is stopped after this long; default 30 s. */
  idleMs?: number;
}): ModelCheck {
  let idleTimer: ReturnType<typeof setTimeout> | undefined;
  /** The live worker and the jobs sent to it (a worker that dies fails its own jobs only). */
  let current: { worker: Worker; pending: Map<number, Job> } | undefined;
  let queue: Promise<unknown> = Promise.resolve();
  let nextId = 0;

  function start(): { worker: Worker; pending: Map<number, Job> } {
    const started = { worker: new Worker(new URL('./load-worker.mjs', import.meta.url)), pending: new Map<number, Job>() };
    started.worker.unref(); // an idle checker never keeps the process alive
    started.worker.on('message', (answer: WorkerAnswer) => {
      const job = started.pending.get(answer.id);
      started.pending.delete(answer.id);
      job?.resolve(answer);
    });
    const fail = (error: Error) => {
      if (current === started) current = undefined;
      for (const job of started.pending.values()) job.reject(error);
      started.pending.clear();
    };
    started.worker.on('error', fail);
    started.worker.on('exit', (code) => fail(new Error(`onnxruntime stopped (worker exit code ${code})`)));
    return started;
  }

  /** Stops the worker once no upload has needed it for idleMs: registration is rare. */
  function idleLater(): void {
    if (idleTimer) clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      const idle = current;
      if (!idle || idle.pending.size > 0) return;
      current = undefined;
      void idle.worker.terminate();
    }, options.idleMs ?? 30_000);
    idleTimer.unref();
  }

  async function run(model: Uint8Array, samples: readonly (readonly TensorData[])[]): Promise<WorkerAnswer> {
    if (idleTimer) clearTimeout(idleTimer);
    current ??= start();
    const { worker, pending } = current;
    const id = nextId++;
    const feeds = samples.map((inputs) =>
      inputs.map((input) => {
        const decoded = decodeTensor(input);
        return { name: input.name, dtype: decoded.dtype, shape: [...decoded.shape], data: decoded.data };
      }),
    );
    return new Promise<WorkerAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`onnxruntime did not load and run it within ${options.timeoutMs} ms (EDGEFLEET_MODEL_LOAD_TIMEOUT_MS)`));
        // The worker may be stuck in the model: it goes, and the next upload gets a fresh one.
        if (current?.worker === worker) current = undefined;
        void worker.terminate();
      }, options.timeoutMs);
      pending.set(id, {
        id,
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      worker.postMessage({ id, model, samples: feeds });
    });
  }

  return {
    check(model, samples, outputs) {
      // One model at a time: registration is rare, and each load may take the worker's whole heap.
      const job = queue.then(async () => {
        let answer: WorkerAnswer;
        try {
          answer = await run(model, samples);
        } catch (cause) {
          throw new EdgefleetError('EF_MODEL_INVALID', `onnxruntime-web cannot load the model: ${(cause as Error).message}`, { cause });
        }
        if (!answer.ok) {
          if (answer.stage === 'load')
            throw new EdgefleetError('EF_MODEL_INVALID', `onnxruntime-web cannot load the model: ${answer.message}`);
          throw new EdgefleetError('EF_TENSOR_INVALID', `sample input ${answer.index} does not run on the model: ${answer.message}`);
        }
        return answer.results.map((produced, index): GoldenVector => {
          const expected: TensorData[] = [];
          for (const spec of outputs) {
            const tensor = produced.find((t) => t.name === spec.name);
            if (!tensor || spec.dtype === 'string' || tensor.type === 'string') continue; // strings cannot be golden vectors
            expected.push(encodeTensor(spec.name, spec.dtype, tensor.dims, tensor.data as Float32Array));
          }
          return { inputs: [...(samples[index] ?? [])], outputs: expected };
        });
      });
      queue = job.catch(() => undefined);
      void queue.then(idleLater);
      return job;
    },
    async close() {
      if (idleTimer) clearTimeout(idleTimer);
      const closing = current;
      current = undefined;
      await closing?.worker.terminate();
    },
  };
}

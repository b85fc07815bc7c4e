/**
 * One engine over onnxruntime's JavaScript API, which onnxruntime-web (wasm, webgpu) and
 * onnxruntime-node (cpu) share (onnxruntime-common). The entry points pass in the module, so this
 * file imports neither: a browser bundle never pulls the native runtime, and Node never loads the
 * browser build.
 */
import { EdgefleetError, type ExecutionProvider } from '@edgefleet/protocol';
import type { InferenceSession, Tensor } from 'onnxruntime-web';
import type { Engine, EngineSession, Feeds, Outputs, ProviderAvailability, RuntimeTensor } from './types.ts';

/** The part of an onnxruntime module the engine uses (both onnxruntime-web and -node fit it). */
export interface OrtModule {
  readonly InferenceSession: { create(model: Uint8Array, options?: InferenceSession.SessionOptions): Promise<InferenceSession> };
  readonly Tensor: new (type: Tensor.Type, data: Tensor.DataType, dims?: readonly number[]) => Tensor;
}

/**
 * Probes whether one execution provider can run here: resolves to the reason when it cannot
 * (a string), or to nothing or what it found when it can (a software adapter, its description).
 */
export type ProviderProbe = () => Promise<string | undefined | { readonly fallbackAdapter?: boolean; readonly description?: string }>;

export interface OrtEngineOptions {
  /** "onnxruntime-web" or "onnxruntime-node": shown in models() and events. */
  readonly name: string;
  readonly ort: OrtModule;
  /** Execution providers in the order this device prefers them, each with its probe. */
  readonly providers: readonly { readonly executionProvider: ExecutionProvider; readonly probe?: ProviderProbe }[];
  /** Passed to every session (threads, optimization level...). */
  readonly sessionOptions?: InferenceSession.SessionOptions;
  /**
   * Copy model bytes before handing them over: onnxruntime-web's proxy worker transfers (detaches)
   * the buffer it is given.
   */
  readonly copyModelBytes?: boolean;
  /**
   * One call into this onnxruntime module at a time (create, run, release), across every engine
   * over it, the others waiting their turn.
   * onnxruntime-web's WebGPU build suspends the WASM module across awaits: a session created while
   * another runs there hangs the page (test-utils' engine contract, "runs two sessions at once").
   */
  readonly exclusive?: boolean;
}

/** Our provider names are onnxruntime's, except onnxruntime-node's default CPU provider. */
const ORT_PROVIDER: Record<ExecutionProvider, string> = { webgpu: 'webgpu', wasm: 'wasm', cpu: 'cpu' };

/** The last call queued on each onnxruntime module (engines over the same module share its turns). */
const turns = new WeakMap<OrtModule, Promise<unknown>>();

export function createOrtEngine(options: OrtEngineOptions): Engine {
  const { ort } = options;
  /** Runs `call` after every call queued on this module before it (settled either way) when exclusive. */
  const inTurn = <T>(call: () => Promise<T>): Promise<T> => {
    if (!options.exclusive) return call();
    const result = (turns.get(ort) ?? Promise.resolve()).then(call, call);
    turns.set(
      ort,
      result.catch(() => undefined),
    );
    return result;
  };
  return {
    name: options.name,

    async probe(): Promise<ProviderAvailability[]> {
      return Promise.all(
        options.providers.map(async ({ executionProvider, probe }): Promise<ProviderAvailability> => {
          const found = probe ? await probe().catch((error: unknown) => `probe failed: ${(error as Error).message}`) : undefined;
          if (typeof found === 'string') return { executionProvider, available: false, reason: found };
          return {
            executionProvider,
            available: true,
            ...(found?.fallbackAdapter ? { fallbackAdapter: true } : {}),
            ...(found?.description ? { description: found.description.slice(0, 200) } : {}),
          };
        }),
      );
    },

    async createSession(model, executionProvider): Promise<EngineSession> {
      let session: InferenceSession;
      try {
        session = await inTurn(() =>
          ort.InferenceSession.create(options.copyModelBytes ? model.slice() : model, {
            ...options.sessionOptions,
            executionProviders: [ORT_PROVIDER[executionProvider]],
          }),
        );
      } catch (cause) {
        throw new EdgefleetError(
          'EF_MODEL_INVALID',
          `${options.name} could not load the model on ${executionProvider}: ${messageOf(cause)}`,
          {
            cause,
            details: { engine: options.name, executionProvider },
          },
        );
      }
      return {
        executionProvider,
        inputNames: session.inputNames,
        outputNames: session.outputNames,
        run(feeds: Feeds): Promise<Outputs> {
          const ortFeeds: Record<string, Tensor> = {};
          for (const name in feeds) {
            const tensor = feeds[name] as Feeds[string];
            ortFeeds[name] = new ort.Tensor(tensor.dtype as Tensor.Type, tensor.data as Tensor.DataType, tensor.shape);
          }
          return inTurn(() => session.run(ortFeeds)).then(
            (results) => {
              const outputs: Outputs = {};
              for (const name in results) {
                const tensor = results[name] as Tensor;
                outputs[name] = {
                  dtype: tensor.type as RuntimeTensor['dtype'],
                  shape: tensor.dims,
                  data: tensor.data as RuntimeTensor['data'],
                };
              }
              return outputs;
            },
            (cause: unknown) => {
              throw new EdgefleetError('EF_INFERENCE_FAILED', `${options.name} (${executionProvider}) failed: ${messageOf(cause)}`, {
                cause,
                details: { engine: options.name, executionProvider },
              });
            },
          );
        },
        release: () => inTurn(() => session.release()),
      };
    },
  };
}

function messageOf(cause: unknown): string {
  return (cause instanceof Error ? cause.message : String(cause)).slice(0, 500);
}

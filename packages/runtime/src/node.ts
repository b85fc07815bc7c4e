/**
 * @edgefleet/runtime for Node devices: models in a folder on disk, onnxruntime-node (native, ~3x
 * faster) when it is installed and onnxruntime-web's WASM build otherwise or as the fallback.
 */
import { createHash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { createTrust } from '@edgefleet/protocol';
import { nodeVerify } from '@edgefleet/protocol/node';
import * as ortWeb from 'onnxruntime-web';
import { createOrtEngine, type OrtModule } from './engine/ort-engine.ts';
import type { Engine } from './engine/types.ts';
import type { HasherFactory } from './hash/index.ts';
import { createRuntime as createCoreRuntime, type Runtime, type RuntimeOptions } from './runtime/index.ts';
import { createFileModelStore } from './store/fs-store.ts';
import type { ModelStore } from './store/types.ts';

export * from './index.ts';
export { createFileModelStore, type FileModelStoreOptions } from './store/fs-store.ts';

export interface NodeRuntimeOptions extends Omit<RuntimeOptions, 'store' | 'engines'> {
  /** Where models are kept; default `$EDGEFLEET_DATA_DIR/models` or `./.edgefleet/models`. */
  readonly dir?: string;
  readonly store?: ModelStore;
  readonly engines?: readonly Engine[];
  /** Inference threads; default the number of cores, at most 4. */
  readonly threads?: number;
}

/** sha256 by Node's OpenSSL: several times faster than pure JavaScript on large models. */
export const createNodeHasher: HasherFactory = () => {
  const hash = createHash('sha256');
  return {
    update: (chunk) => {
      hash.update(chunk);
    },
    digest: () => hash.digest('hex'),
  };
};

/** onnxruntime-web's WASM engine for Node. */
export function createWasmEngine(threads = defaultThreads()): Engine {
  ortWeb.env.wasm.numThreads = threads;
  return createOrtEngine({ name: 'onnxruntime-web', ort: ortWeb as unknown as OrtModule, providers: [{ executionProvider: 'wasm' }] });
}

/** onnxruntime-node's native CPU engine, or undefined when the optional package is not installed. */
export async function createNativeEngine(threads = defaultThreads()): Promise<Engine | undefined> {
  let ortNode: OrtModule;
  try {
    ortNode = (await import('onnxruntime-node')) as unknown as OrtModule;
  } catch {
    return undefined;
  }
  return createOrtEngine({
    name: 'onnxruntime-node',
    ort: ortNode,
    providers: [{ executionProvider: 'cpu' }],
    sessionOptions: { intraOpNumThreads: threads },
  });
}

/** The engines a Node device gets by default: native first when installed, then WASM. */
export async function defaultNodeEngines(threads = defaultThreads()): Promise<Engine[]> {
  const native = await createNativeEngine(threads);
  return native ? [native, createWasmEngine(threads)] : [createWasmEngine(threads)];
}

function defaultThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism()));
}

/**
 * A runtime for a Node device with working defaults.
 *
 * @example
 * const runtime = await createRuntime({ trust: keySet, dir: '/var/lib/my-app/models' });
 */
export async function createRuntime(options: NodeRuntimeOptions): Promise<Runtime> {
  const { dir, store, engines, threads, trust, ...rest } = options;
  return createCoreRuntime({
    createHasher: createNodeHasher,
    ...rest,
    // Native ed25519 for a key set given as a payload; a ready Trust is used as it is.
    trust: 'policy' in trust ? trust : createTrust(trust, { verify: nodeVerify }),
    store: store ?? (await createFileModelStore({ dir: dir ?? join(process.env.EDGEFLEET_DATA_DIR ?? '.edgefleet', 'models') })),
    engines: engines ?? (await defaultNodeEngines(threads)),
  });
}

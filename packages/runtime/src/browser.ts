/**
 * @edgefleet/runtime for browsers: models in IndexedDB, onnxruntime-web with WebGPU when the
 * device has an adapter and WASM otherwise (or when WebGPU fails the acceptance test).
 */
import * as ort from 'onnxruntime-web/webgpu';
import { createOrtEngine, type OrtModule } from './engine/ort-engine.ts';
import type { Engine } from './engine/types.ts';
import { createRuntime as createCoreRuntime, type Runtime, type RuntimeOptions } from './runtime/index.ts';
import { createIndexedDbModelStore } from './store/idb-store.ts';
import type { ModelStore } from './store/types.ts';

export * from './index.ts';

export interface BrowserEngineOptions {
  /**
   * Where onnxruntime-web's files are served from, when the bundler did not emit them beside the
   * bundle (Vite does; esbuild does not): a folder URL ending in "/" holding
   * ort-wasm-simd-threaded.asyncify.wasm and .mjs, or the URL of each (`{ wasm, mjs }`; with the
   * bundled build only `wasm` is needed). Self-host them: devices are often offline, and a CDN is
   * a supply chain. See docs/runtime.md, "In a web app".
   */
  readonly wasmPaths?: string | { readonly wasm?: string | URL; readonly mjs?: string | URL };
  /** WASM threads (needs a cross-origin isolated page); default what onnxruntime-web picks. */
  readonly threads?: number;
  /**
   * Run inference in a worker (onnxruntime-web's proxy) so the page stays responsive. WASM only:
   * onnxruntime-web does not proxy WebGPU sessions.
   */
  readonly offMainThread?: boolean;
  /** Offer WebGPU when the device has an adapter; default true. */
  readonly webgpu?: boolean;
  /** The WebGPU entry point; default `navigator.gpu`. */
  readonly gpu?: { requestAdapter(): Promise<GpuAdapterLike | null> };
}

/** What the runtime reads of a WebGPU adapter (`GPUAdapter.info`; `isFallbackAdapter` on older browsers). */
export interface GpuAdapterLike {
  readonly info?: {
    readonly vendor?: string;
    readonly architecture?: string;
    readonly device?: string;
    readonly isFallbackAdapter?: boolean;
  };
  readonly isFallbackAdapter?: boolean;
}

export interface BrowserRuntimeOptions extends Omit<RuntimeOptions, 'store' | 'engines'>, BrowserEngineOptions {
  /** IndexedDB database name; default "edgefleet-models". */
  readonly database?: string;
  readonly store?: ModelStore;
  readonly engines?: readonly Engine[];
}

/** onnxruntime-web with WebGPU (when an adapter exists) and WASM. */
export function createBrowserEngine(options: BrowserEngineOptions = {}): Engine {
  if (options.wasmPaths !== undefined)
    ort.env.wasm.wasmPaths = typeof options.wasmPaths === 'string' ? options.wasmPaths : { ...options.wasmPaths };
  if (options.threads !== undefined) ort.env.wasm.numThreads = options.threads;
  if (options.offMainThread) ort.env.wasm.proxy = true;
  const gpu = options.gpu ?? (globalThis.navigator as { gpu?: BrowserEngineOptions['gpu'] } | undefined)?.gpu;
  const webgpu = options.webgpu !== false && !options.offMainThread;
  return createOrtEngine({
    name: 'onnxruntime-web',
    ort: ort as unknown as OrtModule,
    copyModelBytes: options.offMainThread === true,
    exclusive: true,
    providers: [
      ...(webgpu
        ? [
            {
              executionProvider: 'webgpu' as const,
              probe: async () => {
                if (!gpu) return 'this browser has no WebGPU (navigator.gpu is missing)';
                const adapter = await gpu.requestAdapter();
                if (!adapter) return 'no WebGPU adapter (navigator.gpu.requestAdapter() returned null)';
                const info = adapter.info ?? {};
                return {
                  fallbackAdapter: info.isFallbackAdapter === true || adapter.isFallbackAdapter === true,
                  description: [info.vendor, info.architecture, info.device].filter(Boolean).join(' '),
                };
              },
            },
          ]
        : []),
      { executionProvider: 'wasm' as const },
    ],
  });
}

/**
 * A runtime for a web page with working defaults.
 *
 * @example
 * const runtime = await createRuntime({ trust: keySet });
 * await runtime.install(manifest, '/models/silero-vad.onnx', { onProgress: ({ bytes, total }) => bar(bytes / total) });
 */
export async function createRuntime(options: BrowserRuntimeOptions): Promise<Runtime> {
  const { database, store, engines, wasmPaths, threads, offMainThread, webgpu, gpu, ...rest } = options;
  const engineOptions: BrowserEngineOptions = {
    ...(wasmPaths !== undefined ? { wasmPaths } : {}),
    ...(threads !== undefined ? { threads } : {}),
    ...(offMainThread !== undefined ? { offMainThread } : {}),
    ...(webgpu !== undefined ? { webgpu } : {}),
    ...(gpu !== undefined ? { gpu } : {}),
  };
  return createCoreRuntime({
    ...rest,
    store: store ?? (await createIndexedDbModelStore(database !== undefined ? { name: database } : {})),
    engines: engines ?? [createBrowserEngine(engineOptions)],
  });
}

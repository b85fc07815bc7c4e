import type { Dtype, ExecutionProvider, TensorArray } from '@edgefleet/protocol';

/** A tensor as the runtime passes it in and out: plain data, independent of the engine. */
export interface RuntimeTensor {
  readonly dtype: Dtype;
  readonly shape: readonly number[];
  readonly data: TensorArray | readonly string[];
}

export type Feeds = Readonly<Record<string, RuntimeTensor>>;
export type Outputs = Record<string, RuntimeTensor>;

/** What an engine can use on this device, and why not when it cannot. */
export interface ProviderAvailability {
  readonly executionProvider: ExecutionProvider;
  readonly available: boolean;
  readonly reason?: string;
  /**
   * A software adapter (WebGPU's `isFallbackAdapter`: SwiftShader on a machine without a GPU):
   * usable, but often 100x slower than WASM, so never preferred without measuring.
   */
  readonly fallbackAdapter?: boolean;
  /** What the device offers under this provider (a WebGPU adapter's vendor and architecture). */
  readonly description?: string;
}

export interface EngineSession {
  readonly executionProvider: ExecutionProvider;
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  run(feeds: Feeds): Promise<Outputs>;
  release(): Promise<void>;
}

/**
 * An inference engine: onnxruntime-web (wasm, webgpu) or onnxruntime-node (cpu). Sessions are
 * built from bytes in memory; a model that cannot be loaded is refused with EF_MODEL_INVALID.
 */
export interface Engine {
  readonly name: string;
  /** Execution providers this engine offers, most preferred first, probed on this device. */
  probe(): Promise<readonly ProviderAvailability[]>;
  createSession(model: Uint8Array, executionProvider: ExecutionProvider): Promise<EngineSession>;
}

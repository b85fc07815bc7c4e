/**
 * What the runtime's parts share: the store (every failure coded), the trust, the clock, the
 * events, the state of each model, the artifact collector and the provider selector. Built once by
 * createRuntime; the install pipeline, restore and rollback take it instead of closing over it.
 */
import type { Trust } from '@edgefleet/protocol';
import type { DownloadPolicy } from '../download/index.ts';
import type { ProviderSelector } from '../engine/select.ts';
import type { Emitter } from '../events/index.ts';
import type { HasherFactory } from '../hash/index.ts';
import type { ArtifactCollector } from '../store/gc.ts';
import type { ModelStore } from '../store/types.ts';
import type { InstallStep, ModelInfo, ModelState, RuntimeEvents, RuntimeOptions } from './types.ts';

export interface RuntimeContext {
  readonly options: RuntimeOptions;
  /** The store, guarded: its failures are EF_STORE_FULL / EF_STORE_UNAVAILABLE. */
  readonly store: ModelStore;
  readonly trust: Trust;
  readonly now: () => number;
  readonly createHasher: HasherFactory;
  readonly download: DownloadPolicy;
  readonly latencyProbeRuns: number;
  readonly events: Emitter<RuntimeEvents>;
  /** Each model's record, live session and status, by name. */
  readonly states: Map<string, ModelState>;
  readonly artifacts: ArtifactCollector;
  readonly providers: ProviderSelector;
  /** What `models()` says of one model. */
  info(name: string): ModelInfo;
  /** The install-step hook (tests kill the process there). */
  step(name: InstallStep, model: { readonly name: string; readonly version: string }): Promise<void>;
}

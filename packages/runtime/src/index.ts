/**
 * @edgefleet/runtime/core — the platform-free runtime. Bring your own store and engines; the
 * package's main entry (`@edgefleet/runtime`) picks working defaults for Node or the browser.
 */
export { type AcceptanceResult, runAcceptance } from './acceptance/index.ts';
export { type LatencyProbe, probeLatency } from './acceptance/latency.ts';
export { acceptanceVectors } from './acceptance/vectors.ts';
export { type ProviderChoicePolicy, RUNTIME_DEFAULTS, RUNTIME_VERSION } from './defaults.ts';
export { type ArtifactSource, type DownloadPolicy, type DownloadProgress, downloadArtifact } from './download/index.ts';
export { createOrtEngine, type OrtEngineOptions, type OrtModule, type ProviderProbe } from './engine/ort-engine.ts';
export type { Engine, EngineSession, Feeds, Outputs, ProviderAvailability, RuntimeTensor } from './engine/types.ts';
export { checkFeeds, normalizeFeeds } from './feeds/index.ts';
export { createNobleHasher, type Hasher, type HasherFactory } from './hash/index.ts';
export { checkTarget, rollbackAllowed } from './install/index.ts';
export {
  createRuntime,
  type InstallOptions,
  type InstallStep,
  type ModelInfo,
  type RunOptions,
  type Runtime,
  type RuntimeEvents,
  type RuntimeOptions,
  type TelemetryWindowEvent,
} from './runtime/index.ts';
export { storeError } from './store/errors.ts';
export { createIndexedDbModelStore, type IndexedDbModelStoreOptions } from './store/idb-store.ts';
export type { ArtifactWriter, InstalledVersion, ModelRecord, ModelStore, VersionFloor } from './store/types.ts';
export { type ClosedWindow, LATENCY_EDGES_MS, WindowProfile } from './telemetry/window.ts';

/**
 * The runtime's public types (options, events, what `models()` says) and the per-model state its
 * modules share.
 */
import type { ExecutionProvider, KeySetPayload, ModelRef, ProviderMeasurement, Trust } from '@edgefleet/protocol';
import type { LatencyProbe } from '../acceptance/latency.ts';
import type { ProviderChoicePolicy } from '../defaults.ts';
import type { ArtifactSource, DownloadPolicy, DownloadProgress } from '../download/index.ts';
import type { Engine, Feeds, Outputs } from '../engine/types.ts';
import type { HasherFactory } from '../hash/index.ts';
import type { ShadowState } from '../shadow/index.ts';
import type { ModelRecord, ModelStore } from '../store/types.ts';
import type { ClosedWindow, WindowProfile } from '../telemetry/window.ts';
import type { LiveSession } from './live-session.ts';

export type TelemetryWindowEvent = ClosedWindow & { readonly executionProvider: ExecutionProvider };

/** The open window of one model version, also kept on its model state so a run finds it without a lookup. */
export interface TelemetryEntry {
  readonly key: string;
  readonly version: string;
  readonly window: WindowProfile;
  readonly executionProvider: ExecutionProvider;
}

/** Steps of an install, in order; `hooks.onStep` sees each (tests kill the process there). */
export type InstallStep = 'verified' | 'downloaded' | 'stored' | 'accepted' | 'activated' | 'confirmed';

export interface RuntimeOptions {
  readonly store: ModelStore;
  /** Engines in the order this device prefers them (e.g. onnxruntime-node before onnxruntime-web). */
  readonly engines: readonly Engine[];
  /** The key set this device trusts (payload or Trust). */
  readonly trust: Trust | KeySetPayload;
  /** Required to honour signed rollback documents, which are addressed to one device. */
  readonly deviceId?: string;
  /** Compared with a manifest's runtime.deviceClasses. */
  readonly deviceClass?: string;
  readonly createHasher?: HasherFactory;
  readonly fetch?: typeof globalThis.fetch;
  readonly download?: Partial<DownloadPolicy>;
  /** The clock, in ms since the epoch. */
  readonly now?: () => number;
  /**
   * Timed runs per version in the install-time latency probe (candidate against the version it
   * replaces, on the golden-vector inputs); 0 turns the probe off. Default 20.
   */
  readonly latencyProbeRuns?: number;
  /**
   * How the execution provider is chosen when more than one passes the acceptance test: measured
   * on the golden inputs, the fastest serves unless the device's first choice is within `margin`
   * (see engine/select.ts and RUNTIME_DEFAULTS.providerChoice). `runs: 0` serves on the first that
   * passes, a software WebGPU adapter last.
   */
  readonly providerChoice?: Partial<ProviderChoicePolicy>;
  /**
   * Telemetry of every run, folded into one window per model version (see telemetry/window.ts):
   * on unless `enabled: false`; a window closes after `windowMs` (default 60 s) at the next run,
   * or on `flushTelemetry()` / `close()`. Every run counts with its latency and errors; its input
   * and output features are profiled when at least `profileEveryMs` (default 5 ms) have passed
   * since the last profiled run of the model: every run of a model slower than that, and a
   * systematic time sample of a faster one (at most 200 runs a second, 12,000 in a one-minute
   * window: far more than a drift test needs), so the telemetry of a 0.1 ms model costs what it
   * costs on a 5 ms one. 0 profiles every run.
   */
  readonly telemetry?: { readonly enabled?: boolean; readonly windowMs?: number; readonly profileEveryMs?: number };
  /**
   * Listeners attached before the stored models are restored, so that `restored`,
   * `restore-failed` and `rolled-back` during start-up are seen too.
   */
  readonly listeners?: { readonly [K in keyof RuntimeEvents]?: (payload: RuntimeEvents[K]) => void };
  /**
   * Variants (several artifacts of one version: float16, int8...): the device serves the best one
   * it can run (its best available execution provider first, then the manifest's order, the
   * reference last) and falls back to the next when one fails. `maxBytes`: variants larger than
   * this are passed over (a device short of memory); the reference is always tried last.
   */
  readonly variants?: { readonly maxBytes?: number };
  /**
   * Shadow runs (installShadow): a candidate also runs on a sampled share of live inputs, after the
   * active version answered and never while another run is in flight, within `budget`: the share of
   * the device's time (over 10 s) its runs may take; default 0.05. A sample that finds the device
   * busy or the budget spent is counted as skipped.
   */
  readonly shadow?: { readonly budget?: number };
  /** Test seam: called at each install step; a crash test kills the process here. */
  readonly hooks?: { readonly onStep?: (step: InstallStep, model: ModelRef) => void | Promise<void> };
}

export interface InstallOptions {
  readonly onProgress?: (progress: DownloadProgress & { readonly file: string }) => void;
  /** Sources for the manifest's other files, by file name. */
  readonly files?: Readonly<Record<string, ArtifactSource>>;
  /**
   * Sources for the manifest's variants, by variant name: only the one chosen is downloaded (and
   * the next on a fallback). A variant without a source is passed over.
   */
  readonly variants?: Readonly<Record<string, ArtifactSource>>;
  /** A signed desired-state document with rollback set that lists this manifest: allows an older version. */
  readonly rollback?: unknown;
  readonly signal?: AbortSignal;
}

export interface ModelInfo {
  readonly name: string;
  readonly state: 'active' | 'installing' | 'failed';
  readonly active?: {
    readonly version: string;
    /** The manifest's artifact (the release's identity), whichever variant serves. */
    readonly sha256: string;
    readonly executionProvider: ExecutionProvider;
    /** The variant that serves ("reference": the manifest's own artifact). */
    readonly variant: string;
    readonly engine: string;
    readonly activatedAt: string;
    /** How the execution provider was chosen at install (each allowed provider, measured). */
    readonly providers?: readonly ProviderMeasurement[];
  };
  readonly previous?: { readonly version: string; readonly sha256: string };
  /** A candidate running in shadow: it sees a share of the live inputs and never answers. */
  readonly shadow?: {
    readonly version: string;
    readonly variant: string;
    readonly executionProvider: ExecutionProvider;
    readonly rate: number;
  };
  readonly floor?: string;
  readonly lastError?: { readonly code: string; readonly message: string };
}

export interface RuntimeEvents {
  'download-progress': { model: ModelRef; file: string; bytes: number; total: number };
  verified: { model: ModelRef };
  /** `variant`: when the manifest has variants, the one tested ("reference": the manifest's artifact). */
  'acceptance-passed': { model: ModelRef; executionProvider: ExecutionProvider; maxAbsoluteError: number; variant?: string };
  'acceptance-failed': { model: ModelRef; executionProvider: ExecutionProvider; reason: string; variant?: string };
  /** A variant could not serve here (unavailable, failed to download, load or pass): the next one is tried. */
  'variant-fallback': { model: ModelRef; from: string; to: string; reason: string };
  'execution-provider-fallback': { model: ModelRef; from: ExecutionProvider; to: ExecutionProvider; reason: string };
  /** `latency`: the install-time probe of the new version against the one it replaced (see acceptance/latency.ts). */
  activated: {
    model: ModelRef;
    executionProvider: ExecutionProvider;
    /** The variant that serves ("reference": the manifest's own artifact). */
    variant: string;
    /** How the execution provider was chosen: each allowed provider, its acceptance and measured latency. */
    providers: readonly ProviderMeasurement[];
    previous?: string;
    latency?: LatencyProbe;
  };
  'install-failed': { model: ModelRef; error: { code: string; message: string } };
  /** A candidate is ready in shadow beside the active version (installShadow). */
  'shadow-installed': { model: ModelRef; executionProvider: ExecutionProvider; variant: string; rate: number };
  'shadow-failed': { model: ModelRef; error: { code: string; message: string } };
  'shadow-removed': { model: ModelRef };
  'rolled-back': { model: ModelRef; from: string; reason: string };
  removed: { name: string };
  /** `providers`: present when the device changed since install and the provider was chosen afresh. */
  restored: { model: ModelRef; executionProvider: ExecutionProvider; variant: string; providers?: readonly ProviderMeasurement[] };
  'restore-failed': { name: string; version: string; error: { code: string; message: string } };
  /** A closed telemetry window of one model version (every `telemetry.windowMs`, and on flush/close). */
  'telemetry-window': TelemetryWindowEvent;
  /** Something went wrong outside any call (a listener threw, a cleanup failed). */
  error: { error: unknown };
}

export interface RunOptions {
  /**
   * `false`: this run is left out of telemetry altogether (no latency, no error, no features), for
   * runs that are not the model's real traffic (warm-ups, synthetic self-checks) or whose data the
   * user has not agreed to have profiled. Default: counted, as telemetry is configured.
   */
  readonly telemetry?: boolean;
}

export interface Runtime {
  /** Verify → store → build a session → acceptance test → activate. Resolves when active. */
  install(manifest: unknown, source: ArtifactSource, options?: InstallOptions): Promise<ModelInfo>;
  /** Runs the active version; never touches the network. */
  run(model: string, feeds: Feeds | Record<string, unknown>, options?: RunOptions): Promise<Outputs>;
  /** Closes every open telemetry window now (each is also emitted as `telemetry-window`). */
  flushTelemetry(): TelemetryWindowEvent[];
  /** What is installed, what is active and on which execution provider. */
  models(): ModelInfo[];
  /**
   * Installs a candidate version to run in shadow beside the active one (verified, downloaded,
   * accepted as any install, never answering): on `rate` (0-1, default 0.1) of the live inputs it
   * also runs, off the caller's path, and how it compares is folded into the telemetry window
   * (class agreement, top-k overlap, score differences, latency ratio). Installing it for real
   * later ends the shadow.
   */
  installShadow(manifest: unknown, source: ArtifactSource, options?: InstallOptions & { readonly rate?: number }): Promise<ModelInfo>;
  /** Ends a model's shadow and frees what only it used. */
  removeShadow(model: string): Promise<void>;
  /** Makes the previous version active again. */
  rollback(model: string): Promise<ModelInfo>;
  /** Uninstalls a model and frees its storage. */
  remove(model: string): Promise<void>;
  on<K extends keyof RuntimeEvents>(event: K, listener: (payload: RuntimeEvents[K]) => void): () => void;
  /** Releases every session and the store. */
  close(): Promise<void>;
}

export interface ModelState {
  record: ModelRecord;
  live?: LiveSession;
  installing: boolean;
  lastError?: { code: string; message: string };
  /** Its open telemetry window (also in the runtime's map of windows). */
  telemetry?: TelemetryEntry;
  /** performance.now() of the last run whose features were profiled. */
  lastProfiled: number;
  /** A candidate running in shadow beside the active version (shadow/index.ts). */
  shadow?: ShadowState;
  /** Runs of the active version in flight (counted while a shadow is installed: it waits for none). */
  inFlight?: number;
  /** performance.now() when the last run of the active version started (counted while a shadow is installed). */
  lastStarted?: number;
}

/**
 * The runtime: installs signed models, runs them offline, rolls them back.
 *
 * Invariants, whatever fails and wherever the process dies:
 * - nothing runs that was not verified (signature, expiry, size, sha256, version floor, target);
 * - the store's record of a model flips in one atomic write, after the new version is stored and
 *   has passed its acceptance test, so a model is always exactly the old or exactly the new one;
 * - a failed install leaves the previous version active and serving.
 */
import {
  checkVersionFloor,
  compareSemver,
  createTrust,
  decodeGoldenVectors,
  EdgefleetError,
  type ExecutionProvider,
  type GoldenVector,
  type KeySetPayload,
  type ManifestPayload,
  type ModelRef,
  type SignedDocument,
  type Trust,
  timestamp,
  verifyDesiredState,
  verifyManifest,
} from '@edgefleet/protocol';
import { runAcceptance } from '../acceptance/index.ts';
import { type LatencyProbe, probeLatency } from '../acceptance/latency.ts';
import { RUNTIME_DEFAULTS, RUNTIME_VERSION } from '../defaults.ts';
import { type ArtifactSource, type DownloadPolicy, type DownloadProgress, downloadArtifact } from '../download/index.ts';
import type { Engine, EngineSession, Feeds, Outputs, ProviderAvailability } from '../engine/types.ts';
import { createEmitter } from '../events/index.ts';
import { checkFeeds, normalizeFeeds } from '../feeds/index.ts';
import { createNobleHasher, type HasherFactory } from '../hash/index.ts';
import { storeError } from '../store/errors.ts';
import type { InstalledVersion, ModelRecord, ModelStore } from '../store/types.ts';
import { type ClosedWindow, WindowProfile } from '../telemetry/window.ts';
import { LiveSession } from './live-session.ts';

export type TelemetryWindowEvent = ClosedWindow & { readonly executionProvider: ExecutionProvider };

/** The open window of one model version, also kept on its model state so a run finds it without a lookup. */
interface TelemetryEntry {
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
  /** Test seam: called at each install step; a crash test kills the process here. */
  readonly hooks?: { readonly onStep?: (step: InstallStep, model: ModelRef) => void | Promise<void> };
}

export interface InstallOptions {
  readonly onProgress?: (progress: DownloadProgress & { readonly file: string }) => void;
  /** Sources for the manifest's other files, by file name. */
  readonly files?: Readonly<Record<string, ArtifactSource>>;
  /** A signed desired-state document with rollback set that lists this manifest: allows an older version. */
  readonly rollback?: unknown;
  readonly signal?: AbortSignal;
}

export interface ModelInfo {
  readonly name: string;
  readonly state: 'active' | 'installing' | 'failed';
  readonly active?: {
    readonly version: string;
    readonly sha256: string;
    readonly executionProvider: ExecutionProvider;
    readonly engine: string;
    readonly activatedAt: string;
  };
  readonly previous?: { readonly version: string; readonly sha256: string };
  readonly floor?: string;
  readonly lastError?: { readonly code: string; readonly message: string };
}

export interface RuntimeEvents {
  'download-progress': { model: ModelRef; file: string; bytes: number; total: number };
  verified: { model: ModelRef };
  'acceptance-passed': { model: ModelRef; executionProvider: ExecutionProvider; maxAbsoluteError: number };
  'acceptance-failed': { model: ModelRef; executionProvider: ExecutionProvider; reason: string };
  'execution-provider-fallback': { model: ModelRef; from: ExecutionProvider; to: ExecutionProvider; reason: string };
  /** `latency`: the install-time probe of the new version against the one it replaced (see acceptance/latency.ts). */
  activated: { model: ModelRef; executionProvider: ExecutionProvider; previous?: string; latency?: LatencyProbe };
  'install-failed': { model: ModelRef; error: { code: string; message: string } };
  'rolled-back': { model: ModelRef; from: string; reason: string };
  removed: { name: string };
  restored: { model: ModelRef; executionProvider: ExecutionProvider };
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
  /** Makes the previous version active again. */
  rollback(model: string): Promise<ModelInfo>;
  /** Uninstalls a model and frees its storage. */
  remove(model: string): Promise<void>;
  on<K extends keyof RuntimeEvents>(event: K, listener: (payload: RuntimeEvents[K]) => void): () => void;
  /** Releases every session and the store. */
  close(): Promise<void>;
}

interface ModelState {
  record: ModelRecord;
  live?: LiveSession;
  installing: boolean;
  lastError?: { code: string; message: string };
  /** Its open telemetry window (also in the runtime's map of windows). */
  telemetry?: TelemetryEntry;
  /** performance.now() of the last run whose features were profiled. */
  lastProfiled: number;
}

/**
 * Every store call's failure becomes EF_STORE_FULL / EF_STORE_UNAVAILABLE, whatever store was
 * plugged in: the runtime's callers see storage codes, never a raw errno.
 */
function guardedStore(store: ModelStore): ModelStore {
  const wrap =
    <A extends unknown[], R>(operation: string, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await call(...args);
      } catch (error) {
        throw storeError(operation, error);
      }
    };
  return {
    description: store.description,
    hasArtifact: wrap('check an artifact', (sha) => store.hasArtifact(sha)),
    createArtifactWriter: wrap('write an artifact', async (sha) => {
      const writer = await store.createArtifactWriter(sha);
      return {
        write: wrap('write an artifact', (chunk) => writer.write(chunk)),
        commit: wrap('commit an artifact', () => writer.commit()),
        abort: () => writer.abort(),
      };
    }),
    readArtifact: wrap('read an artifact', (sha) => store.readArtifact(sha)),
    deleteArtifact: wrap('delete an artifact', (sha) => store.deleteArtifact(sha)),
    listArtifacts: wrap('list artifacts', () => store.listArtifacts()),
    readRecords: wrap('read model records', () => store.readRecords()),
    writeRecord: wrap('activate (write the model record)', (record) => store.writeRecord(record)),
    deleteRecord: wrap('delete a model record', (name) => store.deleteRecord(name)),
    close: () => store.close(),
  };
}

interface Provider {
  readonly engine: Engine;
  readonly availability: ProviderAvailability;
}

/**
 * Creates a runtime and restores the active version of every stored model: after a reload or a
 * restart, models serve with no network at all.
 *
 * @example
 * const runtime = await createRuntime({ store, engines: [engine], trust: keySet });
 * await runtime.install(signedManifest, 'https://fleet.example/v1/artifacts/<sha256>');
 * const { output } = await runtime.run('silero-vad', { input, state, sr });
 */
export async function createRuntime(options: RuntimeOptions): Promise<Runtime> {
  const store = guardedStore(options.store);
  const now = options.now ?? Date.now;
  const latencyRuns = options.latencyProbeRuns ?? 20;
  const telemetry = {
    enabled: options.telemetry?.enabled ?? true,
    windowMs: options.telemetry?.windowMs ?? 60_000,
    profileEveryMs: options.telemetry?.profileEveryMs ?? 5,
  };
  /** The open telemetry window per model version (`name@version`). */
  const windows = new Map<string, TelemetryEntry>();

  function closeWindow(key: string, end: number): TelemetryWindowEvent | undefined {
    const entry = windows.get(key);
    windows.delete(key);
    if (!entry || entry.window.empty) return undefined;
    const closed = { ...entry.window.close(end), executionProvider: entry.executionProvider };
    emitter.emit('telemetry-window', closed);
    return closed;
  }

  function telemetryWindow(state: ModelState): WindowProfile {
    const active = state.record.active as InstalledVersion;
    const at = now();
    let entry = state.telemetry;
    if (entry && (entry.version !== active.version || at - entry.window.start >= telemetry.windowMs)) {
      closeWindow(entry.key, at);
      entry = undefined;
    }
    if (!entry || windows.get(entry.key) !== entry) {
      const key = `${state.record.name}@${active.version}`;
      entry = windows.get(key) ?? {
        key,
        version: active.version,
        window: new WindowProfile({ name: state.record.name, version: active.version }, at, active.manifest.payload.telemetry),
        executionProvider: active.executionProvider,
      };
      windows.set(key, entry);
      state.telemetry = entry;
    }
    return entry.window;
  }

  /**
   * Sketch updates happen after runs have answered, in one timer turn every 50 ms (started with the
   * first telemetry, unref'd so it never keeps a process alive), not on any run's path.
   */
  let draining: ReturnType<typeof setInterval> | undefined;
  function scheduleDrain(window: WindowProfile): void {
    if (window.pendingCount > 65_536) window.drain(); // a burst with no idle turn: bound the memory
    if (draining) return;
    draining = setInterval(() => {
      for (const entry of windows.values()) entry.window.drain();
    }, 50);
    (draining as { unref?: () => void }).unref?.();
  }

  function recordFailure(state: ModelState, error: unknown, started: number): void {
    try {
      const code = error instanceof EdgefleetError ? error.code : 'EF_INTERNAL_ERROR';
      telemetryWindow(state).recordError(code, performance.now() - started);
    } catch (failure) {
      emitter.emit('error', { error: failure });
    }
  }

  function flushWindows(): TelemetryWindowEvent[] {
    const at = now();
    return [...windows.keys()].flatMap((key) => closeWindow(key, at) ?? []);
  }
  const trust = 'policy' in options.trust ? options.trust : createTrust(options.trust);
  const createHasher = options.createHasher ?? createNobleHasher;
  const policy: DownloadPolicy = { ...RUNTIME_DEFAULTS.download, ...options.download };
  const emitter = createEmitter<RuntimeEvents>((error) => emitter.emit('error', { error }));
  for (const [event, listener] of Object.entries(options.listeners ?? {})) {
    emitter.on(event as keyof RuntimeEvents, listener as (payload: unknown) => void);
  }
  const states = new Map<string, ModelState>();
  const queues = new Map<string, Promise<unknown>>();
  let closed = false;

  const providers: Provider[] = (
    await Promise.all(options.engines.map(async (engine) => (await engine.probe()).map((availability) => ({ engine, availability }))))
  ).flat();

  /** Runs model operations one at a time per model; different models proceed in parallel. */
  function serialize<T>(name: string, task: () => Promise<T>): Promise<T> {
    const previous = queues.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(task);
    queues.set(name, next);
    return next;
  }

  function ensureOpen(): void {
    if (closed) throw new EdgefleetError('EF_RUNTIME_CLOSED', 'the runtime was closed');
  }

  function info(name: string): ModelInfo {
    const state = states.get(name);
    const record = state?.record;
    const active = record?.active;
    return {
      name,
      state: state?.installing ? 'installing' : state?.live ? 'active' : 'failed',
      ...(active && state?.live
        ? {
            active: {
              version: active.version,
              sha256: active.sha256,
              executionProvider: active.executionProvider,
              engine: state.live.engine,
              activatedAt: active.activatedAt,
            },
          }
        : {}),
      ...(record?.previous ? { previous: { version: record.previous.version, sha256: record.previous.sha256 } } : {}),
      ...(record?.floor ? { floor: record.floor.version } : {}),
      ...(state?.lastError ? { lastError: state.lastError } : {}),
    };
  }

  async function step(name: InstallStep, model: ModelRef): Promise<void> {
    await options.hooks?.onStep?.(name, model);
  }

  /** Artifacts of installs in progress: stored but not yet referenced by a record. */
  const pinned = new Map<string, number>();
  const pin = (shas: readonly string[]) => {
    for (const sha of shas) pinned.set(sha, (pinned.get(sha) ?? 0) + 1);
  };
  const unpin = (shas: readonly string[]) => {
    for (const sha of shas) {
      const count = (pinned.get(sha) ?? 1) - 1;
      if (count > 0) pinned.set(sha, count);
      else pinned.delete(sha);
    }
  };

  /**
   * Deletes stored artifacts that no record points at (failed installs, crashes, old versions),
   * sparing those an install in progress has stored but not yet activated.
   */
  async function collectGarbage(): Promise<void> {
    const referenced = new Set<string>(pinned.keys());
    for (const record of await store.readRecords()) {
      for (const version of [record.active, record.previous]) {
        if (!version) continue;
        referenced.add(version.sha256);
        for (const sha of Object.values(version.files)) referenced.add(sha);
      }
    }
    for (const sha of await store.listArtifacts()) {
      if (!referenced.has(sha) && !pinned.has(sha)) await store.deleteArtifact(sha);
    }
  }

  let garbage: Promise<void> = Promise.resolve();
  /** Queues a collection (one at a time); failures are reported as `error` events, never thrown. */
  function collectGarbageLater(): Promise<void> {
    garbage = garbage.then(collectGarbage).catch((error: unknown) => emitter.emit('error', { error }));
    return garbage;
  }

  // Session creation one at a time across models: onnxruntime-web initializes its backends lazily
  // and a second creation racing the first can fail.
  let creating: Promise<unknown> = Promise.resolve();
  function createSessionExclusively(engine: Engine, bytes: Uint8Array, ep: ExecutionProvider): Promise<EngineSession> {
    const next = creating.catch(() => undefined).then(() => engine.createSession(bytes, ep));
    creating = next;
    return next;
  }

  /** Checks stored bytes still have their hash (disk corruption, tampering at rest). */
  function checkStoredHash(sha256: string, bytes: Uint8Array): void {
    const hasher = createHasher();
    hasher.update(bytes);
    const digest = hasher.digest();
    if (digest !== sha256) {
      throw new EdgefleetError('EF_STORE_CORRUPT', `stored artifact ${sha256.slice(0, 12)}… now hashes to ${digest.slice(0, 12)}…`, {
        details: { expected: sha256, actual: digest },
      });
    }
  }

  /**
   * Builds a session for a stored version, checking the stored bytes' hash meanwhile: a native
   * engine parses the model on its own thread while this one hashes, so the check adds no latency
   * to a cold start. The session is released, unused, if the hash is wrong.
   */
  async function sessionForStored(version: InstalledVersion): Promise<{ live: LiveSession; executionProvider: ExecutionProvider }> {
    const bytes = await store.readArtifact(version.sha256);
    const manifest = version.manifest.payload;
    const building = buildSession(manifest, bytes, version.executionProvider, () => acceptanceVectors(manifest, version.files));
    try {
      checkStoredHash(version.sha256, bytes);
    } catch (error) {
      await building.then(({ live }) => live.retire()).catch(() => undefined);
      throw error;
    }
    return building;
  }

  /**
   * The golden vectors of a version's acceptance test: those inline in the manifest and those of
   * its golden vectors file (stored, hash-checked at download). A manifest that asks for an
   * acceptance test the device cannot run (no vectors, a file it cannot read or that does not fit
   * the model) is refused: it must never activate untested.
   */
  async function acceptanceVectors(manifest: ManifestPayload, files: Readonly<Record<string, string>>): Promise<readonly GoldenVector[]> {
    const acceptance = manifest.acceptance;
    if (!acceptance) return [];
    const vectors = [...acceptance.vectors];
    if (acceptance.vectorsFile !== undefined) {
      const sha256 = files[acceptance.vectorsFile];
      if (sha256 === undefined) {
        throw new EdgefleetError(
          'EF_ACCEPTANCE_DATA_INVALID',
          `${manifest.name}@${manifest.version} names golden vectors file "${acceptance.vectorsFile}", which was not stored with it`,
        );
      }
      vectors.push(...decodeGoldenVectors(await store.readArtifact(sha256), manifest));
    }
    if (vectors.length === 0) {
      throw new EdgefleetError(
        'EF_ACCEPTANCE_DATA_INVALID',
        `${manifest.name}@${manifest.version} has an acceptance test without golden vectors`,
      );
    }
    return vectors;
  }

  /**
   * Builds a session on the best execution provider the manifest allows that passes the acceptance
   * test, falling back down the device's preference order and reporting why.
   */
  async function buildSession(
    manifest: ManifestPayload,
    bytes: Uint8Array,
    /**
     * The provider this version already passed its acceptance test on (restore, rollback): tried
     * first, and not tested again, so a cold start costs no extra inference. Any other provider is
     * tested as at install.
     */
    accepted: ExecutionProvider | undefined,
    /** The golden vectors, loaded only when an acceptance test has to run. */
    loadVectors: () => Promise<readonly GoldenVector[]>,
  ): Promise<{ live: LiveSession; executionProvider: ExecutionProvider }> {
    const model = { name: manifest.name, version: manifest.version };
    const allowed = manifest.runtime.executionProviders;
    const candidates = providers
      .filter((p) => allowed.includes(p.availability.executionProvider))
      .sort((a, b) => Number(b.availability.executionProvider === accepted) - Number(a.availability.executionProvider === accepted));
    const reasons: string[] = [];
    let firstTried: ExecutionProvider | undefined;
    let acceptanceFailures = 0;
    let loadError: EdgefleetError | undefined;
    for (const { engine, availability } of candidates) {
      const ep = availability.executionProvider;
      firstTried ??= ep;
      if (!availability.available) {
        reasons.push(`${ep}: ${availability.reason ?? 'unavailable'}`);
        continue;
      }
      let session: EngineSession;
      try {
        session = await createSessionExclusively(engine, bytes, ep);
      } catch (error) {
        loadError ??= error instanceof EdgefleetError ? error : new EdgefleetError('EF_MODEL_INVALID', String(error), { cause: error });
        reasons.push(`${ep}: ${(error as Error).message}`);
        continue;
      }
      const missing = manifest.model.inputs.map((t) => t.name).filter((n) => !session.inputNames.includes(n));
      if (missing.length > 0) {
        await session.release();
        throw new EdgefleetError(
          'EF_MODEL_INVALID',
          `${model.name}@${model.version}: the model has no input(s) ${missing.join(', ')} that the manifest declares`,
        );
      }
      if (manifest.acceptance && ep !== accepted) {
        let vectors: readonly GoldenVector[];
        try {
          vectors = await loadVectors();
        } catch (error) {
          await session.release();
          throw error;
        }
        const result = await runAcceptance(session, vectors, manifest.acceptance.tolerance);
        if (!result.passed) {
          acceptanceFailures++;
          const reason = result.reason ?? 'outputs differ';
          emitter.emit('acceptance-failed', { model, executionProvider: ep, reason });
          reasons.push(`${ep}: acceptance test failed: ${reason}`);
          await session.release();
          continue;
        }
        emitter.emit('acceptance-passed', { model, executionProvider: ep, maxAbsoluteError: result.maxAbsoluteError });
      }
      if (firstTried !== ep) {
        emitter.emit('execution-provider-fallback', { model, from: firstTried, to: ep, reason: reasons.join('; ') });
      }
      return { live: new LiveSession(session, engine.name), executionProvider: ep };
    }
    const detail = `${model.name}@${model.version}: ${reasons.join('; ') || `none of ${allowed.join(', ')} is offered by this device's engines`}`;
    if (acceptanceFailures > 0) throw new EdgefleetError('EF_ACCEPTANCE_FAILED', detail, { details: { reasons } });
    if (loadError) throw new EdgefleetError('EF_MODEL_INVALID', detail, { cause: loadError, details: { reasons } });
    throw new EdgefleetError('EF_ENGINE_UNAVAILABLE', detail, { details: { reasons, allowed } });
  }

  function checkTarget(manifest: ManifestPayload): void {
    const classes = manifest.runtime.deviceClasses;
    if (classes && (options.deviceClass === undefined || !classes.includes(options.deviceClass))) {
      throw new EdgefleetError(
        'EF_MODEL_TARGET_MISMATCH',
        `${manifest.name}@${manifest.version} is built for device classes ${classes.join(', ')}; this device is ${options.deviceClass ?? 'unclassified'}`,
      );
    }
    const minimum = manifest.runtime.minRuntimeVersion;
    if (minimum && compareSemver(RUNTIME_VERSION, minimum) < 0) {
      throw new EdgefleetError(
        'EF_MODEL_TARGET_MISMATCH',
        `${manifest.name}@${manifest.version} needs runtime ${minimum}; this is ${RUNTIME_VERSION}`,
      );
    }
  }

  /** A rollback install must come with a verified desired-state document that says rollback and lists this exact manifest. */
  function rollbackAllowed(manifest: ManifestPayload, document: unknown): boolean {
    if (document === undefined) return false;
    if (options.deviceId === undefined) {
      throw new EdgefleetError('EF_DESIRED_STATE_WRONG_DEVICE', 'this runtime has no deviceId, so it cannot accept a signed rollback');
    }
    const verified = verifyDesiredState(document, trust, { deviceId: options.deviceId, now: now() });
    const listed = verified.manifests.some(
      (m) => m.name === manifest.name && m.version === manifest.version && m.artifact.sha256 === manifest.artifact.sha256,
    );
    return verified.payload.rollback && listed;
  }

  async function storeFile(
    sha256: string,
    size: number,
    source: ArtifactSource,
    file: string,
    model: ModelRef,
    install: InstallOptions,
  ): Promise<void> {
    if (await store.hasArtifact(sha256)) return;
    const writer = await downloadArtifact(source, {
      sha256,
      size,
      label: `${model.name}@${model.version} ${file}`,
      openWriter: () => store.createArtifactWriter(sha256),
      createHasher,
      policy,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      ...(install.signal ? { signal: install.signal } : {}),
      onProgress: (progress) => {
        emitter.emit('download-progress', { model, file, ...progress });
        install.onProgress?.({ ...progress, file });
      },
    });
    try {
      await writer.commit();
    } catch (error) {
      await writer.abort();
      throw error;
    }
  }

  async function install(document: unknown, source: ArtifactSource, installOptions: InstallOptions = {}): Promise<ModelInfo> {
    ensureOpen();
    const manifest = verifyManifest(document, trust, { now: now() });
    const signed = document as SignedDocument<ManifestPayload>;
    const model = { name: manifest.name, version: manifest.version };
    return serialize(manifest.name, async () => {
      ensureOpen();
      const state = states.get(manifest.name) ?? {
        record: { name: manifest.name },
        installing: false,
        lastProfiled: Number.NEGATIVE_INFINITY,
      };
      const current = state.record.active;
      if (current && state.live && current.sha256 === manifest.artifact.sha256 && current.version === manifest.version) {
        return info(manifest.name); // already running exactly this: idempotent
      }
      states.set(manifest.name, state);
      state.installing = true;
      const artifacts = [manifest.artifact.sha256, ...manifest.files.map((f) => f.sha256)];
      pin(artifacts); // a concurrent install's garbage collection must not take them
      let pinnedHere = true;
      const release = () => {
        if (pinnedHere) unpin(artifacts);
        pinnedHere = false;
      };
      try {
        checkTarget(manifest);
        const rollback = rollbackAllowed(manifest, installOptions.rollback);
        checkVersionFloor(manifest.name, manifest.version, state.record.floor?.version, rollback);
        await step('verified', model);
        emitter.emit('verified', { model });

        for (const file of manifest.files) {
          const fileSource = installOptions.files?.[file.name];
          if (fileSource === undefined) {
            throw new EdgefleetError(
              'EF_ARTIFACT_SOURCE_MISSING',
              `${model.name}@${model.version} lists file "${file.name}" but install got no source for it`,
            );
          }
          await storeFile(file.sha256, file.size, fileSource, file.name, model, installOptions);
        }
        await storeFile(manifest.artifact.sha256, manifest.artifact.size, source, 'model', model, installOptions);
        await step('downloaded', model);
        const bytes = await store.readArtifact(manifest.artifact.sha256);
        const files = Object.fromEntries(manifest.files.map((f) => [f.name, f.sha256]));
        // Read and checked before any session is built: acceptance data that cannot be checked
        // stops the install here (the model never activates untested).
        const vectors = await acceptanceVectors(manifest, files);
        await step('stored', model);

        const { live, executionProvider } = await buildSession(manifest, bytes, undefined, async () => vectors);
        await step('accepted', model);
        let latency: LatencyProbe | undefined;
        try {
          latency = await probeLatency(live, state.live, vectors, latencyRuns);
        } catch (error) {
          // The acceptance test ran these inputs already; a probe failure must not fail the install.
          emitter.emit('error', { error });
        }

        const installed: InstalledVersion = {
          version: manifest.version,
          sha256: manifest.artifact.sha256,
          manifest: signed,
          files,
          executionProvider,
          activatedAt: timestamp(now()),
        };
        const previous = current && current.sha256 !== installed.sha256 ? current : state.record.previous;
        const floorVersion = state.record.floor?.version;
        const raise = rollback || floorVersion === undefined || compareSemver(manifest.version, floorVersion) > 0;
        const record: ModelRecord = {
          name: manifest.name,
          active: installed,
          ...(previous ? { previous } : {}),
          ...(raise
            ? { floor: { version: manifest.version, keyIds: signed.signatures.map((s) => s.keyId) } }
            : state.record.floor
              ? { floor: state.record.floor }
              : {}),
        };
        try {
          await store.writeRecord(record); // the atomic flip
        } catch (error) {
          await live.retire();
          throw error;
        }
        await step('activated', model);
        const old = state.live;
        state.record = record;
        state.live = live;
        state.installing = false;
        delete state.lastError;
        await old?.retire();
        await step('confirmed', model);
        emitter.emit('activated', {
          model,
          executionProvider,
          ...(current ? { previous: current.version } : {}),
          ...(latency ? { latency } : {}),
        });
        release();
        await collectGarbageLater();
        return info(manifest.name);
      } catch (error) {
        const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_INTERNAL_ERROR', String(error), { cause: error });
        state.lastError = { code: coded.code, message: coded.message };
        emitter.emit('install-failed', { model, error: state.lastError });
        release();
        await collectGarbageLater();
        throw coded;
      } finally {
        release();
        state.installing = false;
        if (!state.record.active && !state.live) states.delete(manifest.name);
      }
    });
  }

  async function restore(record: ModelRecord): Promise<void> {
    const state: ModelState = { record, installing: false, lastProfiled: Number.NEGATIVE_INFINITY };
    states.set(record.name, state);
    for (const [candidate, isPrevious] of [
      [record.active, false],
      [record.previous, true],
    ] as const) {
      if (!candidate) continue;
      try {
        const { live, executionProvider } = await sessionForStored(candidate);
        if (isPrevious) {
          // The active version is unusable: make the previous one active, durably.
          const { previous: _dropped, ...rest } = record;
          state.record = { ...rest, active: { ...candidate, executionProvider } };
          await store.writeRecord(state.record);
          emitter.emit('rolled-back', {
            model: { name: record.name, version: candidate.version },
            from: record.active?.version ?? 'none',
            reason: state.lastError?.message ?? 'the active version could not be restored',
          });
        }
        state.live = live;
        emitter.emit('restored', { model: { name: record.name, version: candidate.version }, executionProvider });
        return;
      } catch (error) {
        const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_STORE_UNAVAILABLE', String(error), { cause: error });
        state.lastError = { code: coded.code, message: coded.message };
        emitter.emit('restore-failed', { name: record.name, version: candidate.version, error: state.lastError });
      }
    }
  }

  await Promise.all((await store.readRecords()).map(restore));
  void collectGarbageLater(); // off the cold-start path

  return {
    install,

    run(name, feeds, runOptions) {
      // Synchronous checks, then the engine's promise as is: no extra async layer on the hot path.
      try {
        ensureOpen();
        const state = states.get(name);
        const live = state?.live;
        const manifest = state?.record.active?.manifest.payload;
        if (!live || !manifest) {
          throw new EdgefleetError(
            'EF_MODEL_NOT_INSTALLED',
            `no active version of "${name}"; installed: ${[...states.keys()].join(', ') || 'none'}`,
          );
        }
        const started = performance.now();
        const normalized = normalizeFeeds(feeds);
        try {
          checkFeeds(normalized, manifest.model.inputs, `${manifest.name}@${manifest.version}`);
        } catch (error) {
          if (telemetry.enabled && runOptions?.telemetry !== false) recordFailure(state, error, started);
          throw error;
        }
        const running = live.run(normalized);
        if (!telemetry.enabled || runOptions?.telemetry === false) return running;
        // The inputs are profiled now, as the model sees them (an app may reuse its buffers once
        // the run answers); the outputs and the latency when it answers. onnxruntime-node and the
        // WASM engine compute on this thread a turn later (measured: 8-15 µs of a Silero run
        // happen inside this call), so the profiling adds to the run: hence the time sample.
        let window: WindowProfile | undefined;
        // Profiled runs are spaced by at least profileEveryMs (a time sample, blind to the data).
        const profiled = started - state.lastProfiled >= telemetry.profileEveryMs;
        if (profiled) state.lastProfiled = started;
        try {
          window = telemetryWindow(state);
          if (profiled) window.recordInputs(normalized);
        } catch (error) {
          emitter.emit('error', { error }); // telemetry must never fail a run
        }
        // On a side branch: the caller gets the engine's promise itself, and this reaction, added
        // before the caller's, reads the answer before the caller's code runs.
        running.then(
          (outputs) => {
            try {
              if (window) {
                // Closed meanwhile (its time was up, or a flush): the answer counts in the open one.
                const target = window.closed ? telemetryWindow(state) : window;
                if (profiled) target.recordOutputs(outputs, performance.now() - started);
                else target.recordLatency(performance.now() - started);
                scheduleDrain(target);
              }
            } catch (error) {
              emitter.emit('error', { error });
            }
          },
          (error: unknown) => recordFailure(state, error, started),
        );
        return running;
      } catch (error) {
        return Promise.reject(error);
      }
    },

    flushTelemetry() {
      return flushWindows();
    },

    models: () => [...states.keys()].sort().map(info),

    rollback(name) {
      ensureOpen();
      return serialize(name, async () => {
        const state = states.get(name);
        const target = state?.record.previous;
        const current = state?.record.active;
        if (!state || !target || !current) {
          throw new EdgefleetError('EF_ROLLBACK_UNAVAILABLE', `"${name}" has no previous version to roll back to`);
        }
        const { live, executionProvider } = await sessionForStored(target);
        const record: ModelRecord = {
          ...state.record,
          active: { ...target, executionProvider, activatedAt: timestamp(now()) },
          previous: current,
        };
        try {
          await store.writeRecord(record);
        } catch (error) {
          await live.retire();
          throw error;
        }
        const old = state.live;
        state.record = record;
        state.live = live;
        await old?.retire();
        emitter.emit('rolled-back', { model: { name, version: target.version }, from: current.version, reason: 'requested' });
        return info(name);
      });
    },

    remove(name) {
      ensureOpen();
      return serialize(name, async () => {
        const state = states.get(name);
        if (!state) return;
        await store.deleteRecord(name);
        states.delete(name);
        await state.live?.retire();
        emitter.emit('removed', { name });
        await collectGarbageLater();
      });
    },

    on: (event, listener) => emitter.on(event, listener),

    async close() {
      if (closed) return;
      closed = true;
      flushWindows(); // listeners (the agent's queue) get what was measured so far
      if (draining) clearInterval(draining);
      await Promise.allSettled(queues.values());
      await garbage;
      await Promise.all([...states.values()].map((state) => state.live?.retire()));
      states.clear();
      await store.close();
    },
  };
}

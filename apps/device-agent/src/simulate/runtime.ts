/**
 * The simulator's stand-in for @edgefleet/runtime: the same `Runtime` interface, driven by the
 * same agent, applying the runtime's own rules (its exported checks: signature and expiry, device
 * class and runtime version, version floor unless a signed rollback, acceptance data that must be
 * readable and fit the model) and downloading and hashing every byte for real. It only skips
 * inference: no session is built, the acceptance test and the latency probe are simulated, and
 * faults are injected where a real device meets them.
 */
import {
  checkVersionFloor,
  compareSemver,
  EdgefleetError,
  type ManifestPayload,
  type ProviderMeasurement,
  REFERENCE_VARIANT,
  type Trust,
  timestamp,
  verifyManifest,
} from '@edgefleet/protocol';
import {
  type ArtifactSource,
  acceptanceVectors,
  checkTarget,
  type InstallOptions,
  type LatencyProbe,
  type ModelInfo,
  type Runtime,
  type RuntimeEvents,
  rollbackAllowed,
  type TelemetryWindowEvent,
} from '@edgefleet/runtime/core';
import type { Downloader } from './downloads.ts';
import { type SimulatedTelemetry, simulatedWindow } from './telemetry.ts';

/** The device class simulated devices report and are checked against (a manifest's runtime.deviceClasses). */
export const SIMULATED_CLASS = 'simulated';

/** Faults as they hit one device (the simulation decides which devices, by a stable share of their id). */
export interface DeviceFaults {
  /** Its acceptance test fails. */
  readonly failAcceptance?: boolean;
  /** Its first download of a model is cut half-way (then resumed with Range). */
  readonly dropDownload?: boolean;
  /** Extra delay before each install, in ms. */
  readonly latencyMs?: number;
  /**
   * The install-time latency probe it reports: every version runs at `baseP95Ms` except
   * `slowdown.version`, `slowdown.factor` times slower.
   */
  readonly baseP95Ms: number;
  readonly slowdown?: { readonly version: string; readonly factor: number };
}

export interface SimulatedRuntimeOptions {
  readonly deviceId: string;
  readonly trust: Trust;
  readonly downloader: Downloader;
  /** The bytes of manifest files (golden vectors) by hash, shared by every simulated device. */
  readonly fileCache: Map<string, Uint8Array>;
  readonly faults: DeviceFaults;
  /**
   * Manifests verified in this process, by their JSON text: a fleet's devices install the same
   * signed manifest, and one verification answers for every identical copy (see `verifiedManifest`).
   */
  readonly verified: Map<string, { readonly manifest: ManifestPayload; readonly at: number }>;
  /** `shift()` is read at each window: a test turns a group's shift on and off while the fleet runs. */
  readonly telemetry?: { readonly spec: SimulatedTelemetry; readonly shift: () => number; readonly random: () => number };
  readonly now?: () => number;
}

export interface SimulatedRuntime extends Runtime {
  /** Installs that activated a version. */
  readonly installs: number;
  /** The active version of a model (cheaper than models() for a simulation counting thousands of devices). */
  activeVersion(name: string): string | undefined;
}

interface Version {
  readonly manifest: ManifestPayload;
  readonly activatedAt: string;
}

interface Model {
  readonly name: string;
  active?: Version;
  previous?: Version;
  floor?: string;
  installing: boolean;
  lastError?: { code: string; message: string };
}

const VERIFIED_LIMIT = 256;

/**
 * verifyManifest, once per identical document in the process: the same JSON text is the same
 * document, so its schema, signatures and consistency verify the same way. Only the validity
 * window depends on the time: a copy verified at `at` is reused from then until its expiry (it was
 * already valid at `at`, and validity only ends at `expiresAt`).
 */
function verifiedManifest(
  document: unknown,
  trust: Trust,
  now: number,
  verified: Map<string, { readonly manifest: ManifestPayload; readonly at: number }>,
): ManifestPayload {
  const text = JSON.stringify(document);
  const known = text === undefined ? undefined : verified.get(text);
  if (known && now >= known.at && now < Date.parse(known.manifest.expiresAt)) return known.manifest;
  const manifest = verifyManifest(document, trust, { now });
  if (text !== undefined) {
    if (verified.size >= VERIFIED_LIMIT) verified.delete(verified.keys().next().value as string);
    verified.set(text, { manifest, at: now });
  }
  return manifest;
}

const SIMULATED_PROVIDERS: readonly ProviderMeasurement[] = [{ executionProvider: 'wasm', engine: 'simulated', passed: true }];

export function createSimulatedRuntime(options: SimulatedRuntimeOptions): SimulatedRuntime {
  const now = options.now ?? Date.now;
  const { faults } = options;
  const models = new Map<string, Model>();
  const queues = new Map<string, Promise<unknown>>();
  const listeners = new Map<keyof RuntimeEvents, Set<(payload: never) => void>>();
  let installs = 0;
  let closed = false;
  let windowOpened = now();

  function emit<K extends keyof RuntimeEvents>(event: K, payload: RuntimeEvents[K]): void {
    for (const listener of listeners.get(event) ?? []) (listener as (p: RuntimeEvents[K]) => void)(payload);
  }

  function serialize<T>(name: string, task: () => Promise<T>): Promise<T> {
    const next = (queues.get(name) ?? Promise.resolve()).catch(() => undefined).then(task);
    queues.set(name, next);
    return next;
  }

  function ensureOpen(): void {
    if (closed) throw new EdgefleetError('EF_RUNTIME_CLOSED', 'the runtime was closed');
  }

  function info(name: string): ModelInfo {
    const model = models.get(name);
    const active = model?.active;
    return {
      name,
      state: model?.installing ? 'installing' : active ? 'active' : 'failed',
      ...(active
        ? {
            active: {
              version: active.manifest.version,
              sha256: active.manifest.artifact.sha256,
              executionProvider: 'wasm',
              variant: REFERENCE_VARIANT,
              engine: 'simulated',
              activatedAt: active.activatedAt,
              providers: SIMULATED_PROVIDERS,
            },
          }
        : {}),
      ...(model?.previous
        ? { previous: { version: model.previous.manifest.version, sha256: model.previous.manifest.artifact.sha256 } }
        : {}),
      ...(model?.floor ? { floor: model.floor } : {}),
      ...(model?.lastError ? { lastError: model.lastError } : {}),
    };
  }

  /** Artifacts this device holds (those of its active and previous versions), as a runtime's store. */
  function held(): Set<string> {
    return new Set(
      [...models.values()].flatMap((m) =>
        [m.active, m.previous].flatMap((v) => (v ? [v.manifest.artifact.sha256, ...v.manifest.files.map((f) => f.sha256)] : [])),
      ),
    );
  }

  function locate(source: ArtifactSource | undefined, what: string): { url: string; headers: Record<string, string> } {
    if (typeof source === 'string' || source instanceof URL) return { url: String(source), headers: {} };
    if (source && typeof source === 'object' && 'url' in source) return { url: String(source.url), headers: { ...source.headers } };
    throw new EdgefleetError('EF_ARTIFACT_SOURCE_MISSING', `${what}: a simulated device downloads from a URL only`);
  }

  function latencyProbe(version: string, replaced: string | undefined): LatencyProbe {
    const p95Of = (v: string) => faults.baseP95Ms * (faults.slowdown?.version === v ? faults.slowdown.factor : 1);
    const p95Ms = p95Of(version);
    if (replaced === undefined) return { p95Ms, runs: 20 };
    const previousP95Ms = p95Of(replaced);
    return { p95Ms, previousP95Ms, ratio: p95Ms / previousP95Ms, runs: 20 };
  }

  async function install(manifest: ManifestPayload, installOptions: InstallOptions, source: ArtifactSource): Promise<ModelInfo> {
    const name = manifest.name;
    const model: Model = models.get(name) ?? { name, installing: false };
    const ref = { name, version: manifest.version };
    const active = model.active?.manifest;
    if (active && active.version === manifest.version && active.artifact.sha256 === manifest.artifact.sha256) return info(name);
    models.set(name, model);
    model.installing = true;
    try {
      checkTarget(manifest, SIMULATED_CLASS);
      const rollback = rollbackAllowed(manifest, installOptions.rollback, { trust: options.trust, deviceId: options.deviceId, now: now() });
      checkVersionFloor(name, manifest.version, model.floor, rollback);
      emit('verified', { model: ref });
      if (faults.latencyMs) await new Promise((resolve) => setTimeout(resolve, faults.latencyMs));

      const stored = held();
      for (const file of manifest.files) {
        const cached = options.fileCache.get(file.sha256);
        if (cached && stored.has(file.sha256)) continue;
        const { url, headers } = locate(installOptions.files?.[file.name], `${name}@${manifest.version} file "${file.name}"`);
        const bytes = await options.downloader.download({
          url,
          headers,
          sha256: file.sha256,
          size: file.size,
          keep: true,
          onProgress: (received) => emit('download-progress', { model: ref, file: file.name, bytes: received, total: file.size }),
        });
        options.fileCache.set(file.sha256, bytes as Uint8Array);
      }
      if (!stored.has(manifest.artifact.sha256)) {
        const { url, headers } = locate(source, `${name}@${manifest.version}`);
        const total = manifest.artifact.size;
        await options.downloader.download({
          url,
          headers,
          sha256: manifest.artifact.sha256,
          size: total,
          dropFirst: faults.dropDownload === true,
          onProgress: (bytes) => emit('download-progress', { model: ref, file: 'model', bytes, total }),
        });
      }
      // The acceptance data must be readable and fit the model, as on a real device.
      const files = Object.fromEntries(manifest.files.map((f) => [f.name, f.sha256]));
      await acceptanceVectors(
        {
          readArtifact: async (sha256) => {
            const bytes = options.fileCache.get(sha256);
            if (!bytes) throw new EdgefleetError('EF_STORE_UNAVAILABLE', `file ${sha256.slice(0, 12)}… was not downloaded`);
            return bytes;
          },
        },
        manifest,
        files,
      );
      if (faults.failAcceptance) {
        const reason = 'simulated acceptance failure';
        emit('acceptance-failed', { model: ref, executionProvider: 'wasm', reason });
        throw new EdgefleetError('EF_ACCEPTANCE_FAILED', `${name}@${manifest.version}: wasm: acceptance test failed: ${reason}`);
      }
      if (manifest.acceptance) emit('acceptance-passed', { model: ref, executionProvider: 'wasm', maxAbsoluteError: 0 });

      const replaced = model.active;
      // The floor follows the runtime's rule: raised by a newer version, set by a rollback.
      if (rollback || model.floor === undefined || compareSemver(manifest.version, model.floor) > 0) model.floor = manifest.version;
      if (replaced && replaced.manifest.artifact.sha256 !== manifest.artifact.sha256) model.previous = replaced;
      model.active = { manifest, activatedAt: timestamp(now()) };
      delete model.lastError;
      installs++;
      emit('activated', {
        model: ref,
        executionProvider: 'wasm',
        variant: REFERENCE_VARIANT,
        providers: SIMULATED_PROVIDERS,
        ...(replaced ? { previous: replaced.manifest.version } : {}),
        latency: latencyProbe(manifest.version, replaced?.manifest.version),
      });
      return info(name);
    } catch (error) {
      const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_INTERNAL_ERROR', String(error), { cause: error });
      model.lastError = { code: coded.code, message: coded.message };
      emit('install-failed', { model: ref, error: model.lastError });
      throw coded;
    } finally {
      model.installing = false;
      if (!model.active) models.delete(name);
    }
  }

  return {
    get installs() {
      return installs;
    },

    activeVersion: (name) => models.get(name)?.active?.manifest.version,

    async install(document, source, installOptions = {}) {
      ensureOpen();
      const manifest = verifiedManifest(document, options.trust, now(), options.verified);
      return serialize(manifest.name, () => install(manifest, installOptions, source));
    },

    run(name) {
      return Promise.reject(
        new EdgefleetError(
          models.has(name) ? 'EF_ENGINE_UNAVAILABLE' : 'EF_MODEL_NOT_INSTALLED',
          `simulated device ${options.deviceId} does not run inference (${name})`,
        ),
      );
    },

    flushTelemetry() {
      const telemetry = options.telemetry;
      if (!telemetry) return [];
      const end = now();
      const windows: TelemetryWindowEvent[] = [];
      for (const model of models.values()) {
        if (!model.active) continue;
        const closedWindow = simulatedWindow(model.active.manifest, windowOpened, end, telemetry.spec, telemetry.shift(), telemetry.random);
        const window = { ...closedWindow, executionProvider: 'wasm' as const };
        windows.push(window);
        emit('telemetry-window', window);
      }
      windowOpened = end;
      return windows;
    },

    models: () => [...models.keys()].sort().map(info),

    rollback(name) {
      ensureOpen();
      return serialize(name, async () => {
        const model = models.get(name);
        const target = model?.previous;
        const current = model?.active;
        if (!model || !target || !current) {
          throw new EdgefleetError('EF_ROLLBACK_UNAVAILABLE', `"${name}" has no previous version to roll back to`);
        }
        model.active = { manifest: target.manifest, activatedAt: timestamp(now()) };
        model.previous = current;
        emit('rolled-back', { model: { name, version: target.manifest.version }, from: current.manifest.version, reason: 'requested' });
        return info(name);
      });
    },

    // A simulated device runs no inference, so no shadow either: it says so, as run() does.
    // A shadow-failed event says so, as the real runtime's does (a rollout's shadow stage counts it).
    async installShadow(document) {
      ensureOpen();
      const manifest = verifiedManifest(document, options.trust, now(), options.verified);
      const error = new EdgefleetError(
        'EF_ENGINE_UNAVAILABLE',
        `simulated device ${options.deviceId} does not run inference, so it cannot run ${manifest.name}@${manifest.version} in shadow`,
      );
      emit('shadow-failed', {
        model: { name: manifest.name, version: manifest.version },
        error: { code: error.code, message: error.message },
      });
      throw error;
    },

    async removeShadow() {
      ensureOpen();
    },

    remove(name) {
      ensureOpen();
      return serialize(name, async () => {
        if (!models.delete(name)) return;
        emit('removed', { name });
      });
    },

    on(event, listener) {
      let set = listeners.get(event);
      if (!set) {
        set = new Set();
        listeners.set(event, set);
      }
      set.add(listener as (payload: never) => void);
      return () => set.delete(listener as (payload: never) => void);
    },

    async close() {
      closed = true;
      await Promise.allSettled(queues.values());
    },
  };
}

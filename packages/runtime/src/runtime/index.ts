/**
 * The runtime: installs signed models, runs them offline, rolls them back. This file composes the
 * parts and holds the per-model queue and the run path; each concern lives in its own module:
 *
 * - install/index.ts        how a model is installed, step by step
 * - engine/select.ts        which execution provider serves (acceptance, measurement, fallback)
 * - runtime/restore.ts      serving a stored version again (start-up, rollback)
 * - telemetry/recorder.ts   per-version telemetry windows of every run
 * - store/guarded.ts        storage failures as codes; store/gc.ts: unreferenced artifacts deleted
 * - defaults.ts             every default, typed
 *
 * Invariants, whatever fails and wherever the process dies:
 * - nothing runs that was not verified (signature, expiry, size, sha256, version floor, target);
 * - the store's record of a model flips in one atomic write, after the new version is stored and
 *   has passed its acceptance test, so a model is always exactly the old or exactly the new one;
 * - a failed install leaves the previous version active and serving.
 */
import {
  createTrust,
  EdgefleetError,
  type ManifestPayload,
  REFERENCE_VARIANT,
  type SignedDocument,
  verifyManifest,
} from '@edgefleet/protocol';
import { type ProviderChoicePolicy, RUNTIME_DEFAULTS, withDefaults } from '../defaults.ts';
import type { DownloadPolicy } from '../download/index.ts';
import { createProviderSelector, type Provider } from '../engine/select.ts';
import { createEmitter } from '../events/index.ts';
import { checkFeeds, normalizeFeeds } from '../feeds/index.ts';
import { createNobleHasher } from '../hash/index.ts';
import { installModel } from '../install/index.ts';
import { followRun, installShadow, removeShadow, SHADOW_DEFAULTS } from '../shadow/index.ts';
import { createArtifactCollector } from '../store/gc.ts';
import { guardedStore } from '../store/guarded.ts';
import { createTelemetryRecorder, type TelemetrySettings } from '../telemetry/recorder.ts';
import type { RuntimeContext } from './context.ts';
import { restoreModel, rollbackModel } from './restore.ts';
import type { ModelInfo, ModelState, Runtime, RuntimeEvents, RuntimeOptions } from './types.ts';

export type {
  InstallOptions,
  InstallStep,
  ModelInfo,
  RunOptions,
  Runtime,
  RuntimeEvents,
  RuntimeOptions,
  TelemetryWindowEvent,
} from './types.ts';

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
  const events = createEmitter<RuntimeEvents>((error) => events.emit('error', { error }));
  for (const [event, listener] of Object.entries(options.listeners ?? {})) {
    events.on(event as keyof RuntimeEvents, listener as (payload: unknown) => void);
  }
  const onError = (error: unknown) => events.emit('error', { error });
  const shadowBudget = options.shadow?.budget ?? SHADOW_DEFAULTS.budget;
  const telemetry = createTelemetryRecorder({
    settings: withDefaults<TelemetrySettings>(RUNTIME_DEFAULTS.telemetry, options.telemetry),
    now,
    emitWindow: (window) => events.emit('telemetry-window', window),
    onError,
  });
  const states = new Map<string, ModelState>();
  const queues = new Map<string, Promise<unknown>>();
  let closed = false;

  const providers: Provider[] = (
    await Promise.all(options.engines.map(async (engine) => (await engine.probe()).map((availability) => ({ engine, availability }))))
  ).flat();

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
              // The release's identity (its reference artifact), whichever variant serves.
              sha256: active.manifest.payload.artifact.sha256,
              executionProvider: active.executionProvider,
              variant: active.variant ?? REFERENCE_VARIANT,
              engine: state.live.engine,
              activatedAt: active.activatedAt,
              ...(active.providers ? { providers: active.providers } : {}),
            },
          }
        : {}),
      ...(record?.previous
        ? { previous: { version: record.previous.version, sha256: record.previous.manifest.payload.artifact.sha256 } }
        : {}),
      ...(state?.shadow
        ? {
            shadow: {
              version: state.shadow.installed.version,
              variant: state.shadow.installed.variant ?? REFERENCE_VARIANT,
              executionProvider: state.shadow.installed.executionProvider,
              rate: state.shadow.rate,
            },
          }
        : {}),
      ...(record?.floor ? { floor: record.floor.version } : {}),
      ...(state?.lastError ? { lastError: state.lastError } : {}),
    };
  }

  const ctx: RuntimeContext = {
    options,
    store,
    trust: 'policy' in options.trust ? options.trust : createTrust(options.trust),
    now,
    createHasher: options.createHasher ?? createNobleHasher,
    download: withDefaults<DownloadPolicy>(RUNTIME_DEFAULTS.download, options.download),
    latencyProbeRuns: options.latencyProbeRuns ?? RUNTIME_DEFAULTS.latencyProbeRuns,
    events,
    states,
    artifacts: createArtifactCollector(store, onError),
    providers: createProviderSelector(
      providers,
      withDefaults<ProviderChoicePolicy>(RUNTIME_DEFAULTS.providerChoice, options.providerChoice),
      events,
    ),
    info,
    step: async (name, model) => {
      await options.hooks?.onStep?.(name, model);
    },
  };

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

  await Promise.all((await store.readRecords()).map((record) => restoreModel(ctx, record)));
  void ctx.artifacts.collectLater(); // off the cold-start path

  return {
    async install(document, source, installOptions = {}) {
      ensureOpen();
      const manifest = verifyManifest(document, ctx.trust, { now: now() });
      return serialize(manifest.name, () => {
        ensureOpen();
        return installModel(ctx, manifest, document as SignedDocument<ManifestPayload>, source, installOptions);
      });
    },

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
        const counted = telemetry.settings.enabled && runOptions?.telemetry !== false;
        const started = performance.now();
        const normalized = normalizeFeeds(feeds);
        try {
          checkFeeds(normalized, manifest.model.inputs, `${manifest.name}@${manifest.version}`);
        } catch (error) {
          if (counted) telemetry.recordFailure(state, error, started);
          throw error;
        }
        const running = live.run(normalized);
        if (counted) {
          telemetry.track(state, normalized, running, started);
          if (state.shadow) followRun(state, normalized, running, started, telemetry, shadowBudget, onError);
        }
        return running;
      } catch (error) {
        return Promise.reject(error);
      }
    },

    flushTelemetry: () => telemetry.flush(),

    models: () => [...states.keys()].sort().map(info),

    async installShadow(document, source, shadowOptions = {}) {
      ensureOpen();
      try {
        const manifest = verifyManifest(document, ctx.trust, { now: now() });
        return await serialize(manifest.name, () => {
          ensureOpen();
          return installShadow(ctx, manifest, document as SignedDocument<ManifestPayload>, source, shadowOptions);
        });
      } catch (error) {
        // Every refusal says so once, with the version it names (unverified when the manifest was
        // not: only to tell the fleet which candidate this device could not run).
        const claimed = (document as { payload?: { name?: unknown; version?: unknown } } | null)?.payload;
        if (typeof claimed?.name === 'string' && typeof claimed.version === 'string') {
          const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_INTERNAL_ERROR', String(error), { cause: error });
          ctx.events.emit('shadow-failed', {
            model: { name: claimed.name, version: claimed.version },
            error: { code: coded.code, message: coded.message },
          });
        }
        throw error;
      }
    },

    removeShadow(name) {
      ensureOpen();
      return serialize(name, () => removeShadow(ctx, name));
    },

    rollback(name) {
      ensureOpen();
      return serialize(name, () => rollbackModel(ctx, name));
    },

    remove(name) {
      ensureOpen();
      return serialize(name, async () => {
        const state = states.get(name);
        if (!state) return;
        await store.deleteRecord(name);
        states.delete(name);
        await state.live?.retire();
        await state.shadow?.live.retire();
        events.emit('removed', { name });
        await ctx.artifacts.collectLater();
      });
    },

    on: (event, listener) => events.on(event, listener),

    async close() {
      if (closed) return;
      closed = true;
      telemetry.close(); // listeners (the agent's queue) get what was measured so far
      await Promise.allSettled(queues.values());
      await ctx.artifacts.idle();
      await Promise.all([...states.values()].flatMap((state) => [state.live?.retire(), state.shadow?.live.retire()]));
      states.clear();
      await store.close();
    },
  };
}

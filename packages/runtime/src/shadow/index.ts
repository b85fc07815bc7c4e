/**
 * Shadow runs: a candidate version installed beside the active one (verified, downloaded and
 * acceptance-tested as any install) that never answers. On a sampled share of live inputs it runs
 * too, and how its answer compares with the active version's goes into the telemetry window
 * (compare.ts): what a rollout's shadow stage judges a candidate on, on the device's real data.
 *
 * What it may cost the app:
 * - never on the caller's path: the caller gets the active version's answer first; the shadow run
 *   starts after a quiet spell, twice as long as that run took (2 ms at least);
 * - never when the device is busy: a sample that finds another run of the model started since its
 *   answer (the app calling back to back), one in flight, or a shadow run still going, is skipped
 *   (counted);
 * - within a time budget: shadow runs take at most `budget` (default 5%) of the device's time over
 *   the last 10 s; past it, samples are skipped (counted).
 */
import { EdgefleetError, type ManifestPayload, REFERENCE_VARIANT, type SignedDocument, timestamp } from '@edgefleet/protocol';
import type { ArtifactSource } from '../download/index.ts';
import type { Feeds, Outputs } from '../engine/types.ts';
import { checkTarget, prepareBuild } from '../install/index.ts';
import type { RuntimeContext } from '../runtime/context.ts';
import type { LiveSession } from '../runtime/live-session.ts';
import type { InstallOptions, ModelInfo, ModelState } from '../runtime/types.ts';
import type { InstalledVersion } from '../store/types.ts';
import type { TelemetryRecorder } from '../telemetry/recorder.ts';
import { compareOutputs } from './compare.ts';

export interface ShadowState {
  readonly installed: InstalledVersion;
  readonly live: LiveSession;
  readonly rate: number;
  running: boolean;
  /** Recent shadow runs: when each ended (performance.now()) and how long it took, for the budget. */
  spent: { at: number; ms: number }[];
}

export const SHADOW_DEFAULTS = { rate: 0.1, budget: 0.05, budgetWindowMs: 10_000, quietMs: 2 } as const;

function checkRate(rate: number): number {
  if (!(rate >= 0 && rate <= 1)) {
    throw new EdgefleetError('EF_SCHEMA_INVALID', `a shadow's rate is the share of inputs it runs on, 0 to 1; got ${rate}`);
  }
  return rate;
}

/** Installs `manifest` in shadow beside the model's active version (the caller holds the model's queue). */
export async function installShadow(
  ctx: RuntimeContext,
  manifest: ManifestPayload,
  signed: SignedDocument<ManifestPayload>,
  source: ArtifactSource,
  options: InstallOptions & { readonly rate?: number },
): Promise<ModelInfo> {
  const model = { name: manifest.name, version: manifest.version };
  const rate = checkRate(options.rate ?? SHADOW_DEFAULTS.rate);
  const state = ctx.states.get(manifest.name);
  const active = state?.record.active;
  if (!state || !active || !state.live) {
    throw new EdgefleetError(
      'EF_MODEL_NOT_INSTALLED',
      `${model.name}@${model.version} cannot run in shadow: no version of "${model.name}" is active to compare it with`,
    );
  }
  const same = (v: InstalledVersion) => v.version === manifest.version && v.manifest.payload.artifact.sha256 === manifest.artifact.sha256;
  if (same(active)) return ctx.info(manifest.name); // it answers already
  const current = state.shadow;
  if (current && same(current.installed)) {
    if (current.rate !== rate) {
      state.record = { ...state.record, shadow: { version: current.installed, rate } };
      await ctx.store.writeRecord(state.record);
      state.shadow = { ...current, rate };
    }
    return ctx.info(manifest.name);
  }
  const artifacts = [manifest.artifact.sha256, ...(manifest.variants ?? []).map((v) => v.sha256), ...manifest.files.map((f) => f.sha256)];
  ctx.artifacts.pin(artifacts);
  try {
    checkTarget(manifest, ctx.options.deviceClass);
    const { candidate, chosen, files } = await prepareBuild(ctx, manifest, source, options);
    const installed: InstalledVersion = {
      version: manifest.version,
      sha256: candidate.sha256,
      ...(candidate.name !== REFERENCE_VARIANT ? { variant: candidate.name } : {}),
      manifest: signed,
      files,
      executionProvider: chosen.executionProvider,
      activatedAt: timestamp(ctx.now()),
      providers: chosen.providers,
      providerFingerprint: chosen.fingerprint,
    };
    const record = { ...state.record, shadow: { version: installed, rate } };
    try {
      await ctx.store.writeRecord(record);
    } catch (error) {
      await chosen.live.retire();
      throw error;
    }
    state.record = record;
    state.shadow = { installed, live: chosen.live, rate, running: false, spent: [] };
    await current?.live.retire();
    ctx.events.emit('shadow-installed', { model, executionProvider: chosen.executionProvider, variant: candidate.name, rate });
    return ctx.info(manifest.name);
  } catch (error) {
    // The runtime's installShadow emits `shadow-failed` for this as for every other refusal.
    throw error instanceof EdgefleetError ? error : new EdgefleetError('EF_INTERNAL_ERROR', String(error), { cause: error });
  } finally {
    ctx.artifacts.unpin(artifacts);
    await ctx.artifacts.collectLater();
  }
}

/** Ends a model's shadow (the caller holds the model's queue). */
export async function removeShadow(ctx: RuntimeContext, name: string): Promise<void> {
  const state = ctx.states.get(name);
  if (!state?.record.shadow) return;
  const { shadow: _dropped, ...rest } = state.record;
  await ctx.store.writeRecord(rest);
  state.record = rest;
  const ended = state.shadow;
  delete state.shadow;
  await ended?.live.retire();
  ctx.events.emit('shadow-removed', { model: { name, version: _dropped.version.version } });
  await ctx.artifacts.collectLater();
}

/** The shadow once its version went live (or anything else replaced the record's shadow): it ends. */
export async function endShadowIfLive(ctx: RuntimeContext, state: ModelState): Promise<void> {
  const shadow = state.shadow;
  if (!shadow || state.record.shadow?.version.version === shadow.installed.version) return;
  delete state.shadow;
  await shadow.live.retire();
  ctx.events.emit('shadow-removed', { model: { name: state.record.name, version: shadow.installed.version } });
}

/**
 * Follows a run of the active version while a shadow is installed: counts it in flight, and once
 * it answered, on a sample of `rate`, runs the candidate on the same feeds on a later turn.
 */
export function followRun(
  state: ModelState,
  feeds: Feeds,
  running: Promise<Outputs>,
  started: number,
  telemetry: Pick<TelemetryRecorder, 'recordShadow'>,
  budget: number,
  onError: (error: unknown) => void,
): void {
  const shadow = state.shadow as ShadowState;
  state.inFlight = (state.inFlight ?? 0) + 1;
  state.lastStarted = started;
  running.then(
    (outputs) => {
      state.inFlight = (state.inFlight ?? 1) - 1;
      if (state.shadow !== shadow || Math.random() >= shadow.rate) return;
      const answered = performance.now();
      const activeMs = answered - started;
      // A quiet spell first, twice as long as the run (2 ms at least): an app calling again
      // within it is busy, and the sample is skipped rather than run beside its next call.
      setTimeout(
        () => {
          runShadow(state, shadow, feeds, outputs, activeMs, answered, telemetry, budget).catch(onError);
        },
        Math.max(SHADOW_DEFAULTS.quietMs, Math.ceil(2 * activeMs)),
      );
    },
    () => {
      state.inFlight = (state.inFlight ?? 1) - 1;
    },
  );
}

async function runShadow(
  state: ModelState,
  shadow: ShadowState,
  feeds: Feeds,
  outputs: Outputs,
  activeMs: number,
  answered: number,
  telemetry: Pick<TelemetryRecorder, 'recordShadow'>,
  budget: number,
): Promise<void> {
  if (state.shadow !== shadow) return;
  const version = shadow.installed.version;
  const now = performance.now();
  shadow.spent = shadow.spent.filter((s) => now - s.at < SHADOW_DEFAULTS.budgetWindowMs);
  const used = shadow.spent.reduce((sum, s) => sum + s.ms, 0);
  const busy = (state.inFlight ?? 0) > 0 || (state.lastStarted ?? 0) > answered || shadow.running;
  if (busy || used >= budget * SHADOW_DEFAULTS.budgetWindowMs) {
    telemetry.recordShadow(state, version, { skipped: true });
    return;
  }
  shadow.running = true;
  const at = performance.now();
  try {
    const theirs = await shadow.live.run(feeds);
    const ms = performance.now() - at;
    telemetry.recordShadow(state, version, {
      compared: compareOutputs(outputs, theirs),
      latencyRatio: activeMs > 0 ? ms / activeMs : 1,
    });
  } catch {
    telemetry.recordShadow(state, version, { failed: true });
  } finally {
    shadow.running = false;
    shadow.spent.push({ at: performance.now(), ms: performance.now() - at });
  }
}

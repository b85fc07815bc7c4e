/**
 * Serving a stored version again: at start-up (restore, falling back to the previous version when
 * the active one is unusable) and on request (rollback). The stored bytes' hash is checked again;
 * the execution provider chosen at install is reused untested unless what the device offers has
 * changed since (another adapter, an engine installed or gone), in which case it is chosen afresh
 * and the record keeps the new choice.
 */
import { EdgefleetError, REFERENCE_VARIANT, timestamp } from '@edgefleet/protocol';
import { acceptanceVectors } from '../acceptance/vectors.ts';
import type { ChosenProvider } from '../engine/select.ts';
import { variantManifest } from '../install/variants.ts';
import type { InstalledVersion, ModelRecord } from '../store/types.ts';
import type { RuntimeContext } from './context.ts';
import type { ModelInfo, ModelState } from './types.ts';

/** Checks stored bytes still have their hash (disk corruption, tampering at rest). */
function checkStoredHash(ctx: RuntimeContext, sha256: string, bytes: Uint8Array): void {
  const hasher = ctx.createHasher();
  hasher.update(bytes);
  const digest = hasher.digest();
  if (digest !== sha256) {
    throw new EdgefleetError('EF_STORE_CORRUPT', `stored artifact ${sha256.slice(0, 12)}… now hashes to ${digest.slice(0, 12)}…`, {
      details: { expected: sha256, actual: digest },
    });
  }
}

/**
 * A session for a stored version, its hash checked meanwhile: a native engine parses the model on
 * its own thread while this one hashes, so the check adds no latency to a cold start. The session
 * is released, unused, if the hash is wrong.
 */
async function sessionForStored(ctx: RuntimeContext, version: InstalledVersion): Promise<ChosenProvider> {
  const bytes = await ctx.store.readArtifact(version.sha256);
  const manifest = variantManifest(version.manifest.payload, version.variant);
  const unchanged =
    version.providerFingerprint === undefined ||
    version.providerFingerprint === ctx.providers.fingerprint(manifest.runtime.executionProviders);
  const building = ctx.providers.choose(manifest, bytes, {
    loadVectors: () => acceptanceVectors(ctx.store, manifest, version.files),
    ...(version.variant !== undefined ? { variant: version.variant } : {}),
    ...(unchanged
      ? { previous: { executionProvider: version.executionProvider, ...(version.providers ? { providers: version.providers } : {}) } }
      : {}),
  });
  try {
    checkStoredHash(ctx, version.sha256, bytes);
  } catch (error) {
    await building.then(({ live }) => live.retire()).catch(() => undefined);
    throw error;
  }
  return building;
}

/** The version as it serves now: with the new choice when one was made. */
function withChoice(version: InstalledVersion, chosen: ChosenProvider): InstalledVersion {
  if (!chosen.decided) return version;
  return { ...version, executionProvider: chosen.executionProvider, providers: chosen.providers, providerFingerprint: chosen.fingerprint };
}

/** Restores a stored model at start-up: its active version, or else its previous one (made active, durably). */
export async function restoreModel(ctx: RuntimeContext, record: ModelRecord): Promise<void> {
  const { events, store } = ctx;
  const state: ModelState = { record, installing: false, lastProfiled: Number.NEGATIVE_INFINITY };
  ctx.states.set(record.name, state);
  for (const [candidate, isPrevious] of [
    [record.active, false],
    [record.previous, true],
  ] as const) {
    if (!candidate) continue;
    const model = { name: record.name, version: candidate.version };
    try {
      const chosen = await sessionForStored(ctx, candidate);
      const serving = withChoice(candidate, chosen);
      if (isPrevious) {
        // The active version is unusable: make the previous one active, durably.
        const { previous: _dropped, ...rest } = record;
        state.record = { ...rest, active: serving };
        try {
          await store.writeRecord(state.record);
        } catch (error) {
          await chosen.live.retire();
          throw error;
        }
        events.emit('rolled-back', {
          model,
          from: record.active?.version ?? 'none',
          reason: state.lastError?.message ?? 'the active version could not be restored',
        });
      } else if (serving !== candidate) {
        // Chosen afresh (the device changed): kept, so the next start goes straight to it. A
        // failed write only means choosing again next time.
        state.record = { ...record, active: serving };
        await store.writeRecord(state.record).catch((error: unknown) => events.emit('error', { error }));
      }
      state.live = chosen.live;
      if (!isPrevious) await restoreShadow(ctx, state);
      events.emit('restored', {
        model,
        executionProvider: chosen.executionProvider,
        variant: candidate.variant ?? REFERENCE_VARIANT,
        ...(chosen.decided ? { providers: chosen.providers } : {}),
      });
      return;
    } catch (error) {
      const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_STORE_UNAVAILABLE', String(error), { cause: error });
      state.lastError = { code: coded.code, message: coded.message };
      events.emit('restore-failed', { name: record.name, version: candidate.version, error: state.lastError });
    }
  }
}

/** The shadow a model had at shutdown, back beside its active version; one that cannot come back is dropped. */
async function restoreShadow(ctx: RuntimeContext, state: ModelState): Promise<void> {
  const shadow = state.record.shadow;
  if (!shadow) return;
  try {
    const chosen = await sessionForStored(ctx, shadow.version);
    state.shadow = { installed: withChoice(shadow.version, chosen), live: chosen.live, rate: shadow.rate, running: false, spent: [] };
  } catch (error) {
    const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_STORE_UNAVAILABLE', String(error), { cause: error });
    ctx.events.emit('shadow-failed', {
      model: { name: state.record.name, version: shadow.version.version },
      error: { code: coded.code, message: coded.message },
    });
    const { shadow: _dropped, ...rest } = state.record;
    state.record = rest;
    await ctx.store.writeRecord(rest).catch((failure: unknown) => ctx.events.emit('error', { error: failure }));
  }
}

/** Makes the previous version active again (the caller holds the model's queue). */
export async function rollbackModel(ctx: RuntimeContext, name: string): Promise<ModelInfo> {
  const state = ctx.states.get(name);
  const target = state?.record.previous;
  const current = state?.record.active;
  if (!state || !target || !current) {
    throw new EdgefleetError('EF_ROLLBACK_UNAVAILABLE', `"${name}" has no previous version to roll back to`);
  }
  const chosen = await sessionForStored(ctx, target);
  const record: ModelRecord = {
    ...state.record,
    active: { ...withChoice(target, chosen), activatedAt: timestamp(ctx.now()) },
    previous: current,
  };
  try {
    await ctx.store.writeRecord(record);
  } catch (error) {
    await chosen.live.retire();
    throw error;
  }
  const old = state.live;
  state.record = record;
  state.live = chosen.live;
  await old?.retire();
  ctx.events.emit('rolled-back', { model: { name, version: target.version }, from: current.version, reason: 'requested' });
  return ctx.info(name);
}

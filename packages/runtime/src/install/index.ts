/**
 * How a model is installed, step by step (each step named for `hooks.onStep`):
 *
 *   verified    signature, expiry, device target, version floor (or a signed rollback document)
 *   downloaded  every file streamed, size-capped and sha256-checked into the store (resumable)
 *   stored      golden vectors read and checked against the model's signature
 *   accepted    an execution provider chosen: loaded, acceptance-tested, measured (engine/select.ts)
 *   activated   the model record flipped in one atomic write (the only point of no return)
 *   confirmed   the old session retired, `activated` emitted with the choice and the latency probe
 *
 * A failure at any step before `activated` leaves the previous version active and serving; the
 * artifacts it stored are pinned until then, and collected afterwards if nothing refers to them.
 */
import {
  checkVersionFloor,
  compareSemver,
  EdgefleetError,
  type ManifestPayload,
  type ModelRef,
  type SignedDocument,
  type Trust,
  timestamp,
  verifyDesiredState,
} from '@edgefleet/protocol';
import { type LatencyProbe, probeLatency } from '../acceptance/latency.ts';
import { acceptanceVectors } from '../acceptance/vectors.ts';
import { RUNTIME_VERSION } from '../defaults.ts';
import { type ArtifactSource, downloadArtifact } from '../download/index.ts';
import type { RuntimeContext } from '../runtime/context.ts';
import type { InstallOptions, ModelInfo, ModelState } from '../runtime/types.ts';
import type { InstalledVersion, ModelRecord } from '../store/types.ts';

/** The manifest is for this device: its class, and a runtime at least as new as it needs. */
export function checkTarget(manifest: ManifestPayload, deviceClass: string | undefined): void {
  const classes = manifest.runtime.deviceClasses;
  if (classes && (deviceClass === undefined || !classes.includes(deviceClass))) {
    throw new EdgefleetError(
      'EF_MODEL_TARGET_MISMATCH',
      `${manifest.name}@${manifest.version} is built for device classes ${classes.join(', ')}; this device is ${deviceClass ?? 'unclassified'}`,
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

/**
 * A rollback install (below the version floor) must come with a verified desired-state document,
 * addressed to this device, that says rollback and lists this exact manifest.
 */
export function rollbackAllowed(
  manifest: ManifestPayload,
  document: unknown,
  device: { readonly trust: Trust; readonly deviceId: string | undefined; readonly now: number },
): boolean {
  if (document === undefined) return false;
  if (device.deviceId === undefined) {
    throw new EdgefleetError('EF_DESIRED_STATE_WRONG_DEVICE', 'this runtime has no deviceId, so it cannot accept a signed rollback');
  }
  const verified = verifyDesiredState(document, device.trust, { deviceId: device.deviceId, now: device.now });
  const listed = verified.manifests.some(
    (m) => m.name === manifest.name && m.version === manifest.version && m.artifact.sha256 === manifest.artifact.sha256,
  );
  return verified.payload.rollback && listed;
}

/** Streams one file into the store unless it is there already (content-addressed: same hash, same bytes). */
async function storeFile(
  ctx: RuntimeContext,
  file: { readonly name: string; readonly sha256: string; readonly size: number },
  source: ArtifactSource,
  model: ModelRef,
  install: InstallOptions,
): Promise<void> {
  const { store } = ctx;
  if (await store.hasArtifact(file.sha256)) return;
  const writer = await downloadArtifact(source, {
    sha256: file.sha256,
    size: file.size,
    label: `${model.name}@${model.version} ${file.name}`,
    openWriter: () => store.createArtifactWriter(file.sha256),
    createHasher: ctx.createHasher,
    policy: ctx.download,
    ...(ctx.options.fetch ? { fetch: ctx.options.fetch } : {}),
    ...(install.signal ? { signal: install.signal } : {}),
    onProgress: (progress) => {
      ctx.events.emit('download-progress', { model, file: file.name, ...progress });
      install.onProgress?.({ ...progress, file: file.name });
    },
  });
  try {
    await writer.commit();
  } catch (error) {
    await writer.abort();
    throw error;
  }
}

/** The record after activating `installed`: the replaced version kept as previous, the floor raised. */
function nextRecord(
  record: ModelRecord,
  installed: InstalledVersion,
  signed: SignedDocument<ManifestPayload>,
  rollback: boolean,
): ModelRecord {
  const current = record.active;
  const previous = current && current.sha256 !== installed.sha256 ? current : record.previous;
  const floorVersion = record.floor?.version;
  const raise = rollback || floorVersion === undefined || compareSemver(installed.version, floorVersion) > 0;
  return {
    name: record.name,
    active: installed,
    ...(previous ? { previous } : {}),
    ...(raise
      ? { floor: { version: installed.version, keyIds: signed.signatures.map((s) => s.keyId) } }
      : record.floor
        ? { floor: record.floor }
        : {}),
  };
}

/**
 * Installs a verified manifest: the caller holds the model's queue (one operation per model at a
 * time) and has verified `manifest` from `signed`.
 */
export async function installModel(
  ctx: RuntimeContext,
  manifest: ManifestPayload,
  signed: SignedDocument<ManifestPayload>,
  source: ArtifactSource,
  installOptions: InstallOptions,
): Promise<ModelInfo> {
  const { store, events, states } = ctx;
  const model = { name: manifest.name, version: manifest.version };
  const state: ModelState = states.get(manifest.name) ?? {
    record: { name: manifest.name },
    installing: false,
    lastProfiled: Number.NEGATIVE_INFINITY,
  };
  const current = state.record.active;
  if (current && state.live && current.sha256 === manifest.artifact.sha256 && current.version === manifest.version) {
    return ctx.info(manifest.name); // already running exactly this: idempotent
  }
  states.set(manifest.name, state);
  state.installing = true;
  const artifacts = [manifest.artifact.sha256, ...manifest.files.map((f) => f.sha256)];
  ctx.artifacts.pin(artifacts); // a concurrent install's garbage collection must not take them
  let pinned = true;
  const release = () => {
    if (pinned) ctx.artifacts.unpin(artifacts);
    pinned = false;
  };
  try {
    checkTarget(manifest, ctx.options.deviceClass);
    const rollback = rollbackAllowed(manifest, installOptions.rollback, {
      trust: ctx.trust,
      deviceId: ctx.options.deviceId,
      now: ctx.now(),
    });
    checkVersionFloor(manifest.name, manifest.version, state.record.floor?.version, rollback);
    await ctx.step('verified', model);
    events.emit('verified', { model });

    for (const file of manifest.files) {
      const fileSource = installOptions.files?.[file.name];
      if (fileSource === undefined) {
        throw new EdgefleetError(
          'EF_ARTIFACT_SOURCE_MISSING',
          `${model.name}@${model.version} lists file "${file.name}" but install got no source for it`,
        );
      }
      await storeFile(ctx, file, fileSource, model, installOptions);
    }
    await storeFile(ctx, { name: 'model', ...manifest.artifact }, source, model, installOptions);
    await ctx.step('downloaded', model);
    const bytes = await store.readArtifact(manifest.artifact.sha256);
    const files = Object.fromEntries(manifest.files.map((f) => [f.name, f.sha256]));
    // Read and checked before any session is built: acceptance data that cannot be checked stops
    // the install here (the model never activates untested).
    const vectors = await acceptanceVectors(store, manifest, files);
    await ctx.step('stored', model);

    const chosen = await ctx.providers.choose(manifest, bytes, { loadVectors: async () => vectors });
    const { live, executionProvider } = chosen;
    await ctx.step('accepted', model);
    let latency: LatencyProbe | undefined;
    try {
      latency = await probeLatency(live, state.live, vectors, ctx.latencyProbeRuns);
    } catch (error) {
      // The acceptance test ran these inputs already; a probe failure must not fail the install.
      events.emit('error', { error });
    }

    const installed: InstalledVersion = {
      version: manifest.version,
      sha256: manifest.artifact.sha256,
      manifest: signed,
      files,
      executionProvider,
      activatedAt: timestamp(ctx.now()),
      providers: chosen.providers,
      providerFingerprint: chosen.fingerprint,
    };
    const record = nextRecord(state.record, installed, signed, rollback);
    try {
      await store.writeRecord(record); // the atomic flip
    } catch (error) {
      await live.retire();
      throw error;
    }
    await ctx.step('activated', model);
    const old = state.live;
    state.record = record;
    state.live = live;
    state.installing = false;
    delete state.lastError;
    await old?.retire();
    await ctx.step('confirmed', model);
    events.emit('activated', {
      model,
      executionProvider,
      providers: chosen.providers,
      ...(current ? { previous: current.version } : {}),
      ...(latency ? { latency } : {}),
    });
    release();
    await ctx.artifacts.collectLater();
    return ctx.info(manifest.name);
  } catch (error) {
    const coded = error instanceof EdgefleetError ? error : new EdgefleetError('EF_INTERNAL_ERROR', String(error), { cause: error });
    state.lastError = { code: coded.code, message: coded.message };
    events.emit('install-failed', { model, error: state.lastError });
    release();
    await ctx.artifacts.collectLater();
    throw coded;
  } finally {
    release();
    state.installing = false;
    if (!state.record.active && !state.live) states.delete(manifest.name);
  }
}

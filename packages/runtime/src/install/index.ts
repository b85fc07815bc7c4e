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
  ERRORS,
  type GoldenVector,
  type ManifestPayload,
  type ModelRef,
  REFERENCE_VARIANT,
  type SignedDocument,
  type Trust,
  timestamp,
  verifyDesiredState,
} from '@edgefleet/protocol';
import { type LatencyProbe, probeLatency } from '../acceptance/latency.ts';
import { acceptanceVectors } from '../acceptance/vectors.ts';
import { RUNTIME_VERSION } from '../defaults.ts';
import { type ArtifactSource, downloadArtifact } from '../download/index.ts';
import type { ChosenProvider } from '../engine/select.ts';
import type { RuntimeContext } from '../runtime/context.ts';
import type { InstallOptions, ModelInfo, ModelState } from '../runtime/types.ts';
import { endShadowIfLive } from '../shadow/index.ts';
import type { InstalledVersion, ModelRecord } from '../store/types.ts';
import { planVariants, type VariantCandidate } from './variants.ts';

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

/** An installed version is this manifest's release: same version, same reference artifact (whichever variant serves). */
function sameRelease(installed: InstalledVersion, manifest: ManifestPayload): boolean {
  return installed.version === manifest.version && installed.manifest.payload.artifact.sha256 === manifest.artifact.sha256;
}

/** Marks an error that no other variant could get past (the acceptance data itself is bad). */
const FATAL = Symbol('fatal');

/** The record after activating `installed`: the replaced version kept as previous, the floor raised. */
function nextRecord(
  record: ModelRecord,
  installed: InstalledVersion,
  signed: SignedDocument<ManifestPayload>,
  rollback: boolean,
): ModelRecord {
  const current = record.active;
  const previous = current && !sameRelease(current, installed.manifest.payload) ? current : record.previous;
  const floorVersion = record.floor?.version;
  const raise = rollback || floorVersion === undefined || compareSemver(installed.version, floorVersion) > 0;
  // A shadow of another version stays; the shadow of this one has gone live.
  const shadow = record.shadow && record.shadow.version.version !== installed.version ? record.shadow : undefined;
  return {
    name: record.name,
    active: installed,
    ...(previous ? { previous } : {}),
    ...(shadow ? { shadow } : {}),
    ...(raise
      ? { floor: { version: installed.version, keyIds: signed.signatures.map((s) => s.keyId) } }
      : record.floor
        ? { floor: record.floor }
        : {}),
  };
}

/** What an install or a shadow gets ready: the chosen build of the version, loaded and accepted. */
export interface PreparedBuild {
  readonly candidate: VariantCandidate;
  readonly chosen: ChosenProvider;
  /** Content hashes of the manifest's other files, by name. */
  readonly files: Record<string, string>;
  readonly vectors: readonly GoldenVector[];
}

/**
 * Downloads the manifest's files, then the best build this device can run (install/variants.ts),
 * the next when one fails, the reference last: loaded, acceptance-tested and its provider chosen.
 * Steps `downloaded` and `stored` are reported as they pass.
 */
export async function prepareBuild(
  ctx: RuntimeContext,
  manifest: ManifestPayload,
  source: ArtifactSource,
  installOptions: InstallOptions,
): Promise<PreparedBuild> {
  const { store, events } = ctx;
  const model = { name: manifest.name, version: manifest.version };
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
  const files = Object.fromEntries(manifest.files.map((f) => [f.name, f.sha256]));

  // The best variant this device can run, then the next when one fails (install/variants.ts);
  // without variants, the one candidate is the manifest's artifact, as it always was.
  const plan = planVariants(manifest, ctx.providers, ctx.options.variants);
  const failures: string[] = plan.skipped.map((s) => `${s.name}: ${s.reason}`);
  let vectors: readonly GoldenVector[] | undefined;
  let downloaded = false;
  let served: { candidate: VariantCandidate; chosen: ChosenProvider } | undefined;
  for (const [index, candidate] of plan.candidates.entries()) {
    const last = index === plan.candidates.length - 1;
    try {
      const candidateSource = candidate.name === REFERENCE_VARIANT ? source : installOptions.variants?.[candidate.name];
      if (candidateSource === undefined) {
        throw new EdgefleetError(
          'EF_ARTIFACT_SOURCE_MISSING',
          `${model.name}@${model.version} lists variant "${candidate.name}" but install got no source for it`,
        );
      }
      const label = candidate.name === REFERENCE_VARIANT ? 'model' : `variant ${candidate.name}`;
      await storeFile(ctx, { name: label, sha256: candidate.sha256, size: candidate.size }, candidateSource, model, installOptions);
      if (!downloaded) await ctx.step('downloaded', model);
      downloaded = true;
      const bytes = await store.readArtifact(candidate.sha256);
      if (vectors === undefined) {
        // Read and checked before any session is built: acceptance data that cannot be checked
        // stops the install here (the model never activates untested), whatever the variant.
        try {
          vectors = await acceptanceVectors(store, manifest, files);
        } catch (error) {
          throw Object.assign(error as object, { [FATAL]: true });
        }
        await ctx.step('stored', model);
      }
      const loaded = vectors;
      const chosen = await ctx.providers.choose(candidate.manifest, bytes, {
        loadVectors: async () => loaded,
        ...(plan.candidates.length > 1 ? { variant: candidate.name } : {}),
      });
      served = { candidate, chosen };
      break;
    } catch (error) {
      if (last || installOptions.signal?.aborted || (error as { [FATAL]?: boolean })[FATAL]) {
        if (failures.length === 0 || !(error instanceof EdgefleetError)) throw error;
        const detail = error.message.slice(`${error.code}: `.length, error.message.length - `. ${ERRORS[error.code].fix}`.length);
        throw new EdgefleetError(error.code, `${detail}; variants passed over before it: ${failures.join('; ')}`.slice(0, 2000), {
          cause: error,
          details: { ...error.details, variants: failures },
        });
      }
      const reason = `${(error as Error).message}`.slice(0, 500);
      failures.push(`${candidate.name}: ${reason}`);
      const next = plan.candidates[index + 1] as VariantCandidate;
      events.emit('variant-fallback', { model, from: candidate.name, to: next.name, reason });
    }
  }
  if (!served) throw new EdgefleetError('EF_INTERNAL_ERROR', `${model.name}@${model.version}: no variant was tried`);
  return { ...served, files, vectors: vectors ?? [] };
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
  if (current && state.live && sameRelease(current, manifest)) {
    return ctx.info(manifest.name); // already running exactly this: idempotent
  }
  states.set(manifest.name, state);
  state.installing = true;
  const artifacts = [manifest.artifact.sha256, ...(manifest.variants ?? []).map((v) => v.sha256), ...manifest.files.map((f) => f.sha256)];
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

    const { candidate, chosen, files, vectors } = await prepareBuild(ctx, manifest, source, installOptions);
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
      sha256: candidate.sha256,
      ...(candidate.name !== REFERENCE_VARIANT ? { variant: candidate.name } : {}),
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
    await endShadowIfLive(ctx, state);
    await ctx.step('confirmed', model);
    events.emit('activated', {
      model,
      executionProvider,
      variant: candidate.name,
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

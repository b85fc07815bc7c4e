/**
 * The device side of the protocol as pure functions, shared by every agent (a real device, a
 * browser tab, each of the simulator's devices): what a verified desired state asks of a device
 * that runs these models, the reported state it answers with, and the coded error an event carries.
 * No I/O here: the agent (agent.ts) applies a plan with its runtime and publishes what these build.
 */
import {
  isEdgefleetError,
  type ManifestPayload,
  type ReportedState,
  type SignedDocument,
  timestamp,
  type VerifiedDesiredState,
} from '@edgefleet/protocol';
import type { ModelInfo } from '@edgefleet/runtime/core';

export interface PlannedInstall {
  readonly manifest: ManifestPayload;
  readonly signed: SignedDocument<ManifestPayload>;
  readonly rolloutId?: string;
}

export interface Plan {
  readonly sequence: number;
  /** At or below the sequence already applied (a retained copy after a reconnect, a replay): nothing to do but report. */
  readonly stale: boolean;
  /** Models whose active version differs from the desired one (by version or by bytes), in document order. */
  readonly installs: readonly PlannedInstall[];
  /** Installed models the document removes, with the version they ran. */
  readonly removes: readonly { readonly name: string; readonly version?: string }[];
  /** The rollout each desired model belongs to, by model name. */
  readonly rollouts: ReadonlyMap<string, string>;
  /** A signed rollback: installs may go below the version floor. */
  readonly rollback: boolean;
  /** Candidates to run in shadow (a rollout's shadow stage) that do not run so yet, after the installs. */
  readonly shadows: readonly (PlannedInstall & { readonly rate: number })[];
  /** Models whose shadow the document no longer asks for. */
  readonly unshadows: readonly string[];
}

/** What a verified desired state asks of a device whose runtime reports `installed`. */
export function planReconcile(desired: VerifiedDesiredState, installed: readonly ModelInfo[], appliedSequence: number): Plan {
  const { payload } = desired;
  const byName = new Map(installed.map((m) => [m.name, m]));
  // Matched by name, never by position: the verified manifests and the document's entries are one list today, but nothing promises it.
  const entries = new Map(payload.models.map((m) => [m.manifest.payload.name, m]));
  const rollouts = new Map(payload.models.flatMap((m) => (m.rolloutId ? [[m.manifest.payload.name, m.rolloutId] as const] : [])));
  const installs: PlannedInstall[] = [];
  for (const manifest of desired.manifests) {
    const current = byName.get(manifest.name)?.active;
    if (current && current.version === manifest.version && current.sha256 === manifest.artifact.sha256) continue;
    const entry = entries.get(manifest.name);
    if (!entry) continue;
    installs.push({
      manifest,
      signed: entry.manifest as SignedDocument<ManifestPayload>,
      ...(entry.rolloutId ? { rolloutId: entry.rolloutId } : {}),
    });
  }
  const shadows: (PlannedInstall & { rate: number })[] = [];
  const unshadows: string[] = [];
  for (const [name, entry] of entries) {
    const wanted = desired.shadows.get(name);
    const running = byName.get(name)?.shadow;
    if (!wanted || !entry.shadow) {
      if (running) unshadows.push(name);
      continue;
    }
    if (running && running.version === wanted.version && running.rate === entry.shadow.rate) continue;
    shadows.push({
      manifest: wanted,
      signed: entry.shadow.manifest as SignedDocument<ManifestPayload>,
      rate: entry.shadow.rate,
      ...(entry.rolloutId ? { rolloutId: entry.rolloutId } : {}),
    });
  }
  // A model the document does not list keeps no shadow either.
  for (const model of installed)
    if (model.shadow && !entries.has(model.name) && !unshadows.includes(model.name)) unshadows.push(model.name);
  const removes = payload.remove.flatMap((name) => {
    const model = byName.get(name);
    if (!model) return [];
    return [{ name, ...(model.active ? { version: model.active.version } : {}) }];
  });
  return {
    sequence: payload.sequence,
    stale: payload.sequence <= appliedSequence,
    installs,
    removes,
    rollouts,
    rollback: payload.rollback,
    shadows,
    unshadows,
  };
}

export interface ReportInput {
  readonly deviceId: string;
  readonly bootId: string;
  readonly at: number;
  readonly appliedSequence: number;
  readonly agent: ReportedState['agent'];
  readonly models: readonly ModelInfo[];
}

/** The retained reported state: each model as the runtime sees it, bounded to what the schema allows. */
export function reportedState(input: ReportInput): ReportedState {
  const models = input.models.map((m): ReportedState['models'][number] => ({
    name: m.name,
    state: m.state === 'active' ? 'active' : m.state === 'installing' ? 'installing' : 'failed',
    ...(m.active
      ? {
          active: {
            version: m.active.version,
            sha256: m.active.sha256,
            executionProvider: m.active.executionProvider,
            // Older runtimes than this agent say nothing: the reference serves there.
            ...(m.active.variant ? { variant: m.active.variant } : {}),
            activatedAt: m.active.activatedAt,
            // The verdicts without their reasons (the `activated` event has them): the report stays small.
            ...(m.active.providers ? { providers: m.active.providers.slice(0, 6).map(({ reason: _reason, ...rest }) => rest) } : {}),
          },
        }
      : {}),
    ...(m.previous ? { previous: m.previous } : {}),
    ...(m.shadow ? { shadow: m.shadow } : {}),
    ...(m.floor ? { floor: m.floor } : {}),
    ...(m.lastError ? { lastError: { code: m.lastError.code, message: m.lastError.message.slice(0, 2000) } } : {}),
  }));
  return {
    type: 'edgefleet.reported-state/v1',
    deviceId: input.deviceId,
    bootId: input.bootId,
    reportedAt: timestamp(input.at),
    appliedSequence: input.appliedSequence,
    agent: input.agent,
    capabilities: {
      executionProviders: [...new Set(input.models.flatMap((m) => (m.active ? [m.active.executionProvider] : [])))],
    },
    models,
  };
}

/** The coded error an event carries: a registered code, or EF_INTERNAL_ERROR for anything else. */
export function errorInfo(error: unknown): { code: string; message: string } {
  return isEdgefleetError(error)
    ? { code: error.code, message: error.message.slice(0, 2000) }
    : { code: 'EF_INTERNAL_ERROR', message: String(error).slice(0, 2000) };
}

/**
 * What a rollout is asked to do: its schema (the HTTP body of POST /v1/rollouts, built from the
 * protocol's schemas; the TypeScript type is derived from it), its defaults in one place, and the
 * pure helpers that place devices into stages.
 */
import { createHash } from 'node:crypto';
import { DeviceId, EdgefleetError, ModelName, Tag } from '@edgefleet/protocol';
import Type, { type Static } from 'typebox';
import type { StageGates } from './decide.ts';

const Stage = Type.Object(
  {
    percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'cumulative share of the targeted devices' })),
    count: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000_000, description: 'cumulative number of devices' })),
    soakSeconds: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 30 * 24 * 3600, description: 'how long a healthy stage is watched before the next opens' }),
    ),
    shadow: Type.Optional(
      Type.Boolean({
        description:
          'a shadow stage: its devices run the version in shadow beside the one they run (it never answers); the shadow gates judge its comparisons. Shadow stages come first; the last stage never is one',
      }),
    ),
    shadowRate: Type.Optional(
      Type.Number({
        exclusiveMinimum: 0,
        maximum: 1,
        description: 'share of live inputs the candidate also runs on in a shadow stage (default 0.1)',
      }),
    ),
  },
  { additionalProperties: false },
);

export const RolloutSpecSchema = Type.Object(
  {
    model: ModelName,
    version: Type.String({
      minLength: 1,
      maxLength: 64,
      description: 'a semantic version in the registry, or an alias (e.g. "production"), resolved and recorded at creation',
    }),
    selector: Type.Object(
      {
        all: Type.Optional(Type.Literal(true, { description: 'every active device of the fleet (alone: no tags, no devices)' })),
        tags: Type.Optional(Type.Array(Tag, { maxItems: 16, description: 'devices carrying every one of these tags' })),
        devices: Type.Optional(Type.Array(DeviceId, { maxItems: 100_000, description: 'these devices' })),
      },
      { additionalProperties: false, description: 'which devices: tags and/or device ids, or {"all": true}' },
    ),
    stages: Type.Array(Stage, { minItems: 1, maxItems: 20 }),
    gates: Type.Optional(
      Type.Object(
        {
          maxFailureRate: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 1,
              description: 'largest share of failed devices (download, verification, acceptance) in a stage',
            }),
          ),
          minDevicesReporting: Type.Optional(
            Type.Integer({ minimum: 0, maximum: 10_000_000, description: 'devices that must have reported before a stage can pass' }),
          ),
          maxLatencyRatio: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 1_000_000,
              description:
                "largest median, over the stage's devices, of the install-time p95 latency of the new version over the replaced one",
            }),
          ),
          maxDriftScore: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'largest share of drifting features, 0-1' })),
          maxOutputShift: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 100,
              description: 'largest output distance from the replaced version (JS or normed Wasserstein)',
            }),
          ),
          minShadowAgreement: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 1,
              description: 'shadow stages: least share of compared inputs on which the candidate picked the same class as the live version',
            }),
          ),
          maxShadowLatencyRatio: Type.Optional(
            Type.Number({
              exclusiveMinimum: 0,
              maximum: 1_000_000,
              description: "shadow stages: largest median of the candidate's latency over the live version's on the same input",
            }),
          ),
          minShadowRuns: Type.Optional(
            Type.Integer({
              minimum: 1,
              maximum: 1_000_000_000,
              description: 'shadow stages: inputs compared over the stage before its gates decide (default 100)',
            }),
          ),
          maxShadowErrorRate: Type.Optional(
            Type.Number({
              minimum: 0,
              maximum: 1,
              description: 'shadow stages: largest share of shadow runs that failed where the live version answered (default 0)',
            }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    onGateFailure: Type.Optional(Type.Enum(['pause', 'rollback'])),
    offlineAfterSeconds: Type.Optional(
      Type.Integer({
        minimum: 10,
        maximum: 30 * 24 * 3600,
        description: 'seconds without a sign of life after which a device no longer blocks a stage',
      }),
    ),
    rollback: Type.Optional(
      Type.Boolean({ description: 'a fleet-wide rollback: the version may be older than what devices run (signed as a rollback)' }),
    ),
    policyOverride: Type.Optional(
      Type.Object(
        { reason: Type.String({ minLength: 3, maxLength: 500, description: 'why this version goes out although it fails the policy' }) },
        {
          additionalProperties: false,
          description: 'roll out a version that fails its model’s promotion policy (GET …/verdict says why); audited with the failures',
        },
      ),
    ),
  },
  { additionalProperties: false, title: 'rollout' },
);

export type RolloutSpec = Static<typeof RolloutSpecSchema>;
export type StageSpec = RolloutSpec['stages'][number];
export type GateSpec = NonNullable<RolloutSpec['gates']>;

/** Every default of a rollout, in one place. */
export const ROLLOUT_DEFAULTS = {
  maxFailureRate: 0,
  minDevicesReporting: 1,
  onGateFailure: 'rollback' as const,
  /** Five minutes without a sign of life (a reconnecting device is seen well within that). */
  offlineAfterSeconds: 300,
  soakSeconds: 0,
  shadowRate: 0.1,
  minShadowRuns: 100,
  maxShadowErrorRate: 0,
};

/** The gates of the current stage, defaults applied. */
export function stageGates(spec: RolloutSpec, stage: number): StageGates {
  const gates = { ...ROLLOUT_DEFAULTS, ...spec.gates };
  return {
    maxFailureRate: gates.maxFailureRate,
    minDevicesReporting: gates.minDevicesReporting,
    maxLatencyRatio: gates.maxLatencyRatio,
    maxDriftScore: gates.maxDriftScore,
    maxOutputShift: gates.maxOutputShift,
    soakMs: (spec.stages[stage]?.soakSeconds ?? ROLLOUT_DEFAULTS.soakSeconds) * 1000,
    onGateFailure: spec.onGateFailure ?? ROLLOUT_DEFAULTS.onGateFailure,
    ...(isShadowStage(spec, stage)
      ? {
          shadow: {
            minAgreement: gates.minShadowAgreement,
            maxLatencyRatio: gates.maxShadowLatencyRatio,
            minRuns: gates.minShadowRuns,
            maxErrorRate: gates.maxShadowErrorRate,
          },
        }
      : {}),
  };
}

/** Is a stage a shadow stage (its devices run the version in shadow, not live)? */
export function isShadowStage(spec: Pick<RolloutSpec, 'stages'>, stage: number): boolean {
  return spec.stages[stage]?.shadow === true;
}

/**
 * Shadow stages are a rehearsal before the version answers for real: they come first (a device
 * that already runs the version live has nothing to compare it with), at least one stage after
 * them puts it live, and a rollback has nothing to rehearse.
 */
export function checkStages(spec: RolloutSpec): void {
  const invalid = (message: string) => new EdgefleetError('EF_ROLLOUT_STAGES_INVALID', message);
  const firstLive = spec.stages.findIndex((stage) => stage.shadow !== true);
  if (firstLive === -1) {
    throw invalid(
      'every stage is a shadow stage: the version would never answer for real; end with a stage without "shadow" (e.g. {"percent": 100})',
    );
  }
  const late = spec.stages.findIndex((stage, index) => index > firstLive && stage.shadow === true);
  if (late !== -1) {
    throw invalid(
      `stage ${late} is a shadow stage after stage ${firstLive} put the version live; shadow stages come first, before any live stage`,
    );
  }
  const rate = spec.stages.findIndex((stage) => stage.shadowRate !== undefined && stage.shadow !== true);
  if (rate !== -1) throw invalid(`stage ${rate} has a shadowRate but is not a shadow stage; add "shadow": true or drop the rate`);
  const shadowGates = (['minShadowAgreement', 'maxShadowLatencyRatio', 'minShadowRuns', 'maxShadowErrorRate'] as const).filter(
    (gate) => spec.gates?.[gate] !== undefined,
  );
  if (firstLive === 0 && shadowGates.length > 0) {
    throw invalid(`${shadowGates.join(', ')} judge shadow stages, and this rollout has none: add a first stage with "shadow": true`);
  }
  if (firstLive > 0 && spec.rollback === true) {
    throw invalid('a rollback runs no shadow stage: the version it returns to has run already; drop "shadow" from its stages');
  }
}

/**
 * An empty selector is a careless admin's whole fleet (THREATS 23): targeting everything is said
 * with `{ all: true }` alone, anything else must name tags or devices.
 */
export function checkSelector(selector: RolloutSpec['selector']): void {
  const named = (selector.tags?.length ?? 0) > 0 || (selector.devices?.length ?? 0) > 0;
  const empties = (['tags', 'devices'] as const).filter((key) => selector[key] !== undefined && selector[key].length === 0);
  if (selector.all === true) {
    if (selector.tags !== undefined || selector.devices !== undefined) {
      throw new EdgefleetError(
        'EF_ROLLOUT_SELECTOR_INVALID',
        'the selector says "all": true and also names tags or devices; use {"all": true} alone for the whole fleet, or only tags/devices',
      );
    }
    return;
  }
  if (!named || empties.length > 0) {
    throw new EdgefleetError(
      'EF_ROLLOUT_SELECTOR_INVALID',
      `the selector ${JSON.stringify(selector)} names no devices${empties.length > 0 ? ` (empty ${empties.join(' and ')})` : ''}; give tags or device ids, or {"all": true} to target the whole fleet`,
    );
  }
}

/** Does a device (its id and tags) fall under a selector? */
export function selects(selector: RolloutSpec['selector'], device: { readonly id: string; readonly tags: readonly string[] }): boolean {
  if (selector.all === true) return true;
  return (selector.devices?.includes(device.id) ?? true) && (selector.tags ?? []).every((t) => device.tags.includes(t));
}

/** A device's deterministic position in [0, 1) for a rollout. */
export function cohortOf(rolloutId: string, deviceId: string): number {
  return createHash('sha256').update(`${rolloutId}\n${deviceId}`).digest().readUInt32BE(0) / 2 ** 32;
}

/** Device ids in their cohort order for a rollout: the first stage takes the first of them. */
export function orderByCohort(rolloutId: string, deviceIds: readonly string[]): string[] {
  return deviceIds
    .map((id) => ({ id, cohort: cohortOf(rolloutId, id) }))
    .sort((a, b) => a.cohort - b.cohort)
    .map((d) => d.id);
}

/** Cumulative stage sizes for n devices: stage k covers the first sizes[k] devices by cohort. */
export function stageSizes(stages: readonly StageSpec[], n: number): number[] {
  let previous = 0;
  return stages.map((stage, index) => {
    const wanted = stage.count !== undefined ? stage.count : Math.ceil(((stage.percent ?? 100) / 100) * n);
    // Every stage adds at least one device while devices remain, and the last covers them all.
    const size = index === stages.length - 1 ? n : Math.min(n, Math.max(previous + (previous < n ? 1 : 0), wanted));
    previous = size;
    return size;
  });
}

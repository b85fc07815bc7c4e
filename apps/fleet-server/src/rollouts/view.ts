/** What the rollout API shows: a rollout with per-stage progress and every member's status. */
import type { RolloutDevicesTable, RolloutsTable } from '../store/schema.ts';
import type { ShadowReadings } from './shadow-gates.ts';
import type { RolloutSpec } from './spec.ts';

export interface StageProgress {
  readonly stage: number;
  readonly size: number;
  /** A shadow stage: its members run the version in shadow (see `shadowing`), not live. */
  readonly shadow: boolean;
  readonly active: number;
  readonly shadowing: number;
  readonly failed: number;
  readonly pending: number;
  readonly offline: number;
}

/** A gate as the engine last measured it: value null while it cannot be measured yet. */
export interface GateValue {
  readonly name:
    | 'failure_rate'
    | 'devices_reporting'
    | 'latency_ratio'
    | 'drift_score'
    | 'output_shift'
    | 'shadow_runs'
    | 'shadow_error_rate'
    | 'shadow_agreement'
    | 'shadow_latency_ratio';
  readonly value: number | null;
  readonly threshold: number;
  /** How the value passes: at most (`max`) or at least (`min`) the threshold. */
  readonly bound: 'max' | 'min';
}

/** The current stage's gates, as last measured, or null when the engine has not measured them. */
export interface GateReadings {
  readonly stage: number;
  readonly measuredAt: string;
  readonly gates: readonly GateValue[];
  /** In a shadow stage: what the candidate's comparisons add up to so far. */
  readonly shadow?: ShadowReadings;
}

export interface RolloutView {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  /** The alias the version was given as at creation (resolved then, never again), or null. */
  readonly versionAlias: string | null;
  readonly state: RolloutsTable['state'];
  readonly currentStage: number;
  readonly stageStartedAt: string;
  readonly spec: RolloutSpec;
  readonly reason: unknown;
  readonly stages: StageProgress[];
  /** The current stage's gates as last measured (live rollouts; a paused one keeps its last). */
  readonly gates: GateReadings | null;
  readonly devices: {
    id: string;
    stage: number;
    status: RolloutDevicesTable['status'];
    previousVersion: string | null;
    errorCode: string | null;
  }[];
  readonly createdAt: string;
  readonly createdBy: string;
}

/** Builds the view from a rollout, its members (by cohort) and the ids of those offline. */
export function rolloutView(
  row: RolloutsTable,
  members: readonly RolloutDevicesTable[],
  offline: ReadonlySet<string>,
  gates: GateReadings | null = null,
): RolloutView {
  const { alias, ...spec } = JSON.parse(row.spec) as RolloutSpec & { alias?: string };
  const waiting = (d: RolloutDevicesTable) => d.status === 'pending' || d.status === 'assigned';
  const stages = spec.stages.map((_, stage) => {
    const inStage = members.filter((d) => d.stage <= stage);
    return {
      stage,
      size: inStage.length,
      shadow: spec.stages[stage]?.shadow === true,
      active: inStage.filter((d) => d.status === 'active').length,
      shadowing: inStage.filter((d) => d.status === 'shadowing').length,
      failed: inStage.filter((d) => d.status === 'failed').length,
      pending: inStage.filter(waiting).length,
      offline: inStage.filter((d) => waiting(d) && offline.has(d.device_id)).length,
    };
  });
  return {
    id: row.id,
    model: row.model,
    version: row.version,
    versionAlias: alias ?? null,
    state: row.state,
    currentStage: row.current_stage,
    stageStartedAt: row.stage_started_at,
    spec,
    reason: row.reason ? (JSON.parse(row.reason) as unknown) : null,
    stages,
    gates,
    devices: members.map((d) => ({
      id: d.device_id,
      stage: d.stage,
      status: d.status,
      previousVersion: d.previous_version,
      errorCode: d.error_code,
    })),
    createdAt: row.created_at,
    createdBy: row.created_by,
  };
}

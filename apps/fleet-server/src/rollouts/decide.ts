/**
 * The rollout state machine, pure: the states and their transitions as data, and the decision a
 * running rollout's current stage calls for, from what its members have reported and the clock.
 * No I/O: the engine (engine.ts) loads the facts, asks, and writes what the decision says.
 *
 *   running ──(stage healthy, soaked)──▶ running (next stage) … ──▶ completed
 *      │  ▲
 *      ▼  │ resume                          gate tripped, policy rollback; abort
 *    paused ◀──(gate tripped, policy pause)        │
 *      │                                           ▼
 *      └──── abort ─────────────────────────▶ rolling_back ──▶ rolled_back | aborted
 */
import type { ShadowGateResult } from './shadow-gates.ts';
import type { TelemetryGateResult } from './telemetry-gates.ts';

export type RolloutState = 'running' | 'paused' | 'rolling_back' | 'completed' | 'rolled_back' | 'aborted';

/** Every transition the engine may make; a state with none is final. */
export const TRANSITIONS: Readonly<Record<RolloutState, readonly RolloutState[]>> = {
  // running → running is a stage opening.
  running: ['running', 'paused', 'rolling_back', 'completed'],
  paused: ['running', 'rolling_back'],
  // The intent to roll back is stored first, so a server killed half-way finishes it after a restart.
  rolling_back: ['rolled_back', 'aborted'],
  completed: [],
  rolled_back: [],
  aborted: [],
};

export function canTransition(from: RolloutState, to: RolloutState): boolean {
  return TRANSITIONS[from].includes(to);
}

export function isFinal(state: RolloutState): boolean {
  return TRANSITIONS[state].length === 0;
}

/** The gates of a stage, with the defaults already applied (see ROLLOUT_DEFAULTS in spec.ts). */
export interface StageGates {
  readonly maxFailureRate: number;
  readonly minDevicesReporting: number;
  readonly maxLatencyRatio?: number | undefined;
  readonly maxDriftScore?: number | undefined;
  readonly maxOutputShift?: number | undefined;
  readonly soakMs: number;
  readonly onGateFailure: 'pause' | 'rollback';
  /** Present on a shadow stage: what its comparisons must show before the version goes live. */
  readonly shadow?: ShadowGates | undefined;
}

/** The gates of a shadow stage (defaults applied where there are some). */
export interface ShadowGates {
  readonly minAgreement?: number | undefined;
  readonly maxLatencyRatio?: number | undefined;
  readonly minRuns: number;
  readonly maxErrorRate: number;
}

/** What the members of the stages opened so far have said, counted by the engine. */
export interface StageFacts {
  /** The current stage, and the last one (stages - 1). */
  readonly stage: number;
  readonly lastStage: number;
  readonly active: number;
  readonly failed: number;
  /** Members sent the version that have not answered and are online (offline ones neither block nor count). */
  readonly waiting: number;
  /** The distinct error codes failed members reported. */
  readonly errors: readonly string[];
  /** Each active member's install-time latency ratio (new p95 / replaced p95), where measured. */
  readonly latencyRatios: readonly number[];
  /** How long the stage has been open. */
  readonly openForMs: number;
  /** The telemetry gates' verdict, once the engine has computed it (asked for with `check-telemetry`). */
  readonly telemetry?: TelemetryGateResult | undefined;
  /** A shadow stage's comparisons, once the engine has read them (asked for with `check-shadow`). */
  readonly shadow?: ShadowGateResult | undefined;
}

export type StageDecision =
  | { readonly action: 'wait'; readonly until: 'members-answer' | 'enough-reports' | 'soaked' | 'telemetry' | 'shadow-runs' }
  /** The stage is otherwise ready to pass: compute the telemetry gates and decide again. */
  | { readonly action: 'check-telemetry'; readonly needed: number }
  /** A shadow stage otherwise ready to pass: read its comparisons and decide again. */
  | { readonly action: 'check-shadow'; readonly needed: number }
  | { readonly action: 'open-next-stage' }
  | { readonly action: 'complete' }
  | { readonly action: 'stop'; readonly policy: 'pause' | 'rollback'; readonly reason: Readonly<Record<string, unknown>> };

/** The median of a list of numbers (0 for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return ((sorted[Math.floor((sorted.length - 1) / 2)] as number) + (sorted[Math.floor(sorted.length / 2)] as number)) / 2;
}

/**
 * What the current stage of a running rollout calls for. In order:
 * 1. a gate tripped (failure rate; the median latency ratio once enough members measured it) stops
 *    the rollout by its policy, with the gate and the numbers;
 * 2. a member that is online and has not answered holds the stage;
 * 3. so does having fewer reports than max(1, min(minDevicesReporting, members counted)): a stage
 *    nobody reported on never passes, even when every member is offline;
 * 4. and a soak not yet over;
 * 5. telemetry gates are decided once, when the stage is otherwise ready (a statistical test
 *    repeated on every tick would trip on chance sooner or later);
 * 5'. a shadow stage (its devices run the version beside theirs, `active` counts those that do)
 *    has no telemetry gates of the live version: its shadow gates decide once the stage has
 *    compared enough inputs (minRuns), and a failed shadow install counts as a failure;
 * 6. then the next stage opens, or after the last the rollout completes.
 */
export function decideStage(gates: StageGates, facts: StageFacts): StageDecision {
  const reporting = facts.active + facts.failed;
  const counted = reporting + facts.waiting;
  const failureRate = reporting === 0 ? 0 : facts.failed / reporting;
  const stop = (reason: Record<string, unknown>): StageDecision => ({ action: 'stop', policy: gates.onGateFailure, reason });
  if (facts.failed > 0 && failureRate > gates.maxFailureRate) {
    return stop({
      gate: 'maxFailureRate',
      stage: facts.stage,
      failed: facts.failed,
      reporting,
      failureRate,
      limit: gates.maxFailureRate,
      errors: [...facts.errors],
    });
  }
  const needed = Math.max(1, Math.min(gates.minDevicesReporting, counted));
  if (gates.maxLatencyRatio !== undefined && facts.latencyRatios.length >= needed) {
    // The median over the stage's devices, so that one noisy device cannot trip it alone.
    const middle = median(facts.latencyRatios);
    if (middle > gates.maxLatencyRatio) {
      return stop({
        gate: 'maxLatencyRatio',
        stage: facts.stage,
        medianRatio: middle,
        worstRatio: Math.max(...facts.latencyRatios),
        devicesMeasured: facts.latencyRatios.length,
        limit: gates.maxLatencyRatio,
      });
    }
  }
  if (facts.waiting > 0) return { action: 'wait', until: 'members-answer' };
  if (reporting < needed) return { action: 'wait', until: 'enough-reports' };
  if (facts.openForMs < gates.soakMs) return { action: 'wait', until: 'soaked' };
  if (gates.shadow) {
    if (facts.active === 0) return { action: 'wait', until: 'shadow-runs' };
    const shadow = facts.shadow;
    if (!shadow) return { action: 'check-shadow', needed: Math.max(1, Math.min(gates.minDevicesReporting, facts.active)) };
    if (shadow.verdict === 'trip') return stop({ ...shadow.reason });
    if (shadow.verdict !== 'pass') return { action: 'wait', until: 'shadow-runs' };
    return facts.stage >= facts.lastStage ? { action: 'complete' } : { action: 'open-next-stage' };
  }
  if (gates.maxDriftScore !== undefined || gates.maxOutputShift !== undefined) {
    if (facts.active === 0) return { action: 'wait', until: 'telemetry' };
    const telemetry = facts.telemetry;
    if (!telemetry) return { action: 'check-telemetry', needed: Math.max(1, Math.min(gates.minDevicesReporting, facts.active)) };
    if (telemetry.verdict === 'trip') return stop({ ...telemetry.reason });
    if (telemetry.verdict !== 'pass') return { action: 'wait', until: 'telemetry' };
  }
  return facts.stage >= facts.lastStage ? { action: 'complete' } : { action: 'open-next-stage' };
}

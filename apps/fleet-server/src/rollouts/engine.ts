/**
 * (About 490 lines: the public operations share the engine's scheduling state, the tick queue
 * and the cache of watched rollouts; every rule, query and view is in its own module.)
 *
 * The rollout engine: it schedules, loads, decides and writes; the rules are elsewhere. The state
 * machine and every stage decision are pure (decide.ts), the queries live in repository.ts, what
 * a rollout may ask for in spec.ts. State is in the database, so a server killed mid-rollout
 * continues where it was when it starts again.
 *
 * Cohorts are deterministic: a device's place is the hash of the rollout id and its id, so the
 * first 1% stays the first 1% across restarts. Devices not seen for `offlineAfterSeconds` neither
 * block a stage nor count as failures; they converge when they return (their desired state is
 * already published, retained).
 */
import { randomUUID } from 'node:crypto';
import { type DeviceEvent, type DeviceTopic, decodeMessage, EdgefleetError, type ReportedState } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { audit } from '../audit/index.ts';
import { checkNotDowngrade, type DesiredChange, type DesiredEntry, type DesiredStateService } from '../desired/index.ts';
import type { PageRequest } from '../http/paging.ts';
import type { Database, RolloutsTable } from '../store/schema.ts';
import type { WriteBehind } from '../store/write-behind.ts';
import { canTransition, decideStage, median, type RolloutState, type StageDecision } from './decide.ts';
import { isLeaseLost, type RolloutLease, singleServerLease } from './lease.ts';
import { createRolloutRepository } from './repository.ts';
import { checkShadowGates, type ShadowReadings } from './shadow-gates.ts';
import {
  checkSelector,
  checkStages,
  cohortOf,
  isShadowStage,
  orderByCohort,
  ROLLOUT_DEFAULTS,
  type RolloutSpec,
  selects,
  stageGates,
  stageSizes,
} from './spec.ts';
import { checkTelemetryGates } from './telemetry-gates.ts';
import { type GateValue, type RolloutView, rolloutView } from './view.ts';

/** A rollout in the list: its view without the per-device members. */
export type RolloutSummary = Omit<RolloutView, 'devices'>;

/** A live rollout's gates as the engine last measured them (for metrics and watchers). */
export interface GateReading {
  readonly rolloutId: string;
  readonly model: string;
  readonly version: string;
  readonly stage: number;
  readonly stages: number;
  readonly measuredAt: string;
  readonly gates: readonly GateValue[];
  /** In a shadow stage: what its comparisons add up to. */
  readonly shadow?: ShadowReadings | undefined;
}

export interface RolloutEngine {
  /** `alias`: the alias `spec.version` was resolved from, recorded with the rollout. */
  create(spec: RolloutSpec, actor: string, options?: { readonly alias?: string | null }): Promise<RolloutView>;
  get(id: string): Promise<RolloutView>;
  /** A page of rollouts (see repository.list), each without its members: GET /v1/rollouts/:id has them. */
  list(options: { readonly state?: RolloutsTable['state']; readonly page: PageRequest }): Promise<RolloutSummary[]>;
  pause(id: string, actor: string): Promise<RolloutView>;
  resume(id: string, actor: string): Promise<RolloutView>;
  /** Ends the rollout and returns its devices to their previous version. */
  abort(id: string, actor: string): Promise<RolloutView>;
  /** Ends a running or paused rollout by returning its devices to their previous version (rolled_back). */
  rollback(id: string, actor: string): Promise<RolloutView>;
  /** Skips the rest of the current stage's soak. */
  promote(id: string, actor: string): Promise<RolloutView>;
  /** Feeds a device message (events, reported state) to the engine; `message` when already decoded. */
  observe(address: DeviceTopic, payload: Uint8Array, message?: unknown): void;
  /**
   * What devices said may have been lost (the broker restarted): the members not heard from are
   * asked to report again, on the next tick.
   */
  resync(): void;
  /** Calls `listener` with a rollout's id whenever its state, stage or members' statuses changed. */
  onChange(listener: (rolloutId: string) => void): () => void;
  /** The gates of each running rollout as last measured (value null: not measurable yet). */
  gateReadings(): GateReading[];
  /** Advances every running rollout once (called on a timer and after observations). */
  tick(): Promise<void>;
  start(intervalMs?: number): void;
  stop(): Promise<void>;
}

export function createRolloutEngine(options: {
  db: Kysely<Database>;
  desired: DesiredStateService;
  /** Device observations (activated, failed) are recorded through this, batched. */
  writes: WriteBehind;
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  /** The clock every decision reads (soak times, offline cut-offs, timestamps). */
  now?: () => number;
  /** Who may drive a rollout when several servers share the database; default: this one, always. */
  lease?: RolloutLease;
  /**
   * Sends devices a command (protocol COMMANDS). A server that starts driving a rollout (after a
   * restart, or taking it over from a replica that died) asks the members it has not heard from
   * yet to report their state: what they said to a server that died may never have been stored.
   */
  command?: (deviceIds: readonly string[], command: 'report-state') => Promise<void>;
}): RolloutEngine {
  const { db, desired, writes, log } = options;
  const now = options.now ?? Date.now;
  const lease = options.lease ?? singleServerLease;
  const rollouts = createRolloutRepository(db, now);
  const at = () => new Date(now()).toISOString();
  let timer: ReturnType<typeof setInterval> | undefined;
  let ticking: Promise<void> = Promise.resolve();
  let tickQueued = false;
  const lastTick = { took: 0, endedAt: 0 };
  const readings = new Map<string, GateReading>();
  let stopped = false;
  const observing = new Set<Promise<void>>();
  const OBSERVED = 'rollout-device:';
  /** Who the audit log names for the engine's own steps. */
  const ENGINE = 'rollout-engine';
  const leaseName = (rolloutId: string) => `rollout:${rolloutId}`;
  /**
   * The rollouts device messages can move (running or paused), refreshed on every tick: a device
   * message costs no query. A device outside a rollout matches no row when its update is written.
   */
  type Watched = Pick<RolloutsTable, 'id' | 'model' | 'version'> & { readonly shadowStage: boolean };
  let watched: Promise<Watched[]> | undefined;
  const changeListeners = new Set<(rolloutId: string) => void>();
  function changed(rolloutId: string): void {
    for (const listener of changeListeners) {
      try {
        listener(rolloutId);
      } catch (error) {
        log.warn({ err: error, rolloutId }, 'a rollout change listener failed');
      }
    }
  }
  // A batch of observations written is when the gates have something new to look at, and when
  // the members' statuses changed for whoever follows the rollout.
  const unsubscribe = writes.onFlushed((keys) => {
    const observed = new Set(
      keys.filter((key) => key.startsWith(OBSERVED)).map((key) => key.slice(OBSERVED.length).replace(/:latency$/, '')),
    );
    if (observed.size > 0) queueTick();
    for (const id of observed) changed(id);
  });

  function checkTransition(row: RolloutsTable, to: RolloutState): void {
    if (!canTransition(row.state, to)) throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${row.id} is ${row.state}`);
  }

  /** Records what a device said about a rollout, batched per rollout (see repository.recordStatuses). */
  function observeStatus(
    rolloutId: string,
    deviceId: string,
    status: 'active' | 'shadowing' | 'failed',
    errorCode: string | null = null,
    latencyRatio?: number,
  ): void {
    if (latencyRatio !== undefined) {
      writes.update(`${OBSERVED}${rolloutId}:latency`, { [deviceId]: latencyRatio }, (trx, ratios) =>
        rollouts.recordLatency(trx, rolloutId, ratios),
      );
    }
    writes.update(`${OBSERVED}${rolloutId}`, { [deviceId]: { status, errorCode } }, (trx, observed) =>
      rollouts.recordStatuses(trx, rolloutId, observed),
    );
  }

  /**
   * A device refused a desired-state document (a clock far off, a document it cannot read): when
   * it is the device's current one, every rollout whose entry is in it counts the member failed,
   * with the device's code, rather than waiting for an answer that will not come. A refusal of an
   * older document (a stale retained one) changes nothing.
   */
  async function observeRejection(deviceId: string, event: DeviceEvent, current: readonly Watched[]): Promise<void> {
    if (event.desiredSequence === undefined || current.length === 0) return;
    const document = await desired.current(deviceId);
    if (!document || document.payload.sequence !== event.desiredSequence) return;
    const code = event.error?.code ?? 'EF_INTERNAL_ERROR';
    for (const entry of document.payload.models) {
      const rollout = current.find((r) => r.id === entry.rolloutId);
      if (rollout) observeStatus(rollout.id, deviceId, 'failed', code);
    }
  }

  async function view(row: RolloutsTable): Promise<RolloutView> {
    // What devices said in the last few milliseconds is part of the answer.
    await writes.flush();
    const spec = JSON.parse(row.spec) as RolloutSpec;
    const members = await rollouts.members(row.id);
    const offline = await rollouts.offlineMembers(row, spec, spec.stages.length, [
      'pending',
      'assigned',
      'shadowing',
      'active',
      'failed',
      'rolled_back',
    ]);
    const reading = readings.get(row.id);
    const gates = reading
      ? {
          stage: reading.stage,
          measuredAt: reading.measuredAt,
          gates: reading.gates,
          ...(reading.shadow ? { shadow: reading.shadow } : {}),
        }
      : null;
    return rolloutView(row, members, new Set(offline.map((m) => m.device_id)), gates);
  }

  /** Writes a state change and its audit entry in one transaction. */
  async function transition(
    row: RolloutsTable,
    to: RolloutState,
    action: string,
    actor: string,
    fields: { reason?: string | null; current_stage?: number; stage_started_at?: string } = {},
    after: Record<string, unknown> = { state: to },
    inTransaction?: (trx: Parameters<Parameters<ReturnType<Kysely<Database>['transaction']>['execute']>[0]>[0]) => Promise<void>,
  ): Promise<void> {
    checkTransition(row, to);
    await db.transaction().execute(async (trx) => {
      // The engine acts only while it holds the rollout's lease (another replica may have taken it).
      if (actor === ENGINE) await lease.check(trx, leaseName(row.id));
      // Only from the state (and stage) this decision was made on: an admin's pause and the
      // engine's promotion, on two replicas at once, cannot both win.
      const moved = await rollouts.updateFrom(trx, row, { state: to, ...fields });
      if (!moved) throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${row.id} changed meanwhile: read it again`);
      await inTransaction?.(trx);
      await audit(trx, { actor, action, target: `rollout:${row.id}`, before: { state: row.state }, after }, new Date(now()));
    });
    changed(row.id);
  }

  /**
   * Starts returning a rollout's devices to their previous version. The intent is stored first
   * (state rolling_back, with the final state in the reason), so a server that dies half-way
   * finishes the job after its restart; only then is the final state written.
   */
  async function rollBack(
    row: RolloutsTable,
    final: 'rolled_back' | 'aborted',
    reason: Record<string, unknown>,
    actor: string,
  ): Promise<void> {
    await transition(
      row,
      'rolling_back',
      `rollout.${final === 'aborted' ? 'abort' : 'rollback'}`,
      actor,
      {
        reason: JSON.stringify({ ...reason, final }),
      },
      { state: final, reason },
    );
    // Whoever drives the rollout sends the rollbacks: this replica now, or the holder's next tick.
    if (await lease.holds(leaseName(row.id))) await finishRollBack(await rollouts.load(row.id));
  }

  /** Sends each touched device a signed rollback (once), then writes the final state. */
  async function finishRollBack(row: RolloutsTable): Promise<void> {
    const reason = JSON.parse(row.reason ?? '{}') as { final?: 'rolled_back' | 'aborted' };
    // Each device gets back exactly the entry the rollout replaced (none: the model is removed);
    // devices with the same entry get their documents in one transaction.
    const byPrevious = new Map<string, { change: DesiredChange; ids: string[] }>();
    for (const device of await rollouts.touchedMembers(row.id)) {
      // Rollouts created before entries were kept know only the version: theirs comes from the registry.
      const change: DesiredChange = device.previous_entry
        ? { restore: [JSON.parse(device.previous_entry) as DesiredEntry], rollback: true }
        : device.previous_version
          ? { set: [{ name: row.model, version: device.previous_version }], rollback: true }
          : { remove: [row.model], rollback: true };
      const key = JSON.stringify(change);
      const group = byPrevious.get(key);
      if (group) group.ids.push(device.device_id);
      else byPrevious.set(key, { change, ids: [device.device_id] });
    }
    let returned = 0;
    for (const { change, ids } of byPrevious.values()) {
      await desired.assignMany(ids, change, ENGINE, `rollout:${row.id}`, async (trx, result) => {
        await lease.check(trx, leaseName(row.id));
        // A device refused a document (too large) keeps its own: nothing of this rollout is in it.
        await rollouts.setStatus(trx, row.id, [...result.written, ...result.refused.map((r) => r.deviceId)], 'rolled_back');
      });
      returned += ids.length;
    }
    const final = reason.final ?? 'rolled_back';
    checkTransition(row, final);
    await db.transaction().execute(async (trx) => {
      await lease.check(trx, leaseName(row.id));
      await rollouts.update(trx, row.id, { state: final });
    });
    changed(row.id);
    log.warn({ rolloutId: row.id, state: final, reason, devices: returned }, 'rollout rolled back');
  }

  /**
   * Writes a change into members' documents. Their status changes in the transaction that writes
   * the documents: a document written is a member assigned, whatever happens to the publish that
   * follows; a member whose document would be too large fails, visibly.
   */
  async function assignMembers(row: RolloutsTable, ids: readonly string[], change: DesiredChange): Promise<void> {
    await desired.assignMany(ids, change, ENGINE, `rollout:${row.id}`, async (trx, result) => {
      await lease.check(trx, leaseName(row.id));
      await rollouts.setStatus(trx, row.id, result.written, 'assigned', { from: ['pending'] });
      for (const refused of result.refused) {
        await rollouts.setStatus(trx, row.id, [refused.deviceId], 'failed', { errorCode: refused.code });
        log.warn({ rolloutId: row.id, deviceId: refused.deviceId, code: refused.code }, refused.message);
      }
    });
  }

  /**
   * Everyone in the current stage gets the new version (once). In a shadow stage each member
   * keeps the version it runs and gets the new one beside it, in shadow; members that run the same
   * version share one transaction.
   */
  async function assignDue(row: RolloutsTable, spec: RolloutSpec): Promise<void> {
    if (isShadowStage(spec, row.current_stage)) {
      const due = await rollouts.pendingShadowMembers(row.id, row.current_stage);
      if (due.size === 0) return;
      const rate = spec.stages[row.current_stage]?.shadowRate ?? ROLLOUT_DEFAULTS.shadowRate;
      for (const [version, ids] of due) {
        await assignMembers(row, ids, { set: [{ name: row.model, version, rolloutId: row.id, shadow: { version: row.version, rate } }] });
      }
    } else {
      const due = await rollouts.pendingMembers(row.id, row.current_stage);
      if (due.length === 0) return;
      await assignMembers(row, due, {
        set: [{ name: row.model, version: row.version, rolloutId: row.id }],
        rollback: spec.rollback ?? false,
      });
    }
    changed(row.id);
  }

  /** Loads the facts of the current stage and asks decide.ts what they call for. */
  async function decide(row: RolloutsTable, spec: RolloutSpec): Promise<StageDecision> {
    // Counted after the presence and observations still in the write-behind batch: a device that
    // has just connected is online, not "never seen".
    await writes.flush();
    const counts = await rollouts.counts(row, spec);
    const gates = stageGates(spec, row.current_stage);
    const facts = {
      stage: row.current_stage,
      lastStage: spec.stages.length - 1,
      // In a shadow stage, a member running the version in shadow is one that answered well.
      active: counts.active + counts.shadowing,
      failed: counts.failed,
      waiting: counts.unanswered - counts.offlineUnanswered,
      errors: counts.failed > 0 ? await rollouts.errorCodes(row.id) : [],
      latencyRatios: gates.maxLatencyRatio === undefined ? [] : await rollouts.latencyRatios(row),
      openForMs: now() - Date.parse(row.stage_started_at),
    };
    const reported = facts.active + facts.failed;
    const measured: GateValue[] = [
      { name: 'failure_rate', value: reported === 0 ? null : facts.failed / reported, threshold: gates.maxFailureRate, bound: 'max' },
      { name: 'devices_reporting', value: reported, threshold: gates.minDevicesReporting, bound: 'min' },
      ...(gates.maxLatencyRatio === undefined
        ? []
        : [
            {
              name: 'latency_ratio',
              value: facts.latencyRatios.length === 0 ? null : median(facts.latencyRatios),
              threshold: gates.maxLatencyRatio,
              bound: 'max',
            } as const,
          ]),
    ];
    // The telemetry gates keep their last value within a stage (they are measured when the stage
    // is otherwise ready); a new stage starts them unmeasured.
    const previous = readings.get(row.id);
    const carried = (name: 'drift_score' | 'output_shift') =>
      previous?.stage === row.current_stage ? (previous.gates.find((g) => g.name === name)?.value ?? null) : null;
    const telemetryReadings = (values: { driftScore?: number | undefined; outputShift?: number | undefined }): GateValue[] => [
      ...(gates.maxDriftScore === undefined
        ? []
        : [
            {
              name: 'drift_score',
              value: values.driftScore ?? carried('drift_score'),
              threshold: gates.maxDriftScore,
              bound: 'max',
            } as const,
          ]),
      ...(gates.maxOutputShift === undefined
        ? []
        : [
            {
              name: 'output_shift',
              value: values.outputShift ?? carried('output_shift'),
              threshold: gates.maxOutputShift,
              bound: 'max',
            } as const,
          ]),
    ];
    const shadowReadings = (values: ShadowReadings | undefined): GateValue[] => {
      const shadow = gates.shadow;
      if (!shadow) return [];
      const kept = previous?.stage === row.current_stage ? previous.shadow : undefined;
      const read = values ?? kept;
      return [
        { name: 'shadow_runs', value: read?.runs ?? null, threshold: shadow.minRuns, bound: 'min' },
        { name: 'shadow_error_rate', value: read?.errorRate ?? null, threshold: shadow.maxErrorRate, bound: 'max' },
        ...(shadow.minAgreement === undefined
          ? []
          : [{ name: 'shadow_agreement', value: read?.agreement ?? null, threshold: shadow.minAgreement, bound: 'min' } as const]),
        ...(shadow.maxLatencyRatio === undefined
          ? []
          : [
              {
                name: 'shadow_latency_ratio',
                value: read?.latencyRatio?.p50 ?? null,
                threshold: shadow.maxLatencyRatio,
                bound: 'max',
              } as const,
            ]),
      ];
    };
    const record = (telemetry: GateValue[], shadow?: ShadowReadings) => {
      const kept = shadow ?? (previous?.stage === row.current_stage ? previous.shadow : undefined);
      readings.set(row.id, {
        rolloutId: row.id,
        model: row.model,
        version: row.version,
        stage: row.current_stage,
        stages: spec.stages.length,
        measuredAt: at(),
        gates: [...measured, ...telemetry, ...shadowReadings(shadow)],
        ...(kept ? { shadow: kept } : {}),
      });
    };
    record(telemetryReadings({}));
    const decision = decideStage(gates, facts);
    if (decision.action === 'check-shadow' && gates.shadow) {
      const shadow = await checkShadowGates(db, row, gates.shadow, decision.needed);
      record(telemetryReadings({}), shadow.readings);
      return decideStage(gates, { ...facts, shadow });
    }
    if (decision.action !== 'check-telemetry') return decision;
    const telemetry = await checkTelemetryGates(db, row, gates, decision.needed);
    if (telemetry.verdict !== 'wait') record(telemetryReadings(telemetry.readings));
    return decideStage(gates, { ...facts, telemetry });
  }

  async function advance(row: RolloutsTable): Promise<void> {
    const spec = JSON.parse(row.spec) as RolloutSpec;
    await assignDue(row, spec);
    const decision = await decide(row, spec);
    switch (decision.action) {
      case 'wait':
      case 'check-telemetry':
      case 'check-shadow':
        return;
      case 'stop':
        if (decision.policy === 'pause') {
          await transition(
            row,
            'paused',
            'rollout.pause',
            ENGINE,
            { reason: JSON.stringify(decision.reason) },
            {
              state: 'paused',
              reason: decision.reason,
            },
          );
          log.warn({ rolloutId: row.id, reason: decision.reason }, 'rollout paused by a gate');
        } else {
          await rollBack(row, 'rolled_back', { ...decision.reason }, ENGINE);
        }
        return;
      case 'complete':
        await transition(row, 'completed', 'rollout.complete', ENGINE, {}, { state: 'completed' });
        log.info({ rolloutId: row.id, state: 'completed' }, 'rollout completed');
        return;
      case 'open-next-stage': {
        const next = { current_stage: row.current_stage + 1, stage_started_at: at() };
        // After the shadow stages, the members that ran the version in shadow are sent it live.
        const goesLive = isShadowStage(spec, row.current_stage) && !isShadowStage(spec, next.current_stage);
        // What the shadow stage measured stays on the record (the live readings start afresh).
        const measured = readings.get(row.id)?.shadow;
        const after = { ...next, ...(goesLive ? { live: true, ...(measured ? { shadow: measured } : {}) } : {}) };
        await transition(row, 'running', 'rollout.stage', ENGINE, next, after, async (trx) => {
          if (goesLive) await rollouts.endShadowStage(trx, row.id);
        });
        log.info({ rolloutId: row.id, ...next }, 'rollout stage opened');
        await advance(await rollouts.load(row.id));
        return;
      }
    }
  }

  /**
   * Rollouts this server drives, and when it last asked their silent members to report: one newly
   * driven is one taken over (or resumed after a restart); a broker that came back may have lost
   * what devices said meanwhile (resync); and members silent for long are asked again.
   */
  const driving = new Map<string, number>();
  const ASK_AGAIN_MS = 60_000;
  async function askToReport(row: RolloutsTable): Promise<void> {
    const silent = (await rollouts.members(row.id)).filter((m) => m.status === 'assigned').map((m) => m.device_id);
    if (silent.length === 0) return;
    log.info(
      { rolloutId: row.id, devices: silent.length },
      'driving this rollout now: sending the members not heard from their documents again',
    );
    // A replica killed between writing members' documents and publishing them left them unsent:
    // they go out again (retained, the same bytes: a device that has one already ignores it).
    await desired.republish(silent);
    await options.command?.(silent, 'report-state');
  }

  async function tickOnce(): Promise<void> {
    const started = performance.now();
    try {
      const live = await rollouts.live();
      watched = Promise.resolve(
        live
          .filter((row) => row.state !== 'rolling_back')
          .map((row) => ({
            id: row.id,
            model: row.model,
            version: row.version,
            shadowStage: isShadowStage(JSON.parse(row.spec) as RolloutSpec, row.current_stage),
          })),
      );
      // Readings of rollouts that stopped running go with them (a paused one keeps its last).
      for (const id of readings.keys()) if (!live.some((row) => row.id === id && row.state !== 'rolling_back')) readings.delete(id);
      for (const row of live) {
        if (row.state === 'paused') continue;
        if (!(await lease.holds(leaseName(row.id)))) {
          driving.delete(row.id);
          continue;
        }
        const asked = driving.get(row.id);
        if (asked === undefined || performance.now() - asked > ASK_AGAIN_MS) {
          driving.set(row.id, performance.now());
          await askToReport(row).catch((error: unknown) => log.warn({ rolloutId: row.id, err: error }, 'could not ask members to report'));
        }
        try {
          if (row.state === 'rolling_back') await finishRollBack(row);
          else await advance(row);
        } catch (error) {
          if (isLeaseLost(error)) log.info({ rolloutId: row.id, err: (error as Error).message }, 'another replica drives this rollout now');
          else log.warn({ rolloutId: row.id, err: error }, 'rollout step failed; retried on the next tick');
        }
      }
    } finally {
      lastTick.endedAt = performance.now();
      lastTick.took = lastTick.endedAt - started;
    }
  }

  const engine: RolloutEngine = {
    async create(spec, actor, options = {}) {
      if (!(await rollouts.versionExists(spec.model, spec.version))) {
        throw new EdgefleetError('EF_NOT_FOUND', `${spec.model}@${spec.version} is not in the registry`);
      }
      checkSelector(spec.selector);
      checkStages(spec);
      const id = `ro-${randomUUID().slice(0, 8)}`;
      const targeted = (await rollouts.activeDevices()).filter((d) => selects(spec.selector, d));
      if (targeted.length === 0)
        throw new EdgefleetError('EF_ROLLOUT_NO_DEVICES', `no active device matches ${JSON.stringify(spec.selector)}`);
      const ids = orderByCohort(
        id,
        targeted.map((d) => d.id),
      );
      const sizes = stageSizes(spec.stages, ids.length);
      const created = at();
      // What each device is meant to run now (its current desired entry): what a rollback restores.
      const previous = await desired.currentEntries(ids, spec.model);
      const running = await desired.versionsRun(ids, spec.model, previous);
      await db.transaction().execute(async (trx) => {
        const busy = await rollouts.busyMembers(trx, spec.model, ids);
        if (busy.length > 0) {
          throw new EdgefleetError(
            'EF_ROLLOUT_CONFLICT',
            `device ${busy[0]?.device_id} is already in rollout ${busy[0]?.id} of ${spec.model}${busy.length > 1 ? ` (and ${busy.length - 1} more)` : ''}`,
          );
        }
        checkNotDowngrade(spec.model, spec.version, running, spec.rollback === true);
        const members = ids.map((deviceId, index) => {
          const entry = previous.get(deviceId) ?? null;
          const was = entry?.manifest.payload.version ?? null;
          return {
            rollout_id: id,
            device_id: deviceId,
            cohort: cohortOf(id, deviceId),
            stage: sizes.findIndex((size) => index < size),
            status: was === spec.version ? ('active' as const) : ('pending' as const),
            previous_version: was,
            previous_entry: entry ? JSON.stringify(entry) : null,
            error_code: null,
            updated_at: created,
          };
        });
        await rollouts.insert(
          trx,
          {
            id,
            model: spec.model,
            version: spec.version,
            spec: JSON.stringify(options.alias ? { ...spec, alias: options.alias } : spec),
            state: 'running',
            current_stage: 0,
            stage_started_at: created,
            reason: null,
            created_at: created,
            created_by: actor,
            updated_at: created,
          },
          members,
        );
        await audit(
          trx,
          {
            actor,
            action: 'rollout.create',
            target: `rollout:${id}`,
            after: { ...spec, ...(options.alias ? { alias: options.alias } : {}), devices: ids.length, stageSizes: sizes },
          },
          new Date(now()),
        );
      });
      changed(id);
      await engine.tick();
      return engine.get(id);
    },

    get: async (id) => view(await rollouts.load(id)),

    gateReadings: () => [...readings.values()],

    onChange(listener) {
      changeListeners.add(listener);
      return () => changeListeners.delete(listener);
    },

    list: async (options) =>
      Promise.all(
        (await rollouts.list(options)).map(async (row) => {
          const { devices: _members, ...summary } = await view(row);
          return summary;
        }),
      ),

    async pause(id, actor) {
      const row = await rollouts.load(id);
      // Idempotent, like revoke: pausing a paused rollout answers its state and changes nothing.
      if (row.state === 'paused') return engine.get(id);
      if (row.state !== 'running')
        throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}: only a running rollout can be paused`);
      await transition(row, 'paused', 'rollout.pause', actor);
      return engine.get(id);
    },

    async resume(id, actor) {
      const row = await rollouts.load(id);
      // Idempotent: resuming a running rollout answers its state and changes nothing.
      if (row.state === 'running') return engine.get(id);
      if (row.state !== 'paused')
        throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}: only a paused rollout can be resumed`);
      await db.transaction().execute(async (trx) => {
        // Failed devices get another chance: back to pending, they are assigned again.
        await rollouts.retryFailed(trx, id);
        await rollouts.update(trx, id, { state: 'running', reason: null });
        await audit(
          trx,
          {
            actor,
            action: 'rollout.resume',
            target: `rollout:${id}`,
            before: { state: 'paused' },
            after: { state: 'running' },
          },
          new Date(now()),
        );
      });
      changed(id);
      await engine.tick();
      return engine.get(id);
    },

    async abort(id, actor) {
      const row = await rollouts.load(id);
      if (row.state !== 'running' && row.state !== 'paused') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      await rollBack(row, 'aborted', { requestedBy: actor }, actor);
      return engine.get(id);
    },

    async rollback(id, actor) {
      const row = await rollouts.load(id);
      if (row.state === 'rolled_back') return engine.get(id);
      if (row.state !== 'running' && row.state !== 'paused') {
        throw new EdgefleetError(
          'EF_ROLLOUT_STATE',
          row.state === 'completed'
            ? `rollout ${id} is completed, and final: to roll the fleet back, create a rollout of the earlier version with "rollback": true (fleetctl rollouts rollback ${id} --to VERSION)`
            : `rollout ${id} is ${row.state}: only a running or paused rollout can be rolled back`,
        );
      }
      await rollBack(row, 'rolled_back', { requestedBy: actor }, actor);
      return engine.get(id);
    },

    async promote(id, actor) {
      const row = await rollouts.load(id);
      if (row.state !== 'running') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      // Moving the stage start into the past ends its soak now.
      await db.transaction().execute(async (trx) => {
        await rollouts.update(trx, id, { stage_started_at: new Date(0).toISOString() });
        await audit(
          trx,
          { actor, action: 'rollout.promote', target: `rollout:${id}`, after: { stage: row.current_stage } },
          new Date(now()),
        );
      });
      changed(id);
      await engine.tick();
      return engine.get(id);
    },

    observe(address, payload, message) {
      if (stopped || (address.kind !== 'events' && address.kind !== 'reported')) return;
      const work = (async () => {
        watched ??= rollouts.watched();
        let current = await watched;
        if (address.kind === 'events') {
          const event = (message ?? decodeMessage({ ...address, kind: 'events' }, payload)) as DeviceEvent;
          if (event.kind === 'desired-state-rejected') {
            await observeRejection(address.deviceId, event, current);
            return;
          }
          const shadowEvent = event.kind === 'shadow-installed' || event.kind === 'shadow-failed';
          if (event.kind !== 'activated' && event.kind !== 'install-failed' && !shadowEvent) return;
          // A rollout this server has not seen yet (another replica created it since the last
          // tick): read the live ones again rather than drop what its device said.
          if (event.rolloutId && !current.some((r) => r.id === event.rolloutId)) {
            watched = rollouts.watched();
            current = await watched;
          }
          for (const rollout of current) {
            if (event.model?.name !== rollout.model || event.model.version !== rollout.version) continue;
            // What a shadow did matters only while the rollout is in a shadow stage.
            if (shadowEvent && !rollout.shadowStage) continue;
            if (event.kind === 'activated') observeStatus(rollout.id, address.deviceId, 'active', null, event.latency?.ratio);
            else if (event.kind === 'shadow-installed') observeStatus(rollout.id, address.deviceId, 'shadowing');
            else observeStatus(rollout.id, address.deviceId, 'failed', event.error?.code ?? 'EF_INTERNAL_ERROR');
          }
        } else {
          if (current.length === 0) return;
          // Reported state catches what events missed (a device that activated while we were down).
          const reported = (message ?? decodeMessage({ ...address, kind: 'reported' }, payload)) as ReportedState;
          for (const rollout of current) {
            const model = reported.models.find((m) => m.name === rollout.model);
            if (model?.active?.version === rollout.version) observeStatus(rollout.id, address.deviceId, 'active');
            else if (rollout.shadowStage && model?.shadow?.version === rollout.version) {
              observeStatus(rollout.id, address.deviceId, 'shadowing');
            }
          }
        }
      })().catch((error: unknown) => log.warn({ deviceId: address.deviceId, err: error }, 'could not record a rollout observation'));
      observing.add(work);
      void work.finally(() => observing.delete(work));
    },

    resync() {
      driving.clear();
      queueTick();
    },

    tick() {
      if (stopped) return ticking;
      ticking = ticking.then(tickOnce, tickOnce);
      return ticking;
    },

    start(intervalMs = 1000) {
      timer ??= setInterval(() => void engine.tick(), intervalMs);
      void engine.tick();
    },

    async stop() {
      stopped = true;
      if (timer) clearInterval(timer);
      timer = undefined;
      await Promise.all(observing);
      await writes.flush();
      unsubscribe();
      await ticking.catch(() => undefined);
    },
  };

  /**
   * A tick soon after new observations, but spaced so that gate evaluation (aggregates over every
   * member) stays a small share of the server's time however large the rollout: the pause after a
   * tick is at least four times what the tick took.
   */
  function queueTick(): void {
    if (tickQueued) return;
    tickQueued = true;
    const delay = Math.max(20, 4 * lastTick.took - (performance.now() - lastTick.endedAt));
    setTimeout(() => {
      tickQueued = false;
      if (!stopped) void engine.tick();
    }, delay);
  }

  return engine;
}

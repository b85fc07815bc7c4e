/**
 * The rollout engine: a state machine persisted in the database, so a server killed mid-rollout
 * continues where it was when it starts again.
 *
 *   running ──(stage healthy, soaked)──▶ next stage … ──▶ completed
 *      │  ▲
 *      ▼  │ resume                     gate tripped, policy rollback
 *    paused ◀──(gate tripped, policy pause)       │
 *      │                                          ▼
 *      └──── abort ───────────────────────▶ aborted / rolled_back (devices get a signed rollback)
 *
 * Cohorts are deterministic: a device's place is the hash of the rollout id and its id, so the
 * first 1% stays the first 1% across restarts. Devices that have not been seen for `offlineAfter`
 * neither block a stage nor count as failures; they converge when they return (their desired
 * state is already published, retained).
 */
import { createHash, randomUUID } from 'node:crypto';
import { type DeviceEvent, type DeviceTopic, decodeMessage, EdgefleetError, type ReportedState } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { audit } from '../audit/index.ts';
import { checkNotDowngrade, type DesiredChange, type DesiredEntry, type DesiredStateService } from '../desired/index.ts';
import type { Database, RolloutDevicesTable, RolloutsTable } from '../store/schema.ts';
import type { WriteBehind } from '../store/write-behind.ts';
import { checkTelemetryGates } from './telemetry-gates.ts';

export interface StageSpec {
  /** Cumulative share of the targeted devices in this stage (0-100), or a cumulative count. */
  readonly percent?: number;
  readonly count?: number;
  /** How long a healthy stage is watched before the next one starts. */
  readonly soakSeconds?: number;
}

export interface GateSpec {
  /** Largest share of failed devices (download, verification, acceptance, runtime) in a stage, 0-1. */
  readonly maxFailureRate?: number;
  /** Devices that must have reported (active or failed) before a stage can pass. */
  readonly minDevicesReporting?: number;
  /**
   * Largest p95 latency of the new version over the version it replaces: the median, over the
   * stage's devices, of each device's install-time side-by-side measurement (at least
   * `minDevicesReporting` measurements before it can trip).
   */
  readonly maxLatencyRatio?: number;
  /**
   * Largest drift score (share of features drifting, 0-1) of the stage's telemetry of the new
   * version against its reference (or the replaced version's). The stage waits for telemetry from
   * `minDevicesReporting` devices.
   */
  readonly maxDriftScore?: number;
  /**
   * Largest shift of an output feature of the new version against the version it replaces (normed
   * Wasserstein for scores, Jensen–Shannon for classes), over the rollout's period.
   */
  readonly maxOutputShift?: number;
}

export interface RolloutSpec {
  readonly model: string;
  readonly version: string;
  /**
   * Devices carrying every one of these tags and/or among these ids; the whole fleet only when
   * said explicitly (`{ all: true }`, alone). An empty selector is refused: it must never mean "everyone".
   */
  readonly selector: { readonly all?: true; readonly tags?: readonly string[]; readonly devices?: readonly string[] };
  readonly stages: readonly StageSpec[];
  readonly gates?: GateSpec;
  readonly onGateFailure?: 'pause' | 'rollback';
  /** Seconds without a sign of life after which a device no longer blocks a stage. */
  readonly offlineAfterSeconds?: number;
  /**
   * A fleet-wide rollback: the version may be older than what devices run, and their documents are
   * signed as a rollback (devices refuse an older version otherwise).
   */
  readonly rollback?: boolean;
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

/** Rows per statement: SQLite allows 32,766 bound values, PostgreSQL 65,535. */
const CHUNK = 500;

const DEFAULTS = {
  maxFailureRate: 0,
  minDevicesReporting: 1,
  onGateFailure: 'rollback' as const,
  offlineAfterSeconds: 300,
  soakSeconds: 0,
};

export interface StageProgress {
  readonly stage: number;
  readonly size: number;
  readonly active: number;
  readonly failed: number;
  readonly pending: number;
  readonly offline: number;
}

export interface RolloutView {
  readonly id: string;
  readonly model: string;
  readonly version: string;
  readonly state: RolloutsTable['state'];
  readonly currentStage: number;
  readonly stageStartedAt: string;
  readonly spec: RolloutSpec;
  readonly reason: unknown;
  readonly stages: StageProgress[];
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

/** A device's deterministic position in [0, 1) for a rollout. */
export function cohortOf(rolloutId: string, deviceId: string): number {
  return createHash('sha256').update(`${rolloutId}\n${deviceId}`).digest().readUInt32BE(0) / 2 ** 32;
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

export interface RolloutEngine {
  create(spec: RolloutSpec, actor: string): Promise<RolloutView>;
  get(id: string): Promise<RolloutView>;
  list(): Promise<RolloutView[]>;
  pause(id: string, actor: string): Promise<RolloutView>;
  resume(id: string, actor: string): Promise<RolloutView>;
  /** Ends the rollout and returns its devices to their previous version. */
  abort(id: string, actor: string): Promise<RolloutView>;
  /** Skips the rest of the current stage's soak. */
  promote(id: string, actor: string): Promise<RolloutView>;
  /** Feeds a device message (events, reported state) to the engine; `message` when already decoded. */
  observe(address: DeviceTopic, payload: Uint8Array, message?: unknown): void;
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
  now?: () => number;
}): RolloutEngine {
  const { db, desired, writes, log } = options;
  const now = options.now ?? Date.now;
  let timer: ReturnType<typeof setInterval> | undefined;
  let ticking: Promise<void> = Promise.resolve();
  let tickQueued = false;
  const lastTick = { took: 0, endedAt: 0 };
  let stopped = false;
  const observing = new Set<Promise<void>>();
  const OBSERVED = 'rollout-device:';
  /**
   * The rollouts device messages can move (running or paused), refreshed on every tick: a device
   * message costs no query. A device outside a rollout matches no row when its update is written.
   */
  type Watched = Pick<RolloutsTable, 'id' | 'model' | 'version'>;
  let watched: Promise<Watched[]> | undefined;
  // A batch of observations written is when the gates have something new to look at.
  const unsubscribe = writes.onFlushed((keys) => {
    if (keys.some((key) => key.startsWith(OBSERVED))) queueTick();
  });

  /**
   * Records what a device said about a rollout. Only members that were sent the version move (never
   * one still pending or already rolled back), and only when the status changes.
   */
  function observeStatus(
    rolloutId: string,
    deviceId: string,
    status: 'active' | 'failed',
    errorCode: string | null = null,
    latencyRatio?: number,
  ): void {
    // One queued write per rollout, its values keyed by device: the batch becomes one statement
    // per (status, error code) and chunk of devices, not one per device.
    if (latencyRatio !== undefined) {
      // A measurement, written apart from the status (a later reported state must not erase it).
      writes.update(`${OBSERVED}${rolloutId}:latency`, { [deviceId]: latencyRatio }, async (trx, ratios) => {
        for (const [id, ratio] of Object.entries(ratios)) {
          await trx
            .updateTable('rollout_devices')
            .set({ latency_ratio: ratio })
            .where('rollout_id', '=', rolloutId)
            .where('device_id', '=', id)
            .execute();
        }
      });
    }
    writes.update(`${OBSERVED}${rolloutId}`, { [deviceId]: { status, errorCode } }, async (trx, observed) => {
      const groups = new Map<string, string[]>();
      for (const [id, seen] of Object.entries(observed)) {
        const key = JSON.stringify([seen.status, seen.errorCode]);
        const group = groups.get(key);
        if (group) group.push(id);
        else groups.set(key, [id]);
      }
      const updatedAt = new Date(now()).toISOString();
      for (const [key, ids] of groups) {
        const [groupStatus, groupError] = JSON.parse(key) as ['active' | 'failed', string | null];
        for (let i = 0; i < ids.length; i += CHUNK) {
          await trx
            .updateTable('rollout_devices')
            .set({ status: groupStatus, error_code: groupError, updated_at: updatedAt })
            .where('rollout_id', '=', rolloutId)
            .where('device_id', 'in', ids.slice(i, i + CHUNK))
            .where('status', 'in', ['assigned', 'active', 'failed'])
            .where((eb) => eb.or([eb('status', '!=', groupStatus), eb('error_code', 'is distinct from', groupError)]))
            .execute();
        }
      }
    });
  }

  async function view(row: RolloutsTable): Promise<RolloutView> {
    // What devices said in the last few milliseconds is part of the answer.
    await writes.flush();
    const spec = JSON.parse(row.spec) as RolloutSpec;
    const devices = await db.selectFrom('rollout_devices').selectAll().where('rollout_id', '=', row.id).orderBy('cohort').execute();
    const offline = new Set((await offlineMembers(row, spec, spec.stages.length)).map((m) => m.device_id));
    const stages = spec.stages.map((_, stage) => {
      const members = devices.filter((d) => d.stage <= stage);
      return {
        stage,
        size: members.length,
        active: members.filter((d) => d.status === 'active').length,
        failed: members.filter((d) => d.status === 'failed').length,
        pending: members.filter((d) => d.status === 'pending' || d.status === 'assigned').length,
        offline: members.filter((d) => (d.status === 'pending' || d.status === 'assigned') && offline.has(d.device_id)).length,
      };
    });
    return {
      id: row.id,
      model: row.model,
      version: row.version,
      state: row.state,
      currentStage: row.current_stage,
      stageStartedAt: row.stage_started_at,
      spec,
      reason: row.reason ? (JSON.parse(row.reason) as unknown) : null,
      stages,
      devices: devices.map((d) => ({
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

  /**
   * The members (up to `stage`) that are offline: not connected, and not seen for the rollout's
   * `offlineAfterSeconds`. One join, so it costs the same for 100 devices or 100,000.
   */
  async function offlineMembers(
    row: RolloutsTable,
    spec: RolloutSpec,
    stage: number,
    statuses: readonly RolloutDevicesTable['status'][] = ['pending', 'assigned', 'active', 'failed', 'rolled_back'],
  ) {
    const cutoff = new Date(now() - (spec.offlineAfterSeconds ?? DEFAULTS.offlineAfterSeconds) * 1000).toISOString();
    return db
      .selectFrom('rollout_devices')
      .innerJoin('devices', 'devices.id', 'rollout_devices.device_id')
      .select(['rollout_devices.device_id', 'rollout_devices.status'])
      .where('rollout_devices.rollout_id', '=', row.id)
      .where('rollout_devices.status', 'in', statuses)
      .where('rollout_devices.stage', '<=', stage)
      .where('devices.online', '!=', 1)
      .where((eb) => eb.or([eb('devices.last_seen_at', 'is', null), eb('devices.last_seen_at', '<', cutoff)]))
      .execute();
  }

  async function load(id: string): Promise<RolloutsTable> {
    const row = await db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
    if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no rollout "${id}"`);
    return row;
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
    await db.transaction().execute(async (trx) => {
      await trx
        .updateTable('rollouts')
        .set({ state: 'rolling_back', reason: JSON.stringify({ ...reason, final }), updated_at: new Date(now()).toISOString() })
        .where('id', '=', row.id)
        .execute();
      await audit(trx, {
        actor,
        action: `rollout.${final === 'aborted' ? 'abort' : 'rollback'}`,
        target: `rollout:${row.id}`,
        before: { state: row.state },
        after: { state: final, reason },
      });
    });
    await finishRollBack(await load(row.id));
  }

  /** Sends each touched device a signed rollback (once), then writes the final state. */
  async function finishRollBack(row: RolloutsTable): Promise<void> {
    const reason = JSON.parse(row.reason ?? '{}') as { final?: 'rolled_back' | 'aborted' };
    const touched = await db
      .selectFrom('rollout_devices')
      .selectAll()
      .where('rollout_id', '=', row.id)
      .where('status', 'in', ['assigned', 'active', 'failed'])
      // A member refused its document was never sent anything: its document is already as it was.
      .where((eb) => eb.or([eb('error_code', 'is', null), eb('error_code', '!=', 'EF_DESIRED_STATE_TOO_LARGE')]))
      .execute();
    // Each device gets back exactly the entry the rollout replaced (none: the model is removed);
    // devices with the same entry get their documents in one transaction.
    const byPrevious = new Map<string, { change: DesiredChange; ids: string[] }>();
    for (const device of touched) {
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
    for (const { change, ids } of byPrevious.values()) {
      await desired.assignMany(ids, change, 'rollout-engine', `rollout:${row.id}`, async (trx, result) => {
        // A device refused a document (too large) keeps its own: nothing of this rollout is in it.
        const done = [...result.written, ...result.refused.map((r) => r.deviceId)];
        for (let i = 0; i < done.length; i += CHUNK) {
          await trx
            .updateTable('rollout_devices')
            .set({ status: 'rolled_back', updated_at: new Date(now()).toISOString() })
            .where('rollout_id', '=', row.id)
            .where('device_id', 'in', done.slice(i, i + CHUNK))
            .execute();
        }
      });
    }
    const final = reason.final ?? 'rolled_back';
    await db
      .updateTable('rollouts')
      .set({ state: final, updated_at: new Date(now()).toISOString() })
      .where('id', '=', row.id)
      .execute();
    log.warn({ rolloutId: row.id, state: final, reason, devices: touched.length }, 'rollout rolled back');
  }

  /** The first gate the current stage fails, with the numbers that tripped it; undefined when healthy. */
  async function trippedGate(
    row: RolloutsTable,
    gates: typeof DEFAULTS & GateSpec,
    stage: { failed: number; reporting: number; failureRate: number; counted: number },
  ): Promise<Record<string, unknown> | undefined> {
    if (stage.failed > 0 && stage.failureRate > gates.maxFailureRate) {
      const errors = await db
        .selectFrom('rollout_devices')
        .select('error_code')
        .distinct()
        .where('rollout_id', '=', row.id)
        .where('error_code', 'is not', null)
        .execute();
      return {
        gate: 'maxFailureRate',
        stage: row.current_stage,
        failed: stage.failed,
        reporting: stage.reporting,
        failureRate: stage.failureRate,
        limit: gates.maxFailureRate,
        errors: errors.map((r) => r.error_code),
      };
    }
    if (gates.maxLatencyRatio !== undefined) {
      // Each device measured the new version against the one it replaced, side by side; the
      // stage's ratio is the median over its devices, so one noisy device cannot trip it alone.
      const measured = await db
        .selectFrom('rollout_devices')
        .select('latency_ratio')
        .where('rollout_id', '=', row.id)
        .where('status', '=', 'active')
        .where('stage', '<=', row.current_stage)
        .where('latency_ratio', 'is not', null)
        .execute();
      const ratios = measured.map((m) => m.latency_ratio as number).sort((a, b) => a - b);
      const needed = Math.max(1, Math.min(gates.minDevicesReporting, stage.counted));
      const median =
        ratios.length === 0
          ? 0
          : ((ratios[Math.floor((ratios.length - 1) / 2)] as number) + (ratios[Math.floor(ratios.length / 2)] as number)) / 2;
      if (ratios.length >= needed && median > gates.maxLatencyRatio) {
        return {
          gate: 'maxLatencyRatio',
          stage: row.current_stage,
          medianRatio: median,
          worstRatio: ratios.at(-1),
          devicesMeasured: ratios.length,
          limit: gates.maxLatencyRatio,
        };
      }
    }
    return undefined;
  }

  async function advance(row: RolloutsTable): Promise<void> {
    const spec = JSON.parse(row.spec) as RolloutSpec;
    const gates = { ...DEFAULTS, ...spec.gates };
    // 1. Everyone in the current stage gets the new version (once).
    const due = await db
      .selectFrom('rollout_devices')
      .select('device_id')
      .where('rollout_id', '=', row.id)
      .where('stage', '<=', row.current_stage)
      .where('status', '=', 'pending')
      .execute();
    if (due.length > 0) {
      const ids = due.map((d) => d.device_id);
      // The members' status changes in the transaction that writes their documents: a document
      // written is a member assigned, whatever happens to the publish that follows.
      await desired.assignMany(
        ids,
        { set: [{ name: row.model, version: row.version, rolloutId: row.id }], rollback: spec.rollback ?? false },
        'rollout-engine',
        `rollout:${row.id}`,
        async (trx, result) => {
          const at = new Date(now()).toISOString();
          for (let i = 0; i < result.written.length; i += CHUNK) {
            await trx
              .updateTable('rollout_devices')
              .set({ status: 'assigned', updated_at: at })
              .where('rollout_id', '=', row.id)
              .where('device_id', 'in', result.written.slice(i, i + CHUNK))
              .where('status', '=', 'pending')
              .execute();
          }
          for (const refused of result.refused) {
            await trx
              .updateTable('rollout_devices')
              .set({ status: 'failed', error_code: refused.code, updated_at: at })
              .where('rollout_id', '=', row.id)
              .where('device_id', '=', refused.deviceId)
              .execute();
            log.warn({ rolloutId: row.id, deviceId: refused.deviceId, code: refused.code }, refused.message);
          }
        },
      );
    }
    // 2. Gates on what the stage's devices have reported: counted in the database, not in memory,
    // after the presence and observations still in the write-behind batch (a device that has
    // just connected is online, not "never seen").
    await writes.flush();
    const counts = await db
      .selectFrom('rollout_devices')
      .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
      .where('rollout_id', '=', row.id)
      .where('stage', '<=', row.current_stage)
      .groupBy('status')
      .execute();
    const count = (status: RolloutDevicesTable['status']) => Number(counts.find((c) => c.status === status)?.n ?? 0);
    // Offline devices that have not answered neither block the stage nor count against it.
    const active = count('active');
    const failed = count('failed');
    const unanswered = count('pending') + count('assigned');
    const offlineWaiting = unanswered === 0 ? 0 : (await offlineMembers(row, spec, row.current_stage, ['pending', 'assigned'])).length;
    const waiting = unanswered - offlineWaiting;
    const counted = active + failed + waiting;
    const reporting = active + failed;
    const failureRate = reporting === 0 ? 0 : failed / reporting;
    const stopFor = async (tripped: Record<string, unknown>): Promise<void> => {
      if ((spec.onGateFailure ?? DEFAULTS.onGateFailure) === 'pause') {
        await db.transaction().execute(async (trx) => {
          await trx
            .updateTable('rollouts')
            .set({ state: 'paused', reason: JSON.stringify(tripped), updated_at: new Date(now()).toISOString() })
            .where('id', '=', row.id)
            .execute();
          await audit(trx, {
            actor: 'rollout-engine',
            action: 'rollout.pause',
            target: `rollout:${row.id}`,
            before: { state: 'running' },
            after: { state: 'paused', reason: tripped },
          });
        });
        log.warn({ rolloutId: row.id, reason: tripped }, 'rollout paused by a gate');
      } else {
        await rollBack(row, 'rolled_back', tripped, 'rollout-engine');
      }
    };
    const tripped = await trippedGate(row, gates, { failed, reporting, failureRate, counted });
    if (tripped) return stopFor(tripped);
    // 3. A healthy, soaked stage opens the next one.
    const soak = (spec.stages[row.current_stage]?.soakSeconds ?? DEFAULTS.soakSeconds) * 1000;
    const soaked = now() - Date.parse(row.stage_started_at) >= soak;
    // Every online member must have answered, and a stage nobody has answered never passes: a
    // stage whose members are all offline waits for them.
    if (waiting > 0 || reporting < Math.max(1, Math.min(gates.minDevicesReporting, counted)) || !soaked) return;
    // Telemetry gates decide once, when the stage is otherwise ready to pass: a statistical test
    // repeated on every tick would trip on chance sooner or later.
    if (gates.maxDriftScore !== undefined || gates.maxOutputShift !== undefined) {
      const needed = Math.max(1, Math.min(gates.minDevicesReporting, active));
      const result = active === 0 ? undefined : await checkTelemetryGates(db, row, gates, needed);
      if (result?.verdict === 'trip') return stopFor(result.reason);
      if (result?.verdict !== 'pass') return;
    }
    const last = row.current_stage >= spec.stages.length - 1;
    const next = last
      ? { state: 'completed' as const }
      : { current_stage: row.current_stage + 1, stage_started_at: new Date(now()).toISOString() };
    await db.transaction().execute(async (trx) => {
      await trx
        .updateTable('rollouts')
        .set({ ...next, updated_at: new Date(now()).toISOString() })
        .where('id', '=', row.id)
        .execute();
      await audit(trx, {
        actor: 'rollout-engine',
        action: last ? 'rollout.complete' : 'rollout.stage',
        target: `rollout:${row.id}`,
        after: { ...next, active, failed },
      });
    });
    log.info({ rolloutId: row.id, ...next, active, failed }, last ? 'rollout completed' : 'rollout stage opened');
    if (!last) await advance(await load(row.id));
  }

  async function loadWatched(): Promise<Watched[]> {
    const rows = await db.selectFrom('rollouts').select(['id', 'model', 'version']).where('state', 'in', ['running', 'paused']).execute();
    return rows;
  }

  async function tickOnce(): Promise<void> {
    const started = performance.now();
    try {
      await tickRollouts();
    } finally {
      lastTick.endedAt = performance.now();
      lastTick.took = lastTick.endedAt - started;
    }
  }

  async function tickRollouts(): Promise<void> {
    const current = await db.selectFrom('rollouts').selectAll().where('state', 'in', ['running', 'paused', 'rolling_back']).execute();
    watched = Promise.resolve(current.filter((row) => row.state !== 'rolling_back'));
    for (const row of current) {
      if (row.state === 'paused') continue;
      try {
        if (row.state === 'rolling_back') await finishRollBack(row);
        else await advance(row);
      } catch (error) {
        log.warn({ rolloutId: row.id, err: error }, 'rollout step failed; retried on the next tick');
      }
    }
  }

  const engine: RolloutEngine = {
    async create(spec, actor) {
      const version = await db
        .selectFrom('model_versions')
        .select('version')
        .where('name', '=', spec.model)
        .where('version', '=', spec.version)
        .executeTakeFirst();
      if (!version) throw new EdgefleetError('EF_NOT_FOUND', `${spec.model}@${spec.version} is not in the registry`);
      checkSelector(spec.selector);
      const id = `ro-${randomUUID().slice(0, 8)}`;
      const all = await db.selectFrom('devices').select(['id', 'tags']).where('status', '=', 'active').orderBy('id').execute();
      const targeted = all.filter((d) => {
        const tags = JSON.parse(d.tags) as string[];
        return (spec.selector.devices?.includes(d.id) ?? true) && (spec.selector.tags ?? []).every((t) => tags.includes(t));
      });
      if (targeted.length === 0)
        throw new EdgefleetError('EF_ROLLOUT_NO_DEVICES', `no active device matches ${JSON.stringify(spec.selector)}`);
      const sorted = targeted.map((d) => ({ id: d.id, cohort: cohortOf(id, d.id) })).sort((a, b) => a.cohort - b.cohort);
      const sizes = stageSizes(spec.stages, sorted.length);
      const at = new Date(now()).toISOString();
      // What each device is meant to run now (its current desired entry): what a rollback restores.
      const previous = await desired.currentEntries(
        sorted.map((d) => d.id),
        spec.model,
      );
      const running = await desired.versionsRun(
        sorted.map((d) => d.id),
        spec.model,
        previous,
      );
      await db.transaction().execute(async (trx) => {
        const busy: { device_id: string; id: string }[] = [];
        for (let i = 0; i < sorted.length; i += CHUNK) {
          busy.push(
            ...(await trx
              .selectFrom('rollout_devices')
              .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
              .select(['rollout_devices.device_id', 'rollouts.id'])
              .where('rollouts.model', '=', spec.model)
              .where('rollouts.state', 'in', ['running', 'paused', 'rolling_back'])
              .where(
                'rollout_devices.device_id',
                'in',
                sorted.slice(i, i + CHUNK).map((d) => d.id),
              )
              .execute()),
          );
        }
        if (busy.length > 0) {
          throw new EdgefleetError(
            'EF_ROLLOUT_CONFLICT',
            `device ${busy[0]?.device_id} is already in rollout ${busy[0]?.id} of ${spec.model}${busy.length > 1 ? ` (and ${busy.length - 1} more)` : ''}`,
          );
        }
        checkNotDowngrade(spec.model, spec.version, running, spec.rollback === true);
        await trx
          .insertInto('rollouts')
          .values({
            id,
            model: spec.model,
            version: spec.version,
            spec: JSON.stringify(spec),
            state: 'running',
            current_stage: 0,
            stage_started_at: at,
            reason: null,
            created_at: at,
            created_by: actor,
            updated_at: at,
          })
          .execute();
        const members = sorted.map((device, index) => {
          const entry = previous.get(device.id) ?? null;
          const was = entry?.manifest.payload.version ?? null;
          return {
            rollout_id: id,
            device_id: device.id,
            cohort: device.cohort,
            stage: sizes.findIndex((size) => index < size),
            status: was === spec.version ? ('active' as const) : ('pending' as const),
            previous_version: was,
            previous_entry: entry ? JSON.stringify(entry) : null,
            error_code: null,
            updated_at: at,
          };
        });
        for (let i = 0; i < members.length; i += CHUNK)
          await trx
            .insertInto('rollout_devices')
            .values(members.slice(i, i + CHUNK))
            .execute();
        await audit(trx, {
          actor,
          action: 'rollout.create',
          target: `rollout:${id}`,
          after: { ...spec, devices: sorted.length, stageSizes: sizes },
        });
      });
      await engine.tick();
      return engine.get(id);
    },

    get: async (id) => view(await load(id)),

    async list() {
      const rows = await db.selectFrom('rollouts').selectAll().orderBy('created_at', 'desc').execute();
      return Promise.all(rows.map(view));
    },

    async pause(id, actor) {
      const row = await load(id);
      if (row.state !== 'running') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('rollouts')
          .set({ state: 'paused', updated_at: new Date(now()).toISOString() })
          .where('id', '=', id)
          .execute();
        await audit(trx, {
          actor,
          action: 'rollout.pause',
          target: `rollout:${id}`,
          before: { state: 'running' },
          after: { state: 'paused' },
        });
      });
      return engine.get(id);
    },

    async resume(id, actor) {
      const row = await load(id);
      if (row.state !== 'paused') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      await db.transaction().execute(async (trx) => {
        // Failed devices get another chance: back to pending, they are assigned again.
        await trx
          .updateTable('rollout_devices')
          .set({ status: 'pending', error_code: null })
          .where('rollout_id', '=', id)
          .where('status', '=', 'failed')
          .execute();
        await trx
          .updateTable('rollouts')
          .set({ state: 'running', reason: null, updated_at: new Date(now()).toISOString() })
          .where('id', '=', id)
          .execute();
        await audit(trx, {
          actor,
          action: 'rollout.resume',
          target: `rollout:${id}`,
          before: { state: 'paused' },
          after: { state: 'running' },
        });
      });
      await engine.tick();
      return engine.get(id);
    },

    async abort(id, actor) {
      const row = await load(id);
      if (row.state !== 'running' && row.state !== 'paused') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      await rollBack(row, 'aborted', { requestedBy: actor }, actor);
      return engine.get(id);
    },

    async promote(id, actor) {
      const row = await load(id);
      if (row.state !== 'running') throw new EdgefleetError('EF_ROLLOUT_STATE', `rollout ${id} is ${row.state}`);
      // Moving the stage start into the past ends its soak now.
      await db.transaction().execute(async (trx) => {
        await trx
          .updateTable('rollouts')
          .set({ stage_started_at: new Date(0).toISOString(), updated_at: new Date(now()).toISOString() })
          .where('id', '=', id)
          .execute();
        await audit(trx, { actor, action: 'rollout.promote', target: `rollout:${id}`, after: { stage: row.current_stage } });
      });
      await engine.tick();
      return engine.get(id);
    },

    observe(address, payload, message) {
      if (stopped || (address.kind !== 'events' && address.kind !== 'reported')) return;
      const work = (async () => {
        watched ??= loadWatched();
        const rollouts = await watched;
        if (rollouts.length === 0) return;
        if (address.kind === 'events') {
          const event = (message ?? decodeMessage({ ...address, kind: 'events' }, payload)) as DeviceEvent;
          if (event.kind !== 'activated' && event.kind !== 'install-failed') return;
          for (const rollout of rollouts) {
            if (event.model?.name !== rollout.model || event.model.version !== rollout.version) continue;
            if (event.kind === 'activated') observeStatus(rollout.id, address.deviceId, 'active', null, event.latency?.ratio);
            else observeStatus(rollout.id, address.deviceId, 'failed', event.error?.code ?? 'EF_INTERNAL_ERROR');
          }
        } else {
          // Reported state catches what events missed (a device that activated while we were down).
          const reported = (message ?? decodeMessage({ ...address, kind: 'reported' }, payload)) as ReportedState;
          for (const rollout of rollouts) {
            const model = reported.models.find((m) => m.name === rollout.model);
            if (model?.active?.version === rollout.version) observeStatus(rollout.id, address.deviceId, 'active');
          }
        }
      })().catch((error: unknown) => log.warn({ deviceId: address.deviceId, err: error }, 'could not record a rollout observation'));
      observing.add(work);
      void work.finally(() => observing.delete(work));
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

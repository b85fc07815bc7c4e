/**
 * Every query of the rollout engine, in one place: rollouts and their members in SQL, the same for
 * SQLite and PostgreSQL (Kysely). Counting happens in the database, over the index on
 * (rollout, status, stage), so a gate costs the same for 100 members or 100,000.
 */
import { EdgefleetError } from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import { keysetPage, type PageRequest, type SortColumn } from '../http/paging.ts';
import type { Database, RolloutDevicesTable, RolloutsTable } from '../store/schema.ts';
import type { RolloutState } from './decide.ts';
import { isShadowStage, ROLLOUT_DEFAULTS, type RolloutSpec } from './spec.ts';

/** The order of the rollout list: newest first. */
export const ROLLOUT_ORDER: readonly SortColumn[] = [
  { column: 'created_at', direction: 'desc' },
  { column: 'id', direction: 'desc' },
];

/** Rows per statement: SQLite allows 32,766 bound values, PostgreSQL 65,535. */
export const CHUNK = 500;

/** States in which a rollout still holds its devices. */
export const LIVE_STATES = ['running', 'paused', 'rolling_back'] as const satisfies readonly RolloutState[];

export type MemberStatus = RolloutDevicesTable['status'];

/** What the gates read about the members of the stages opened so far. */
export interface MemberCounts {
  readonly active: number;
  /** Members of a shadow stage that run the version in shadow. */
  readonly shadowing: number;
  readonly failed: number;
  /** Members not yet answered (pending or assigned), and those of them that are offline. */
  readonly unanswered: number;
  readonly offlineUnanswered: number;
}

export function createRolloutRepository(db: Kysely<Database>, now: () => number) {
  const at = () => new Date(now()).toISOString();

  /**
   * Members (up to `stage`) that are offline: not connected and not seen for the rollout's
   * `offlineAfterSeconds`. One join, so it costs the same for 100 devices or 100,000.
   */
  function offlineMembers(row: RolloutsTable, spec: RolloutSpec, stage: number, statuses: readonly MemberStatus[], runningOnly = false) {
    const cutoff = new Date(now() - (spec.offlineAfterSeconds ?? ROLLOUT_DEFAULTS.offlineAfterSeconds) * 1000).toISOString();
    let select = db.selectFrom('rollout_devices');
    // Members of a shadow stage that run a version of the model (see counts).
    if (runningOnly) select = select.where('rollout_devices.previous_version', 'is not', null);
    return select
      .innerJoin('devices', 'devices.id', 'rollout_devices.device_id')
      .select(['rollout_devices.device_id', 'rollout_devices.status'])
      .where('rollout_devices.rollout_id', '=', row.id)
      .where('rollout_devices.status', 'in', statuses)
      .where('rollout_devices.stage', '<=', stage)
      .where('devices.online', '!=', 1)
      .where((eb) => eb.or([eb('devices.last_seen_at', 'is', null), eb('devices.last_seen_at', '<', cutoff)]))
      .execute();
  }

  return {
    offlineMembers,

    async load(id: string): Promise<RolloutsTable> {
      const row = await db.selectFrom('rollouts').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no rollout "${id}"`);
      return row;
    },

    /** A page of rollouts, newest first (created_at, then id, both descending), of one state if given. */
    list(options: { readonly state?: RolloutsTable['state']; readonly page: PageRequest }) {
      let select = keysetPage(db.selectFrom('rollouts').selectAll(), ROLLOUT_ORDER, options.page);
      if (options.state) select = select.where('state', '=', options.state);
      return select.execute();
    },

    live: () => db.selectFrom('rollouts').selectAll().where('state', 'in', LIVE_STATES).execute(),

    /** The rollouts device messages can move (running or paused), and whether they are in a shadow stage. */
    async watched(): Promise<{ id: string; model: string; version: string; shadowStage: boolean }[]> {
      const rows = await db
        .selectFrom('rollouts')
        .select(['id', 'model', 'version', 'spec', 'current_stage'])
        .where('state', 'in', ['running', 'paused'])
        .execute();
      return rows.map((r) => ({
        id: r.id,
        model: r.model,
        version: r.version,
        shadowStage: isShadowStage(JSON.parse(r.spec) as RolloutSpec, r.current_stage),
      }));
    },

    async versionExists(model: string, version: string): Promise<boolean> {
      const row = await db
        .selectFrom('model_versions')
        .select('version')
        .where('name', '=', model)
        .where('version', '=', version)
        .executeTakeFirst();
      return row !== undefined;
    },

    async activeDevices(): Promise<{ id: string; tags: string[] }[]> {
      const rows = await db.selectFrom('devices').select(['id', 'tags']).where('status', '=', 'active').orderBy('id').execute();
      return rows.map((d) => ({ id: d.id, tags: JSON.parse(d.tags) as string[] }));
    },

    /** Targeted devices already held by a live rollout of the same model. */
    async busyMembers(trx: Transaction<Database>, model: string, deviceIds: readonly string[]) {
      const busy: { device_id: string; id: string }[] = [];
      for (let i = 0; i < deviceIds.length; i += CHUNK) {
        busy.push(
          ...(await trx
            .selectFrom('rollout_devices')
            .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
            .select(['rollout_devices.device_id', 'rollouts.id'])
            .where('rollouts.model', '=', model)
            .where('rollouts.state', 'in', LIVE_STATES)
            .where('rollout_devices.device_id', 'in', deviceIds.slice(i, i + CHUNK))
            .execute()),
        );
      }
      return busy;
    },

    async insert(trx: Transaction<Database>, rollout: RolloutsTable, members: readonly Omit<RolloutDevicesTable, 'latency_ratio'>[]) {
      await trx.insertInto('rollouts').values(rollout).execute();
      for (let i = 0; i < members.length; i += CHUNK) {
        await trx
          .insertInto('rollout_devices')
          .values(members.slice(i, i + CHUNK))
          .execute();
      }
    },

    /** Sets the state (and other columns) of a rollout; `updated_at` is written too. */
    async update(
      trx: Kysely<Database> | Transaction<Database>,
      id: string,
      fields: Partial<Pick<RolloutsTable, 'state' | 'current_stage' | 'stage_started_at' | 'reason'>>,
    ) {
      await trx
        .updateTable('rollouts')
        .set({ ...fields, updated_at: at() })
        .where('id', '=', id)
        .execute();
    },

    /** Updates the rollout only if it is still in the state and stage `row` says; false when it moved on. */
    async updateFrom(
      trx: Transaction<Database>,
      row: Pick<RolloutsTable, 'id' | 'state' | 'current_stage'>,
      fields: Partial<Pick<RolloutsTable, 'state' | 'current_stage' | 'stage_started_at' | 'reason'>>,
    ): Promise<boolean> {
      const result = await trx
        .updateTable('rollouts')
        .set({ ...fields, updated_at: at() })
        .where('id', '=', row.id)
        .where('state', '=', row.state)
        .where('current_stage', '=', row.current_stage)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },

    members: (id: string) => db.selectFrom('rollout_devices').selectAll().where('rollout_id', '=', id).orderBy('cohort').execute(),

    async pendingMembers(id: string, stage: number): Promise<string[]> {
      const rows = await db
        .selectFrom('rollout_devices')
        .select('device_id')
        .where('rollout_id', '=', id)
        .where('stage', '<=', stage)
        .where('status', '=', 'pending')
        .execute();
      return rows.map((r) => r.device_id);
    },

    /**
     * Pending members of a shadow stage, by the version they run (meant to run): the candidate runs
     * beside that one. A member that runs no version of the model has nothing to compare with: it
     * waits for the first live stage.
     */
    async pendingShadowMembers(id: string, stage: number): Promise<Map<string, string[]>> {
      const rows = await db
        .selectFrom('rollout_devices')
        .select(['device_id', 'previous_version'])
        .where('rollout_id', '=', id)
        .where('stage', '<=', stage)
        .where('status', '=', 'pending')
        .where('previous_version', 'is not', null)
        .execute();
      const byVersion = new Map<string, string[]>();
      for (const row of rows) {
        const version = row.previous_version as string;
        byVersion.set(version, [...(byVersion.get(version) ?? []), row.device_id]);
      }
      return byVersion;
    },

    /**
     * The first live stage after shadow stages: members that ran the version in shadow (or were
     * sent it and never answered) are pending again, to be sent it live.
     */
    async endShadowStage(trx: Transaction<Database>, id: string) {
      await trx
        .updateTable('rollout_devices')
        .set({ status: 'pending', updated_at: at() })
        .where('rollout_id', '=', id)
        .where('status', 'in', ['shadowing', 'assigned'])
        .execute();
    },

    /** Members sent something by the rollout (their documents name its version), to be returned. */
    touchedMembers: (id: string) =>
      db
        .selectFrom('rollout_devices')
        .selectAll()
        .where('rollout_id', '=', id)
        .where('status', 'in', ['assigned', 'shadowing', 'active', 'failed'])
        // A member refused its document was never sent anything: its document is already as it was.
        .where((eb) => eb.or([eb('error_code', 'is', null), eb('error_code', '!=', 'EF_DESIRED_STATE_TOO_LARGE')]))
        .execute(),

    async setStatus(
      trx: Transaction<Database>,
      id: string,
      deviceIds: readonly string[],
      status: MemberStatus,
      options: { from?: readonly MemberStatus[]; errorCode?: string | null } = {},
    ) {
      for (let i = 0; i < deviceIds.length; i += CHUNK) {
        let update = trx
          .updateTable('rollout_devices')
          .set({ status, updated_at: at(), ...(options.errorCode !== undefined ? { error_code: options.errorCode } : {}) })
          .where('rollout_id', '=', id)
          .where('device_id', 'in', deviceIds.slice(i, i + CHUNK));
        if (options.from) update = update.where('status', 'in', options.from);
        await update.execute();
      }
    },

    /** Failed members get another chance (resume): back to pending, assigned again. */
    async retryFailed(trx: Transaction<Database>, id: string) {
      await trx
        .updateTable('rollout_devices')
        .set({ status: 'pending', error_code: null })
        .where('rollout_id', '=', id)
        .where('status', '=', 'failed')
        .execute();
    },

    /**
     * Counts of the members of the stages opened so far, by what they answered. In a shadow stage
     * members that run no version of the model are not counted (they wait for the live stage).
     */
    async counts(row: RolloutsTable, spec: RolloutSpec): Promise<MemberCounts> {
      const shadowStage = isShadowStage(spec, row.current_stage);
      let select = db
        .selectFrom('rollout_devices')
        .select((eb) => ['status', eb.fn.countAll<number>().as('n')])
        .where('rollout_id', '=', row.id)
        .where('stage', '<=', row.current_stage);
      if (shadowStage) select = select.where('previous_version', 'is not', null);
      const rows = await select.groupBy('status').execute();
      const count = (status: MemberStatus) => Number(rows.find((c) => c.status === status)?.n ?? 0);
      // A member still in shadow once its stage went live has not answered the live version yet.
      const unanswered = count('pending') + count('assigned') + (shadowStage ? 0 : count('shadowing'));
      const offline =
        unanswered === 0 ? [] : await offlineMembers(row, spec, row.current_stage, ['pending', 'assigned', 'shadowing'], shadowStage);
      return {
        active: count('active'),
        shadowing: shadowStage ? count('shadowing') : 0,
        failed: count('failed'),
        unanswered,
        offlineUnanswered: offline.filter((m) => !shadowStage || m.status !== 'shadowing').length,
      };
    },

    async errorCodes(id: string): Promise<string[]> {
      const rows = await db
        .selectFrom('rollout_devices')
        .select('error_code')
        .distinct()
        .where('rollout_id', '=', id)
        .where('error_code', 'is not', null)
        .execute();
      return rows.map((r) => r.error_code as string);
    },

    /** The install-time latency ratios the active members of the stages opened so far measured. */
    async latencyRatios(row: RolloutsTable): Promise<number[]> {
      const rows = await db
        .selectFrom('rollout_devices')
        .select('latency_ratio')
        .where('rollout_id', '=', row.id)
        .where('status', '=', 'active')
        .where('stage', '<=', row.current_stage)
        .where('latency_ratio', 'is not', null)
        .execute();
      return rows.map((r) => r.latency_ratio as number);
    },

    /**
     * Writes what devices said, batched: one statement per (status, error code) and chunk. Only
     * members that were sent the version move (never one still pending or rolled back), and only
     * when the status changes.
     */
    async recordStatuses(
      trx: Transaction<Database>,
      id: string,
      observed: Readonly<Record<string, { status: 'active' | 'shadowing' | 'failed'; errorCode: string | null }>>,
    ) {
      const groups = new Map<string, string[]>();
      for (const [deviceId, seen] of Object.entries(observed)) {
        const key = JSON.stringify([seen.status, seen.errorCode]);
        const group = groups.get(key);
        if (group) group.push(deviceId);
        else groups.set(key, [deviceId]);
      }
      const updatedAt = at();
      for (const [key, ids] of groups) {
        const [status, errorCode] = JSON.parse(key) as ['active' | 'shadowing' | 'failed', string | null];
        // Running in shadow follows being sent the shadow document, and nothing else.
        const from: MemberStatus[] = status === 'shadowing' ? ['assigned'] : ['assigned', 'shadowing', 'active', 'failed'];
        for (let i = 0; i < ids.length; i += CHUNK) {
          await trx
            .updateTable('rollout_devices')
            .set({ status, error_code: errorCode, updated_at: updatedAt })
            .where('rollout_id', '=', id)
            .where('device_id', 'in', ids.slice(i, i + CHUNK))
            .where('status', 'in', from)
            .where((eb) => eb.or([eb('status', '!=', status), eb('error_code', 'is distinct from', errorCode)]))
            .execute();
        }
      }
    },

    /** A measurement, written apart from the status (a later reported state must not erase it). */
    async recordLatency(trx: Transaction<Database>, id: string, ratios: Readonly<Record<string, number>>) {
      for (const [deviceId, ratio] of Object.entries(ratios)) {
        await trx
          .updateTable('rollout_devices')
          .set({ latency_ratio: ratio })
          .where('rollout_id', '=', id)
          .where('device_id', '=', deviceId)
          .execute();
      }
    },
  };
}

export type RolloutRepository = ReturnType<typeof createRolloutRepository>;

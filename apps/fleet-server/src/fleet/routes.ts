/**
 * The fleet at a glance: how many devices, online, failing; which version of each model they run;
 * and per model, the compliance view (as Azure Device Update has it): against a target version,
 * which devices are up to date, in progress, behind, or failed.
 *
 * Both read every active device's reported state and desired document once per request (10,000
 * devices: tens of milliseconds of JSON); they do not page because they are counts, not lists.
 */
import { compareSemver, EdgefleetError, REFERENCE_VARIANT, type ReportedState } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import { desiredVersions, isFailing } from '../devices/failing.ts';
import { DateTime, Nullable } from '../http/schemas.ts';
import { resolveVersion } from '../registry/versions.ts';
import type { Database } from '../store/schema.ts';

const NameParams = Type.Object({ name: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const ComplianceQuery = Type.Object(
  {
    target: Type.Optional(
      Type.String({ maxLength: 64, description: 'a version or alias; default: the production alias, else the highest version' }),
    ),
  },
  { additionalProperties: false },
);

const Counts = {
  upToDate: Type.Integer({ description: 'run the target version' }),
  inProgress: Type.Integer({ description: 'are assigned the target and not yet running it' }),
  behind: Type.Integer({ description: 'run another version and are not assigned the target' }),
  failed: Type.Integer({ description: 'failed the model or the install they were asked for' }),
};
const Summary = Type.Object(
  {
    at: DateTime,
    devices: Type.Object(
      {
        total: Type.Integer(),
        active: Type.Integer(),
        revoked: Type.Integer(),
        online: Type.Integer(),
        offline: Type.Integer(),
        failing: Type.Integer(),
      },
      { additionalProperties: false },
    ),
    models: Type.Array(
      Type.Object(
        {
          name: Type.String(),
          target: Nullable(Type.String({ description: 'the production alias, else the highest version' })),
          versions: Type.Array(
            Type.Object(
              {
                version: Type.String(),
                devices: Type.Integer(),
                online: Type.Integer(),
                variants: Type.Array(Type.Object({ variant: Type.String(), devices: Type.Integer() }, { additionalProperties: false }), {
                  description: 'which build serves on how many of its devices ("reference": the manifest’s artifact), most devices first',
                }),
              },
              { additionalProperties: false },
            ),
          ),
          states: Type.Object(
            { active: Type.Integer(), installing: Type.Integer(), failed: Type.Integer(), removed: Type.Integer() },
            { additionalProperties: false },
          ),
          compliance: Type.Object(Counts, { additionalProperties: false }),
        },
        { additionalProperties: false },
      ),
    ),
    rollouts: Type.Object(
      { running: Type.Integer(), paused: Type.Integer(), rollingBack: Type.Integer() },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
const Compliance = Type.Object(
  {
    model: Type.String(),
    target: Type.String(),
    targetAlias: Nullable(Type.String()),
    devices: Type.Integer({ description: 'active devices that have or are meant to have the model' }),
    ...Counts,
    versions: Type.Array(Type.Object({ version: Type.String(), devices: Type.Integer() }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

export type ComplianceState = 'upToDate' | 'inProgress' | 'behind' | 'failed';

interface DeviceModels {
  readonly id: string;
  readonly online: boolean;
  /** What the device reports of each model. */
  readonly reported: Map<string, ReportedState['models'][number]>;
  /** The version its desired document names for each model. */
  readonly desired: Map<string, string>;
}

async function activeDevices(db: Kysely<Database>): Promise<DeviceModels[]> {
  const rows = await db.selectFrom('devices').select(['id', 'online', 'reported']).where('status', '=', 'active').execute();
  const documents = await db
    .selectFrom('device_desired')
    .innerJoin('devices', 'devices.id', 'device_desired.device_id')
    .select(['device_desired.device_id', 'device_desired.document'])
    .where('devices.status', '=', 'active')
    .execute();
  const desired = new Map(documents.map((row) => [row.device_id, desiredVersions(row.document)]));
  return rows.map((row) => ({
    id: row.id,
    online: row.online === 1,
    reported: new Map(row.reported ? (JSON.parse(row.reported) as ReportedState).models.map((m) => [m.name, m]) : []),
    desired: desired.get(row.id) ?? new Map(),
  }));
}

/** Where one device stands against `target` for `model`; undefined when it neither has nor is meant to have the model. */
export function complianceOf(device: DeviceModels, model: string, target: string): ComplianceState | undefined {
  const reported = device.reported.get(model);
  const desired = device.desired.get(model);
  if (!reported && desired === undefined) return undefined;
  if (reported && isFailing(reported, desired)) return 'failed';
  if (reported?.active?.version === target) return 'upToDate';
  if (desired === target) return 'inProgress';
  return 'behind';
}

async function defaultTarget(db: Kysely<Database>, name: string): Promise<string | undefined> {
  const production = await db
    .selectFrom('aliases')
    .select('version')
    .where('name', '=', name)
    .where('alias', '=', 'production')
    .executeTakeFirst();
  if (production) return production.version;
  const versions = await db.selectFrom('model_versions').select('version').where('name', '=', name).execute();
  return versions
    .map((v) => v.version)
    .sort(compareSemver)
    .at(-1);
}

export async function registerFleetRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { db } = context;

  app.get(
    '/v1/fleet/summary',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'The fleet in one call: devices online and failing, versions of each model, rollouts in flight',
        response: { 200: Summary },
      },
    },
    async () => {
      await context.writes.flush();
      const count = async (status?: string, column?: 'online' | 'failing') => {
        let query = db.selectFrom('devices').select((eb) => eb.fn.countAll<number>().as('n'));
        if (status) query = query.where('status', '=', status as 'active');
        if (column) query = query.where(column, '=', 1);
        return Number((await query.executeTakeFirstOrThrow()).n);
      };
      const [total, active, online, failing] = await Promise.all([
        count(),
        count('active'),
        count('active', 'online'),
        count('active', 'failing'),
      ]);
      const devices = await activeDevices(db);
      const models = (await db.selectFrom('models').select('name').orderBy('name').execute()).map((m) => m.name);
      const rollouts = await db
        .selectFrom('rollouts')
        .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
        .where('state', 'in', ['running', 'paused', 'rolling_back'])
        .groupBy('state')
        .execute();
      const inFlight = Object.fromEntries(rollouts.map((r) => [r.state, Number(r.n)]));
      return {
        at: new Date().toISOString(),
        devices: { total, active, revoked: total - active, online, offline: active - online, failing },
        models: await Promise.all(
          models.map(async (name) => {
            const versions = new Map<string, { devices: number; online: number; variants: Map<string, number> }>();
            const states = { active: 0, installing: 0, failed: 0, removed: 0 };
            const compliance = { upToDate: 0, inProgress: 0, behind: 0, failed: 0 };
            const target = await defaultTarget(db, name);
            for (const device of devices) {
              const reported = device.reported.get(name);
              if (reported) states[reported.state as keyof typeof states]++;
              const version = reported?.state !== 'removed' ? reported?.active?.version : undefined;
              if (version) {
                const entry = versions.get(version) ?? { devices: 0, online: 0, variants: new Map<string, number>() };
                entry.devices++;
                if (device.online) entry.online++;
                const variant = reported?.active?.variant ?? REFERENCE_VARIANT;
                entry.variants.set(variant, (entry.variants.get(variant) ?? 0) + 1);
                versions.set(version, entry);
              }
              const state = target ? complianceOf(device, name, target) : undefined;
              if (state) compliance[state]++;
            }
            return {
              name,
              target: target ?? null,
              versions: [...versions]
                .sort((a, b) => compareSemver(b[0], a[0]))
                .map(([version, { variants, ...counts }]) => ({
                  version,
                  ...counts,
                  variants: [...variants]
                    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
                    .map(([variant, devices]) => ({ variant, devices })),
                })),
              states,
              compliance,
            };
          }),
        ),
        rollouts: { running: inFlight.running ?? 0, paused: inFlight.paused ?? 0, rollingBack: inFlight.rolling_back ?? 0 },
      };
    },
  );

  app.get(
    '/v1/models/:name/compliance',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'Where the fleet stands against a target version of a model: up to date, in progress, behind, failed',
        params: NameParams,
        querystring: ComplianceQuery,
        response: { 200: Compliance },
      },
    },
    async (request) => {
      const { name } = request.params as { name: string };
      const query = request.query as { target?: string };
      if (!(await db.selectFrom('models').select('name').where('name', '=', name).executeTakeFirst()))
        throw new EdgefleetError('EF_NOT_FOUND', `no model "${name}" in the registry`);
      const resolved = query.target ? await resolveVersion(db, name, query.target) : undefined;
      const target = resolved?.version ?? (await defaultTarget(db, name));
      if (!target) throw new EdgefleetError('EF_NOT_FOUND', `${name} has no versions yet`);
      await context.writes.flush();
      const counts = { upToDate: 0, inProgress: 0, behind: 0, failed: 0 };
      const versions = new Map<string, number>();
      for (const device of await activeDevices(db)) {
        const state = complianceOf(device, name, target);
        if (!state) continue;
        counts[state]++;
        const running = device.reported.get(name)?.active?.version;
        if (running) versions.set(running, (versions.get(running) ?? 0) + 1);
      }
      return {
        model: name,
        target,
        targetAlias: resolved ? resolved.alias : null,
        devices: counts.upToDate + counts.inProgress + counts.behind + counts.failed,
        ...counts,
        versions: [...versions].sort((a, b) => compareSemver(b[0], a[0])).map(([version, devices]) => ({ version, devices })),
      };
    },
  );
}

/**
 * Devices and enrollment. A device's secret is shown once, at creation or enrollment, and kept
 * only as its sha256 (it is 256 random bits: see auth/index.ts). Revocation disconnects the device at once and refuses it from then on.
 */
import { randomUUID } from 'node:crypto';
import {
  assertDeviceId,
  type DeviceEvent,
  DeviceId,
  EdgefleetError,
  ErrorInfo,
  EVENT_KINDS,
  ExecutionProviderSchema,
  ModelName,
  Semver,
  Tag,
} from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import { type ExpressionBuilder, type Insertable, type Selectable, type SqlBool, sql } from 'kysely';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import { hashDeviceSecret, newSecret, sha256 } from '../auth/index.ts';
import type { ServerContext } from '../context.ts';
import { checkNotDowngrade } from '../desired/index.ts';
import { checkIfMatch, etagOf, setEtag } from '../http/etag.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Empty, Nullable, Page, Ref } from '../http/schemas.ts';
import type { Database, DeviceEventsTable, DevicesTable, EnrollmentTokensTable } from '../store/schema.ts';

const Tags = Type.Array(Tag, { maxItems: 32, uniqueItems: true });

const CreateDevice = Type.Object({ id: Type.Optional(DeviceId), tags: Type.Optional(Tags) }, { additionalProperties: false });
const Flag = Type.Enum(['true', 'false']);
const ListDevices = pagedQuery({
  tag: Type.Optional(Tag),
  idPrefix: Type.Optional(
    Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._:-]+$', description: 'devices whose id starts with this' }),
  ),
  status: Type.Optional(Type.Enum(['active', 'revoked'])),
  online: Type.Optional(Flag),
  failing: Type.Optional({ ...Flag, description: 'true: devices reporting a model in the failed state' }),
});
const PatchDevice = Type.Object(
  { tags: Type.Optional({ ...Tags, description: 'the device’s tags, replacing the current ones' }) },
  { additionalProperties: false, minProperties: 1 },
);
const EVENT_KINDS_KEPT = EVENT_KINDS.filter((k) => k !== 'download-progress');
const HistoryQuery = pagedQuery({
  model: Type.Optional(ModelName),
  kind: Type.Optional(Type.Enum(EVENT_KINDS_KEPT)),
});
const HISTORY_ORDER: readonly SortColumn[] = [{ column: 'id', direction: 'desc' }];
const DEVICE_ORDER: readonly SortColumn[] = [{ column: 'id', direction: 'asc' }];
const IdParams = Type.Object({ id: DeviceId }, { additionalProperties: false });
const CreateToken = Type.Object(
  {
    name: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'what the token is for, shown in lists and the audit log' }),
    ),
    tags: Type.Optional(Tags),
    uses: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
    expiresInSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 365 * 24 * 3600 })),
  },
  { additionalProperties: false },
);
const DesiredParams = Type.Object({ id: DeviceId, model: ModelName }, { additionalProperties: false });
const DesiredBody = Type.Object(
  {
    version: Type.String({ ...Semver, description: 'a semantic version in the registry' }),
    rollback: Type.Optional(
      Type.Boolean({ description: 'sign the change as a rollback: the version may be older than what the device runs' }),
    ),
    shadow: Type.Optional(
      Type.Object(
        {
          version: Type.String({ ...Semver, description: 'a candidate version in the registry, other than `version`' }),
          rate: Type.Optional(
            Type.Number({ minimum: 0, maximum: 1, description: 'the share of live inputs it also runs on (default 0.1)' }),
          ),
        },
        {
          additionalProperties: false,
          description:
            'a candidate to run in shadow beside `version`: it never answers; its comparisons come in telemetry (docs/quality.md)',
        },
      ),
    ),
  },
  { additionalProperties: false },
);
const EnrollmentTokenState = Type.Enum(['active', 'expired', 'used-up', 'revoked']);
const ListEnrollmentTokens = pagedQuery({ state: Type.Optional(EnrollmentTokenState) });
const TOKEN_ORDER: readonly SortColumn[] = [
  { column: 'created_at', direction: 'desc' },
  { column: 'id', direction: 'desc' },
];
const TokenParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9]{1,64}$' }) }, { additionalProperties: false });

function enrollmentTokenState(row: EnrollmentTokensTable, now: number): 'active' | 'expired' | 'used-up' | 'revoked' {
  if (row.revoked_at !== null) return 'revoked';
  if (row.expires_at !== null && Date.parse(row.expires_at) <= now) return 'expired';
  if (row.uses_left === 0) return 'used-up';
  return 'active';
}

function enrollmentTokenView(row: EnrollmentTokensTable, now: number) {
  return {
    id: row.id,
    name: row.name,
    tags: JSON.parse(row.tags) as string[],
    usesLeft: row.uses_left,
    state: enrollmentTokenState(row, now),
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

const DeviceView = Type.Object(
  {
    id: DeviceId,
    tags: Type.Array(Tag),
    status: Type.Enum(['active', 'revoked']),
    online: Type.Boolean(),
    failing: Type.Boolean({ description: 'reports a model failed, or an install it was asked for that failed' }),
    createdAt: DateTime,
    lastSeenAt: Nullable(DateTime),
    reported: Type.Union([Ref('ReportedState'), Type.Null()], { description: 'what the device last reported' }),
  },
  { additionalProperties: false },
);
const DeviceCreated = Type.Object(
  {
    id: DeviceId,
    secret: Type.String({ description: 'the device secret, shown once: keep it on the device' }),
    tags: Type.Array(Tag),
    mqtt: Type.Object({ tcp: Type.String(), ws: Type.String() }, { additionalProperties: false }),
    keySet: Ref('SignedKeySet'),
  },
  { additionalProperties: false },
);
const HistoryEvent = Type.Object(
  {
    id: Type.Integer(),
    at: DateTime,
    receivedAt: DateTime,
    kind: Type.Enum(EVENT_KINDS_KEPT),
    model: Nullable(Type.String()),
    version: Nullable(Type.String()),
    rolloutId: Nullable(Type.String()),
    error: Nullable(ErrorInfo),
    bootId: Type.String(),
    seq: Type.Integer(),
    executionProvider: Type.Optional(ExecutionProviderSchema),
    variant: Type.Optional(Type.String({ description: 'the variant the event is about ("reference": the manifest’s artifact)' })),
    fallback: Type.Optional(
      Type.Object({ from: Type.String(), to: Type.String(), reason: Type.String() }, { additionalProperties: false }),
    ),
    latency: Type.Optional(Type.Record(Type.String(), Type.Number())),
  },
  { additionalProperties: false },
);
const FleetEvent = Type.Object({ deviceId: DeviceId, ...HistoryEvent.properties }, { additionalProperties: false });
const EnrollmentTokenView = Type.Object(
  {
    id: Type.String(),
    name: Nullable(Type.String()),
    tags: Type.Array(Tag),
    usesLeft: Nullable(Type.Integer({ description: 'null: unlimited' })),
    state: EnrollmentTokenState,
    createdAt: DateTime,
    createdBy: Nullable(Type.String()),
    expiresAt: Nullable(DateTime),
    revokedAt: Nullable(DateTime),
  },
  { additionalProperties: false },
);
const EnrollmentTokenCreated = Type.Object(
  {
    ...EnrollmentTokenView.properties,
    token: Type.String({ description: 'the enrollment token, shown once' }),
    uses: Nullable(Type.Integer()),
  },
  { additionalProperties: false },
);

const Enroll = Type.Object({ token: Type.String({ maxLength: 200 }), id: Type.Optional(DeviceId) }, { additionalProperties: false });

/** What an admin controls of a device: its ETag changes with these, not with its presence. */
function deviceEtag(row: Pick<Selectable<DevicesTable>, 'tags' | 'status'>): string {
  return etagOf({ tags: JSON.parse(row.tags) as string[], status: row.status });
}

function view(row: Selectable<DevicesTable>) {
  return {
    id: row.id,
    tags: JSON.parse(row.tags) as string[],
    status: row.status,
    online: row.online === 1,
    failing: row.failing === 1,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    reported: row.reported ? (JSON.parse(row.reported) as unknown) : null,
  };
}

/** A stored device event as the history routes show it. */
function historyEvent(row: Selectable<DeviceEventsTable>) {
  const event = JSON.parse(row.body) as DeviceEvent;
  return {
    id: Number(row.id),
    at: row.at,
    receivedAt: row.received_at,
    kind: row.kind as (typeof EVENT_KINDS_KEPT)[number],
    model: row.model,
    version: row.version,
    rolloutId: row.rollout_id,
    error: event.error ?? null,
    bootId: row.boot_id,
    seq: row.seq,
    ...(event.executionProvider ? { executionProvider: event.executionProvider } : {}),
    ...(event.variant ? { variant: event.variant } : {}),
    ...(event.fallback ? { fallback: event.fallback } : {}),
    ...(event.latency ? { latency: event.latency } : {}),
  };
}

export async function registerDeviceRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { db } = context;

  async function createDevice(id: string, tags: string[], actor: string) {
    assertDeviceId(id);
    // The server's own user at an external broker is no device's: the broker (or its hooks) would
    // take a device of that name for the server.
    if (context.config.brokerUsername !== undefined && id === context.config.brokerUsername) {
      throw new EdgefleetError(
        'EF_DEVICE_ID_INVALID',
        `device id "${id}" is the server's own user at the MQTT broker (EDGEFLEET_BROKER_USERNAME): pick another id`,
      );
    }
    const secret = newSecret();
    const row: Insertable<DevicesTable> = {
      id,
      secret_hash: hashDeviceSecret(secret),
      tags: JSON.stringify(tags),
      status: 'active',
      created_at: new Date().toISOString(),
      last_seen_at: null,
      online: 0,
      reported: null,
    };
    await db.transaction().execute(async (trx) => {
      if (await trx.selectFrom('devices').select('id').where('id', '=', id).executeTakeFirst()) {
        throw new EdgefleetError('EF_DEVICE_EXISTS', `device "${id}" already exists`);
      }
      await trx.insertInto('devices').values(row).execute();
      await audit(trx, { actor, action: 'device.create', target: `device:${id}`, after: { tags } });
    });
    try {
      // An external broker learns the credential now (the embedded one reads the database).
      await context.broker().admitDevice(id, secret);
    } catch (error) {
      // A device the broker would refuse is no device: nothing stays behind, the call can be retried.
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('devices').where('id', '=', id).execute();
        await audit(trx, { actor, action: 'device.delete', target: `device:${id}`, before: { reason: 'the broker refused it' } });
      });
      throw error;
    }
    const urls = context.broker().urls;
    return { id, secret, tags, mqtt: urls, keySet: context.keys.keySet };
  }

  app.post(
    '/v1/devices',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Create a device; its secret is returned once', body: CreateDevice, response: { 201: DeviceCreated } },
    },
    async (request, reply) => {
      const body = request.body as { id?: string; tags?: string[] };
      const created = await createDevice(body.id ?? `dev-${randomUUID().slice(0, 8)}`, body.tags ?? [], request.principal?.id ?? 'unknown');
      return reply.status(201).header('location', `/v1/devices/${created.id}`).send(created);
    },
  );

  app.get(
    '/v1/devices',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'List devices by id, by tag, status, presence and failure, a page at a time',
        querystring: ListDevices,
        response: { 200: Page('devices', DeviceView) },
      },
    },
    async (request) => {
      const query = request.query as {
        tag?: string;
        idPrefix?: string;
        status?: 'active' | 'revoked';
        online?: 'true' | 'false';
        failing?: 'true' | 'false';
        limit?: string;
        cursor?: string;
      };
      const page = pageRequest('devices', query, DEVICE_ORDER.length);
      await context.writes.flush();
      let select = keysetPage(db.selectFrom('devices').selectAll(), DEVICE_ORDER, page);
      if (query.status) select = select.where('status', '=', query.status);
      if (query.online) select = select.where('online', '=', query.online === 'true' ? 1 : 0);
      if (query.failing) select = select.where('failing', '=', query.failing === 'true' ? 1 : 0);
      // Tags are a JSON array of quoted strings: the quoted tag, with LIKE's wildcards escaped.
      const escapeLike = (text: string) => text.replaceAll('\\', '\\\\').replaceAll('%', '\\%').replaceAll('_', '\\_');
      if (query.idPrefix) select = select.where(sql<SqlBool>`id like ${`${escapeLike(query.idPrefix)}%`} escape '\\'`);
      if (query.tag) {
        const pattern = `%${escapeLike(JSON.stringify(query.tag))}%`;
        select = select.where(sql<SqlBool>`tags like ${pattern} escape '\\'`);
      }
      const { items, next } = pageOf(await select.execute(), page, (row) => [row.id]);
      // LIKE is a coarse filter (case-insensitive on SQLite): each item is checked exactly.
      const exact = (d: { id: string; tags: string[] }) =>
        (!query.tag || d.tags.includes(query.tag)) && (!query.idPrefix || d.id.startsWith(query.idPrefix));
      return { devices: items.map(view).filter(exact), next };
    },
  );

  app.get(
    '/v1/devices/:id',
    { onRequest: context.requireRead, schema: { summary: 'One device, with its ETag', params: IdParams, response: { 200: DeviceView } } },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      await context.writes.flush();
      const row = await db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${id}"`);
      setEtag(reply, deviceEtag(row));
      return view(row);
    },
  );

  app.patch(
    '/v1/devices/:id',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Change a device’s tags (honours If-Match); rollouts created after, and drift groups from the next pass, see them',
        params: IdParams,
        body: PatchDevice,
        response: { 200: DeviceView },
      },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      const body = request.body as { tags?: string[] };
      await context.writes.flush();
      const row = await db.transaction().execute(async (trx) => {
        const before = await trx.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
        if (!before) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${id}"`);
        checkIfMatch(request, deviceEtag(before), `device "${id}"`);
        const tags = body.tags ?? (JSON.parse(before.tags) as string[]);
        if (JSON.stringify(tags) === before.tags) return before;
        await trx
          .updateTable('devices')
          .set({ tags: JSON.stringify(tags) })
          .where('id', '=', id)
          .execute();
        await audit(trx, {
          actor: request.principal?.id ?? 'unknown',
          action: 'device.update',
          target: `device:${id}`,
          before: { tags: JSON.parse(before.tags) as string[] },
          after: { tags },
        });
        return { ...before, tags: JSON.stringify(tags) };
      });
      setEtag(reply, deviceEtag(row));
      return view(row);
    },
  );

  app.get(
    '/v1/devices/:id/history',
    {
      onRequest: context.requireRead,
      schema: {
        summary: 'What happened on a device, newest first: installs, acceptance, failures, rollbacks, with codes and times',
        params: IdParams,
        querystring: HistoryQuery,
        response: { 200: Page('events', HistoryEvent, { deviceId: DeviceId }) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const query = request.query as { model?: string; kind?: string; limit?: string; cursor?: string };
      const page = pageRequest(`device-history:${id}`, query, HISTORY_ORDER.length);
      if (!(await db.selectFrom('devices').select('id').where('id', '=', id).executeTakeFirst()))
        throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${id}"`);
      await context.history.flush();
      let select = keysetPage(db.selectFrom('device_events').selectAll().where('device_id', '=', id), HISTORY_ORDER, page);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.kind) select = select.where('kind', '=', query.kind);
      const { items, next } = pageOf(await select.execute(), page, (row) => [Number(row.id)]);
      return {
        deviceId: id,
        next,
        events: items.map(historyEvent),
      };
    },
  );

  app.get(
    '/v1/device-events',
    {
      onRequest: context.requireRead,
      schema: {
        summary:
          "What happened across the fleet, newest first: every device's installs, failures and rollbacks (the dashboard's recent events)",
        querystring: HistoryQuery,
        response: { 200: Page('events', FleetEvent) },
      },
    },
    async (request) => {
      const query = request.query as { model?: string; kind?: string; limit?: string; cursor?: string };
      const page = pageRequest('device-events', query, HISTORY_ORDER.length);
      await context.history.flush();
      let select = keysetPage(db.selectFrom('device_events').selectAll(), HISTORY_ORDER, page);
      if (query.model) select = select.where('model', '=', query.model);
      if (query.kind) select = select.where('kind', '=', query.kind);
      const { items, next } = pageOf(await select.execute(), page, (row) => [Number(row.id)]);
      return { next, events: items.map((row) => ({ deviceId: row.device_id, ...historyEvent(row) })) };
    },
  );

  app.post(
    '/v1/devices/:id/revoke',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Revoke a device and disconnect it now (honours If-Match)', params: IdParams, response: { 200: DeviceView } },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      await db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${id}"`);
        checkIfMatch(request, deviceEtag(row), `device "${id}"`);
        await trx.updateTable('devices').set({ status: 'revoked' }).where('id', '=', id).execute();
        await audit(trx, {
          actor: request.principal?.id ?? 'unknown',
          action: 'device.revoke',
          target: `device:${id}`,
          before: { status: row.status },
          after: { status: 'revoked' },
        });
      });
      await context.broker().disconnect(id);
      const row = await db.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
      setEtag(reply, deviceEtag(row));
      return view(row);
    },
  );

  app.delete(
    '/v1/devices/:id',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Delete a device (honours If-Match)', params: IdParams, response: { 204: { description: 'deleted', ...Empty } } },
    },
    async (request, reply) => {
      const { id } = request.params as { id: string };
      await db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('devices').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${id}"`);
        checkIfMatch(request, deviceEtag(row), `device "${id}"`);
        await trx.deleteFrom('devices').where('id', '=', id).execute();
        await trx.deleteFrom('device_desired').where('device_id', '=', id).execute();
        await audit(trx, { actor: request.principal?.id ?? 'unknown', action: 'device.delete', target: `device:${id}`, before: view(row) });
      });
      await context.broker().disconnect(id);
      return reply.status(204).send();
    },
  );

  app.get(
    '/v1/devices/:id/desired',
    {
      onRequest: context.requireRead,
      schema: { summary: 'The signed desired state of a device', params: IdParams, response: { 200: Ref('SignedDesiredState') } },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const document = await context.desired.current(id);
      if (!document) throw new EdgefleetError('EF_NOT_FOUND', `device "${id}" has no desired state yet`);
      return document;
    },
  );

  app.put(
    '/v1/devices/:id/desired/:model',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Assign a model version to one device (rollouts do this in stages)',
        params: DesiredParams,
        body: DesiredBody,
        response: { 200: Ref('SignedDesiredState') },
      },
    },
    async (request) => {
      const { id, model } = request.params as { id: string; model: string };
      const body = request.body as { version: string; rollback?: boolean; shadow?: { version: string; rate?: number } };
      if (body.shadow?.version === body.version) {
        throw new EdgefleetError('EF_SCHEMA_INVALID', `${model}@${body.version} cannot run in shadow beside itself: name another version`);
      }
      checkNotDowngrade(model, body.version, await context.desired.versionsRun([id], model), body.rollback ?? false);
      return context.desired.assign(
        id,
        {
          set: [
            {
              name: model,
              version: body.version,
              ...(body.shadow ? { shadow: { version: body.shadow.version, rate: body.shadow.rate ?? 0.1 } } : {}),
            },
          ],
          rollback: body.rollback ?? false,
        },
        request.principal?.id ?? 'unknown',
      );
    },
  );

  app.delete(
    '/v1/devices/:id/desired/:model',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'Uninstall a model from one device', params: DesiredParams, response: { 200: Ref('SignedDesiredState') } },
    },
    async (request) => {
      const { id, model } = request.params as { id: string; model: string };
      return context.desired.assign(id, { remove: [model] }, request.principal?.id ?? 'unknown');
    },
  );

  app.post(
    '/v1/enrollment-tokens',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Create a reusable enrollment token, optionally limited in uses and time; returned once',
        body: CreateToken,
        response: { 201: EnrollmentTokenCreated },
      },
    },
    async (request, reply) => {
      const body = request.body as { name?: string; tags?: string[]; uses?: number; expiresInSeconds?: number };
      const id = randomUUID().replaceAll('-', '').slice(0, 16);
      const secret = newSecret();
      const token = `efe_${id}_${secret}`;
      const now = Date.now();
      const actor = request.principal?.id ?? 'unknown';
      const row: EnrollmentTokensTable = {
        id,
        name: body.name ?? null,
        token_hash: sha256(token),
        tags: JSON.stringify(body.tags ?? []),
        uses_left: body.uses ?? null,
        expires_at: body.expiresInSeconds ? new Date(now + body.expiresInSeconds * 1000).toISOString() : null,
        created_at: new Date(now).toISOString(),
        created_by: actor,
        revoked_at: null,
      };
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('enrollment_tokens').values(row).execute();
        await audit(trx, {
          actor,
          action: 'enrollment-token.create',
          target: `enrollment-token:${id}`,
          after: { name: row.name, tags: body.tags ?? [], uses: body.uses ?? null, expiresAt: row.expires_at },
        });
      });
      const created = enrollmentTokenView(row, now);
      // `uses` and `expiresAt` as before, beside the list's fields.
      return reply
        .status(201)
        .header('location', `/v1/enrollment-tokens/${id}`)
        .send({ ...created, token, uses: body.uses ?? null });
    },
  );

  app.get(
    '/v1/enrollment-tokens',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'List enrollment tokens (never their secrets), newest first',
        querystring: ListEnrollmentTokens,
        response: { 200: Page('tokens', EnrollmentTokenView) },
      },
    },
    async (request) => {
      const query = request.query as { state?: ReturnType<typeof enrollmentTokenState>; limit?: string; cursor?: string };
      const page = pageRequest('enrollment-tokens', query, TOKEN_ORDER.length);
      const now = Date.now();
      const at = new Date(now).toISOString();
      let select = keysetPage(db.selectFrom('enrollment_tokens').selectAll(), TOKEN_ORDER, page);
      const live = (eb: ExpressionBuilder<Database, 'enrollment_tokens'>) =>
        eb.and([eb('revoked_at', 'is', null), eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)])]);
      if (query.state === 'revoked') select = select.where('revoked_at', 'is not', null);
      if (query.state === 'expired') select = select.where('revoked_at', 'is', null).where('expires_at', '<=', at);
      if (query.state === 'used-up') select = select.where(live).where('uses_left', '=', 0);
      if (query.state === 'active')
        select = select.where(live).where((eb) => eb.or([eb('uses_left', 'is', null), eb('uses_left', '>', 0)]));
      const { items, next } = pageOf(await select.execute(), page, (row) => [row.created_at, row.id]);
      return { tokens: items.map((row) => enrollmentTokenView(row, now)), next };
    },
  );

  app.get(
    '/v1/enrollment-tokens/:id',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'One enrollment token (never its secret)', params: TokenParams, response: { 200: EnrollmentTokenView } },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const row = await db.selectFrom('enrollment_tokens').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no enrollment token "${id}"; GET /v1/enrollment-tokens lists them`);
      return enrollmentTokenView(row, Date.now());
    },
  );

  app.post(
    '/v1/enrollment-tokens/:id/revoke',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Revoke an enrollment token now (devices it enrolled stay); revoking a revoked token changes nothing',
        params: TokenParams,
        response: { 200: EnrollmentTokenView },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const at = new Date().toISOString();
      return db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('enrollment_tokens').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no enrollment token "${id}"; GET /v1/enrollment-tokens lists them`);
        if (row.revoked_at !== null) return enrollmentTokenView(row, Date.now());
        await trx.updateTable('enrollment_tokens').set({ revoked_at: at }).where('id', '=', id).execute();
        await audit(trx, {
          actor: request.principal?.id ?? 'unknown',
          action: 'enrollment-token.revoke',
          target: `enrollment-token:${id}`,
          before: { name: row.name, state: enrollmentTokenState(row, Date.now()) },
          after: { name: row.name, state: 'revoked' },
        });
        return enrollmentTokenView({ ...row, revoked_at: at }, Date.now());
      });
    },
  );

  app.post(
    '/v1/enroll',
    { schema: { summary: 'A device enrolls itself with an enrollment token', body: Enroll, response: { 201: DeviceCreated } } },
    async (request, reply) => {
      const body = request.body as { token: string; id?: string };
      const id = body.id ?? `dev-${randomUUID().slice(0, 8)}`;
      const token = await db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('enrollment_tokens').selectAll().where('token_hash', '=', sha256(body.token)).executeTakeFirst();
        if (!row || enrollmentTokenState(row, Date.now()) !== 'active')
          throw new EdgefleetError('EF_ENROLLMENT_TOKEN_INVALID', 'the enrollment token is unknown, revoked, expired or used up');
        if (row.uses_left !== null) {
          // Taken in the database, not from what was read: concurrent enrollments (several
          // replicas, or one on PostgreSQL) each get a use only while one is left.
          const taken = await trx
            .updateTable('enrollment_tokens')
            .set((eb) => ({ uses_left: eb('uses_left', '-', 1) }))
            .where('id', '=', row.id)
            .where('uses_left', '>', 0)
            .executeTakeFirst();
          if (Number(taken.numUpdatedRows) !== 1)
            throw new EdgefleetError('EF_ENROLLMENT_TOKEN_INVALID', 'the enrollment token is unknown, revoked, expired or used up');
        }
        return { id: row.id, tags: JSON.parse(row.tags) as string[] };
      });
      const created = await createDevice(id, token.tags, `enrollment-token:${token.id}`);
      return reply.status(201).header('location', `/v1/devices/${created.id}`).send(created);
    },
  );

  app.get(
    '/v1/keyset',
    { schema: { summary: 'The signed key set devices pin (public)', response: { 200: Ref('SignedKeySet') } } },
    async () => context.keys.keySet,
  );
}

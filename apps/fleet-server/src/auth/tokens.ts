/**
 * Admin tokens through their whole life: created (the secret shown once, stored as its sha256),
 * named, given an expiry, listed (never their secret), revoked at once. The first one on a fresh
 * server is created here too. `GET /v1/whoami` tells a client which token it holds.
 */
import { randomUUID } from 'node:crypto';
import { EdgefleetError } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import { type Kysely, sql, type Transaction } from 'kysely';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { keysetPage, pagedQuery, pageOf, pageRequest, type SortColumn } from '../http/paging.ts';
import { DateTime, Nullable, Page } from '../http/schemas.ts';
import type { DialectKind } from '../store/migrations.ts';
import type { AdminTokensTable, Database } from '../store/schema.ts';
import { ENV_TOKEN_NAME, formatAdminToken, newSecret, type Scope, sha256 } from './index.ts';

const MAX_TOKEN_LIFETIME_S = 5 * 365 * 24 * 3600;

export const TokenState = Type.Enum(['active', 'expired', 'revoked'], { description: 'active, expired or revoked' });

/** An admin token as lists show it: everything but its secret. */
export const AdminTokenView = Type.Object(
  {
    id: Type.String(),
    name: Type.String(),
    scope: Type.Enum(['admin', 'read']),
    state: TokenState,
    createdAt: DateTime,
    createdBy: Nullable(Type.String()),
    expiresAt: Nullable(DateTime),
    revokedAt: Nullable(DateTime),
  },
  { additionalProperties: false },
);

const AdminTokenCreated = Type.Object(
  { ...AdminTokenView.properties, token: Type.String({ description: 'the token, shown once: efa_<id>_<secret>' }) },
  { additionalProperties: false },
);
const WhoAmI = Type.Object(
  {
    id: Type.String({ description: 'the token id (env: EDGEFLEET_ADMIN_TOKEN)' }),
    name: Nullable(Type.String()),
    scope: Type.Enum(['admin', 'read']),
    expiresAt: Nullable(DateTime),
  },
  { additionalProperties: false },
);

const CreateAdminToken = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    scope: Type.Enum(['admin', 'read']),
    expiresInSeconds: Type.Optional(
      Type.Integer({ minimum: 60, maximum: MAX_TOKEN_LIFETIME_S, description: 'the token stops working this many seconds from now' }),
    ),
  },
  { additionalProperties: false },
);
const ListTokens = pagedQuery({ state: Type.Optional(TokenState), scope: Type.Optional(Type.Enum(['admin', 'read'])) });
const TOKEN_ORDER: readonly SortColumn[] = [
  { column: 'created_at', direction: 'desc' },
  { column: 'id', direction: 'desc' },
];
const IdParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9]{1,64}$' }) }, { additionalProperties: false });

export function tokenState(row: { revoked_at: string | null; expires_at: string | null }, now: number): 'active' | 'expired' | 'revoked' {
  if (row.revoked_at !== null) return 'revoked';
  if (row.expires_at !== null && Date.parse(row.expires_at) <= now) return 'expired';
  return 'active';
}

function view(row: AdminTokensTable, now: number) {
  return {
    id: row.id,
    name: row.name,
    scope: row.scope,
    state: tokenState(row, now),
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    revokedAt: row.revoked_at,
  };
}

/** Creates a token with its audit entry in one transaction; returns the token, which is never stored. */
export async function createAdminToken(
  db: Kysely<Database>,
  token: { readonly scope: Scope; readonly name: string; readonly expiresAt?: string | null },
  actor: string,
  now = new Date(),
): Promise<{ id: string; token: string; row: AdminTokensTable }> {
  const id = randomUUID().replaceAll('-', '').slice(0, 12);
  const secret = newSecret();
  const row: AdminTokensTable = {
    id,
    token_hash: sha256(secret),
    scope: token.scope,
    name: token.name,
    created_at: now.toISOString(),
    created_by: actor,
    expires_at: token.expiresAt ?? null,
    revoked_at: null,
  };
  const write = async (trx: Transaction<Database>) => {
    await trx.insertInto('admin_tokens').values(row).execute();
    await audit(
      trx,
      {
        actor,
        action: 'admin-token.create',
        target: `admin-token:${id}`,
        after: { scope: token.scope, name: token.name, expiresAt: row.expires_at },
      },
      now,
    );
  };
  if (db.isTransaction) await write(db as Transaction<Database>);
  else await db.transaction().execute(write);
  return { id, token: formatAdminToken(id, secret), row };
}

/**
 * The first admin token of a fresh server: created when there is none and no EDGEFLEET_ADMIN_TOKEN
 * is set. Replicas started at once on an empty PostgreSQL database would each find none: the check
 * and the creation hold a lock on the table that excludes another server's, so one creates it and
 * the others find it. (SQLite: one server per database file, whose transactions are serialized.)
 */
export async function ensureFirstAdminToken(
  db: Kysely<Database>,
  configured: string | undefined,
  dialect: DialectKind = 'sqlite',
): Promise<string | undefined> {
  if (configured) return undefined;
  return db.transaction().execute(async (trx) => {
    if (dialect === 'postgres') await sql`lock table admin_tokens in share row exclusive mode`.execute(trx);
    const existing = await trx.selectFrom('admin_tokens').select('id').where('revoked_at', 'is', null).executeTakeFirst();
    if (existing) return undefined;
    return (await createAdminToken(trx, { scope: 'admin', name: 'first admin' }, 'server')).token;
  });
}

export async function registerTokenRoutes(app: FastifyInstance, context: ServerContext, clock: () => number): Promise<void> {
  const { db } = context;

  app.post(
    '/v1/admin-tokens',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Create an admin or read-only token, optionally expiring; its secret is returned once',
        body: CreateAdminToken,
        response: { 201: AdminTokenCreated },
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; scope: Scope; expiresInSeconds?: number };
      const now = clock();
      const expiresAt = body.expiresInSeconds === undefined ? null : new Date(now + body.expiresInSeconds * 1000).toISOString();
      const { id, token, row } = await createAdminToken(
        db,
        { name: body.name, scope: body.scope, expiresAt },
        request.principal?.id ?? 'unknown',
        new Date(now),
      );
      return reply
        .status(201)
        .header('location', `/v1/admin-tokens/${id}`)
        .send({ ...view(row, now), token });
    },
  );

  app.get(
    '/v1/admin-tokens',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'List admin and read-only tokens (never their secrets), newest first',
        querystring: ListTokens,
        response: { 200: Page('tokens', AdminTokenView) },
      },
    },
    async (request) => {
      const query = request.query as { state?: 'active' | 'expired' | 'revoked'; scope?: Scope; limit?: string; cursor?: string };
      const page = pageRequest('admin-tokens', query, TOKEN_ORDER.length);
      const now = new Date(clock()).toISOString();
      let select = keysetPage(db.selectFrom('admin_tokens').selectAll(), TOKEN_ORDER, page);
      if (query.scope) select = select.where('scope', '=', query.scope);
      if (query.state === 'revoked') select = select.where('revoked_at', 'is not', null);
      if (query.state === 'expired') select = select.where('revoked_at', 'is', null).where('expires_at', '<=', now);
      if (query.state === 'active')
        select = select.where('revoked_at', 'is', null).where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
      const { items, next } = pageOf(await select.execute(), page, (row) => [row.created_at, row.id]);
      return { tokens: items.map((row) => view(row, clock())), next };
    },
  );

  app.get(
    '/v1/admin-tokens/:id',
    {
      onRequest: context.requireAdmin,
      schema: { summary: 'One admin or read-only token (never its secret)', params: IdParams, response: { 200: AdminTokenView } },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const row = await db.selectFrom('admin_tokens').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no admin token "${id}"; GET /v1/admin-tokens lists them`);
      return view(row, clock());
    },
  );

  app.post(
    '/v1/admin-tokens/:id/revoke',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Revoke a token now; revoking a revoked token changes nothing',
        params: IdParams,
        response: { 200: AdminTokenView },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const actor = request.principal?.id ?? 'unknown';
      const at = new Date(clock()).toISOString();
      return db.transaction().execute(async (trx) => {
        const row = await trx.selectFrom('admin_tokens').selectAll().where('id', '=', id).executeTakeFirst();
        if (!row) throw new EdgefleetError('EF_NOT_FOUND', `no admin token "${id}"; GET /v1/admin-tokens lists them`);
        if (row.revoked_at !== null) return view(row, clock());
        if (row.scope === 'admin' && !context.config.adminToken) {
          // Without EDGEFLEET_ADMIN_TOKEN, the last working admin token is the only way back in.
          const others = await trx
            .selectFrom('admin_tokens')
            .select('id')
            .where('scope', '=', 'admin')
            .where('revoked_at', 'is', null)
            .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', at)]))
            .where('id', '!=', id)
            .executeTakeFirst();
          if (!others) {
            throw new EdgefleetError(
              'EF_LAST_ADMIN_TOKEN',
              `"${row.name}" (${id}) is the last working admin token; create another admin token first, then revoke this one`,
            );
          }
        }
        await trx.updateTable('admin_tokens').set({ revoked_at: at }).where('id', '=', id).execute();
        await audit(trx, {
          actor,
          action: 'admin-token.revoke',
          target: `admin-token:${id}`,
          before: { name: row.name, state: tokenState(row, clock()) },
          after: { name: row.name, state: 'revoked' },
        });
        return view({ ...row, revoked_at: at }, clock());
      });
    },
  );

  app.get(
    '/v1/whoami',
    {
      onRequest: context.requireRead,
      schema: { summary: 'The token this request carries: its id, name, scope and expiry', response: { 200: WhoAmI } },
    },
    async (request) => {
      const principal = request.principal;
      return {
        id: principal?.id ?? 'unknown',
        name: principal?.name ?? (principal?.id === 'env' ? ENV_TOKEN_NAME : null),
        scope: principal?.scope ?? 'read',
        expiresAt: principal?.expiresAt ?? null,
      };
    },
  );
}

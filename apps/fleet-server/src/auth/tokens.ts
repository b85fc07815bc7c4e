/**
 * Admin tokens: created (the secret shown once, stored as its sha256), the first one on a fresh
 * server, and the route that creates more. Issue 14 adds listing and revocation here.
 */
import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import Type from 'typebox';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import type { Database } from '../store/schema.ts';
import { formatAdminToken, newSecret, type Scope, sha256 } from './index.ts';

/** Creates a token with its audit entry in one transaction; returns the token, which is never stored. */
export async function createAdminToken(
  db: Kysely<Database>,
  token: { readonly scope: Scope; readonly name: string },
  actor: string,
): Promise<{ id: string; token: string }> {
  const id = randomUUID().replaceAll('-', '').slice(0, 12);
  const secret = newSecret();
  await db.transaction().execute(async (trx) => {
    await trx
      .insertInto('admin_tokens')
      .values({
        id,
        token_hash: sha256(secret),
        scope: token.scope,
        name: token.name,
        created_at: new Date().toISOString(),
        revoked_at: null,
      })
      .execute();
    await audit(trx, { actor, action: 'admin-token.create', target: `admin-token:${id}`, after: { scope: token.scope, name: token.name } });
  });
  return { id, token: formatAdminToken(id, secret) };
}

/** The first admin token of a fresh server: created when there is none and no EDGEFLEET_ADMIN_TOKEN is set. */
export async function ensureFirstAdminToken(db: Kysely<Database>, configured: string | undefined): Promise<string | undefined> {
  if (configured) return undefined;
  const existing = await db.selectFrom('admin_tokens').select('id').where('revoked_at', 'is', null).executeTakeFirst();
  if (existing) return undefined;
  return (await createAdminToken(db, { scope: 'admin', name: 'first admin' }, 'server')).token;
}

export async function registerTokenRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.post(
    '/v1/admin-tokens',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary: 'Create an admin or read-only token; returned once',
        body: Type.Object(
          { name: Type.String({ minLength: 1, maxLength: 100 }), scope: Type.Enum(['admin', 'read']) },
          { additionalProperties: false },
        ),
      },
    },
    async (request, reply) => {
      const body = request.body as { name: string; scope: Scope };
      const { id, token } = await createAdminToken(context.db, body, request.principal?.id ?? 'unknown');
      return reply.status(201).send({ id, token, scope: body.scope, name: body.name });
    },
  );
}

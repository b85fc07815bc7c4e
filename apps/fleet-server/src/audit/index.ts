/**
 * The audit log: every admin change with who, what, when, and the state before and after, so a
 * regulated user can say which model ran where, since when, and who decided it.
 */
import type { Kysely, Transaction } from 'kysely';
import { ENV_TOKEN_NAME } from '../auth/index.ts';
import type { Database } from '../store/schema.ts';

export interface AuditEntry {
  /** An admin token's id, `env`, `enrollment-token:<id>`, or a part of the server (`rollout-engine`). */
  readonly actor: string;
  readonly action: string;
  readonly target: string;
  readonly before?: unknown;
  readonly after?: unknown;
}

/** Records an entry, inside the caller's transaction when there is one (the change and its record land together). */
export async function audit(db: Kysely<Database> | Transaction<Database>, entry: AuditEntry, now = new Date()): Promise<void> {
  await db
    .insertInto('audit_log')
    .values({
      at: now.toISOString(),
      actor: entry.actor,
      actor_name: await actorName(db, entry.actor),
      action: entry.action,
      target: entry.target,
      before: entry.before === undefined ? null : JSON.stringify(entry.before),
      after: entry.after === undefined ? null : JSON.stringify(entry.after),
    })
    .execute();
}

/**
 * The acting token's name as it is now, recorded with the entry: the log says "ci-pipeline
 * created rollout r-12" even after the token is revoked. Admin changes are rare; one lookup each.
 */
async function actorName(db: Kysely<Database> | Transaction<Database>, actor: string): Promise<string | null> {
  if (actor === 'env') return ENV_TOKEN_NAME;
  const enrollment = /^enrollment-token:(.+)$/.exec(actor)?.[1];
  if (enrollment) {
    const row = await db.selectFrom('enrollment_tokens').select('name').where('id', '=', enrollment).executeTakeFirst();
    return row?.name ?? null;
  }
  const row = await db.selectFrom('admin_tokens').select('name').where('id', '=', actor).executeTakeFirst();
  return row?.name ?? null;
}

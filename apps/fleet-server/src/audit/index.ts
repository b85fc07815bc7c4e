/**
 * The audit log: every admin change with who, what, when, and the state before and after, so a
 * regulated user can say which model ran where, since when, and who decided it.
 */
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../store/schema.ts';

export interface AuditEntry {
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
      action: entry.action,
      target: entry.target,
      before: entry.before === undefined ? null : JSON.stringify(entry.before),
      after: entry.after === undefined ? null : JSON.stringify(entry.after),
    })
    .execute();
}

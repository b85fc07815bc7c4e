/**
 * One query layer for SQLite (better-sqlite3, the default) and PostgreSQL (when
 * EDGEFLEET_DATABASE_URL is set), with migrations applied on open.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import SQLite from 'better-sqlite3';
import { Kysely, PostgresDialect, type SqliteDatabase, SqliteDialect } from 'kysely';
import { Migrator } from 'kysely/migration';
import pg from 'pg';
import { type DialectKind, migrationProvider } from './migrations.ts';
import type { Database } from './schema.ts';

/**
 * Kysely prepares every query anew; preparing costs more than running a small one. The server
 * repeats a few dozen statements (a device's update, an artifact lookup) thousands of times a
 * second under a rollout, so prepared statements are kept, least recently used out. Kysely runs
 * one query at a time on its SQLite connection, so a statement is never in use twice at once.
 */
function withStatementCache(sqlite: SQLite.Database, size = 512): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    prepare(sql: string) {
      let statement = statements.get(sql);
      if (statement) statements.delete(sql);
      else statement = sqlite.prepare(sql);
      statements.set(sql, statement);
      if (statements.size > size) statements.delete(statements.keys().next().value as string);
      return statement as unknown as ReturnType<SqliteDatabase['prepare']>;
    },
    close() {
      statements.clear();
      sqlite.close();
    },
  };
}

/**
 * PostgreSQL's 64-bit integers (bigint columns, count(*)) read as numbers, as SQLite's do: every
 * one the server stores is at most 2^53 - 1 (the protocol's counts, sizes, sequence numbers), so
 * none loses a digit; pg's default reads them as strings.
 */
const NUMBERS_AS_NUMBERS = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === pg.types.builtins.INT8 && format !== 'binary'
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
};

export interface OpenedDatabase {
  readonly db: Kysely<Database>;
  readonly kind: DialectKind;
  close(): Promise<void>;
}

export async function openDatabase(options: { dataDir: string; databaseUrl?: string | undefined }): Promise<OpenedDatabase> {
  let db: Kysely<Database>;
  let kind: DialectKind;
  if (options.databaseUrl) {
    kind = 'postgres';
    db = new Kysely<Database>({
      dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: options.databaseUrl, max: 10, types: NUMBERS_AS_NUMBERS }) }),
    });
  } else {
    kind = 'sqlite';
    mkdirSync(options.dataDir, { recursive: true });
    const sqlite = new SQLite(join(options.dataDir, 'edgefleet.db'));
    // WAL for concurrent readers; synchronous=FULL so a committed write survives a power cut;
    // foreign keys on (SQLite defaults them off).
    sqlite.pragma('journal_mode = WAL');
    sqlite.pragma('synchronous = FULL');
    sqlite.pragma('foreign_keys = ON');
    sqlite.pragma('busy_timeout = 5000');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(sqlite) }) });
  }
  const { error, results } = await new Migrator({ db, provider: migrationProvider(kind) }).migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    await db.destroy();
    throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String(error)}`);
  }
  return { db, kind, close: () => db.destroy() };
}

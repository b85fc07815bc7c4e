/**
 * The contract of the fleet server's database (apps/fleet-server store/db.ts): SQLite by default,
 * PostgreSQL when a database URL is configured. Whatever the dialect, the server relies on the
 * same things: migrations that bring an empty database to the schema and are a no-op after;
 * what was committed survives a reopen; the schema's keys refuse duplicates and dangling
 * references; a transaction that fails leaves nothing; text comes back byte for byte.
 *
 * Written in plain SQL over the Kysely instance the server opens (placeholders are Kysely's), so
 * it checks the database and the schema, not the server's queries.
 */
import { type Kysely, sql } from 'kysely';
import { describe, expect, it } from 'vitest';

export interface OpenedDatabaseUnderTest {
  // biome-ignore lint/suspicious/noExplicitAny: the contract is written in plain SQL, whatever the schema type.
  readonly db: Kysely<any>;
  close(): Promise<void>;
}

export interface ServerDatabaseHarness {
  /** Opens the database (migrating it); called again to reopen the same one. */
  open(): Promise<OpenedDatabaseUnderTest>;
}

export function describeServerDatabaseContract(name: string, makeHarness: () => Promise<ServerDatabaseHarness>): void {
  describe(`server database contract: ${name}`, () => {
    const at = '2026-11-28T00:00:00.000Z';
    const suffix = () => Math.random().toString(36).slice(2, 10);
    const addModel = (db: OpenedDatabaseUnderTest['db'], model: string) =>
      sql`insert into models (name, created_at) values (${model}, ${at})`.execute(db);
    const addVersion = (db: OpenedDatabaseUnderTest['db'], model: string, version: string, manifest: string) =>
      sql`insert into model_versions (name, version, sha256, size, manifest, metadata, created_at, created_by)
          values (${model}, ${version}, ${'a'.repeat(64)}, ${1}, ${manifest}, ${'{}'}, ${at}, ${'contract'})`.execute(db);

    it('migrates an empty database, keeps what was committed across a reopen, and migrating again changes nothing', async () => {
      const harness = await makeHarness();
      const first = await harness.open();
      const model = `contract-${suffix()}`;
      await addModel(first.db, model);
      await addVersion(first.db, model, '1.0.0', '{"manifest":1}');
      await first.close();
      const second = await harness.open();
      const { rows } = await sql<{
        version: string;
        manifest: string;
      }>`select version, manifest from model_versions where name = ${model}`.execute(second.db);
      expect(rows).toEqual([{ version: '1.0.0', manifest: '{"manifest":1}' }]);
      await second.close();
    });

    it('refuses a second row under the same key and a version of a model that does not exist', async () => {
      const { db, close } = await (await makeHarness()).open();
      const model = `contract-${suffix()}`;
      await addModel(db, model);
      await addVersion(db, model, '1.0.0', '{}');
      await expect(addVersion(db, model, '1.0.0', '{}')).rejects.toThrow();
      await expect(addVersion(db, `missing-${suffix()}`, '1.0.0', '{}')).rejects.toThrow();
      const { rows } = await sql<{ n: number | string }>`select count(*) as n from model_versions where name = ${model}`.execute(db);
      expect(Number(rows[0]?.n)).toBe(1);
      await close();
    });

    it('leaves nothing of a transaction that failed', async () => {
      const { db, close } = await (await makeHarness()).open();
      const model = `contract-${suffix()}`;
      await expect(
        db.transaction().execute(async (trx) => {
          await addModel(trx, model);
          await addVersion(trx, model, '1.0.0', '{}');
          throw new Error('the caller fails half-way');
        }),
      ).rejects.toThrow('half-way');
      const { rows } = await sql<{ n: number | string }>`select count(*) as n from models where name = ${model}`.execute(db);
      expect(Number(rows[0]?.n)).toBe(0);
      await close();
    });

    it('returns text byte for byte: unicode, quotes, and a 256 KiB manifest', async () => {
      const { db, close } = await (await makeHarness()).open();
      const model = `contract-${suffix()}`;
      await addModel(db, model);
      const large = JSON.stringify({ note: "naïve “quotes” 'single' \\ back 模型 🚀", pad: 'x'.repeat(256 * 1024) });
      await addVersion(db, model, '1.0.0', large);
      const { rows } = await sql<{ manifest: string }>`select manifest from model_versions where name = ${model}`.execute(db);
      expect(rows[0]?.manifest).toBe(large);
      await close();
    });
  });
}

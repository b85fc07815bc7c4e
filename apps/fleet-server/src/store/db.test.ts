/**
 * The server database against its contract: SQLite (a real file) always, and PostgreSQL when
 * EDGEFLEET_TEST_DATABASE_URL names a database to run it against (the scale-out work runs it in
 * CI; until then PostgreSQL is not a supported configuration).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeServerDatabaseContract } from '@edgefleet/test-utils/contracts';
import { describe, it } from 'vitest';
import { openDatabase } from './db.ts';

describeServerDatabaseContract('SQLite file', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-db-contract-'));
  return { open: () => openDatabase({ dataDir }) };
});

const postgres = process.env.EDGEFLEET_TEST_DATABASE_URL;
if (postgres) {
  describeServerDatabaseContract('PostgreSQL', async () => ({ open: () => openDatabase({ dataDir: tmpdir(), databaseUrl: postgres }) }));
} else {
  describe('server database contract: PostgreSQL', () => {
    it.skip('runs when EDGEFLEET_TEST_DATABASE_URL names a database', () => undefined);
  });
}

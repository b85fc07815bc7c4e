/**
 * The server database against its contract: SQLite (a real file), and PostgreSQL (a new database
 * per case on the tests' own cluster, test/setup/postgres.ts, or on EDGEFLEET_TEST_DATABASE_URL).
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeServerDatabaseContract } from '@edgefleet/test-utils/contracts';
import { describe, it } from 'vitest';
import { createTestPostgresDatabase } from '../testing.ts';
import { openDatabase } from './db.ts';

describeServerDatabaseContract('SQLite file', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'edgefleet-db-contract-'));
  return { open: () => openDatabase({ dataDir }) };
});

if (process.env.EDGEFLEET_TEST_DATABASE_URL) {
  describeServerDatabaseContract('PostgreSQL', async () => {
    const databaseUrl = (await createTestPostgresDatabase('contract')) as string;
    return { open: () => openDatabase({ dataDir: tmpdir(), databaseUrl }) };
  });
} else {
  describe('server database contract: PostgreSQL', () => {
    it.skip('needs PostgreSQL: apt-get install postgresql (the test command does), or EDGEFLEET_TEST_DATABASE_URL', () => undefined);
  });
}

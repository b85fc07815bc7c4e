/**
 * Every artifact backend passes the same contract (@edgefleet/test-utils/contracts): the folder
 * (one server), the database on SQLite, and the database on PostgreSQL shared by two replicas.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeArtifactStoreContract } from '@edgefleet/test-utils/contracts';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createTestPostgresDatabase, dropTestPostgresDatabase } from '../testing.ts';
import { createDatabaseArtifactStore } from './database.ts';
import { createArtifactStore } from './store.ts';

describeArtifactStoreContract('folder', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgefleet-artifacts-'));
  return { open: () => createArtifactStore(dir), close: () => rm(dir, { recursive: true, force: true }) };
});

describeArtifactStoreContract('database (SQLite)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'edgefleet-artifacts-'));
  const store = await openDatabase({ dataDir: dir });
  return {
    open: () => createDatabaseArtifactStore(store.db, join(dir, 'tmp')),
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

if (process.env.EDGEFLEET_TEST_DATABASE_URL) {
  describeArtifactStoreContract(
    'database (PostgreSQL, two replicas)',
    async () => {
      const url = (await createTestPostgresDatabase('artifacts')) as string;
      const opened: { store: OpenedDatabase; dir: string }[] = [];
      const replica = async () => {
        const dir = await mkdtemp(join(tmpdir(), 'edgefleet-artifacts-'));
        const store = await openDatabase({ dataDir: dir, databaseUrl: url });
        opened.push({ store, dir });
        return createDatabaseArtifactStore(store.db, join(dir, 'tmp'));
      };
      return {
        open: replica,
        openReplica: replica,
        close: async () => {
          for (const { store, dir } of opened) {
            await store.close();
            await rm(dir, { recursive: true, force: true });
          }
          await dropTestPostgresDatabase(url);
        },
      };
    },
    { shared: true },
  );
}

/**
 * Every store call's failure becomes EF_STORE_FULL / EF_STORE_UNAVAILABLE, whatever store was
 * plugged in: the runtime's callers see storage codes, never a raw errno.
 */
import { storeError } from './errors.ts';
import type { ModelStore } from './types.ts';

export function guardedStore(store: ModelStore): ModelStore {
  const wrap =
    <A extends unknown[], R>(operation: string, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      try {
        return await call(...args);
      } catch (error) {
        throw storeError(operation, error);
      }
    };
  return {
    description: store.description,
    hasArtifact: wrap('check an artifact', (sha) => store.hasArtifact(sha)),
    createArtifactWriter: wrap('write an artifact', async (sha) => {
      const writer = await store.createArtifactWriter(sha);
      return {
        write: wrap('write an artifact', (chunk) => writer.write(chunk)),
        commit: wrap('commit an artifact', () => writer.commit()),
        abort: () => writer.abort(),
      };
    }),
    readArtifact: wrap('read an artifact', (sha) => store.readArtifact(sha)),
    deleteArtifact: wrap('delete an artifact', (sha) => store.deleteArtifact(sha)),
    listArtifacts: wrap('list artifacts', () => store.listArtifacts()),
    readRecords: wrap('read model records', () => store.readRecords()),
    writeRecord: wrap('activate (write the model record)', (record) => store.writeRecord(record)),
    deleteRecord: wrap('delete a model record', (name) => store.deleteRecord(name)),
    close: () => store.close(),
  };
}

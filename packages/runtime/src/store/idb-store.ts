/**
 * The browser model store: IndexedDB through idb-keyval, two object stores in one database.
 * Every write is its own readwrite transaction opened with `durability: 'strict'`, so a record
 * (the active/previous pointers of a model) flips in one step that is on disk when it resolves:
 * a tab killed or a browser crash leaves the old record or the new one.
 */
import { del, get, keys, promisifyRequest, set, type UseStore, values } from 'idb-keyval';
import { guardStore } from './errors.ts';
import type { ArtifactWriter, ModelRecord, ModelStore } from './types.ts';

export interface IndexedDbModelStoreOptions {
  /** Database name; default "edgefleet-models". */
  readonly name?: string;
  /** The IndexedDB factory; default the global `indexedDB` (inject fake-indexeddb in Node tests). */
  readonly indexedDB?: IDBFactory;
}

const ARTIFACTS = 'artifacts';
const RECORDS = 'models';

function openDatabase(factory: IDBFactory, name: string): Promise<IDBDatabase> {
  const request = factory.open(name, 1);
  request.onupgradeneeded = () => {
    for (const store of [ARTIFACTS, RECORDS]) {
      if (!request.result.objectStoreNames.contains(store)) request.result.createObjectStore(store);
    }
  };
  return promisifyRequest(request);
}

function useStore(db: IDBDatabase, name: string): UseStore {
  return (mode, callback) => Promise.resolve(callback(db.transaction(name, mode, { durability: 'strict' }).objectStore(name)));
}

export async function createIndexedDbModelStore(options: IndexedDbModelStoreOptions = {}): Promise<ModelStore> {
  const name = options.name ?? 'edgefleet-models';
  const factory = options.indexedDB ?? globalThis.indexedDB;
  const db = await guardStore('open IndexedDB', async () => {
    if (!factory) throw new Error('IndexedDB is not available in this environment');
    return openDatabase(factory, name);
  });
  const artifacts = useStore(db, ARTIFACTS);
  const records = useStore(db, RECORDS);

  return {
    description: `indexeddb:${name}`,

    hasArtifact: (sha256) => guardStore('check an artifact', async () => (await get(sha256, artifacts)) !== undefined),

    createArtifactWriter: async (sha256): Promise<ArtifactWriter> => {
      // Chunks stay in memory until commit: IndexedDB has no append, and one put keeps the
      // artifact all-or-nothing. The bytes are buffered once (the hash runs on the same chunks).
      let chunks: Uint8Array[] | undefined = [];
      let length = 0;
      return {
        write: async (chunk) => {
          if (!chunks) throw new Error('artifact writer is closed');
          chunks.push(chunk);
          length += chunk.length;
        },
        commit: () =>
          guardStore('commit an artifact', async () => {
            if (!chunks) throw new Error('artifact writer is closed');
            const bytes = new Uint8Array(length);
            let offset = 0;
            for (const chunk of chunks) {
              bytes.set(chunk, offset);
              offset += chunk.length;
            }
            chunks = undefined;
            await set(sha256, bytes, artifacts);
          }),
        abort: async () => {
          chunks = undefined;
        },
      };
    },

    readArtifact: (sha256) =>
      guardStore('read an artifact', async () => {
        const bytes = await get<Uint8Array>(sha256, artifacts);
        if (!bytes) throw new Error(`artifact ${sha256} is not in the store`);
        return bytes;
      }),

    deleteArtifact: (sha256) => guardStore('delete an artifact', () => del(sha256, artifacts)),

    listArtifacts: () => guardStore('list artifacts', async () => (await keys(artifacts)).map(String)),

    readRecords: () => guardStore('read model records', () => values<ModelRecord>(records)),

    writeRecord: (record) => guardStore('write a model record', () => set(record.name, record, records)),

    deleteRecord: (modelName) => guardStore('delete a model record', () => del(modelName, records)),

    close: async () => db.close(),
  };
}

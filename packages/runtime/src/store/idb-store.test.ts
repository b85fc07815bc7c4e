import { describeModelStoreContract } from '@edgefleet/test-utils/contracts';
import { IDBFactory } from 'fake-indexeddb';
import { createIndexedDbModelStore } from './idb-store.ts';

// One factory for the whole file: reopening the store reads what the previous "session" wrote.
const indexedDB = new IDBFactory();
describeModelStoreContract('IndexedDB (fake-indexeddb)', { open: () => createIndexedDbModelStore({ name: 'contract', indexedDB }) });

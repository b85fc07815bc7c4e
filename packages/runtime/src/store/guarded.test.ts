import { describe, expect, it } from 'vitest';
import { guardedStore } from './guarded.ts';
import type { ModelStore } from './types.ts';

const full = () => Promise.reject(Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));
const gone = () => Promise.reject(Object.assign(new Error('permission denied'), { code: 'EACCES' }));

describe('guarded store', () => {
  it('turns every failure of a plugged-in store into a storage code naming the operation', async () => {
    const raw: ModelStore = {
      description: 'broken',
      hasArtifact: gone,
      createArtifactWriter: async () => ({ write: full, commit: full, abort: async () => undefined }),
      readArtifact: gone,
      deleteArtifact: gone,
      listArtifacts: gone,
      readRecords: gone,
      writeRecord: full,
      deleteRecord: gone,
      close: async () => undefined,
    };
    const store = guardedStore(raw);
    expect(store.description).toBe('broken');
    await expect(store.writeRecord({ name: 'm' })).rejects.toMatchObject({
      code: 'EF_STORE_FULL',
      details: { operation: 'activate (write the model record)' },
    });
    await expect(store.readRecords()).rejects.toMatchObject({ code: 'EF_STORE_UNAVAILABLE', details: { operation: 'read model records' } });
    for (const call of [
      () => store.hasArtifact('a'),
      () => store.readArtifact('a'),
      () => store.deleteArtifact('a'),
      () => store.listArtifacts(),
    ]) {
      await expect(call()).rejects.toMatchObject({ code: 'EF_STORE_UNAVAILABLE' });
    }
    const writer = await store.createArtifactWriter('a');
    await expect(writer.write(new Uint8Array(1))).rejects.toMatchObject({
      code: 'EF_STORE_FULL',
      details: { operation: 'write an artifact' },
    });
    await expect(writer.commit()).rejects.toMatchObject({ code: 'EF_STORE_FULL', details: { operation: 'commit an artifact' } });
  });
});

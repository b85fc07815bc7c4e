import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeModelStoreContract } from '@edgefleet/test-utils/contracts';
import { describe, expect, it } from 'vitest';
import { createFileModelStore } from './fs-store.ts';

const dir = await mkdtemp(join(tmpdir(), 'edgefleet-fs-store-'));
describeModelStoreContract('file system', { open: () => createFileModelStore({ dir }) });

describe('file system store', () => {
  it('clears leftovers of a killed process from tmp/ on open', async () => {
    const own = await mkdtemp(join(tmpdir(), 'edgefleet-fs-store-'));
    await (await createFileModelStore({ dir: own })).close();
    await writeFile(join(own, 'tmp', `${'a'.repeat(64)}.1234.part`), 'half a model');
    await createFileModelStore({ dir: own });
    expect(await readdir(join(own, 'tmp'))).toEqual([]);
  });

  it('releases the files of downloads still being written when it closes, and clears their parts on the next open', async () => {
    const own = await mkdtemp(join(tmpdir(), 'edgefleet-fs-store-'));
    const store = await createFileModelStore({ dir: own });
    const writer = await store.createArtifactWriter('b'.repeat(64));
    await writer.write(Uint8Array.from([1, 2, 3]));
    const descriptors = async () => (await readdir('/proc/self/fd')).length;
    const before = await descriptors();
    await store.close();
    expect(await descriptors()).toBe(before - 1);
    await expect(writer.write(Uint8Array.from([4]))).rejects.toMatchObject({ code: 'EF_STORE_UNAVAILABLE' });
    expect(await readdir(join(own, 'tmp'))).toHaveLength(1);
    await (await createFileModelStore({ dir: own })).close();
    expect(await readdir(join(own, 'tmp'))).toEqual([]);
  });

  it('reports an unusable folder with EF_STORE_UNAVAILABLE', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'edgefleet-fs-store-')), 'not-a-dir');
    await writeFile(file, 'x');
    await expect(createFileModelStore({ dir: file })).rejects.toMatchObject({ code: 'EF_STORE_UNAVAILABLE' });
  });
});

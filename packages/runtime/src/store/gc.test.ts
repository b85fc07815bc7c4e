import { createHash } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createFileModelStore } from './fs-store.ts';
import { createArtifactCollector } from './gc.ts';
import type { InstalledVersion, ModelStore } from './types.ts';

async function put(store: ModelStore, text: string): Promise<string> {
  const bytes = new TextEncoder().encode(text);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const writer = await store.createArtifactWriter(sha);
  await writer.write(bytes);
  await writer.commit();
  return sha;
}

const version = (sha256: string, files: Record<string, string> = {}) =>
  ({ version: '1.0.0', sha256, files }) as unknown as InstalledVersion;

describe('artifact garbage collection', () => {
  it('deletes what no record refers to, spares what records and pins refer to; pins nest', async () => {
    const store = await createFileModelStore({ dir: await mkdtemp(join(tmpdir(), 'edgefleet-gc-')) });
    const [active, file, previous, orphan, pinned] = await Promise.all(['a', 'f', 'p', 'o', 'x'].map((t) => put(store, t)));
    await store.writeRecord({
      name: 'm',
      active: version(active as string, { vectors: file as string }),
      previous: version(previous as string),
    });
    const errors: unknown[] = [];
    const gc = createArtifactCollector(store, (error) => errors.push(error));
    gc.pin([pinned as string]);
    gc.pin([pinned as string]);
    await gc.collectLater();
    expect((await store.listArtifacts()).sort()).toEqual([active, file, previous, pinned].sort());
    gc.unpin([pinned as string]);
    await gc.collectLater();
    expect(await store.listArtifacts()).toContain(pinned); // still pinned once
    gc.unpin([pinned as string]);
    await gc.collectLater();
    expect((await store.listArtifacts()).sort()).toEqual([active, file, previous].sort());
    expect(errors).toEqual([]);
    expect(orphan).toBeDefined();
    await store.close();
  });

  it('reports a failed collection to onError and keeps collecting afterwards', async () => {
    const store = await createFileModelStore({ dir: await mkdtemp(join(tmpdir(), 'edgefleet-gc-')) });
    const orphan = await put(store, 'o');
    let fail = true;
    const flaky: ModelStore = {
      ...store,
      listArtifacts: () => (fail ? Promise.reject(new Error('disk gone')) : store.listArtifacts()),
    };
    const errors: unknown[] = [];
    const gc = createArtifactCollector(flaky, (error) => errors.push(error));
    await expect(gc.collectLater()).resolves.toBeUndefined();
    expect(errors).toEqual([expect.objectContaining({ message: 'disk gone' })]);
    fail = false;
    await gc.collectLater();
    expect(await store.listArtifacts()).not.toContain(orphan);
    await store.close();
  });
});

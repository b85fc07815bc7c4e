import { mkdtemp, readdir, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writeFileAtomically } from './index.ts';

describe('writeFileAtomically', () => {
  it('writes and replaces a file with the mode asked, leaving no temporary file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-atomic-'));
    const path = join(dir, 'nested', 'state.json');
    await writeFileAtomically(path, '{"a":1}');
    expect(await readFile(path, 'utf8')).toBe('{"a":1}');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    await writeFileAtomically(path, Uint8Array.from([1, 2, 3]), { mode: 0o644 });
    expect([...(await readFile(path))]).toEqual([1, 2, 3]);
    expect((await stat(path)).mode & 0o777).toBe(0o644);
    expect(await readdir(join(dir, 'nested'))).toEqual(['state.json']);
  });

  it('lets concurrent writers of one file each use their own temporary file: one of them wins whole', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ef-atomic-'));
    const path = join(dir, 'record.json');
    const contents = Array.from({ length: 20 }, (_, i) => JSON.stringify({ writer: i, pad: 'x'.repeat(10_000) }));
    await Promise.all(contents.map((text) => writeFileAtomically(path, text)));
    expect(contents).toContain(await readFile(path, 'utf8'));
    expect(await readdir(dir)).toEqual(['record.json']);
  });
});

import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ArtifactServer, createArtifactServer, seededValues, sha256Hex } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNTIME_DEFAULTS } from '../defaults.ts';
import { createNodeHasher } from '../node.ts';
import { createFileModelStore } from '../store/fs-store.ts';
import type { ModelStore } from '../store/types.ts';
import { type DownloadOptions, type DownloadPolicy, type DownloadProgress, downloadArtifact } from './index.ts';

const bytes = new Uint8Array(seededValues(64 * 1024, 3).buffer); // 256 KiB
const sha256 = sha256Hex(bytes);
const fast: DownloadPolicy = { attempts: 4, initialBackoffMs: 5, maxBackoffMs: 20, deadlineBaseMs: 10_000, minBytesPerSecond: 1024 * 1024 };

let server: ArtifactServer;
let store: ModelStore;
let dir: string;

beforeAll(async () => {
  server = await createArtifactServer();
  dir = await mkdtemp(join(tmpdir(), 'edgefleet-download-'));
  store = await createFileModelStore({ dir });
});
afterAll(async () => {
  await server.close();
});

function options(overrides: Partial<DownloadOptions> = {}): DownloadOptions {
  return {
    sha256,
    size: bytes.length,
    label: 'fixture',
    openWriter: () => store.createArtifactWriter(sha256),
    createHasher: createNodeHasher,
    policy: fast,
    ...overrides,
  };
}

async function download(path: string, overrides: Partial<DownloadOptions> = {}): Promise<Uint8Array> {
  const writer = await downloadArtifact(`${server.url}${path}`, options(overrides));
  await writer.commit();
  const stored = await store.readArtifact(sha256);
  await store.deleteArtifact(sha256);
  return stored;
}

describe('artifact download', () => {
  it('streams the bytes into the store with progress up to the signed size', async () => {
    server.set('/ok', bytes);
    const progress: DownloadProgress[] = [];
    expect(sha256Hex(await download('/ok', { onProgress: (p) => progress.push(p) }))).toBe(sha256);
    expect(progress.at(-1)).toEqual({ bytes: bytes.length, total: bytes.length });
    expect(progress.every((p, i) => i === 0 || p.bytes > (progress[i - 1]?.bytes ?? 0))).toBe(true);
  });

  it('resumes with an HTTP Range request after the connection is cut', async () => {
    server.set('/cut', bytes, { cutAfterBytes: 100_000, cutTimes: 2 });
    expect(sha256Hex(await download('/cut'))).toBe(sha256);
    const ranges = server.requests.filter((r) => r.path === '/cut').map((r) => r.range);
    expect(ranges[0]).toBeUndefined();
    expect(ranges[1]).toMatch(/^bytes=\d+-$/);
    expect(Number(/\d+/.exec(ranges[1] ?? '')?.[0])).toBeGreaterThan(0);
  });

  it('starts over when the server ignores Range, and still verifies the hash', async () => {
    server.set('/norange', bytes, { cutAfterBytes: 50_000, ignoreRange: true });
    expect(sha256Hex(await download('/norange'))).toBe(sha256);
  });

  it('retries server errors with backoff', async () => {
    server.set('/flaky', bytes, { failStatus: 503, failTimes: 2 });
    expect(sha256Hex(await download('/flaky'))).toBe(sha256);
    expect(server.requests.filter((r) => r.path === '/flaky')).toHaveLength(3);
  });

  it('rides out a server restart of several seconds with the default retry policy (sped up here)', async () => {
    // A fleet server restarting mid-rollout answers nothing for a while: a device that gave up
    // after 7.5 s (5 attempts) failed its install, and the rollout's failure gate tripped.
    server.set('/restarting', bytes, { failStatus: 503, failTimes: 9 });
    const policy = { ...RUNTIME_DEFAULTS.download, initialBackoffMs: 2, maxBackoffMs: 10 };
    expect(sha256Hex(await download('/restarting', { policy }))).toBe(sha256);
    expect(server.requests.filter((r) => r.path === '/restarting')).toHaveLength(10);
  });

  it('gives up on 404 at once with EF_DOWNLOAD_FAILED', async () => {
    await expect(download('/missing')).rejects.toMatchObject({ code: 'EF_DOWNLOAD_FAILED' });
    expect(server.requests.filter((r) => r.path === '/missing')).toHaveLength(1);
  });

  it('aborts an endless stream at the signed size with EF_DOWNLOAD_TOO_LARGE and keeps nothing', async () => {
    server.set('/endless', bytes, { endless: true });
    await expect(download('/endless')).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TOO_LARGE' });
    expect(await store.hasArtifact(sha256)).toBe(false);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('refuses an announced length above the signed size before reading', async () => {
    server.set('/big', bytes, { announceLength: bytes.length + 1 });
    await expect(download('/big')).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TOO_LARGE' });
  });

  it('aborts a 1 KiB/s drip at the whole-download deadline with EF_DOWNLOAD_TIMEOUT', async () => {
    server.set('/slow', bytes, { bytesPerSecond: 1024 });
    const started = Date.now();
    const policy = { ...fast, deadlineBaseMs: 300, minBytesPerSecond: 1024 * 1024 * 1024 };
    await expect(download('/slow', { policy })).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TIMEOUT' });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('refuses bytes that do not match the signed sha256 with EF_ARTIFACT_HASH_MISMATCH', async () => {
    const other = bytes.slice();
    other[1234] = (other[1234] ?? 0) ^ 1;
    server.set('/tampered', other);
    await expect(download('/tampered')).rejects.toMatchObject({ code: 'EF_ARTIFACT_HASH_MISMATCH' });
    expect(await store.hasArtifact(sha256)).toBe(false);
  });

  it('reports a file shorter than the signed size with EF_DOWNLOAD_INCOMPLETE', async () => {
    server.set('/short', bytes.subarray(0, 1000));
    await expect(download('/short')).rejects.toMatchObject({ code: 'EF_DOWNLOAD_INCOMPLETE' });
  });

  it('reads bytes in memory and streams with the same checks', async () => {
    const writer = await downloadArtifact(bytes, options());
    await writer.abort();
    await expect(downloadArtifact(bytes.subarray(1), options())).rejects.toMatchObject({ code: 'EF_DOWNLOAD_INCOMPLETE' });
    const longer = new Uint8Array(bytes.length + 1);
    await expect(downloadArtifact(longer, options())).rejects.toMatchObject({ code: 'EF_DOWNLOAD_TOO_LARGE' });
  });
});

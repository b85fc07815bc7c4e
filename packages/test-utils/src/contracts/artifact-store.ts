/**
 * The contract of the fleet server's artifact store (apps/fleet-server artifacts/): a folder on
 * disk by default, the database when replicas share one. Whatever keeps the bytes, the server
 * relies on the same things: content is stored under its sha256 and read back byte for byte, in
 * whole or by any byte range (resumable downloads); storing the same content twice keeps one;
 * an upload over its limit leaves nothing; a removed artifact is gone; a second server on the same
 * backing (another replica) sees what the first stored.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';

export interface StagedArtifact {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
}

export interface ArtifactStoreUnderTest {
  exists(sha256: string): Promise<boolean>;
  size(sha256: string): Promise<number | undefined>;
  read(sha256: string, range?: { readonly start: number; readonly end: number }): Promise<Readable | undefined>;
  stage(stream: Readable, maxBytes: number): Promise<StagedArtifact>;
  commit(staged: StagedArtifact): Promise<void>;
  discard(staged: StagedArtifact): Promise<void>;
  list(): Promise<string[]>;
  remove(sha256: string): Promise<void>;
}

export interface ArtifactStoreHarness {
  /** A store on a fresh backing. */
  open(): Promise<ArtifactStoreUnderTest>;
  /** Another store on the same backing, as a second replica opens it; undefined for a backing one server owns. */
  openReplica?(): Promise<ArtifactStoreUnderTest>;
  close(): Promise<void>;
}

/** Deterministic bytes of a given length, different for each seed. */
function content(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes[i] = x & 0xff;
  }
  return bytes;
}

const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Sent in uneven pieces, as a network upload arrives. */
function upload(bytes: Buffer): Readable {
  const pieces: Buffer[] = [];
  for (let i = 0, step = 1; i < bytes.length; i += step, step = (step * 7 + 3) % 300_001 || 1) pieces.push(bytes.subarray(i, i + step));
  return Readable.from(pieces);
}

async function store(target: ArtifactStoreUnderTest, bytes: Buffer): Promise<string> {
  const staged = await target.stage(upload(bytes), bytes.length);
  expect(staged.sha256).toBe(sha(bytes));
  expect(staged.size).toBe(bytes.length);
  await target.commit(staged);
  return staged.sha256;
}

export function describeArtifactStoreContract(
  name: string,
  makeHarness: () => Promise<ArtifactStoreHarness>,
  options: { /** Replicas share this backing (the harness has openReplica). */ readonly shared?: boolean } = {},
): void {
  describe(`artifact store contract: ${name}`, () => {
    it('stores content under its sha256 and reads it back byte for byte, whole and by any range', async () => {
      const harness = await makeHarness();
      try {
        const artifacts = await harness.open();
        // Larger than 2 MiB, not a multiple of anything: ranges cross any chunking a backend uses.
        const bytes = content(2 * 1024 * 1024 + 12_345, 1);
        const id = await store(artifacts, bytes);
        expect(await artifacts.exists(id)).toBe(true);
        expect(await artifacts.size(id)).toBe(bytes.length);
        expect(await artifacts.list()).toContain(id);
        expect(sha(await buffer((await artifacts.read(id)) as Readable))).toBe(id);
        const mib = 1024 * 1024;
        for (const [start, end] of [
          [0, 0],
          [0, 99],
          [mib - 1, mib],
          [mib - 10, 2 * mib + 10],
          [bytes.length - 1, bytes.length - 1],
          [5, bytes.length - 1],
          [bytes.length - 100, bytes.length + 5000], // past the end: up to the end
        ] as const) {
          const read = await buffer((await artifacts.read(id, { start, end })) as Readable);
          expect(read.equals(bytes.subarray(start, end + 1)), `bytes ${start}-${end}`).toBe(true);
        }
        // An empty artifact is an artifact too.
        const empty = await store(artifacts, Buffer.alloc(0));
        expect(await artifacts.size(empty)).toBe(0);
        expect((await buffer((await artifacts.read(empty)) as Readable)).length).toBe(0);
      } finally {
        await harness.close();
      }
    });

    it('keeps one copy of content stored twice, and answers nothing for what it does not hold', async () => {
      const harness = await makeHarness();
      try {
        const artifacts = await harness.open();
        const bytes = content(70_000, 2);
        const id = await store(artifacts, bytes);
        await store(artifacts, bytes);
        expect((await artifacts.list()).filter((listed) => listed === id)).toHaveLength(1);
        const unknown = sha(content(10, 3));
        expect(await artifacts.exists(unknown)).toBe(false);
        expect(await artifacts.size(unknown)).toBeUndefined();
        expect(await artifacts.read(unknown)).toBeUndefined();
        // Not a digest at all: refused, never looked up as a path or a key.
        await expect(artifacts.exists('../../etc/passwd')).rejects.toMatchObject({ code: 'EF_NOT_FOUND' });
      } finally {
        await harness.close();
      }
    });

    it('refuses an upload over its limit and keeps nothing of it; a discarded upload leaves nothing', async () => {
      const harness = await makeHarness();
      try {
        const artifacts = await harness.open();
        const before = await artifacts.list();
        await expect(artifacts.stage(upload(content(50_000, 4)), 49_999)).rejects.toMatchObject({ code: 'EF_MESSAGE_TOO_LARGE' });
        const staged = await artifacts.stage(upload(content(1000, 5)), 1000);
        await artifacts.discard(staged);
        expect(await artifacts.exists(staged.sha256)).toBe(false);
        expect(await artifacts.list()).toEqual(before);
      } finally {
        await harness.close();
      }
    });

    it('forgets a removed artifact and keeps the others', async () => {
      const harness = await makeHarness();
      try {
        const artifacts = await harness.open();
        const kept = await store(artifacts, content(3000, 6));
        const gone = await store(artifacts, content(1024 * 1024 + 1, 7));
        await artifacts.remove(gone);
        expect(await artifacts.exists(gone)).toBe(false);
        expect(await artifacts.read(gone)).toBeUndefined();
        expect(await artifacts.list()).not.toContain(gone);
        expect(sha(await buffer((await artifacts.read(kept)) as Readable))).toBe(kept);
      } finally {
        await harness.close();
      }
    });

    if (!options.shared) return;
    it('lets a second replica read what the first stored, and both store the same content at once', async () => {
      const harness = await makeHarness();
      try {
        if (!harness.openReplica) throw new Error('a shared backing needs openReplica in its harness');
        const first = await harness.open();
        const second = await harness.openReplica();
        const id = await store(first, content(1024 * 1024 + 77, 8));
        expect(sha(await buffer((await second.read(id)) as Readable))).toBe(id);
        const same = content(3 * 1024 * 1024, 9);
        const [a, b] = await Promise.all([store(first, same), store(second, same)]);
        expect(a).toBe(b);
        expect(sha(await buffer((await second.read(a)) as Readable))).toBe(a);
        expect((await first.list()).filter((listed) => listed === a)).toHaveLength(1);
      } finally {
        await harness.close();
      }
    });
  });
}

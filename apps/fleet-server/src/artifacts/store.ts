/**
 * Artifacts (model files, golden vectors), content-addressed by sha256, behind one interface with
 * two backends:
 * - a folder on the server's disk (the default): uploads stream into tmp/ and are renamed into
 *   place after fsync, so a crash never leaves a half file under a hash; tmp/ is emptied on start;
 * - PostgreSQL (postgres.ts), shared by every replica: chosen with EDGEFLEET_ARTIFACTS=postgres.
 * Uploads are staged in the local folder in both cases (registration loads the staged file in
 * onnxruntime before anything is stored).
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { EdgefleetError } from '@edgefleet/protocol';
import { syncFolder } from '@edgefleet/protocol/node';

export interface StagedUpload {
  readonly path: string;
  readonly sha256: string;
  readonly size: number;
}

export interface ArtifactStore {
  /** Where the bytes are kept, for logs: `folder <path>` or `postgresql`. */
  readonly description: string;
  exists(sha256: string): Promise<boolean>;
  /** The stored size in bytes; undefined when there is no such artifact. */
  size(sha256: string): Promise<number | undefined>;
  /** The bytes from `start` to `end` inclusive (the whole artifact without a range); undefined when there is none. */
  read(sha256: string, range?: { readonly start: number; readonly end: number }): Promise<Readable | undefined>;
  /** Streams into a temp file, hashing on the way; refuses more than maxBytes. */
  stage(stream: Readable, maxBytes: number): Promise<StagedUpload>;
  /** Moves a staged file under its hash (or drops it when that content is already stored). */
  commit(staged: StagedUpload): Promise<void>;
  discard(staged: StagedUpload): Promise<void>;
  list(): Promise<string[]>;
  remove(sha256: string): Promise<void>;
}

const SHA256 = /^[0-9a-f]{64}$/;

export function checkSha256(sha256: string): string {
  if (!SHA256.test(sha256)) throw new EdgefleetError('EF_NOT_FOUND', `"${sha256.slice(0, 80)}" is not a sha256 digest`);
  return sha256;
}

/** Uploads are staged here, on local disk, whatever keeps the artifacts; emptied on start. */
export async function createStaging(tmp: string): Promise<Pick<ArtifactStore, 'stage' | 'discard'>> {
  await mkdir(tmp, { recursive: true });
  for (const leftover of await readdir(tmp)) await rm(join(tmp, leftover), { force: true, recursive: true });
  return {
    async stage(stream, maxBytes) {
      const path = join(tmp, `${randomUUID()}.part`);
      const hash = createHash('sha256');
      let size = 0;
      let handle: FileHandle | undefined = await open(path, 'wx', 0o600);
      try {
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > maxBytes) {
            throw new EdgefleetError(
              'EF_MESSAGE_TOO_LARGE',
              `the model is larger than the limit of ${maxBytes} bytes (EDGEFLEET_MAX_MODEL_BYTES)`,
            );
          }
          hash.update(chunk);
          await handle.write(chunk);
        }
        if ((stream as { truncated?: boolean }).truncated) {
          throw new EdgefleetError(
            'EF_MESSAGE_TOO_LARGE',
            `the model is larger than the limit of ${maxBytes} bytes (EDGEFLEET_MAX_MODEL_BYTES)`,
          );
        }
        await handle.sync();
        await handle.close();
        handle = undefined;
        return { path, sha256: hash.digest('hex'), size };
      } catch (error) {
        await handle?.close().catch(() => undefined);
        await rm(path, { force: true });
        throw error;
      }
    },
    discard: (staged) => rm(staged.path, { force: true }),
  };
}

export async function createArtifactStore(dir: string): Promise<ArtifactStore> {
  const staging = await createStaging(join(dir, 'tmp'));
  const pathOf = (sha256: string) => join(dir, checkSha256(sha256));
  const size = (sha256: string) =>
    stat(pathOf(sha256)).then(
      (info) => info.size,
      () => undefined,
    );

  return {
    description: `folder ${dir}`,
    ...staging,
    exists: async (sha256) => (await size(sha256)) !== undefined,
    size,
    async read(sha256, range) {
      if ((await size(sha256)) === undefined) return undefined;
      return createReadStream(pathOf(sha256), range ? { start: range.start, end: range.end } : {});
    },

    async commit(staged) {
      const target = pathOf(staged.sha256);
      if (
        await stat(target).then(
          () => true,
          () => false,
        )
      ) {
        await rm(staged.path, { force: true });
        return;
      }
      await rename(staged.path, target);
      await syncFolder(dir);
    },

    list: async () => (await readdir(dir)).filter((name) => SHA256.test(name)),

    remove: (sha256) => rm(pathOf(sha256), { force: true }),
  };
}

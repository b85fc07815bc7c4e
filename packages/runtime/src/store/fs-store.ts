/**
 * The Node model store: a folder on the device's file system.
 *
 *   <dir>/artifacts/<sha256>   model files, content-addressed, never modified after commit
 *   <dir>/models/<name>.json   one record per model: active/previous pointers and version floor
 *   <dir>/tmp/                 downloads and records being written; emptied on open
 *
 * Every durable change is write-to-temp + fsync + rename + fsync of the directory, so a process
 * killed (or a power cut) at any point leaves the old file or the new one, never a torn one.
 */
import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { assertModelName } from '@edgefleet/protocol';
import { syncFolder, writeFileAtomically } from '@edgefleet/protocol/node';
import { guardStore } from './errors.ts';
import type { ArtifactWriter, ModelRecord, ModelStore } from './types.ts';

const SHA256 = /^[0-9a-f]{64}$/;

export interface FileModelStoreOptions {
  /** The folder that holds everything; created when missing. */
  readonly dir: string;
}

function checkHash(sha256: string): string {
  if (!SHA256.test(sha256)) throw new TypeError(`not a sha256 hex digest: ${sha256}`);
  return sha256;
}

export async function createFileModelStore(options: FileModelStoreOptions): Promise<ModelStore> {
  const artifacts = join(options.dir, 'artifacts');
  const models = join(options.dir, 'models');
  const tmp = join(options.dir, 'tmp');
  await guardStore('open the model store', async () => {
    await mkdir(artifacts, { recursive: true });
    await mkdir(models, { recursive: true });
    await mkdir(tmp, { recursive: true });
    // Leftovers of a process killed mid-download or mid-write: never referenced, safe to drop.
    for (const leftover of await readdir(tmp)) await rm(join(tmp, leftover), { recursive: true, force: true });
  });

  // Writers still open when the store closes: their files are released, their parts left for the
  // next open to clear (as after a killed process).
  const openWriters = new Set<() => Promise<void>>();

  /** A record: old or new, never torn, its temporary file in tmp/ (cleared on open). */
  const writeDurably = (target: string, bytes: Uint8Array | string) => writeFileAtomically(target, bytes, { tempDir: tmp });

  return {
    description: `fs:${options.dir}`,

    hasArtifact: (sha256) =>
      guardStore('check an artifact', async () => {
        try {
          const handle = await open(join(artifacts, checkHash(sha256)), 'r');
          await handle.close();
          return true;
        } catch (error) {
          if ((error as { code?: string }).code === 'ENOENT') return false;
          throw error;
        }
      }),

    createArtifactWriter: (sha256) =>
      guardStore('start writing an artifact', async (): Promise<ArtifactWriter> => {
        const target = join(artifacts, checkHash(sha256));
        const temp = join(tmp, `${sha256}.${randomUUID()}.part`);
        let handle: FileHandle | undefined = await open(temp, 'wx', 0o600);
        const release = async () => {
          const open = handle;
          handle = undefined;
          openWriters.delete(release);
          await open?.close();
        };
        openWriters.add(release);
        return {
          write: (chunk) =>
            guardStore('write an artifact', async () => {
              if (!handle) throw new Error('artifact writer is closed');
              await handle.write(chunk);
            }),
          commit: () =>
            guardStore('commit an artifact', async () => {
              if (!handle) throw new Error('artifact writer is closed');
              await handle.sync();
              await release();
              await rename(temp, target);
              await syncFolder(artifacts);
            }),
          abort: async () => {
            await release().catch(() => undefined);
            await unlink(temp).catch(() => undefined);
          },
        };
      }),

    readArtifact: (sha256) =>
      guardStore('read an artifact', async () => {
        // One read of the known size: fs.readFile's chunked reads cost several ms on a model.
        const handle = await open(join(artifacts, checkHash(sha256)), 'r');
        try {
          const { size } = await handle.stat();
          const bytes = new Uint8Array(size);
          let offset = 0;
          while (offset < size) {
            const { bytesRead } = await handle.read(bytes, offset, size - offset, offset);
            if (bytesRead === 0) break;
            offset += bytesRead;
          }
          return offset === size ? bytes : bytes.subarray(0, offset);
        } finally {
          await handle.close();
        }
      }),

    deleteArtifact: (sha256) => guardStore('delete an artifact', () => rm(join(artifacts, checkHash(sha256)), { force: true })),

    listArtifacts: () => guardStore('list artifacts', async () => (await readdir(artifacts)).filter((name) => SHA256.test(name))),

    readRecords: () =>
      guardStore('read model records', async () => {
        const names = (await readdir(models)).filter((name) => name.endsWith('.json'));
        return Promise.all(names.map(async (name) => JSON.parse(await readFile(join(models, name), 'utf8')) as ModelRecord));
      }),

    writeRecord: (record) =>
      guardStore('write a model record', () => writeDurably(join(models, `${assertModelName(record.name)}.json`), JSON.stringify(record))),

    deleteRecord: (name) =>
      guardStore('delete a model record', async () => {
        await rm(join(models, `${assertModelName(name)}.json`), { force: true });
        await syncFolder(models);
      }),

    close: async () => {
      await Promise.all([...openWriters].map((release) => release().catch(() => undefined)));
    },
  };
}

/**
 * One atomic file write for every Node part of edgefleet (device state, credentials, keys, model
 * records, tokens): a crash leaves the old content or the new, never a torn file, and two writers
 * never share a temporary file. Here, in the protocol's Node entry, because every Node package
 * already depends on it; the browser entry never loads it.
 *
 * temp file unique per writer (wx) → write → fsync → rename over the target → fsync the folder (the
 * rename itself must survive a power cut).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the new file (default 0600: these files hold secrets more often than not). */
  readonly mode?: number;
  /** Where the temporary file goes (default: beside the target); it must be on the same file system. */
  readonly tempDir?: string;
}

export async function writeFileAtomically(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const folder = dirname(path);
  await mkdir(folder, { recursive: true });
  const temp = join(options.tempDir ?? folder, `.${randomUUID()}.tmp`);
  const handle = await open(temp, 'wx', options.mode ?? 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (error) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw error;
  }
  await handle.close();
  try {
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  await syncFolder(folder);
}

/** fsync of a folder: makes a rename or a new entry in it durable. */
export async function syncFolder(folder: string): Promise<void> {
  const handle = await open(folder, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Temporary files a killed writer left in a folder (never referenced by anything): removed. */
export async function clearTemporaryFiles(folder: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return;
    throw error;
  }
  for (const name of names) if (TEMPORARY.test(name)) await rm(join(folder, name), { force: true });
}

const TEMPORARY = /^\.[0-9a-f-]{36}\.tmp$/;

/**
 * Artifacts kept in the server's database (EDGEFLEET_ARTIFACTS=database, the default with
 * PostgreSQL): every replica serves every model, with nothing to run besides the database the
 * replicas already share.
 *
 * Why this and not a shared volume or S3: replicas already depend on PostgreSQL and nothing else;
 * an artifact is stored in the transaction that records it, so no replica ever sees a version
 * whose bytes are not there yet; backups take models and registry together; edge models are small
 * (the median here is kilobytes to tens of megabytes; EDGEFLEET_MAX_MODEL_BYTES caps uploads). The
 * price is database size and I/O for very large models: docs/scaling.md says when S3 is the better
 * home, and the ArtifactStore interface is where it goes.
 *
 * Bytes are stored in chunks of 1 MiB (`artifact_chunks`, bytea on PostgreSQL), so a Range request
 * reads only the chunks it covers and a download streams without holding the file in memory. The
 * `artifact_blobs` row, written last in the same transaction, is what makes an artifact exist.
 */
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';
import { type ArtifactStore, checkSha256, createStaging } from './store.ts';

export const CHUNK_BYTES = 1024 * 1024;
/** Chunks read per query while streaming (8 MiB). */
const CHUNKS_PER_READ = 8;

export async function createDatabaseArtifactStore(db: Kysely<Database>, stagingDir: string): Promise<ArtifactStore> {
  const staging = await createStaging(stagingDir);
  const size = async (sha256: string) => {
    const row = await db.selectFrom('artifact_blobs').select('size').where('sha256', '=', checkSha256(sha256)).executeTakeFirst();
    return row ? Number(row.size) : undefined;
  };

  return {
    description: 'database',
    ...staging,
    exists: async (sha256) => (await size(sha256)) !== undefined,
    size,

    async read(sha256, range) {
      const total = await size(sha256);
      if (total === undefined) return undefined;
      const start = range?.start ?? 0;
      const end = Math.min(range?.end ?? total - 1, total - 1);
      const first = Math.floor(start / CHUNK_BYTES);
      const last = end < start ? first - 1 : Math.floor(end / CHUNK_BYTES);
      async function* chunks(): AsyncGenerator<Buffer> {
        for (let from = first; from <= last; from += CHUNKS_PER_READ) {
          const rows = await db
            .selectFrom('artifact_chunks')
            .select(['seq', 'bytes'])
            .where('sha256', '=', sha256)
            .where('seq', '>=', from)
            .where('seq', '<=', Math.min(last, from + CHUNKS_PER_READ - 1))
            .orderBy('seq')
            .execute();
          for (const row of rows) {
            const bytes = Buffer.from(row.bytes);
            const offset = row.seq * CHUNK_BYTES;
            yield bytes.subarray(Math.max(0, start - offset), Math.min(bytes.length, end - offset + 1));
          }
        }
      }
      return Readable.from(chunks(), { objectMode: false });
    },

    async commit(staged) {
      if ((await size(staged.sha256)) !== undefined) {
        await staging.discard(staged);
        return;
      }
      await db.transaction().execute(async (trx) => {
        let seq = 0;
        const insert = (bytes: Buffer) =>
          trx
            .insertInto('artifact_chunks')
            .values({ sha256: staged.sha256, seq: seq++, bytes })
            .onConflict((conflict) => conflict.columns(['sha256', 'seq']).doNothing())
            .execute();
        // Exact 1 MiB pieces (the last one shorter), each inserted as it is read: reads find a
        // byte's chunk by dividing its offset.
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        for await (const piece of createReadStream(staged.path, { highWaterMark: CHUNK_BYTES }) as AsyncIterable<Buffer>) {
          pending.push(piece);
          pendingBytes += piece.length;
          while (pendingBytes >= CHUNK_BYTES) {
            const joined = Buffer.concat(pending);
            await insert(joined.subarray(0, CHUNK_BYTES));
            pending = [joined.subarray(CHUNK_BYTES)];
            pendingBytes = joined.length - CHUNK_BYTES;
          }
        }
        if (pendingBytes > 0 || seq === 0) await insert(Buffer.concat(pending));
        // Two replicas storing the same content at once: the first row wins, the content is the same.
        await trx
          .insertInto('artifact_blobs')
          .values({ sha256: staged.sha256, size: staged.size, created_at: new Date().toISOString() })
          .onConflict((conflict) => conflict.column('sha256').doNothing())
          .execute();
      });
      await staging.discard(staged);
    },

    list: async () => (await db.selectFrom('artifact_blobs').select('sha256').execute()).map((row) => row.sha256),

    async remove(sha256) {
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('artifact_blobs').where('sha256', '=', sha256).execute();
        await trx.deleteFrom('artifact_chunks').where('sha256', '=', sha256).execute();
      });
    },
  };
}

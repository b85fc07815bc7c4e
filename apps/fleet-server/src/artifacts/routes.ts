/**
 * GET /v1/artifacts/{sha256}: the bytes of a model or one of its files, for admins and for the
 * devices it is assigned to (see deviceMayRead), with
 * Range (resumable downloads), ETag (the hash) and immutable caching: content never changes
 * under a hash. Small artifacts (the common edge model) are served from memory after their first
 * read: a rollout to 10,000 devices is 10,000 downloads of the same bytes.
 */
import { createHash } from 'node:crypto';
import { buffer } from 'node:stream/consumers';
import { EdgefleetError, type ReportedState, Sha256 } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';
import { Empty, mediaResponse } from '../http/schemas.ts';

const Params = Type.Object({ sha256: Sha256 }, { additionalProperties: false });

/** Artifacts up to this size are kept in memory once read, up to CACHE_BYTES in all (least recently used out). */
const CACHE_ITEM_BYTES = 4 * 1024 * 1024;
const CACHE_BYTES = 64 * 1024 * 1024;

function createArtifactCache() {
  const items = new Map<string, Buffer>();
  let bytes = 0;
  return {
    get(sha256: string): Buffer | undefined {
      const item = items.get(sha256);
      if (item) {
        items.delete(sha256);
        items.set(sha256, item);
      }
      return item;
    },
    set(sha256: string, item: Buffer): void {
      if (item.length > CACHE_ITEM_BYTES || items.has(sha256)) return;
      items.set(sha256, item);
      bytes += item.length;
      for (const [key, old] of items) {
        if (bytes <= CACHE_BYTES) break;
        items.delete(key);
        bytes -= old.length;
      }
    },
  };
}

export async function registerArtifactRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  const cache = createArtifactCache();
  /** The bytes (small artifacts, from memory) or the size (large ones, streamed from disk). */
  async function open(sha256: string): Promise<{ size: number; bytes?: Buffer } | undefined> {
    const cached = cache.get(sha256);
    if (cached) return { size: cached.length, bytes: cached };
    const size = await context.artifacts.size(sha256);
    if (size === undefined) return undefined;
    if (size > CACHE_ITEM_BYTES) return { size };
    const stream = await context.artifacts.read(sha256);
    if (!stream) return undefined;
    const bytes = await buffer(stream);
    // The file is named by its hash; a file that does not hash to its name is never served.
    if (createHash('sha256').update(bytes).digest('hex') !== sha256) {
      throw new EdgefleetError(
        'EF_ARTIFACT_HASH_MISMATCH',
        `the server's copy of artifact ${sha256} does not match its hash (corrupted on disk)`,
      );
    }
    cache.set(sha256, bytes);
    return { size: bytes.length, bytes };
  }

  /**
   * May this device read this artifact? Models are often the vendor's IP: a device reads only the
   * artifacts of versions assigned to it: named in its desired state (the common case, one indexed
   * read and a text match, no JSON parsed: a hash in a document is an artifact or file of one of
   * its manifests), reported running or kept to roll back to, or moved to or from by a live
   * rollout. Anything else answers as if it did not exist.
   */
  async function deviceMayRead(deviceId: string, sha256: string): Promise<boolean> {
    const named = await context.db
      .selectFrom('device_desired')
      .select('device_id')
      .where('device_id', '=', deviceId)
      .where('document', 'like', `%${sha256}%`)
      .executeTakeFirst();
    if (named) return true;
    const owners = await context.db.selectFrom('version_artifacts').select(['name', 'version']).where('sha256', '=', sha256).execute();
    if (owners.length === 0) return false;
    const wanted = (name: string, version: string) => owners.some((o) => o.name === name && o.version === version);
    const device = await context.db.selectFrom('devices').select('reported').where('id', '=', deviceId).executeTakeFirst();
    const reported = device?.reported ? (JSON.parse(device.reported) as ReportedState) : undefined;
    if (
      reported?.models.some(
        (m) => (m.active && wanted(m.name, m.active.version)) || (m.previous !== undefined && wanted(m.name, m.previous.version)),
      )
    ) {
      return true;
    }
    const rollouts = await context.db
      .selectFrom('rollout_devices')
      .innerJoin('rollouts', 'rollouts.id', 'rollout_devices.rollout_id')
      .select(['rollouts.model', 'rollouts.version', 'rollout_devices.previous_version'])
      .where('rollout_devices.device_id', '=', deviceId)
      .where('rollouts.state', 'in', ['running', 'paused', 'rolling_back'])
      .execute();
    return rollouts.some((r) => wanted(r.model, r.version) || (r.previous_version !== null && wanted(r.model, r.previous_version)));
  }

  /** A large artifact's bytes, streamed from the store (deleted since its size was read: 404). */
  async function readOrGone(sha256: string, range?: { start: number; end: number }) {
    const stream = await context.artifacts.read(sha256, range);
    if (!stream) throw new EdgefleetError('EF_NOT_FOUND', `no artifact ${sha256}`);
    return stream;
  }

  app.get(
    '/v1/artifacts/:sha256',
    {
      onRequest: context.requireReadOrDevice,
      schema: {
        summary: 'Download an artifact by its sha256 (Range, If-Range, If-None-Match); a device reads only what it is assigned',
        params: Params,
        response: {
          200: mediaResponse('application/octet-stream', 'the whole file'),
          206: mediaResponse('application/octet-stream', 'the requested range (Content-Range)'),
          304: { description: 'not modified (If-None-Match)', ...Empty },
        },
      },
    },
    async (request, reply) => {
      const { sha256 } = request.params as { sha256: string };
      const principal = request.principal;
      const allowed =
        principal?.kind === 'device'
          ? await deviceMayRead(principal.id, sha256)
          : (await context.db.selectFrom('version_artifacts').select('sha256').where('sha256', '=', sha256).executeTakeFirst()) !==
            undefined;
      const info = allowed ? await open(sha256) : undefined;
      if (!info) throw new EdgefleetError('EF_NOT_FOUND', `no artifact ${sha256}`);
      const etag = `"${sha256}"`;
      reply.header('etag', etag).header('accept-ranges', 'bytes').header('cache-control', 'private, max-age=31536000, immutable');
      if (request.headers['if-none-match'] === etag) return reply.status(304).send();
      const range = request.headers.range;
      const match = range ? /^bytes=(\d*)-(\d*)$/.exec(range) : null;
      if (range && (request.headers['if-range'] === undefined || request.headers['if-range'] === etag)) {
        let start = match?.[1] ? Number(match[1]) : Number.NaN;
        let end = match?.[2] ? Number(match[2]) : info.size - 1;
        if (match && !match[1] && match[2]) {
          start = Math.max(0, info.size - Number(match[2])); // suffix range: the last N bytes
          end = info.size - 1;
        }
        if (!match || Number.isNaN(start) || start >= info.size || end < start) {
          reply.header('content-range', `bytes */${info.size}`);
          throw new EdgefleetError(
            'EF_RANGE_NOT_SATISFIABLE',
            `the range "${range.slice(0, 100)}" is not within the ${info.size} bytes of this file`,
          );
        }
        end = Math.min(end, info.size - 1);
        return reply
          .status(206)
          .header('content-range', `bytes ${start}-${end}/${info.size}`)
          .header('content-length', end - start + 1)
          .type('application/octet-stream')
          .send(info.bytes ? info.bytes.subarray(start, end + 1) : await readOrGone(sha256, { start, end }));
      }
      return reply
        .header('content-length', info.size)
        .type('application/octet-stream')
        .send(info.bytes ?? (await readOrGone(sha256)));
    },
  );
}

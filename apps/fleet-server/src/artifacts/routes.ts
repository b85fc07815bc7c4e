/**
 * GET /v1/artifacts/{sha256}: the bytes of a model, for authenticated devices and admins, with
 * Range (resumable downloads), ETag (the hash) and immutable caching: content never changes
 * under a hash.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { EdgefleetError } from '@edgefleet/protocol';
import type { FastifyInstance } from 'fastify';
import Type from 'typebox';
import type { ServerContext } from '../context.ts';

const Params = Type.Object(
  { sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'a sha256 digest' }) },
  { additionalProperties: false },
);

export async function registerArtifactRoutes(app: FastifyInstance, context: ServerContext): Promise<void> {
  app.get(
    '/v1/artifacts/:sha256',
    { preHandler: context.requireReadOrDevice, schema: { summary: 'Download an artifact (Range, ETag)', params: Params } },
    async (request, reply) => {
      const { sha256 } = request.params as { sha256: string };
      const known = await context.db.selectFrom('model_versions').select('sha256').where('sha256', '=', sha256).executeTakeFirst();
      const path = context.artifacts.pathOf(sha256);
      const info = known ? await stat(path).catch(() => undefined) : undefined;
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
          return reply.status(416).header('content-range', `bytes */${info.size}`).send();
        }
        end = Math.min(end, info.size - 1);
        return reply
          .status(206)
          .header('content-range', `bytes ${start}-${end}/${info.size}`)
          .header('content-length', end - start + 1)
          .type('application/octet-stream')
          .send(createReadStream(path, { start, end }));
      }
      return reply.header('content-length', info.size).type('application/octet-stream').send(createReadStream(path));
    },
  );
}

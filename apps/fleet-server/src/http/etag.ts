/**
 * Optimistic concurrency for mutable resources (RFC 9110 §8.8.3, §13.1.1): each carries an ETag
 * computed from what an admin can change about it; a change sent with `If-Match` applies only if
 * the resource is still what the client read (412 EF_PRECONDITION_FAILED otherwise). Without
 * If-Match a change applies as before. `If-Match: *` asks only that the resource exists.
 */
import { createHash } from 'node:crypto';
import { canonicalize, EdgefleetError } from '@edgefleet/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';

/** A strong entity tag of a resource's admin-controlled state. */
export function etagOf(state: unknown): string {
  return `"${createHash('sha256').update(canonicalize(state)).digest('base64url').slice(0, 22)}"`;
}

/** Throws EF_PRECONDITION_FAILED unless the request's If-Match (if any) matches `current`. */
export function checkIfMatch(request: FastifyRequest, current: string, what: string): void {
  const header = request.headers['if-match'];
  if (header === undefined) return;
  const value = Array.isArray(header) ? header.join(',') : header;
  if (value.trim() === '*') return;
  // Strong comparison: a weak tag (W/"...") never matches.
  const tags = value.split(',').map((t) => t.trim());
  if (tags.includes(current)) return;
  throw new EdgefleetError(
    'EF_PRECONDITION_FAILED',
    `${what} changed since you read it (If-Match ${value}, now ${current}); GET it again and retry with the new ETag`,
    { details: { etag: current } },
  );
}

export function setEtag(reply: FastifyReply, etag: string): void {
  reply.header('etag', etag);
}

/**
 * RFC 9457 problem+json for every error the admin API returns, with the EF_ code, so HTTP clients
 * and devices match on the same codes. Nothing internal leaks: unexpected errors become
 * EF_INTERNAL_ERROR with the request id to find the log line.
 */
import { EdgefleetError, ERRORS, type ErrorCode } from '@edgefleet/protocol';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance: string;
  errors?: unknown;
  details?: Readonly<Record<string, unknown>>;
}

/** The problem each reply answered with (its code, and the error behind a 5xx), for the request log line. */
const answered = new WeakMap<FastifyReply, { readonly code: ErrorCode; readonly error?: unknown }>();

/** The EF_ code a reply carried, and the unexpected error behind it, if any (see request-log.ts). */
export function problemOf(reply: FastifyReply): { readonly code: ErrorCode; readonly error?: unknown } | undefined {
  return answered.get(reply);
}

function send(
  reply: FastifyReply,
  request: FastifyRequest,
  code: ErrorCode,
  detail: string,
  extra: Partial<Problem> = {},
  error?: unknown,
): FastifyReply {
  const definition = ERRORS[code];
  answered.set(reply, error === undefined ? { code } : { code, error });
  const problem: Problem = {
    type: `urn:edgefleet:error:${code}`,
    title: definition.title,
    status: definition.status,
    detail,
    code,
    // RFC 9457: a URI for this occurrence. Request ids are UUIDs; the server's log line has the same one.
    instance: `urn:uuid:${request.id}`,
    ...extra,
  };
  return reply.status(definition.status).type('application/problem+json').send(problem);
}

/** An error nobody expected: EF_INTERNAL_ERROR to the client, the error itself to the request's log line. */
function internalError(reply: FastifyReply, request: FastifyRequest, error: unknown): FastifyReply {
  return send(
    reply,
    request,
    'EF_INTERNAL_ERROR',
    `unexpected error; the server log has the details under request ${request.id}`,
    {},
    error,
  );
}

/** Router errors raised before any route is found (fastify's frameworkErrors), as problem+json. */
export function frameworkError(error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return send(reply, request, 'EF_URL_TOO_LONG', 'a segment of the path is longer than any name, id, version or hash can be');
  }
  if (error.code === 'FST_ERR_BAD_URL')
    return send(reply, request, 'EF_SCHEMA_INVALID', 'the path is not a valid URL (bad percent-encoding)');
  return internalError(reply, request, error);
}

/** Maps fastify's own error codes (validation, body limits, content types...) to ours. */
function fromFastify(error: FastifyError): { code: ErrorCode; detail: string; errors?: unknown } | undefined {
  if (error.validation) {
    const first = error.validation[0];
    const path = first?.instancePath || (first?.params as { missingProperty?: string } | undefined)?.missingProperty || '';
    return {
      code: 'EF_SCHEMA_INVALID',
      detail: `${error.validationContext ?? 'request'}${path ? ` ${path}` : ''}: ${first?.message ?? 'is invalid'}`,
      errors: error.validation,
    };
  }
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_PARTS_LIMIT':
    case 'FST_FILES_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return { code: 'EF_MESSAGE_TOO_LARGE', detail: error.message };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return { code: 'EF_UNSUPPORTED_MEDIA_TYPE', detail: error.message };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { code: 'EF_SCHEMA_INVALID', detail: error.message };
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return { code: 'EF_JSON_INVALID', detail: error.message };
    default:
      if (error.statusCode === 429) return { code: 'EF_RATE_LIMITED', detail: error.message };
      if (error.statusCode === 413) return { code: 'EF_MESSAGE_TOO_LARGE', detail: error.message };
      if (error instanceof SyntaxError) return { code: 'EF_JSON_INVALID', detail: error.message };
      if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500)
        return { code: 'EF_SCHEMA_INVALID', detail: error.message };
      return undefined;
  }
}

/** Codes whose details travel in the answer, as the extension member `details`. */
const DETAILED: ReadonlySet<ErrorCode> = new Set(['EF_POLICY_FAILED', 'EF_EVALUATION_PENDING', 'EF_DATASET_INVALID']);

export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof EdgefleetError) {
      const retryAfter = error.details.retryAfterSeconds;
      if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
      // A 412 says what the resource's ETag is now.
      if (typeof error.details.etag === 'string') reply.header('etag', error.details.etag);
      // Some refusals carry what a program needs to act on them (the failing metrics, the evaluation to wait for).
      const extra = DETAILED.has(error.code) && Object.keys(error.details).length > 0 ? { details: error.details } : {};
      return send(reply, request, error.code, error.message, extra, error.status >= 500 ? error : undefined);
    }
    const mapped = fromFastify(error);
    if (mapped) return send(reply, request, mapped.code, mapped.detail, mapped.errors ? { errors: mapped.errors } : {});
    return internalError(reply, request, error);
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, request, 'EF_NOT_FOUND', `${request.method} ${request.url} is not a route of this server`),
  );
}

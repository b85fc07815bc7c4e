/**
 * One log line per HTTP request, written when the response is sent: method, path (no query
 * string: it may carry a token), status, time, and the EF_ code of every 4xx/5xx answer. Health
 * checks and scrapes (/healthz, /readyz, /metrics) log at debug, so a load balancer probing every
 * second does not fill the log; 5xx answers log at error with the error behind them.
 */
import type { FastifyInstance } from 'fastify';
import { problemOf } from './problem.ts';

/** Paths polled by machines: logged at debug. */
const PROBES = new Set(['/healthz', '/readyz', '/metrics']);
/** How much of a path a log line keeps: enough to recognize it, never a whole hostile URL. */
const PATH_CHARS = 200;

export function registerRequestLog(app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    const path = request.url.split('?', 1)[0] ?? '';
    const status = reply.statusCode;
    const problem = status >= 400 ? problemOf(reply) : undefined;
    const line = {
      method: request.method,
      path: path.length > PATH_CHARS ? `${path.slice(0, PATH_CHARS)}…` : path,
      status,
      ms: Math.round(reply.elapsedTime * 10) / 10,
      ...(problem ? { code: problem.code } : {}),
      ...(problem?.error !== undefined ? { err: problem.error } : {}),
    };
    if (status >= 500) request.log.error(line, 'request failed');
    else if (PROBES.has(path)) request.log.debug(line, 'request');
    else request.log.info(line, 'request');
  });
}

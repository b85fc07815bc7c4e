/**
 * @edgefleet/client: the fleet server's admin API, typed from its OpenAPI document.
 *
 * ```ts
 * import { createClient, ok } from '@edgefleet/client';
 * const fleet = createClient({ baseUrl: 'http://fleet:8080', token: process.env.EDGEFLEET_TOKEN });
 * const summary = await ok(fleet.api.GET('/v1/fleet/summary'));
 * for await (const device of fleet.items('/v1/devices', { params: { query: { tag: 'site=lyon' } } })) console.log(device.id);
 * ```
 *
 * - `api` is an openapi-fetch client over the generated `paths`: every path, parameter, body and
 *   answer is typed. An answer that is not 2xx rejects with {@link EdgefleetApiError}, carrying the
 *   problem's `EF_` code; `ok()` unwraps the data of one that is.
 * - Retries: requests that are safe to repeat (GET, PUT, PATCH, DELETE, the idempotent actions, and
 *   every creating POST, which gets an `Idempotency-Key` once and keeps it across its retries) are
 *   retried on network errors, 408, 429, 502, 503 and 504, honouring `Retry-After`; a retried
 *   creation never creates twice.
 * - `pages()` and `items()` walk a list to its end, cursor by cursor.
 */
import createFetchClient, { type Client, type MaybeOptionalInit } from 'openapi-fetch';
import { EdgefleetConnectionError, problemOf } from './errors.ts';
import type { components, operations, paths } from './generated/openapi.ts';
import { type EvaluateVersion, evaluateVersion, type UploadModelVersion, uploadModelVersion } from './upload.ts';

export { EdgefleetApiError, EdgefleetConnectionError, isApiError, problemOf } from './errors.ts';
export { ERROR_CODES, ERROR_DEFINITIONS, type ErrorCode } from './generated/errors.ts';
export type { components, operations, paths } from './generated/openapi.ts';
export { type EvaluateVersion, evaluationBody, multipartBody, type UploadModelVersion, type UploadProgress } from './upload.ts';

/** A schema of the OpenAPI document by name: `Schema<'SignedManifest'>`. */
export type Schema<N extends keyof components['schemas']> = components['schemas'][N];
/** An RFC 9457 problem as the server sends it. */
export type Problem = components['schemas']['Problem'];

export interface EdgefleetClientOptions {
  /** The server, e.g. `http://fleet.example:8080`. */
  readonly baseUrl: string;
  /** An admin or read-only token (`efa_…`), or EDGEFLEET_ADMIN_TOKEN. */
  readonly token?: string | undefined;
  /** Retries of a request that is safe to repeat; default 3. */
  readonly retries?: number;
  /** The first retry's delay; each next one doubles (with jitter); default 250 ms. */
  readonly retryDelayMs?: number;
  /** Each attempt's time limit; default 30 s (uploads: none). */
  readonly timeoutMs?: number;
  readonly fetch?: typeof globalThis.fetch;
  readonly userAgent?: string;
}

type GetPath = { [P in keyof paths]: paths[P] extends { get: object } ? P : never }[keyof paths];
type OkOf<P extends GetPath> = paths[P] extends { get: { responses: { 200: { content: { 'application/json': infer T } } } } } ? T : never;
/** The paths of the lists: their answer has a `next` cursor. */
export type ListPath = { [P in GetPath]: OkOf<P> extends { next: string | null } ? P : never }[GetPath];
/** A page of a list. */
export type PageOf<P extends ListPath> = OkOf<P>;
type ItemKey<P extends ListPath> = { [K in keyof OkOf<P>]: OkOf<P>[K] extends readonly unknown[] ? K : never }[keyof OkOf<P>];
/** One item of a list. */
export type ItemOf<P extends ListPath> = OkOf<P>[ItemKey<P>] extends readonly (infer T)[] ? T : never;
export type ListInit<P extends ListPath> = MaybeOptionalInit<paths[P], 'get'>;

export interface EdgefleetClient {
  /** The typed openapi-fetch client: `api.GET('/v1/devices/{id}', { params: { path: { id } } })`. */
  readonly api: Client<paths>;
  readonly baseUrl: string;
  /** Every page of a list, from the first (or `init`'s cursor) to the last. */
  pages<P extends ListPath>(path: P, ...init: ListInitArgs<P>): AsyncGenerator<PageOf<P>>;
  /** Every item of a list, page after page. */
  items<P extends ListPath>(path: P, ...init: ListInitArgs<P>): AsyncGenerator<ItemOf<P>>;
  /**
   * The server's events (GET /v1/events, server-sent events) as they happen, until `signal` aborts
   * or the server ends the stream: `ready`, then `rollout` with a rollout's summary on each change.
   */
  events(options?: { readonly rollout?: string; readonly signal?: AbortSignal }): AsyncGenerator<ServerEvent>;
  /** Uploads a model version (multipart), with progress, retried under one Idempotency-Key. */
  uploadModelVersion(
    upload: UploadModelVersion,
  ): Promise<operations['uploadModelVersion']['responses'][201]['content']['application/json']>;
  /** Evaluates a version on a labelled held-out dataset (multipart), retried under one Idempotency-Key: a job (GET /v1/evaluations/{id}). */
  evaluateVersion(request: EvaluateVersion): Promise<operations['getEvaluation']['responses'][200]['content']['application/json']>;
}

/** An event of GET /v1/events. */
export type ServerEvent =
  | { readonly event: 'ready'; readonly id: number; readonly data: { readonly at: string } }
  | { readonly event: 'rollout'; readonly id: number; readonly data: ItemOf<'/v1/rollouts'> }
  | { readonly event: 'drift'; readonly id: number; readonly data: DriftScoredEvent };

/** A drift pass stored new scores for these groups of a version (their alerts updated too). */
export interface DriftScoredEvent {
  readonly model: string;
  readonly version: string;
  readonly groups: readonly string[];
  readonly buckets: number;
  readonly at: string;
}

/** Parses a text/event-stream body into its events (`event`, `id`, `data` as JSON). */
export async function* parseEventStream(body: ReadableStream<Uint8Array>): AsyncGenerator<{ event: string; id: number; data: unknown }> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = new Map<string, string>();
        for (const line of block.split('\n')) {
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
        }
        const event = fields.get('event');
        const data = fields.get('data');
        if (event && data !== undefined) yield { event, id: Number(fields.get('id') ?? 0), data: JSON.parse(data) as unknown };
      }
    }
  } finally {
    reader.releaseLock();
  }
}

type ListInitArgs<P extends ListPath> = Record<string, never> extends ListInit<P> ? [init?: ListInit<P>] : [init: ListInit<P>];

/** The data of a successful answer (the client rejects the others). */
export async function ok<D>(pending: Promise<{ data?: D; error?: unknown; response: Response }>): Promise<D> {
  const { data } = await pending;
  return data as D;
}

const RETRY_STATUSES = new Set([408, 429, 502, 503, 504]);
/** POSTs that create: each attempt carries the same Idempotency-Key. */
const CREATING = [
  /^\/v1\/devices$/,
  /^\/v1\/enroll$/,
  /^\/v1\/admin-tokens$/,
  /^\/v1\/enrollment-tokens$/,
  /^\/v1\/rollouts$/,
  /^\/v1\/models\/[^/]+\/versions$/,
  /^\/v1\/models\/[^/]+\/versions\/[^/]+\/reference$/,
  /^\/v1\/models\/[^/]+\/versions\/[^/]+\/evaluations$/,
];
/** POSTs that change nothing when repeated. */
const IDEMPOTENT_ACTIONS = [/\/(revoke|pause|resume|abort|rollback)$/, /^\/v1\/drift\/evaluate$/];

function newKey(): string {
  return globalThis.crypto.randomUUID();
}

function delayFor(attempt: number, base: number, response?: Response): number {
  const after = response?.headers.get('retry-after');
  if (after && /^\d+$/.test(after)) return Math.min(Number(after) * 1000, 60_000);
  return base * 2 ** attempt * (0.75 + Math.random() * 0.5);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * A fetch that retries what is safe to retry, adds an Idempotency-Key to creating POSTs, and
 * limits each attempt in time. Bodies are cloned per attempt (streams are not retried here).
 */
export function retryingFetch(options: {
  readonly fetch?: typeof globalThis.fetch;
  readonly retries?: number;
  readonly retryDelayMs?: number;
  readonly timeoutMs?: number;
}): (request: Request) => Promise<Response> {
  const base = options.fetch ?? globalThis.fetch;
  const retries = options.retries ?? 3;
  const delay = options.retryDelayMs ?? 250;
  return async (original: Request) => {
    let request = original;
    const path = new URL(request.url).pathname;
    if (request.method === 'POST' && CREATING.some((r) => r.test(path)) && !request.headers.has('idempotency-key')) {
      const headers = new Headers(request.headers);
      headers.set('idempotency-key', newKey());
      request = new Request(request, { headers });
    }
    const safe = request.method !== 'POST' || request.headers.has('idempotency-key') || IDEMPOTENT_ACTIONS.some((r) => r.test(path));
    for (let attempt = 0; ; attempt++) {
      const last = !safe || attempt >= retries;
      const attemptRequest = last ? request : request.clone();
      const signals = [attemptRequest.signal, ...(options.timeoutMs === 0 ? [] : [AbortSignal.timeout(options.timeoutMs ?? 30_000)])];
      let response: Response;
      try {
        response = await base(new Request(attemptRequest, { signal: AbortSignal.any(signals) }));
      } catch (error) {
        if (original.signal.aborted) throw error;
        if (last) throw new EdgefleetConnectionError(request.url, error);
        await sleep(delayFor(attempt, delay));
        continue;
      }
      if (!last && RETRY_STATUSES.has(response.status)) {
        await response.body?.cancel();
        await sleep(delayFor(attempt, delay, response));
        continue;
      }
      return response;
    }
  };
}

export function createClient(options: EdgefleetClientOptions): EdgefleetClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, '');
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.userAgent) headers['user-agent'] = options.userAgent;
  const baseFetch = options.fetch;
  const fetch = retryingFetch(options);
  const api = createFetchClient<paths>({ baseUrl, headers, fetch });
  api.use({
    async onResponse({ response }) {
      if (!response.ok) throw await problemOf(response);
      return undefined;
    },
  });

  async function* pages<P extends ListPath>(path: P, ...args: ListInitArgs<P>): AsyncGenerator<PageOf<P>> {
    const init = (args[0] ?? {}) as { params?: { query?: Record<string, unknown>; path?: Record<string, unknown> } };
    let cursor = init.params?.query?.cursor as string | undefined;
    do {
      const query = { ...(init.params?.query ?? {}), ...(cursor ? { cursor } : {}) };
      const get = api.GET as unknown as (path: string, init: unknown) => Promise<{ data: PageOf<P> }>;
      const { data } = await get(path, { ...init, params: { ...init.params, query } });
      yield data;
      cursor = (data as { next: string | null }).next ?? undefined;
    } while (cursor);
  }

  return {
    api,
    baseUrl,
    pages,
    async *items<P extends ListPath>(path: P, ...args: ListInitArgs<P>): AsyncGenerator<ItemOf<P>> {
      for await (const page of pages(path, ...args)) {
        const key = Object.keys(page as object).find((k) => Array.isArray((page as Record<string, unknown>)[k]));
        for (const item of key ? ((page as Record<string, unknown>)[key] as ItemOf<P>[]) : []) yield item;
      }
    },
    async *events(options = {}) {
      const query = options.rollout ? `?rollout=${encodeURIComponent(options.rollout)}` : '';
      let response: Response;
      try {
        response = await (baseFetch ?? globalThis.fetch)(`${baseUrl}/v1/events${query}`, {
          headers: { ...headers, accept: 'text/event-stream' },
          ...(options.signal ? { signal: options.signal } : {}),
        });
      } catch (error) {
        if (options.signal?.aborted) return;
        throw new EdgefleetConnectionError(`${baseUrl}/v1/events`, error);
      }
      if (!response.ok || !response.body) throw await problemOf(response);
      try {
        for await (const event of parseEventStream(response.body)) yield event as ServerEvent;
      } catch (error) {
        if (options.signal?.aborted) return;
        throw new EdgefleetConnectionError(`${baseUrl}/v1/events`, error);
      }
    },
    uploadModelVersion: (upload) =>
      uploadModelVersion(upload, { baseUrl, headers, fetch: options.fetch ?? globalThis.fetch, retries: options.retries ?? 3 }),
    evaluateVersion: (request) =>
      evaluateVersion(request, { baseUrl, headers, fetch: options.fetch ?? globalThis.fetch, retries: options.retries ?? 3 }),
  };
}

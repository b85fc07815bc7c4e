/**
 * Idempotency-Key on the POSTs that create (the IETF httpapi draft, as Stripe and others do it):
 * a client that retries after a timeout sends the same key, and gets the first answer, never a
 * second device, token, version or rollout. The same key with another request (another body or
 * path) is refused with 422 EF_IDEMPOTENCY_KEY_REUSED; a retry while the first is still running
 * is 409 EF_IDEMPOTENCY_KEY_IN_FLIGHT. Keys are per token (a device enrolling: per enrollment
 * token) and kept 24 hours.
 *
 * What is stored: sha256 of the token id and the key (never the key), a fingerprint of the
 * request, and the answer encrypted (AES-256-GCM) under a key derived from the Idempotency-Key:
 * answers can hold a secret shown once (a device's, a token's), and a stolen database must not
 * give them away. Only successful answers are kept; after a refusal the retry runs again (it
 * created nothing).
 *
 * JSON bodies are fingerprinted as canonical JSON (key order and spacing do not matter). A
 * multipart upload is fingerprinted by its fields' values and its files' sha256, whatever their
 * order or the boundary a client picks: the upload route computes it as it reads the parts
 * (`multipartFingerprint` here for a retry, which is read without creating anything).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { canonicalize, EdgefleetError, fromBase64Url, toBase64Url } from '@edgefleet/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';

const KEY_PATTERN = /^[\x21-\x7E]{1,255}$/;
const KEEP_MS = 24 * 3600_000;
/** An in-flight claim older than this is from a request that died with its server: taken over. */
const STALE_MS = 10 * 60_000;
const REPLAYED_HEADERS = ['location', 'etag', 'content-type'] as const;

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by a route that reads its own body (multipart): the fingerprint of what it was asked. */
    idempotencyFingerprint?: string;
    idempotency?: { keyHash: string; secret: Buffer; fingerprint: string | undefined; finished: boolean };
  }
}

/** The fingerprint of a multipart request from its fields (as strings) and files (their sha256 by field name). */
export function partsFingerprint(method: string, path: string, fields: Record<string, string>, files: Record<string, string>): string {
  return createHash('sha256').update(canonicalize({ method, path, fields, files })).digest('hex');
}

/** Reads a multipart body to its end without keeping anything: its fingerprint, for a retried request. */
export async function multipartFingerprint(request: FastifyRequest): Promise<string> {
  const fields: Record<string, string> = {};
  const files: Record<string, string> = {};
  for await (const part of request.parts()) {
    if (part.type === 'file') {
      const hash = createHash('sha256');
      for await (const chunk of part.file) hash.update(chunk as Buffer);
      files[part.fieldname] = hash.digest('hex');
    } else {
      fields[part.fieldname] = String(part.value);
    }
  }
  return partsFingerprint(request.method, pathOf(request), fields, files);
}

function pathOf(request: FastifyRequest): string {
  return request.url.split('?')[0] ?? request.url;
}

function jsonFingerprint(request: FastifyRequest): string {
  return createHash('sha256')
    .update(canonicalize({ method: request.method, path: pathOf(request), body: request.body ?? null }))
    .digest('hex');
}

function isMultipart(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').toLowerCase().startsWith('multipart/');
}

function encrypt(secret: Buffer, text: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', secret, iv);
  const data = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  return toBase64Url(Buffer.concat([iv, cipher.getAuthTag(), data]));
}

function decrypt(secret: Buffer, sealed: string): string {
  const bytes = Buffer.from(fromBase64Url(sealed));
  const decipher = createDecipheriv('aes-256-gcm', secret, bytes.subarray(0, 12));
  decipher.setAuthTag(bytes.subarray(12, 28));
  return Buffer.concat([decipher.update(bytes.subarray(28)), decipher.final()]).toString('utf8');
}

/**
 * Makes `routes` (POST route URLs as registered, e.g. `/v1/rollouts`) honour Idempotency-Key.
 * Runs after authentication (the key is per token) and, for JSON, after validation.
 */
export function registerIdempotency(
  app: FastifyInstance,
  options: { readonly db: Kysely<Database>; readonly routes: readonly string[]; readonly now?: () => number },
): void {
  const { db } = options;
  const now = options.now ?? Date.now;
  const routes = new Set(options.routes);
  let prunedAt = 0;

  async function prune(): Promise<void> {
    if (now() - prunedAt < 60_000) return;
    prunedAt = now();
    await db.deleteFrom('idempotency_keys').where('expires_at', '<', new Date(now()).toISOString()).execute();
  }

  async function claim(keyHash: string, request: FastifyRequest, fingerprint: string | undefined): Promise<boolean> {
    const at = now();
    const inserted = await db
      .insertInto('idempotency_keys')
      .values({
        key_hash: keyHash,
        method: request.method,
        path: pathOf(request),
        fingerprint: fingerprint ?? null,
        state: 'in_flight',
        status: null,
        headers: null,
        body: null,
        created_at: new Date(at).toISOString(),
        expires_at: new Date(at + KEEP_MS).toISOString(),
      })
      .onConflict((c) => c.column('key_hash').doNothing())
      .executeTakeFirst();
    return Number(inserted.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  async function release(request: FastifyRequest): Promise<void> {
    const state = request.idempotency;
    if (!state || state.finished) return;
    state.finished = true;
    await db.deleteFrom('idempotency_keys').where('key_hash', '=', state.keyHash).where('state', '=', 'in_flight').execute();
  }

  async function replay(request: FastifyRequest, reply: FastifyReply, keyHash: string, secret: Buffer, key: string): Promise<void> {
    for (let attempt = 0; attempt < 2; attempt++) {
      const row = await db.selectFrom('idempotency_keys').selectAll().where('key_hash', '=', keyHash).executeTakeFirst();
      if (!row) {
        // Released (the first failed) or expired since: this request runs as the first.
        const fingerprint = isMultipart(request) ? undefined : jsonFingerprint(request);
        if (await claim(keyHash, request, fingerprint)) {
          request.idempotency = { keyHash, secret, fingerprint, finished: false };
          return;
        }
        continue;
      }
      const stale = row.state === 'in_flight' && now() - Date.parse(row.created_at) > STALE_MS;
      const expired = Date.parse(row.expires_at) <= now();
      if (stale || expired) {
        await db.deleteFrom('idempotency_keys').where('key_hash', '=', keyHash).where('created_at', '=', row.created_at).execute();
        continue;
      }
      if (row.state === 'in_flight') {
        throw new EdgefleetError(
          'EF_IDEMPOTENCY_KEY_IN_FLIGHT',
          `a request with Idempotency-Key "${key.slice(0, 64)}" is still being processed; retry with the same key once it has finished`,
          { details: { retryAfterSeconds: 1 } },
        );
      }
      const fingerprint = isMultipart(request) ? await multipartFingerprint(request) : jsonFingerprint(request);
      if (row.method !== request.method || row.path !== pathOf(request) || row.fingerprint !== fingerprint) {
        throw new EdgefleetError(
          'EF_IDEMPOTENCY_KEY_REUSED',
          `Idempotency-Key "${key.slice(0, 64)}" was used for ${row.method} ${row.path} with another body; use a new key for a new request`,
        );
      }
      const headers = JSON.parse(row.headers ?? '{}') as Record<string, string>;
      for (const [name, value] of Object.entries(headers)) reply.header(name, value);
      reply.header('idempotent-replayed', 'true');
      await reply.status(row.status ?? 200).send(decrypt(secret, row.body ?? ''));
      return;
    }
    throw new EdgefleetError('EF_IDEMPOTENCY_KEY_IN_FLIGHT', `Idempotency-Key "${key.slice(0, 64)}" is contended; retry`, {
      details: { retryAfterSeconds: 1 },
    });
  }

  app.addHook('preHandler', async (request, reply) => {
    if (request.method !== 'POST' || !routes.has(request.routeOptions.url ?? '')) return;
    const header = request.headers['idempotency-key'];
    if (header === undefined) return;
    const key = Array.isArray(header) ? header.join(',') : header;
    if (!KEY_PATTERN.test(key)) {
      throw new EdgefleetError(
        'EF_SCHEMA_INVALID',
        'Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good key); send the same key when retrying the same request',
      );
    }
    await prune();
    // Keys are per caller: the token that authenticated the request, or for a device enrolling
    // itself (no principal yet), the enrollment token it presents.
    const presented = (request.body as { token?: unknown } | undefined)?.token;
    const scope =
      request.principal?.id ??
      (typeof presented === 'string' ? `enrollment:${createHash('sha256').update(presented).digest('hex')}` : 'anonymous');
    const keyHash = createHash('sha256').update(`${scope}\n${key}`).digest('hex');
    const secret = createHash('sha256').update(`edgefleet idempotency\n${key}`).digest();
    const fingerprint = isMultipart(request) ? undefined : jsonFingerprint(request);
    if (await claim(keyHash, request, fingerprint)) {
      request.idempotency = { keyHash, secret, fingerprint, finished: false };
      return;
    }
    await replay(request, reply, keyHash, secret, key);
  });

  app.addHook('onSend', async (request, reply, payload) => {
    const state = request.idempotency;
    if (!state || state.finished) return payload;
    if (reply.statusCode < 200 || reply.statusCode >= 300 || (typeof payload !== 'string' && payload !== null && payload !== undefined)) {
      await release(request);
      return payload;
    }
    const fingerprint = state.fingerprint ?? request.idempotencyFingerprint;
    if (!fingerprint) {
      await release(request);
      return payload;
    }
    const headers: Record<string, string> = {};
    for (const name of REPLAYED_HEADERS) {
      const value = reply.getHeader(name);
      if (value !== undefined) headers[name] = String(value);
    }
    state.finished = true;
    await db
      .updateTable('idempotency_keys')
      .set({
        state: 'done',
        fingerprint,
        status: reply.statusCode,
        headers: JSON.stringify(headers),
        body: encrypt(state.secret, typeof payload === 'string' ? payload : ''),
      })
      .where('key_hash', '=', state.keyHash)
      .execute();
    return payload;
  });

  // A request that ends without an answer (the client went away, the handler threw before onSend) frees its key.
  app.addHook('onResponse', async (request) => release(request));
  app.addHook('onRequestAbort', async (request) => release(request));
}

/**
 * Credentials: admin bearer tokens (scoped, stored as sha256: they are 256-bit random, so a fast
 * hash is enough) and device secrets (stored as scrypt, verified once per connection and then
 * remembered by their sha256 so a reconnect storm costs no scrypt).
 */
import { createHash, randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import { EdgefleetError, fromBase64Url, toBase64Url } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';

const scrypt = promisify(scryptCallback) as (
  password: string,
  salt: Uint8Array,
  keylen: number,
  options: { N: number; r: number; p: number },
) => Promise<Buffer>;
// OWASP's scrypt minimum (N=2^17) costs ~150 ms here; device secrets are 256-bit random, so the
// hash guards a stolen database, not a guessable password: N=2^14 keeps enrollment fast.
const SCRYPT = { N: 2 ** 14, r: 8, p: 1 } as const;

export type Scope = 'admin' | 'read';

export interface Principal {
  readonly kind: 'admin-token' | 'device';
  readonly id: string;
  readonly scope: Scope;
}

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function newSecret(): string {
  return toBase64Url(randomBytes(32));
}

export async function hashDeviceSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scrypt(secret, salt, 32, SCRYPT);
  return `scrypt$${toBase64Url(salt)}$${toBase64Url(hash)}`;
}

export async function verifyDeviceSecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = fromBase64Url(hash);
  const actual = await scrypt(secret, fromBase64Url(salt), expected.length, SCRYPT);
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

/** Admin tokens look like `efa_<id>_<secret>`: the id finds the row, the secret proves it. */
export function formatAdminToken(id: string, secret: string): string {
  return `efa_${id}_${secret}`;
}

export function createAuthenticator(db: Kysely<Database>, envAdminToken: string | undefined) {
  const envHash = envAdminToken ? Buffer.from(sha256(envAdminToken), 'hex') : undefined;

  return async function authenticate(header: string | undefined): Promise<Principal> {
    const token = /^Bearer (\S+)$/.exec(header ?? '')?.[1];
    if (!token) throw new EdgefleetError('EF_UNAUTHORIZED', 'no bearer token in the Authorization header');
    if (envHash && timingSafeEqual(Buffer.from(sha256(token), 'hex'), envHash)) return { kind: 'admin-token', id: 'env', scope: 'admin' };
    const match = /^efa_([A-Za-z0-9]+)_([A-Za-z0-9_-]+)$/.exec(token);
    if (match) {
      const row = await db
        .selectFrom('admin_tokens')
        .selectAll()
        .where('id', '=', match[1] as string)
        .executeTakeFirst();
      if (
        row &&
        row.revoked_at === null &&
        timingSafeEqual(Buffer.from(sha256(match[2] as string), 'hex'), Buffer.from(row.token_hash, 'hex'))
      ) {
        return { kind: 'admin-token', id: row.id, scope: row.scope };
      }
    }
    throw new EdgefleetError('EF_UNAUTHORIZED', 'the bearer token is unknown or revoked');
  };
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (scope === 'admin' && principal.scope !== 'admin') {
    throw new EdgefleetError('EF_FORBIDDEN', `this needs an admin token; ${principal.id} is read-only`);
  }
}

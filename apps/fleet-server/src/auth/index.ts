/**
 * Credentials: admin bearer tokens (scoped) and device secrets. Both are 256 bits from the server's
 * random source, never chosen by a person, so a fast hash guards a stolen database as well as a slow
 * one would (2^256 guesses either way) and costs a microsecond per check instead of scrypt's 36 ms:
 * 10,000 devices reconnecting after a server restart are 10,000 checks, not six minutes of CPU.
 * Rows written by earlier versions as scrypt are still verified, once, and rewritten as sha256.
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
/** The parameters earlier versions stored device secrets with. */
const LEGACY_SCRYPT = { N: 2 ** 14, r: 8, p: 1 } as const;

export type Scope = 'admin' | 'read';

export interface Principal {
  readonly kind: 'admin-token' | 'device';
  readonly id: string;
  readonly scope: Scope;
  /** The token's name (admin tokens), as the audit log records it. */
  readonly name?: string;
  /** When the token stops working (admin tokens given an expiry). */
  readonly expiresAt?: string | null;
}

/** The name the environment's admin token goes by in the audit log and token lists. */
export const ENV_TOKEN_NAME = 'EDGEFLEET_ADMIN_TOKEN';

export function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function newSecret(): string {
  return toBase64Url(randomBytes(32));
}

export function hashDeviceSecret(secret: string): string {
  return `sha256$${sha256(secret)}`;
}

export type SecretCheck = 'ok' | 'ok-legacy' | 'wrong';

/** `ok-legacy`: right, but stored as scrypt; the caller rewrites it with {@link hashDeviceSecret}. */
export async function verifyDeviceSecret(secret: string, stored: string): Promise<SecretCheck> {
  const [scheme, first, second] = stored.split('$');
  if (scheme === 'sha256' && first && first.length === 64) {
    return timingSafeEqual(Buffer.from(sha256(secret), 'hex'), Buffer.from(first, 'hex')) ? 'ok' : 'wrong';
  }
  if (scheme === 'scrypt' && first && second) {
    const expected = fromBase64Url(second);
    const actual = await scrypt(secret, fromBase64Url(first), expected.length, LEGACY_SCRYPT);
    return actual.length === expected.length && timingSafeEqual(actual, expected) ? 'ok-legacy' : 'wrong';
  }
  return 'wrong';
}

/** Admin tokens look like `efa_<id>_<secret>`: the id finds the row, the secret proves it. */
export function formatAdminToken(id: string, secret: string): string {
  return `efa_${id}_${secret}`;
}

export function createAuthenticator(db: Kysely<Database>, envAdminToken: string | undefined, now: () => number = Date.now) {
  const envHash = envAdminToken ? Buffer.from(sha256(envAdminToken), 'hex') : undefined;

  return async function authenticate(header: string | undefined): Promise<Principal> {
    const token = /^Bearer (\S+)$/.exec(header ?? '')?.[1];
    if (!token) throw new EdgefleetError('EF_UNAUTHORIZED', 'no bearer token in the Authorization header');
    if (envHash && timingSafeEqual(Buffer.from(sha256(token), 'hex'), envHash))
      return { kind: 'admin-token', id: 'env', scope: 'admin', name: ENV_TOKEN_NAME, expiresAt: null };
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
        (row.expires_at === null || Date.parse(row.expires_at) > now()) &&
        timingSafeEqual(Buffer.from(sha256(match[2] as string), 'hex'), Buffer.from(row.token_hash, 'hex'))
      ) {
        return { kind: 'admin-token', id: row.id, scope: row.scope, name: row.name, expiresAt: row.expires_at };
      }
    }
    // One answer for unknown, revoked, expired and wrong: which one it was would help a guesser.
    throw new EdgefleetError('EF_UNAUTHORIZED', 'the bearer token is unknown, revoked or expired');
  };
}

export function requireScope(principal: Principal, scope: Scope): void {
  if (scope === 'admin' && principal.scope !== 'admin') {
    throw new EdgefleetError('EF_FORBIDDEN', `this needs an admin token; ${principal.id} is read-only`);
  }
}

/**
 * Counts failed authentications per address in one-minute windows (THREATS 18, 20): an address
 * that used up its failures is refused outright (EF_RATE_LIMITED) until its window ends, with no
 * lookup and no hash, whatever credential it tries. Successful authentications cost nothing here.
 */
export interface FailureLimiter {
  /** Throws EF_RATE_LIMITED (with `retryAfterSeconds`) when `address` has no failures left. */
  check(address: string): void;
  failed(address: string): void;
}

export function createFailureLimiter(perMinute: number, now: () => number = Date.now): FailureLimiter {
  const windowMs = 60_000;
  const windows = new Map<string, { start: number; failures: number }>();
  const current = (address: string) => {
    const at = now();
    let entry = windows.get(address);
    if (!entry || at - entry.start >= windowMs) {
      // Expired windows are dropped as new ones open, so the map holds the last minute's addresses only.
      if (windows.size > 10_000) for (const [key, old] of windows) if (at - old.start >= windowMs) windows.delete(key);
      entry = { start: at, failures: 0 };
      windows.set(address, entry);
    }
    return entry;
  };
  return {
    check(address) {
      const entry = windows.get(address);
      if (!entry || now() - entry.start >= windowMs || entry.failures < perMinute) return;
      const retryAfterSeconds = Math.max(1, Math.ceil((entry.start + windowMs - now()) / 1000));
      throw new EdgefleetError(
        'EF_RATE_LIMITED',
        `too many failed authentications from ${address}; try again in ${retryAfterSeconds} s with the right credential`,
        { details: { retryAfterSeconds } },
      );
    },
    failed(address) {
      current(address).failures++;
    },
  };
}

/**
 * The fleet's signing key: generated on first start, kept in the data folder with mode 0600 (its
 * folder 0700), and the key set devices are provisioned with. One key holds every role for now;
 * the key set format already allows splitting roles and thresholds.
 */
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createKeySet,
  generateSigningKey,
  type KeySetPayload,
  type SignedDocument,
  type SigningKey,
  signKeySet,
  toBase64Url,
} from '@edgefleet/protocol';
import { nodeSigningKey, writeFileAtomically } from '@edgefleet/protocol/node';
import type { Kysely } from 'kysely';
import type { Database } from '../store/schema.ts';

export interface FleetKeys {
  readonly signing: SigningKey;
  readonly keySet: SignedDocument<KeySetPayload>;
}

interface StoredKey {
  readonly keyId: string;
  readonly secretKey: string;
  readonly createdAt: string;
}

export async function loadOrCreateKeys(dataDir: string): Promise<FleetKeys> {
  const dir = join(dataDir, 'keys');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const keyPath = join(dir, 'signing-key.json');
  const keySetPath = join(dir, 'keyset.json');
  let signing: SigningKey;
  try {
    const stored = JSON.parse(await readFile(keyPath, 'utf8')) as StoredKey;
    signing = nodeSigningKey(stored.secretKey);
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
    signing = nodeSigningKey(generateSigningKey().secretKey);
    const stored: StoredKey = { keyId: signing.keyId, secretKey: toBase64Url(signing.secretKey), createdAt: new Date().toISOString() };
    await writeFileAtomically(keyPath, JSON.stringify(stored, null, 2), { mode: 0o600 });
  }
  let keySet: SignedDocument<KeySetPayload>;
  try {
    keySet = JSON.parse(await readFile(keySetPath, 'utf8')) as SignedDocument<KeySetPayload>;
    if (!keySet.payload.keys.some((k) => k.keyId === signing.keyId)) throw Object.assign(new Error('stale key set'), { code: 'ENOENT' });
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
    const roles = { root: { keys: [signing] }, manifest: { keys: [signing] }, 'desired-state': { keys: [signing] } };
    keySet = signKeySet(createKeySet({ version: 1, roles, ttlMs: 10 * 365 * 24 * 3600 * 1000 }), [signing]);
    await writeFileAtomically(keySetPath, JSON.stringify(keySet, null, 2), { mode: 0o644 });
  }
  return { signing, keySet };
}

/**
 * Several replicas must sign with the same key (devices pin one key set): the first server to start
 * on a database records the key id it signs with, and a server with another key refuses to start,
 * saying what to copy. The private key itself never goes into the database.
 */
export async function agreeOnKeySet(db: Kysely<Database>, keys: FleetKeys): Promise<void> {
  const mine = keys.signing.keyId;
  await db
    .insertInto('settings')
    .values({ name: 'signing-key-id', value: mine })
    .onConflict((conflict) => conflict.column('name').doNothing())
    .execute();
  const recorded = await db.selectFrom('settings').select('value').where('name', '=', 'signing-key-id').executeTakeFirstOrThrow();
  if (recorded.value !== mine) {
    throw new Error(
      `this server signs with key ${mine} but the fleet's devices trust key ${recorded.value}: every replica needs the same keys/ folder of the data folder (signing-key.json and keyset.json). Copy it from the first replica (or a backup) before starting this one.`,
    );
  }
}

import { randomBytes, scryptSync } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { toBase64Url } from '@edgefleet/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hashDeviceSecret, newSecret } from '../auth/index.ts';
import { type OpenedDatabase, openDatabase } from '../store/db.ts';
import { createDeviceAuthenticator } from './credentials.ts';

describe('device authentication', () => {
  let store: OpenedDatabase;
  beforeEach(async () => {
    store = await openDatabase({ dataDir: await mkdtemp(join(tmpdir(), 'edgefleet-credentials-')) });
  });
  afterEach(() => store.close());

  async function addDevice(id: string, secretHash: string, status: 'active' | 'revoked' = 'active') {
    await store.db
      .insertInto('devices')
      .values({
        id,
        secret_hash: secretHash,
        tags: '[]',
        status,
        created_at: new Date().toISOString(),
        last_seen_at: null,
        online: 0,
        reported: null,
      })
      .execute();
  }

  it('accepts the right secret; answers a wrong one, an unknown device and a malformed id alike; tells revocation only to the secret holder', async () => {
    const secret = newSecret();
    await addDevice('dev-1', hashDeviceSecret(secret));
    await addDevice('dev-2', hashDeviceSecret(secret), 'revoked');
    const devices = createDeviceAuthenticator(store.db);
    expect((await devices.verify('dev-1', secret)).id).toBe('dev-1');
    const refusals = await Promise.all(
      [
        ['dev-1', newSecret()],
        ['dev-1', ''],
        ['nobody', secret],
        ['../etc', secret],
        ['dev-2', newSecret()], // revoked, but the caller does not hold its secret: nothing to tell
      ].map(([id, guess]) =>
        devices.verify(id as string, guess as string).then(
          () => undefined,
          (error: Error) => error,
        ),
      ),
    );
    // One answer for all: no way to learn which device ids exist (THREATS 20).
    for (const error of refusals) expect(error).toMatchObject({ code: 'EF_UNAUTHORIZED', message: refusals[0]?.message });
    await expect(devices.verify('dev-2', secret)).rejects.toMatchObject({ code: 'EF_DEVICE_REVOKED' });
  });

  it('never stores the secret itself', async () => {
    const secret = newSecret();
    expect(hashDeviceSecret(secret)).toMatch(/^sha256\$[0-9a-f]{64}$/);
    expect(hashDeviceSecret(secret)).not.toContain(secret);
  });

  it('still accepts a secret stored as scrypt by an earlier version, and rewrites it as sha256 on first use', async () => {
    const secret = newSecret();
    const salt = randomBytes(16);
    const legacy = `scrypt$${toBase64Url(salt)}$${toBase64Url(scryptSync(secret, salt, 32, { N: 2 ** 14, r: 8, p: 1 }))}`;
    await addDevice('old-1', legacy);
    const devices = createDeviceAuthenticator(store.db);
    await expect(devices.verify('old-1', newSecret())).rejects.toMatchObject({ code: 'EF_UNAUTHORIZED' });
    expect(
      (await store.db.selectFrom('devices').select('secret_hash').where('id', '=', 'old-1').executeTakeFirstOrThrow()).secret_hash,
    ).toBe(legacy);
    await devices.verify('old-1', secret);
    const stored = await store.db.selectFrom('devices').select('secret_hash').where('id', '=', 'old-1').executeTakeFirstOrThrow();
    expect(stored.secret_hash).toBe(hashDeviceSecret(secret));
    expect((await devices.verify('old-1', secret)).id).toBe('old-1');
  });
});

/**
 * Device authentication, shared by the broker (MQTT CONNECT username/password) and the HTTP API
 * (Basic deviceId:secret). scrypt runs once per device per server start; afterwards a successful
 * secret is remembered by its sha256, so a reconnect storm costs no scrypt. Revocation forgets it.
 */
import { timingSafeEqual } from 'node:crypto';
import { EdgefleetError, isDeviceId } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { sha256, verifyDeviceSecret } from '../auth/index.ts';
import type { Database, DevicesTable } from '../store/schema.ts';

export interface DeviceAuthenticator {
  /** The device row when the secret is right; EF_DEVICE_UNKNOWN, EF_UNAUTHORIZED or EF_DEVICE_REVOKED otherwise. */
  verify(deviceId: string, secret: string): Promise<DevicesTable>;
  forget(deviceId: string): void;
}

export function createDeviceAuthenticator(db: Kysely<Database>): DeviceAuthenticator {
  const verified = new Map<string, Buffer>();
  return {
    async verify(deviceId, secret) {
      if (!isDeviceId(deviceId)) throw new EdgefleetError('EF_UNAUTHORIZED', 'the device id is not valid');
      const row = await db.selectFrom('devices').selectAll().where('id', '=', deviceId).executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${deviceId}"`);
      if (row.status === 'revoked') throw new EdgefleetError('EF_DEVICE_REVOKED', `device "${deviceId}" was revoked`);
      const digest = Buffer.from(sha256(secret), 'hex');
      const known = verified.get(deviceId);
      if (known && timingSafeEqual(known, digest)) return row;
      if (!(await verifyDeviceSecret(secret, row.secret_hash)))
        throw new EdgefleetError('EF_UNAUTHORIZED', `wrong secret for device "${deviceId}"`);
      verified.set(deviceId, digest);
      return row;
    },
    forget: (deviceId) => {
      verified.delete(deviceId);
    },
  };
}

/**
 * Device authentication, shared by the broker (MQTT CONNECT username/password) and the HTTP API
 * (Basic deviceId:secret): one indexed read and one sha256 per check (see auth/index.ts for why a
 * fast hash is right for server-generated secrets). A legacy scrypt row is rewritten on first use.
 */
import { EdgefleetError, isDeviceId } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { hashDeviceSecret, verifyDeviceSecret } from '../auth/index.ts';
import type { Database, DevicesTable } from '../store/schema.ts';

export interface DeviceAuthenticator {
  /** The device when the secret is right; EF_DEVICE_UNKNOWN, EF_UNAUTHORIZED or EF_DEVICE_REVOKED otherwise. */
  verify(deviceId: string, secret: string): Promise<Pick<DevicesTable, 'id' | 'status' | 'tags'>>;
}

export function createDeviceAuthenticator(db: Kysely<Database>): DeviceAuthenticator {
  return {
    async verify(deviceId, secret) {
      if (!isDeviceId(deviceId)) throw new EdgefleetError('EF_UNAUTHORIZED', 'the device id is not valid');
      // Not the reported state: it can be kilobytes, and this runs on every connection and download.
      const row = await db
        .selectFrom('devices')
        .select(['id', 'status', 'tags', 'secret_hash'])
        .where('id', '=', deviceId)
        .executeTakeFirst();
      if (!row) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${deviceId}"`);
      if (row.status === 'revoked') throw new EdgefleetError('EF_DEVICE_REVOKED', `device "${deviceId}" was revoked`);
      const check = await verifyDeviceSecret(secret, row.secret_hash);
      if (check === 'wrong') throw new EdgefleetError('EF_UNAUTHORIZED', `wrong secret for device "${deviceId}"`);
      if (check === 'ok-legacy') {
        await db
          .updateTable('devices')
          .set({ secret_hash: hashDeviceSecret(secret) })
          .where('id', '=', deviceId)
          .execute();
      }
      return { id: row.id, status: row.status, tags: row.tags };
    },
  };
}

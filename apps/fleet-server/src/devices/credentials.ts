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
  /**
   * The device when the secret is right; otherwise EF_UNAUTHORIZED with the same message whether
   * the id is unknown or the secret wrong (no enumeration of device ids, THREATS 20), or
   * EF_DEVICE_REVOKED, told only to a caller that proved it holds the secret.
   */
  verify(deviceId: string, secret: string): Promise<Pick<DevicesTable, 'id' | 'status' | 'tags'>>;
}

/** The one answer to an unknown device id, a malformed one, and a wrong secret. */
const refused = () => new EdgefleetError('EF_UNAUTHORIZED', 'unknown device or wrong secret');
/** Compared against when the id is unknown: no secret hashes to it. */
const UNKNOWN_DEVICE_HASH = `sha256$${'0'.repeat(64)}`;

export function createDeviceAuthenticator(db: Kysely<Database>): DeviceAuthenticator {
  return {
    async verify(deviceId, secret) {
      if (!isDeviceId(deviceId)) throw refused();
      // Not the reported state: it can be kilobytes, and this runs on every connection and download.
      const row = await db
        .selectFrom('devices')
        .select(['id', 'status', 'tags', 'secret_hash'])
        .where('id', '=', deviceId)
        .executeTakeFirst();
      // An unknown id costs the same hash as a known one, so timing tells them apart no better than the answer.
      const check = await verifyDeviceSecret(secret, row?.secret_hash ?? UNKNOWN_DEVICE_HASH);
      if (!row || check === 'wrong') throw refused();
      if (row.status === 'revoked') throw new EdgefleetError('EF_DEVICE_REVOKED', `device "${deviceId}" was revoked`);
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

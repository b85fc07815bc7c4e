/**
 * Desired state per device: which model versions it should run. Each change writes a new signed
 * document with a higher sequence (in one transaction with its audit entry), then publishes it
 * retained on the device's desired topic. On start every stored document is published again, so a
 * broker without persistence still gives each (re)connecting device its current state.
 */
import {
  createDesiredState,
  type DesiredStatePayload,
  EdgefleetError,
  encodeMessage,
  type ManifestPayload,
  type SignedDocument,
  signDesiredState,
  signManifest,
} from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import { audit } from '../audit/index.ts';
import type { FleetBroker } from '../broker/index.ts';
import type { FleetKeys } from '../keys/index.ts';
import type { Database, DeviceDesiredTable } from '../store/schema.ts';

export interface DesiredChange {
  /** Models to run at these versions. */
  readonly set?: readonly { readonly name: string; readonly version: string; readonly rolloutId?: string }[];
  readonly remove?: readonly string[];
  /** The new versions may be older than what runs (a signed rollback). */
  readonly rollback?: boolean;
}

export interface DesiredStateService {
  assign(deviceId: string, change: DesiredChange, actor: string): Promise<SignedDocument<DesiredStatePayload>>;
  /**
   * The same change for many devices in one transaction with one audit entry (a rollout stage):
   * thousands of devices cost one commit, not thousands.
   */
  assignMany(deviceIds: readonly string[], change: DesiredChange, actor: string, target: string): Promise<void>;
  current(deviceId: string): Promise<SignedDocument<DesiredStatePayload> | undefined>;
  /** The version of `model` each device's current document names (null: none). */
  currentVersions(deviceIds: readonly string[], model: string): Promise<Map<string, string | null>>;
  /** Publishes every stored document (retained): after a start, or to a fresh external broker. */
  republishAll(): Promise<number>;
}

const PUBLISH_CONCURRENCY = 256;
/** Rows per statement: SQLite allows 32,766 bound values, PostgreSQL 65,535. */
const CHUNK = 500;

/** Re-sign a manifest whose validity ends within this margin, so devices can still install it. */
const RESIGN_MARGIN_MS = 30 * 24 * 3600 * 1000;

export function createDesiredStateService(options: {
  db: Kysely<Database>;
  keys: FleetKeys;
  broker: () => FleetBroker;
  topic: (deviceId: string) => string;
  manifestTtlMs: number;
  desiredTtlMs?: number;
}): DesiredStateService {
  const { db, keys } = options;

  async function manifestFor(name: string, version: string): Promise<SignedDocument<ManifestPayload>> {
    const row = await db
      .selectFrom('model_versions')
      .select('manifest')
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    if (!row) throw new EdgefleetError('EF_NOT_FOUND', `${name}@${version} is not in the registry`);
    const manifest = JSON.parse(row.manifest) as SignedDocument<ManifestPayload>;
    if (Date.parse(manifest.payload.expiresAt) - Date.now() > RESIGN_MARGIN_MS) return manifest;
    const now = Date.now();
    const fresh = signManifest(
      {
        ...manifest.payload,
        issuedAt: new Date(now).toISOString().replace('.000Z', 'Z'),
        expiresAt: new Date(now + options.manifestTtlMs).toISOString().replace('.000Z', 'Z'),
      },
      [keys.signing],
    );
    await db
      .updateTable('model_versions')
      .set({ manifest: JSON.stringify(fresh) })
      .where('name', '=', name)
      .where('version', '=', version)
      .execute();
    return fresh;
  }

  async function manifestsFor(change: DesiredChange) {
    return Promise.all((change.set ?? []).map(async (m) => ({ manifest: await manifestFor(m.name, m.version), rolloutId: m.rolloutId })));
  }

  function describe(payload: DesiredStatePayload): string[] {
    return payload.models.map((m) => `${m.manifest.payload.name}@${m.manifest.payload.version}`);
  }

  /** Writes the next document of each device (inside the caller's transaction) and returns them. */
  async function writeDocuments(
    trx: Transaction<Database>,
    deviceIds: readonly string[],
    change: DesiredChange,
    manifests: { manifest: SignedDocument<ManifestPayload>; rolloutId: string | undefined }[],
  ): Promise<{ deviceId: string; document: SignedDocument<DesiredStatePayload>; previous?: DesiredStatePayload }[]> {
    const known = new Set<string>();
    const rows = new Map<string, { sequence: number; document: string }>();
    for (let i = 0; i < deviceIds.length; i += CHUNK) {
      const chunk = deviceIds.slice(i, i + CHUNK);
      for (const d of await trx.selectFrom('devices').select('id').where('id', 'in', chunk).execute()) known.add(d.id);
      for (const r of await trx
        .selectFrom('device_desired')
        .select(['device_id', 'sequence', 'document'])
        .where('device_id', 'in', chunk)
        .execute()) {
        rows.set(r.device_id, { sequence: Number(r.sequence), document: r.document });
      }
    }
    const changed = new Set([...manifests.map((m) => m.manifest.payload.name), ...(change.remove ?? [])]);
    const written: { deviceId: string; document: SignedDocument<DesiredStatePayload>; previous?: DesiredStatePayload }[] = [];
    const updatedAt = new Date().toISOString();
    const upserts: DeviceDesiredTable[] = [];
    for (const deviceId of deviceIds) {
      if (!known.has(deviceId)) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${deviceId}"`);
      const row = rows.get(deviceId);
      const previous = row ? (JSON.parse(row.document) as SignedDocument<DesiredStatePayload>).payload : undefined;
      // Models the change does not touch keep their current entry.
      const kept = (previous?.models ?? []).filter((m) => !changed.has(m.manifest.payload.name));
      const models = [...kept, ...manifests.map((m) => ({ manifest: m.manifest, ...(m.rolloutId ? { rolloutId: m.rolloutId } : {}) }))];
      const sequence = (row?.sequence ?? 0) + 1;
      const payload = createDesiredState({
        deviceId,
        sequence,
        models,
        remove: [...(change.remove ?? [])],
        rollback: change.rollback ?? false,
        ...(options.desiredTtlMs ? { ttlMs: options.desiredTtlMs } : {}),
      });
      const document = signDesiredState(payload, [keys.signing]);
      upserts.push({ device_id: deviceId, sequence, document: JSON.stringify(document), updated_at: updatedAt });
      written.push({ deviceId, document, ...(previous ? { previous } : {}) });
    }
    for (let i = 0; i < upserts.length; i += CHUNK) {
      await trx
        .insertInto('device_desired')
        .values(upserts.slice(i, i + CHUNK))
        .onConflict((conflict) =>
          conflict.column('device_id').doUpdateSet((eb) => ({
            sequence: eb.ref('excluded.sequence'),
            document: eb.ref('excluded.document'),
            updated_at: eb.ref('excluded.updated_at'),
          })),
        )
        .execute();
    }
    return written;
  }

  async function publish(deviceId: string, document: SignedDocument<DesiredStatePayload>): Promise<void> {
    await options.broker().publish(options.topic(deviceId), encodeMessage('desired', document), { retain: true, qos: 1 });
  }

  /** Publishes many documents with a bounded number in flight (the broker queues the rest in memory). */
  async function publishAll(documents: readonly { deviceId: string; document: SignedDocument<DesiredStatePayload> }[]): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(PUBLISH_CONCURRENCY, documents.length) }, async () => {
        for (let item = documents[next++]; item; item = documents[next++]) await publish(item.deviceId, item.document);
      }),
    );
  }

  return {
    async assign(deviceId, change, actor) {
      const manifests = await manifestsFor(change);
      const [document] = await db.transaction().execute(async (trx) => {
        const documents = await writeDocuments(trx, [deviceId], change, manifests);
        const signed = documents[0] as { document: SignedDocument<DesiredStatePayload>; previous?: DesiredStatePayload };
        await audit(trx, {
          actor,
          action: change.rollback ? 'device.desired.rollback' : 'device.desired.set',
          target: `device:${deviceId}`,
          before: signed.previous ? { sequence: signed.previous.sequence, models: describe(signed.previous) } : undefined,
          after: { sequence: signed.document.payload.sequence, models: describe(signed.document.payload), remove: change.remove ?? [] },
        });
        return documents;
      });
      if (!document) throw new EdgefleetError('EF_INTERNAL_ERROR', 'no document was written');
      await publish(deviceId, document.document);
      return document.document;
    },

    async assignMany(deviceIds, change, actor, target) {
      if (deviceIds.length === 0) return;
      const manifests = await manifestsFor(change);
      const documents = await db.transaction().execute(async (trx) => {
        const written = await writeDocuments(trx, deviceIds, change, manifests);
        await audit(trx, {
          actor,
          action: change.rollback ? 'device.desired.rollback' : 'device.desired.set',
          target,
          after: { devices: deviceIds.length, set: (change.set ?? []).map((m) => `${m.name}@${m.version}`), remove: change.remove ?? [] },
        });
        return written;
      });
      await publishAll(documents.map(({ deviceId, document }) => ({ deviceId, document })));
    },

    async currentVersions(deviceIds, model) {
      const versions = new Map<string, string | null>(deviceIds.map((id) => [id, null]));
      for (let i = 0; i < deviceIds.length; i += CHUNK) {
        const rows = await db
          .selectFrom('device_desired')
          .select(['device_id', 'document'])
          .where('device_id', 'in', deviceIds.slice(i, i + CHUNK))
          .execute();
        for (const row of rows) {
          const payload = (JSON.parse(row.document) as SignedDocument<DesiredStatePayload>).payload;
          versions.set(row.device_id, payload.models.find((m) => m.manifest.payload.name === model)?.manifest.payload.version ?? null);
        }
      }
      return versions;
    },

    async current(deviceId) {
      const row = await db.selectFrom('device_desired').select('document').where('device_id', '=', deviceId).executeTakeFirst();
      return row ? (JSON.parse(row.document) as SignedDocument<DesiredStatePayload>) : undefined;
    },

    async republishAll() {
      const rows = await db
        .selectFrom('device_desired')
        .innerJoin('devices', 'devices.id', 'device_desired.device_id')
        .select(['device_id', 'document'])
        .where('devices.status', '=', 'active')
        .execute();
      await publishAll(
        rows.map((row) => ({ deviceId: row.device_id, document: JSON.parse(row.document) as SignedDocument<DesiredStatePayload> })),
      );
      return rows.length;
    },
  };
}

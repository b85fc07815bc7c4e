/**
 * (About 415 lines: writing, signing, publishing and re-publishing documents share one cache of
 * manifests and the retry state of failed publishes; splitting them would pass both around.)
 *
 * Desired state per device: which model versions it should run. Each change writes a new signed
 * document with a higher sequence (in one transaction with its audit entry), then publishes it
 * retained on the device's desired topic. On start every stored document is published again, so a
 * broker without persistence still gives each (re)connecting device its current state.
 */
import {
  compareSemver,
  createDesiredState,
  type DesiredStatePayload,
  EdgefleetError,
  encodeMessage,
  type ManifestPayload,
  MESSAGE_LIMITS,
  type ReportedState,
  type SignedDocument,
  signDesiredState,
  signManifest,
  utf8Encode,
} from '@edgefleet/protocol';
import type { Kysely, Transaction } from 'kysely';
import { audit } from '../audit/index.ts';
import type { FleetBroker } from '../broker/index.ts';
import type { FleetKeys } from '../keys/index.ts';
import type { Database, DeviceDesiredTable } from '../store/schema.ts';

/** Another writer wrote a device's next document first: the transaction is run again on what it wrote. */
class SequenceRace extends Error {
  constructor() {
    super('another writer changed a desired state at the same time');
    this.name = 'SequenceRace';
  }
}

/** Runs a document-writing transaction again (on fresh reads) when another writer won a race; a few times at most. */
async function raceFree<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (error) {
      // 40P01: PostgreSQL broke a deadlock by aborting this transaction; it may simply run again.
      const deadlock = (error as { code?: string }).code === '40P01';
      if (deadlock && attempt < 8) continue;
      if (!(error instanceof SequenceRace) || attempt >= 8) {
        if (error instanceof SequenceRace) {
          throw new EdgefleetError('EF_ROLLOUT_CONFLICT', 'a desired state kept changing under this write (8 attempts): retry the request');
        }
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 10 * attempt));
    }
  }
}

/** One model of a desired-state document: its signed manifest and the rollout that set it. */
export type DesiredEntry = DesiredStatePayload['models'][number];

export interface DesiredChange {
  /** Models to run at these versions (manifests from the registry). */
  readonly set?: readonly {
    readonly name: string;
    readonly version: string;
    readonly rolloutId?: string;
    /** A candidate version of the same model to run in shadow beside it. */
    readonly shadow?: { readonly version: string; readonly rate: number };
  }[];
  /** Entries put back exactly as they were (a rollback to what a rollout replaced). */
  readonly restore?: readonly DesiredEntry[];
  readonly remove?: readonly string[];
  /** The new versions may be older than what runs (a signed rollback). */
  readonly rollback?: boolean;
}

/** Devices whose document was written, and those refused with a code (nothing written for them). */
export interface AssignResult {
  readonly written: readonly string[];
  readonly refused: readonly { readonly deviceId: string; readonly code: 'EF_DESIRED_STATE_TOO_LARGE'; readonly message: string }[];
}

export interface DesiredStateService {
  assign(deviceId: string, change: DesiredChange, actor: string): Promise<SignedDocument<DesiredStatePayload>>;
  /**
   * The same change for many devices in one transaction with one audit entry (a rollout stage):
   * thousands of devices cost one commit, not thousands. A device whose document would exceed the
   * broker's limit is refused (nothing written for it) rather than failing the others; `inTransaction`
   * records the outcome in the same transaction as the documents, so that what was written and
   * what the caller believes was written never differ.
   */
  assignMany(
    deviceIds: readonly string[],
    change: DesiredChange,
    actor: string,
    target: string,
    inTransaction?: (trx: Transaction<Database>, result: AssignResult) => Promise<void>,
  ): Promise<AssignResult>;
  current(deviceId: string): Promise<SignedDocument<DesiredStatePayload> | undefined>;
  /** The entry of `model` in each device's current document (null: none). */
  currentEntries(deviceIds: readonly string[], model: string): Promise<Map<string, DesiredEntry | null>>;
  /**
   * The highest version of `model` each device runs or is meant to run: its desired entry, and
   * what it reports (active version and version floor). Below it, a device installs only a signed
   * rollback.
   */
  versionsRun(
    deviceIds: readonly string[],
    model: string,
    entries?: ReadonlyMap<string, DesiredEntry | null>,
  ): Promise<Map<string, string>>;
  /** Publishes every stored document (retained): after a start, or to a fresh external broker. */
  republishAll(): Promise<number>;
  /**
   * Publishes these devices' stored documents again (retained): a replica that died between
   * writing documents and publishing them left them unsent; whoever drives the rollout next sends them.
   */
  republish(deviceIds: readonly string[]): Promise<number>;
  /** Stops retrying documents whose publish failed (the server is closing). */
  stop(): void;
}

const PUBLISH_CONCURRENCY = 256;
/** Rows per statement: SQLite allows 32,766 bound values, PostgreSQL 65,535. */
const CHUNK = 500;

/**
 * Refuses a plain downgrade (THREATS 23): devices would refuse it one by one
 * (EF_MODEL_VERSION_ROLLBACK); the server says so at once and names the signed way back.
 */
export function checkNotDowngrade(model: string, version: string, running: ReadonlyMap<string, string>, rollback: boolean): void {
  if (rollback) return;
  const newer = [...running].filter(([, current]) => compareSemver(version, current) < 0).map(([deviceId]) => deviceId);
  if (newer.length === 0) return;
  const first = newer[0] as string;
  throw new EdgefleetError(
    'EF_MODEL_DOWNGRADE',
    `${model}@${version} is older than ${model}@${running.get(first)}, which device ${newer.slice(0, 5).join(', ')}${newer.length > 5 ? ` and ${newer.length - 5} more` : ''} run${newer.length === 1 ? 's' : ''}; to go back, send it as a signed rollback with "rollback": true`,
    { details: { devices: newer.length } },
  );
}

/** Re-sign a manifest whose validity ends within this margin, so devices can still install it. */
const RESIGN_MARGIN_MS = 30 * 24 * 3600 * 1000;

export function createDesiredStateService(options: {
  db: Kysely<Database>;
  keys: FleetKeys;
  broker: () => FleetBroker;
  topic: (deviceId: string) => string;
  manifestTtlMs: number;
  desiredTtlMs?: number;
  /** The largest document the broker delivers, in bytes (its message limit). */
  maxDocumentBytes?: number;
  /**
   * Lock the devices' rows while their next documents are written (PostgreSQL, where replicas
   * write concurrently): writers of one device queue instead of racing. SQLite writes one
   * transaction at a time anyway.
   */
  lockDevices?: boolean;
  /** Pause before a failed publish is tried again; default 5 s. */
  retryPublishMs?: number;
  log?: { warn(obj: object, msg: string): void };
  /** The server's clock: documents are issued, records stamped and audited by it. */
  now?: () => number;
}): DesiredStateService {
  const now = options.now ?? Date.now;
  const maxDocumentBytes = Math.min(options.maxDocumentBytes ?? MESSAGE_LIMITS.desired, MESSAGE_LIMITS.desired);
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
    const fresh = refreshed(manifest);
    if (fresh === manifest) return manifest;
    await db
      .updateTable('model_versions')
      .set({ manifest: JSON.stringify(fresh) })
      .where('name', '=', name)
      .where('version', '=', version)
      .execute();
    return fresh;
  }

  /** The manifest as is, or signed again with a new validity when it would expire soon. */
  function refreshed(manifest: SignedDocument<ManifestPayload>): SignedDocument<ManifestPayload> {
    const at = now();
    if (Date.parse(manifest.payload.expiresAt) - at > RESIGN_MARGIN_MS) return manifest;
    return signManifest(
      {
        ...manifest.payload,
        issuedAt: new Date(at).toISOString().replace('.000Z', 'Z'),
        expiresAt: new Date(at + options.manifestTtlMs).toISOString().replace('.000Z', 'Z'),
      },
      [keys.signing],
    );
  }

  async function manifestsFor(change: DesiredChange): Promise<DesiredEntry[]> {
    const set = await Promise.all(
      (change.set ?? []).map(async (m) => ({
        manifest: await manifestFor(m.name, m.version),
        ...(m.rolloutId ? { rolloutId: m.rolloutId } : {}),
        ...(m.shadow ? { shadow: { manifest: await manifestFor(m.name, m.shadow.version), rate: m.shadow.rate } } : {}),
      })),
    );
    const restored = (change.restore ?? []).map((entry) => ({ ...entry, manifest: refreshed(entry.manifest) }));
    return [...set, ...restored] as DesiredEntry[];
  }

  function describe(payload: DesiredStatePayload): string[] {
    return payload.models.map((m) => `${m.manifest.payload.name}@${m.manifest.payload.version}`);
  }

  interface Written {
    deviceId: string;
    document: SignedDocument<DesiredStatePayload>;
    previous?: DesiredStatePayload;
  }

  /**
   * Writes the next document of each device (inside the caller's transaction) and returns them; a
   * device whose document would exceed the broker's limit keeps its current one and is refused.
   */
  async function writeDocuments(
    trx: Transaction<Database>,
    deviceIds: readonly string[],
    change: DesiredChange,
    entries: readonly DesiredEntry[],
  ): Promise<{ written: Written[]; refused: AssignResult['refused'][number][] }> {
    const known = new Set<string>();
    const rows = new Map<string, { sequence: number; document: string }>();
    // In id order, so two writers locking overlapping sets cannot deadlock.
    const ordered = options.lockDevices ? [...deviceIds].sort() : deviceIds;
    for (let i = 0; i < ordered.length; i += CHUNK) {
      const chunk = ordered.slice(i, i + CHUNK);
      const devices = trx.selectFrom('devices').select('id').where('id', 'in', chunk);
      for (const d of await (options.lockDevices ? devices.orderBy('id').forUpdate() : devices).execute()) known.add(d.id);
      for (const r of await trx
        .selectFrom('device_desired')
        .select(['device_id', 'sequence', 'document'])
        .where('device_id', 'in', chunk)
        .execute()) {
        rows.set(r.device_id, { sequence: Number(r.sequence), document: r.document });
      }
    }
    const changed = new Set([...entries.map((m) => m.manifest.payload.name), ...(change.remove ?? [])]);
    const written: Written[] = [];
    const refused: AssignResult['refused'][number][] = [];
    const issued = now();
    const updatedAt = new Date(issued).toISOString();
    const upserts: DeviceDesiredTable[] = [];
    for (const deviceId of deviceIds) {
      if (!known.has(deviceId)) throw new EdgefleetError('EF_DEVICE_UNKNOWN', `no device "${deviceId}"`);
      const row = rows.get(deviceId);
      const previous = row ? (JSON.parse(row.document) as SignedDocument<DesiredStatePayload>).payload : undefined;
      // Models the change does not touch keep their current entry.
      const kept = (previous?.models ?? []).filter((m) => !changed.has(m.manifest.payload.name));
      const sequence = (row?.sequence ?? 0) + 1;
      const payload = createDesiredState({
        deviceId,
        sequence,
        models: [...kept, ...entries],
        remove: [...(change.remove ?? [])],
        rollback: change.rollback ?? false,
        now: issued,
        ...(options.desiredTtlMs ? { ttlMs: options.desiredTtlMs } : {}),
      });
      const document = signDesiredState(payload, [keys.signing]);
      const serialized = JSON.stringify(document);
      const size = utf8Encode(serialized).length;
      if (size > maxDocumentBytes) {
        refused.push({
          deviceId,
          code: 'EF_DESIRED_STATE_TOO_LARGE',
          message: `the desired state of ${deviceId} with ${payload.models.length} models would be ${size} bytes, above the broker limit of ${maxDocumentBytes}`,
        });
        continue;
      }
      upserts.push({ device_id: deviceId, sequence, document: serialized, updated_at: updatedAt });
      written.push({ deviceId, document, ...(previous ? { previous } : {}) });
    }
    for (let i = 0; i < upserts.length; i += CHUNK) {
      const chunk = upserts.slice(i, i + CHUNK);
      const result = await trx
        .insertInto('device_desired')
        .values(chunk)
        .onConflict((conflict) =>
          conflict
            .column('device_id')
            .doUpdateSet((eb) => ({
              sequence: eb.ref('excluded.sequence'),
              document: eb.ref('excluded.document'),
              updated_at: eb.ref('excluded.updated_at'),
            }))
            // Only over the document this one was computed from: two writers (replicas, or an admin
            // beside the rollout engine) that read the same sequence cannot both write the next.
            .where((eb) => eb('device_desired.sequence', '<', eb.ref('excluded.sequence'))),
        )
        .executeTakeFirst();
      if (Number(result.numInsertedOrUpdatedRows ?? 0n) !== chunk.length) throw new SequenceRace();
    }
    return { written, refused };
  }

  async function publish(deviceId: string, document: SignedDocument<DesiredStatePayload>): Promise<void> {
    await options.broker().publish(options.topic(deviceId), encodeMessage('desired', document), { retain: true, qos: 1 });
  }

  /**
   * Devices whose current document is stored but whose publish failed (a broker hiccup): published
   * again, from the store, until it goes through. A written document is never rewritten for this.
   */
  const unpublished = new Set<string>();
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  function retryLater(deviceId: string, error: unknown): void {
    unpublished.add(deviceId);
    if (retryTimer || stopped) return;
    // Once per round, however many devices failed with it (a broker that is down fails them all).
    options.log?.warn({ deviceId, err: error }, 'could not publish desired-state documents; they are published again shortly');
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      const ids = [...unpublished];
      unpublished.clear();
      void (async () => {
        for (const id of ids) {
          const document = await service.current(id).catch(() => undefined);
          if (document) await publish(id, document).catch((error: unknown) => retryLater(id, error));
        }
      })();
    }, options.retryPublishMs ?? 5000);
    (retryTimer as { unref?: () => void }).unref?.();
  }

  /** The stored documents of these devices (those that have one), read a chunk at a time. */
  async function storedDocuments(
    deviceIds: readonly string[],
  ): Promise<{ deviceId: string; document: SignedDocument<DesiredStatePayload> }[]> {
    const documents: { deviceId: string; document: SignedDocument<DesiredStatePayload> }[] = [];
    for (let i = 0; i < deviceIds.length; i += CHUNK) {
      const rows = await db
        .selectFrom('device_desired')
        .select(['device_id', 'document'])
        .where('device_id', 'in', deviceIds.slice(i, i + CHUNK))
        .execute();
      for (const row of rows)
        documents.push({ deviceId: row.device_id, document: JSON.parse(row.document) as SignedDocument<DesiredStatePayload> });
    }
    return documents;
  }

  /** Publishes many documents with a bounded number in flight (the broker queues the rest in memory). */
  async function publishAll(documents: readonly { deviceId: string; document: SignedDocument<DesiredStatePayload> }[]): Promise<void> {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(PUBLISH_CONCURRENCY, documents.length) }, async () => {
        for (let item = documents[next++]; item; item = documents[next++]) {
          const { deviceId } = item;
          await publish(deviceId, item.document).catch((error: unknown) => retryLater(deviceId, error));
        }
      }),
    );
  }

  const service: DesiredStateService = {
    async assign(deviceId, change, actor) {
      const entries = await manifestsFor(change);
      const signed = await raceFree(() =>
        db.transaction().execute(async (trx) => {
          const { written, refused } = await writeDocuments(trx, [deviceId], change, entries);
          const [first] = refused;
          if (first) throw new EdgefleetError(first.code, first.message);
          const one = written[0] as Written;
          await audit(
            trx,
            {
              actor,
              action: change.rollback ? 'device.desired.rollback' : 'device.desired.set',
              target: `device:${deviceId}`,
              before: one.previous ? { sequence: one.previous.sequence, models: describe(one.previous) } : undefined,
              after: { sequence: one.document.payload.sequence, models: describe(one.document.payload), remove: change.remove ?? [] },
            },
            new Date(now()),
          );
          return one;
        }),
      );
      await publish(deviceId, signed.document).catch((error: unknown) => retryLater(deviceId, error));
      return signed.document;
    },

    async assignMany(deviceIds, change, actor, target, inTransaction) {
      if (deviceIds.length === 0) return { written: [], refused: [] };
      const entries = await manifestsFor(change);
      const { documents, result } = await raceFree(() =>
        db.transaction().execute(async (trx) => {
          const { written, refused } = await writeDocuments(trx, deviceIds, change, entries);
          const result: AssignResult = { written: written.map((w) => w.deviceId), refused };
          if (written.length > 0) {
            await audit(
              trx,
              {
                actor,
                action: change.rollback ? 'device.desired.rollback' : 'device.desired.set',
                target,
                after: {
                  devices: written.length,
                  set: entries.map((m) => `${m.manifest.payload.name}@${m.manifest.payload.version}`),
                  remove: change.remove ?? [],
                },
              },
              new Date(now()),
            );
          }
          await inTransaction?.(trx, result);
          return { documents: written, result };
        }),
      );
      await publishAll(documents.map(({ deviceId, document }) => ({ deviceId, document })));
      return result;
    },

    async currentEntries(deviceIds, model) {
      const entries = new Map<string, DesiredEntry | null>(deviceIds.map((id) => [id, null]));
      for (const { deviceId, document } of await storedDocuments(deviceIds)) {
        entries.set(deviceId, document.payload.models.find((m) => m.manifest.payload.name === model) ?? null);
      }
      return entries;
    },

    async versionsRun(deviceIds, model, known) {
      const highest = new Map<string, string>();
      const raise = (deviceId: string, version: string | undefined) => {
        const seen = highest.get(deviceId);
        if (version !== undefined && (seen === undefined || compareSemver(version, seen) > 0)) highest.set(deviceId, version);
      };
      for (const [deviceId, entry] of known ?? (await service.currentEntries(deviceIds, model)))
        raise(deviceId, entry?.manifest.payload.version);
      for (let i = 0; i < deviceIds.length; i += CHUNK) {
        const rows = await db
          .selectFrom('devices')
          .select(['id', 'reported'])
          .where('id', 'in', deviceIds.slice(i, i + CHUNK))
          .where('reported', 'is not', null)
          .execute();
        for (const row of rows) {
          const reported = (JSON.parse(row.reported as string) as ReportedState).models.find((m) => m.name === model);
          raise(row.id, reported?.active?.version);
          raise(row.id, reported?.floor);
        }
      }
      return highest;
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

    async republish(deviceIds) {
      const documents = await storedDocuments(deviceIds);
      await publishAll(documents);
      return documents.length;
    },

    stop() {
      stopped = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
    },
  };
  return service;
}

/**
 * Each device's history: the events it reports (installs, acceptance, failures, rollbacks, with
 * codes and times), kept one row per event. Writes are batched off the broker's path; a device
 * resends an event it had no acknowledgement for, and (device, boot, seq) keeps each one once.
 * Download progress is not kept (it is a progress bar, not history).
 */
import type { DeviceEvent, DeviceTopic } from '@edgefleet/protocol';
import type { Insertable, Kysely } from 'kysely';
import type { Database, DeviceEventsTable } from '../store/schema.ts';

const NOT_KEPT = new Set(['download-progress']);
/** Rows per INSERT: well under SQLite's 32,766 bound parameters at 11 columns a row. */
const BATCH = 500;

export interface DeviceHistory {
  observe(address: DeviceTopic, message: unknown): void;
  /** Writes what is waiting now (routes call it before reading). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export function createDeviceHistory(options: {
  readonly db: Kysely<Database>;
  readonly log: { warn: (details: object, message: string) => void };
  readonly now?: () => number;
}): DeviceHistory {
  const { db, log } = options;
  const now = options.now ?? Date.now;
  let pending: Insertable<DeviceEventsTable>[] = [];
  let writing: Promise<void> = Promise.resolve();
  let scheduled = false;

  function write(): Promise<void> {
    scheduled = false;
    const rows = pending;
    pending = [];
    if (rows.length === 0) return writing;
    writing = writing.then(async () => {
      try {
        for (let i = 0; i < rows.length; i += BATCH) {
          await db
            .insertInto('device_events')
            .values(rows.slice(i, i + BATCH))
            .onConflict((c) => c.columns(['device_id', 'boot_id', 'seq']).doNothing())
            .execute();
        }
      } catch (error) {
        log.warn({ err: error, events: rows.length }, 'device events not stored');
      }
    });
    return writing;
  }

  return {
    observe(address, message) {
      if (address.kind !== 'events' || message === undefined) return;
      const event = message as DeviceEvent;
      if (NOT_KEPT.has(event.kind)) return;
      pending.push({
        device_id: address.deviceId,
        boot_id: event.bootId,
        seq: event.seq,
        at: event.at,
        received_at: new Date(now()).toISOString(),
        kind: event.kind,
        model: event.model?.name ?? null,
        version: event.model?.version ?? null,
        rollout_id: event.rolloutId ?? null,
        error_code: event.error?.code ?? null,
        body: JSON.stringify(event),
      });
      if (!scheduled) {
        scheduled = true;
        setImmediate(write);
      }
    },
    flush: () => write(),
    close: () => write(),
  };
}

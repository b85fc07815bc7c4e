/**
 * Telemetry ingest: windows from devices are stored once each and then acknowledged.
 *
 * A window arrives decoded and schema-checked by the broker. It is refused (and counted) when its
 * deviceId is not the device that published it, or when its profiles do not survive
 * `@edgefleet/drift`'s checks. Accepted windows gather for `batchMs` and are written in one
 * transaction, `insert … on conflict do nothing` on (device, boot, seq): a window delivered twice
 * (a lost ack, a reconnect) is counted once. Only after that commit (synchronous=FULL) does the
 * device get its `telemetry-ack`, so whatever was acknowledged survives a server crash; whatever
 * was not is sent again by the device.
 */
import { checkWire } from '@edgefleet/drift';
import { type DeviceTopic, encodeMessage, type TelemetryAck, type TelemetryWindow, type TopicScheme } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import { BrokerStoppingError, type FleetBroker } from '../broker/index.ts';
import type { ServerMetrics } from '../metrics/index.ts';
import type { Database, TelemetryWindowsTable } from '../store/schema.ts';

export interface TelemetryIngest {
  /**
   * Feeds a device message; only `telemetry` ones are taken. `payload` is the message as the device
   * sent it (already decoded and checked as `message`): stored as it is, not serialized again.
   */
  observe(address: DeviceTopic, message: unknown, payload?: Uint8Array): void;
  /** Writes and acknowledges what is waiting now. */
  flush(): Promise<void>;
  readonly counts: { readonly stored: number; readonly duplicates: number; readonly refused: number };
  close(): Promise<void>;
}

/**
 * A shadow summary is what a device added up (runtime telemetry/window.ts): one latency ratio per
 * input compared, rows agreeing and their top-3 overlap at most the rows compared. One that cannot
 * be that is refused here, so that rollout gates and listings only ever read true sums.
 */
function checkShadowSummary(shadow: NonNullable<TelemetryWindow['shadow']>): void {
  checkWire(shadow.latencyRatio);
  // A numeric profile that checks out holds `n` values (the count its moments add up to).
  const seen = shadow.latencyRatio.t === 'n' ? shadow.latencyRatio.n : -1;
  if (seen !== shadow.runs) {
    throw new Error(`shadow summary: ${shadow.runs} inputs compared, but its latency ratio sketch holds ${seen} values`);
  }
  if (shadow.agreed > shadow.rows || shadow.overlap > shadow.rows) {
    throw new Error(`shadow summary: ${shadow.agreed} rows agreed and an overlap of ${shadow.overlap} out of ${shadow.rows} rows compared`);
  }
}

/**
 * Acknowledgements waiting for their PUBACK at once; more wait their turn in a queue. Storing never
 * waits for them: over an external broker, the PUBACKs come back on the server's one connection
 * behind every device message already sent to it, so a batch that waited for its predecessor's
 * PUBACKs waited for the whole backlog (measured: a burst was stored in one batch at the end).
 */
const ACKS_IN_FLIGHT = 1024;

export function createTelemetryIngest(options: {
  db: Kysely<Database>;
  broker: () => FleetBroker;
  topics: TopicScheme;
  metrics: ServerMetrics;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  batchMs?: number;
  now?: () => number;
}): TelemetryIngest {
  const { db, topics, metrics, log } = options;
  const batchMs = options.batchMs ?? 50;
  const now = options.now ?? Date.now;
  // The rows to write, not the decoded windows: a window's objects die young, only its text waits.
  let waiting: Omit<TelemetryWindowsTable, 'received_at'>[] = [];
  const decoder = new TextDecoder();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let writing: Promise<void> = Promise.resolve();
  const counts = { stored: 0, duplicates: 0, refused: 0 };

  function refuse(reason: string, deviceId: string, detail: string): void {
    counts.refused++;
    metrics.mqttRefused(`telemetry-${reason}`);
    log.warn({ deviceId, reason, detail }, 'refused a telemetry window');
  }

  /** Acknowledgements published and not yet confirmed by the broker, and those waiting their turn. */
  const inFlight = new Set<Promise<void>>();
  const queued: { deviceId: string; payload: Uint8Array }[] = [];
  /** settle() calls waiting for every acknowledgement to be confirmed. */
  const drainWaiters: (() => void)[] = [];
  function pump(): void {
    while (inFlight.size < ACKS_IN_FLIGHT && queued.length > 0) {
      const { deviceId, payload } = queued.shift() as { deviceId: string; payload: Uint8Array };
      const sent: Promise<void> = options
        .broker()
        .publish(topics.build('telemetry-ack', deviceId), payload, { qos: 1 })
        .catch((error: unknown) => {
          // Stored, not acknowledged: the device sends the window again and gets its ack then.
          if (error instanceof BrokerStoppingError) log.debug({ deviceId }, 'telemetry not acknowledged: the server is stopping');
          else log.warn({ err: error, deviceId }, 'could not acknowledge telemetry');
        })
        .finally(() => {
          inFlight.delete(sent);
          pump();
        });
      inFlight.add(sent);
    }
    if (inFlight.size === 0 && queued.length === 0) for (const resolve of drainWaiters.splice(0)) resolve();
  }

  /** Writes what is waiting (after what is being written) and starts its acknowledgements. */
  function write(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = undefined;
    writing = writing.then(async () => {
      if (waiting.length === 0) return;
      const batch = waiting;
      waiting = [];
      const receivedAt = new Date(now()).toISOString();
      const rows: TelemetryWindowsTable[] = batch.map((row) => ({ ...row, received_at: receivedAt }));
      let inserted = 0;
      try {
        await db.transaction().execute(async (trx) => {
          // 1,000 rows of 11 columns a statement: one round trip to PostgreSQL per 1,000 windows, and
          // well under both databases' limits on bound parameters (65,535; SQLite 32,766).
          for (let i = 0; i < rows.length; i += 1000) {
            const result = await trx
              .insertInto('telemetry_windows')
              .values(rows.slice(i, i + 1000))
              .onConflict((conflict) => conflict.columns(['device_id', 'boot_id', 'seq']).doNothing())
              .executeTakeFirst();
            inserted += Number(result.numInsertedOrUpdatedRows ?? 0);
          }
        });
      } catch (error) {
        // Not stored, not acknowledged: the devices keep the windows and send them again.
        log.warn({ err: error, windows: batch.length }, 'could not store telemetry windows');
        return;
      }
      counts.stored += inserted;
      counts.duplicates += batch.length - inserted;
      // One acknowledgement per device and boot, naming every sequence now stored (new or not).
      // A window delivered twice in one batch (a device's own resend plus its outbox) is named once.
      const acks = new Map<string, { deviceId: string; bootId: string; seqs: Set<number> }>();
      for (const row of batch) {
        const key = `${row.device_id}\n${row.boot_id}`;
        const ack = acks.get(key) ?? { deviceId: row.device_id, bootId: row.boot_id, seqs: new Set<number>() };
        ack.seqs.add(row.seq);
        acks.set(key, ack);
      }
      for (const { deviceId, bootId, seqs } of acks.values()) {
        const all = [...seqs];
        for (let i = 0; i < all.length; i += 1024) {
          const ack: TelemetryAck = { type: 'edgefleet.telemetry-ack/v1', deviceId, bootId, seqs: all.slice(i, i + 1024) };
          queued.push({ deviceId, payload: encodeMessage('telemetry-ack', ack) });
        }
      }
      // The next batch is written while these travel.
      pump();
    });
    // One failed batch must not stop the ones after it.
    writing = writing.catch((error: unknown) => log.warn({ err: error }, 'telemetry batch failed'));
    return writing;
  }

  /** Everything written so far, acknowledged (or its acknowledgement failed). */
  async function settle(): Promise<void> {
    await write();
    if (inFlight.size === 0 && queued.length === 0) return;
    await new Promise<void>((resolve) => drainWaiters.push(resolve));
  }

  return {
    observe(address, message, payload) {
      if (address.kind !== 'telemetry' || message === undefined) return;
      const window = message as TelemetryWindow;
      if (window.deviceId !== address.deviceId) {
        refuse('foreign', address.deviceId, `published as ${address.deviceId} but names device ${window.deviceId}`);
        return;
      }
      try {
        checkWire(window.latencyMs);
        for (const feature of window.features) checkWire(feature.profile);
        if (window.shadow) checkShadowSummary(window.shadow);
      } catch (error) {
        refuse('malformed', address.deviceId, (error as Error).message);
        return;
      }
      // The bytes the device sent are the window, checked: stored once, as they came.
      waiting.push({
        device_id: window.deviceId,
        boot_id: window.bootId,
        seq: window.seq,
        model: window.model.name,
        version: window.model.version,
        window_start: window.windowStart,
        window_end: window.windowEnd,
        runs: window.runs,
        dropped: window.dropped,
        body: payload ? decoder.decode(payload) : JSON.stringify(window),
      });
      if (waiting.length >= 1000) void write();
      else timer ??= setTimeout(() => void write(), batchMs);
    },
    flush: settle,
    counts,
    async close() {
      await settle();
    },
  };
}

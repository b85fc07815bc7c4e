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
import { CompiledQuery, type Kysely } from 'kysely';
import { BrokerStoppingError, type FleetBroker } from '../broker/index.ts';
import type { ServerMetrics } from '../metrics/index.ts';
import type { DialectKind } from '../store/migrations.ts';
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

const COLUMNS = [
  'device_id',
  'boot_id',
  'seq',
  'model',
  'version',
  'window_start',
  'window_end',
  'runs',
  'dropped',
  'body',
  'received_at',
] as const;
/** Rows a statement: 11,000 bound parameters, under both databases' limits (PostgreSQL 65,535; SQLite 32,766). */
const ROWS_PER_STATEMENT = 1000;

type WaitingRow = Omit<TelemetryWindowsTable, 'received_at'>;

/** By (device, boot, seq): the order in which a batch takes its rows' locks. */
function byKey(a: WaitingRow, b: WaitingRow): number {
  if (a.device_id !== b.device_id) return a.device_id < b.device_id ? -1 : 1;
  if (a.boot_id !== b.boot_id) return a.boot_id < b.boot_id ? -1 : 1;
  return a.seq - b.seq;
}

/**
 * `insert … on conflict do nothing` of `rows` rows, written out once per size: a batch is one
 * statement of up to 11,000 parameters, and building it through the query builder (a node per
 * value, compiled anew each time) was a tenth of the ingest's CPU.
 */
function insertStatement(dialect: DialectKind, rows: number): string {
  let n = 0;
  const placeholder = dialect === 'postgres' ? () => `$${++n}` : () => '?';
  const tuples = Array.from({ length: rows }, () => `(${COLUMNS.map(placeholder).join(', ')})`);
  return `insert into "telemetry_windows" (${COLUMNS.map((c) => `"${c}"`).join(', ')}) values ${tuples.join(', ')} on conflict ("device_id", "boot_id", "seq") do nothing`;
}

/**
 * Acknowledgements handed to the broker and not yet written out, at once; more wait their turn in
 * a queue. Storing never waits for them: over an external broker, answers come back on the
 * server's one connection behind every device message already sent to it, so a batch that waited
 * for its predecessor's acknowledgements waited for the whole backlog (measured: a burst was
 * stored in one batch at the end). Few: the embedded broker (aedes) delivers 100 messages at once
 * and queues the rest, devices' messages with them, and it drains that queue recursively; with
 * 1,024 acknowledgements waiting on slow readers the queue grew until the server's stack overflowed.
 */
const ACKS_IN_FLIGHT = 64;

export function createTelemetryIngest(options: {
  db: Kysely<Database>;
  broker: () => FleetBroker;
  topics: TopicScheme;
  metrics: ServerMetrics;
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  batchMs?: number;
  /** Which database: how statements are written, and how many batches are written at once. */
  dialect?: DialectKind;
  /**
   * Batches written at once, each in its own transaction of at most `maxBatch` windows. SQLite
   * writes one at a time anyway: one transaction of everything waiting, one fsync. PostgreSQL
   * (default 3 batches of 1,000) takes several on as many connections and cores, so a backlog is
   * not written by one core while the others wait.
   */
  writers?: number;
  maxBatch?: number;
  now?: () => number;
}): TelemetryIngest {
  const { db, topics, metrics, log } = options;
  const batchMs = options.batchMs ?? 50;
  const dialect = options.dialect ?? 'sqlite';
  const writers = options.writers ?? (dialect === 'postgres' ? 3 : 1);
  const maxBatch = options.maxBatch ?? (dialect === 'postgres' ? ROWS_PER_STATEMENT : Number.POSITIVE_INFINITY);
  const fullStatement = insertStatement(dialect, ROWS_PER_STATEMENT);
  const now = options.now ?? Date.now;
  // The rows to write, not the decoded windows: a window's objects die young, only its text waits.
  let waiting: WaitingRow[] = [];
  const decoder = new TextDecoder();
  let timer: ReturnType<typeof setTimeout> | undefined;
  /** Batches being written. */
  const active = new Set<Promise<void>>();
  /** Set while flush() waits: every window waiting is written at once, not at the next tick of the timer. */
  let flushing = 0;
  const counts = { stored: 0, duplicates: 0, refused: 0 };

  function refuse(reason: string, deviceId: string, detail: string): void {
    counts.refused++;
    metrics.mqttRefused(`telemetry-${reason}`);
    log.warn({ deviceId, reason, detail }, 'refused a telemetry window');
  }

  /** Acknowledgements handed to the broker and not yet sent, and those waiting their turn. */
  const inFlight = new Set<Promise<void>>();
  const queued: { deviceId: string; payload: Uint8Array }[] = [];
  /** settle() calls waiting for every acknowledgement to be sent. */
  const drainWaiters: (() => void)[] = [];
  function pump(): void {
    while (inFlight.size < ACKS_IN_FLIGHT && queued.length > 0) {
      const { deviceId, payload } = queued.shift() as { deviceId: string; payload: Uint8Array };
      const sent: Promise<void> = options
        .broker()
        // QoS 0: an acknowledgement is a hint that can be given again, never the only copy of
        // anything. One lost with a connection leaves the windows in the device's outbox; it sends
        // them again (after 30 s, or when it reconnects), they are counted once and acknowledged
        // again. At QoS 1 its PUBACK round trip cost the broker, the server and the device more
        // than a fifth of the ingest path's CPU (measured through Mosquitto).
        .publish(topics.build('telemetry-ack', deviceId), payload, { qos: 0 })
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

  /** Starts writing what is waiting, as many batches as there are writers free. */
  function write(): void {
    if (timer) clearTimeout(timer);
    timer = undefined;
    while (active.size < writers && waiting.length > 0) {
      const batch = waiting.length <= maxBatch ? waiting : waiting.slice(0, maxBatch);
      waiting = batch === waiting ? [] : waiting.slice(maxBatch);
      const written: Promise<void> = store(batch)
        // One failed batch must not stop the ones after it.
        .catch((error: unknown) => log.warn({ err: error }, 'telemetry batch failed'))
        .finally(() => {
          active.delete(written);
          // A backlog is written at once; a few windows wait for the timer (one batch, not many).
          if (waiting.length >= Math.min(maxBatch, 1000) || (waiting.length > 0 && (timer === undefined || flushing > 0))) write();
        });
      active.add(written);
    }
  }

  /** Stores one batch in one transaction, then queues its acknowledgements. */
  async function store(batch: readonly WaitingRow[]): Promise<void> {
    const receivedAt = new Date(now()).toISOString();
    // In key order when batches are written side by side (PostgreSQL): two that share a window (a
    // device's resend) take their row locks in the same order, so neither waits on the other in a
    // deadlock. One writer at a time needs no order.
    const rows = writers > 1 ? [...batch].sort(byKey) : batch;
    let inserted = 0;
    try {
      await db.transaction().execute(async (trx) => {
        // One round trip per 1,000 windows.
        for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
          const chunk = rows.slice(i, i + ROWS_PER_STATEMENT);
          const parameters: unknown[] = [];
          // In COLUMNS order.
          for (const r of chunk) {
            parameters.push(
              r.device_id,
              r.boot_id,
              r.seq,
              r.model,
              r.version,
              r.window_start,
              r.window_end,
              r.runs,
              r.dropped,
              r.body,
              receivedAt,
            );
          }
          const text = chunk.length === ROWS_PER_STATEMENT ? fullStatement : insertStatement(dialect, chunk.length);
          const result = await trx.executeQuery(CompiledQuery.raw(text, parameters));
          inserted += Number(result.numAffectedRows ?? 0);
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
  }

  /** Everything written so far, acknowledged (or its acknowledgement failed). */
  async function settle(): Promise<void> {
    flushing++;
    try {
      write();
      while (active.size > 0) await Promise.race(active);
    } finally {
      flushing--;
    }
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
      if (waiting.length >= Math.min(maxBatch, 1000)) write();
      else timer ??= setTimeout(write, batchMs);
    },
    flush: settle,
    counts,
    async close() {
      await settle();
    },
  };
}

/**
 * The device's telemetry outbox: closed windows wait here, on disk or in IndexedDB, until the
 * server says it stored them (a `telemetry-ack` naming their boot and sequence). Bounded: past
 * `limit` windows the oldest is dropped and counted, and the count rides on the next window sent
 * (`dropped`). Appending never waits on the network; inference never waits on appending.
 */
import type { ExecutionProvider, TelemetryWindow } from '@edgefleet/protocol';
import type { ClosedWindow } from '@edgefleet/runtime/core';

export interface QueuedWindow {
  /** Orders the queue (append order) and names the entry in the store. */
  readonly key: string;
  readonly window: TelemetryWindow;
}

export interface TelemetryQueueStore {
  /** Stores a window durably; drops the oldest past the limit (and counts them). */
  append(window: TelemetryWindow): Promise<void>;
  /** Windows waiting, oldest first. */
  list(): Promise<QueuedWindow[]>;
  /** Forgets these windows (the server stored them). */
  remove(keys: readonly string[]): Promise<void>;
  /** Windows dropped by overflow and not yet reported; `take` resets the count. */
  takeDropped(): Promise<number>;
}

/** A sortable key: append time, then boot and sequence (unique per window). */
export function queueKey(window: Pick<TelemetryWindow, 'bootId' | 'seq'>, appendedAt: number): string {
  return `${String(appendedAt).padStart(15, '0')}-${window.bootId}-${String(window.seq).padStart(12, '0')}`;
}

export const TELEMETRY_QUEUE_DEFAULTS = {
  /** At one window a minute per model, a day and a half offline. */
  limit: 2000,
} as const;

/** What a state store read: a sequence, or 0 when what it read is not one. */
export function sequenceOf(state: unknown): number {
  const value = (state as { lastSequence?: unknown } | null | undefined)?.lastSequence ?? state;
  return Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : 0;
}

/** An outbox entry that can be sent: a telemetry window message (anything else is unreadable). */
export function isQueuedWindow(value: unknown): value is TelemetryWindow {
  const window = value as Partial<TelemetryWindow> | null;
  return (
    typeof window === 'object' &&
    window !== null &&
    window.type === 'edgefleet.telemetry/v1' &&
    typeof window.bootId === 'string' &&
    Number.isSafeInteger(window.seq)
  );
}

/** Runs tasks one at a time, in order; a failed task does not stop the ones after it. */
export function createSerializer(): <T>(task: () => Promise<T>) => Promise<T> {
  let work: Promise<unknown> = Promise.resolve();
  return <T>(task: () => Promise<T>): Promise<T> => {
    const next = work.then(task, task);
    work = next.catch(() => undefined);
    return next;
  };
}

/** The protocol message for a window the runtime closed, as this device sends it. */
export function telemetryMessage(
  closed: ClosedWindow & { readonly executionProvider: ExecutionProvider },
  from: { readonly deviceId: string; readonly bootId: string; readonly seq: number; readonly dropped: number },
): TelemetryWindow {
  return {
    type: 'edgefleet.telemetry/v1',
    deviceId: from.deviceId,
    bootId: from.bootId,
    seq: from.seq,
    windowStart: closed.start,
    windowEnd: closed.end,
    model: closed.model,
    executionProvider: closed.executionProvider,
    runs: closed.runs,
    errors: Object.entries(closed.errors)
      .slice(0, 64)
      .map(([code, count]) => ({ code, count })),
    latencyMs: closed.latencyMs as TelemetryWindow['latencyMs'],
    features: closed.features.slice(0, 512) as TelemetryWindow['features'],
    dropped: from.dropped,
    ...(closed.shadow
      ? { shadow: { ...closed.shadow, latencyRatio: closed.shadow.latencyRatio as NonNullable<TelemetryWindow['shadow']>['latencyRatio'] } }
      : {}),
  };
}

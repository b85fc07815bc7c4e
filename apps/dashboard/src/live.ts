/**
 * The server's events (GET /v1/events: server-sent events over fetch, so the token travels in a
 * header, never in a URL): one stream for the whole page, opened while some view listens and
 * reopened with backoff when it drops. No polling loop: views change when the server says so.
 */
import type { DriftScoredEvent, ItemOf } from '@edgefleet/client';
import { signal } from '@preact/signals';
import { session } from './session.ts';

export type RolloutSummary = ItemOf<'/v1/rollouts'>;
/** `null`: the stream (re)connected, so anything may have changed meanwhile. */
type Listener = (event: { kind: 'rollout'; rollout: RolloutSummary } | { kind: 'drift'; drift: DriftScoredEvent } | null) => void;

/** 'live' while the stream is open; the page shows it. */
export const liveState = signal<'off' | 'connecting' | 'live' | 'retrying'>('off');

const listeners = new Set<Listener>();
let stop: AbortController | undefined;
let idle: ReturnType<typeof setTimeout> | undefined;

async function run(controller: AbortController): Promise<void> {
  let delay = 500;
  while (!controller.signal.aborted) {
    const current = session.value;
    if (!current) break;
    liveState.value = 'connecting';
    try {
      for await (const event of current.client.events({ signal: controller.signal })) {
        if (event.event === 'ready') {
          liveState.value = 'live';
          delay = 500;
          // What changed while the stream was down is read again by each view.
          for (const listener of listeners) listener(null);
        } else if (event.event === 'rollout') {
          for (const listener of listeners) listener({ kind: 'rollout', rollout: event.data });
        } else if (event.event === 'drift') {
          for (const listener of listeners) listener({ kind: 'drift', drift: event.data });
        }
      }
    } catch {
      // Dropped or refused: try again after a while (the session ends it on 401 elsewhere).
    }
    if (controller.signal.aborted) break;
    liveState.value = 'retrying';
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15_000);
  }
  if (stop === controller) liveState.value = 'off';
}

function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  if (!stop) {
    stop = new AbortController();
    void run(stop);
  }
  clearTimeout(idle);
  return () => {
    listeners.delete(listener);
    // Kept a moment: a view that re-subscribes, or the next view, reuses the open stream.
    if (listeners.size === 0) {
      clearTimeout(idle);
      idle = setTimeout(() => {
        if (listeners.size > 0 || !stop) return;
        stop.abort();
        stop = undefined;
        liveState.value = 'off';
      }, 2000);
    }
  };
}

session.subscribe((current) => {
  if (!current && stop) {
    stop.abort();
    stop = undefined;
    liveState.value = 'off';
  }
});

/**
 * Calls `listener` with each rollout's new summary as it changes, and with null when the stream
 * (re)connects (read everything again: events may have been missed). Returns the unsubscribe.
 */
export function onRolloutChange(listener: (rollout: RolloutSummary | null) => void): () => void {
  return subscribe((event) => {
    if (event === null) listener(null);
    else if (event.kind === 'rollout') listener(event.rollout);
  });
}

/** Calls `listener` when a drift pass stored new scores of a version (null: reconnected). */
export function onDriftScored(listener: (drift: DriftScoredEvent | null) => void): () => void {
  return subscribe((event) => {
    if (event === null) listener(null);
    else if (event.kind === 'drift') listener(event.drift);
  });
}

/**
 * The runtime's telemetry recorder: one open window per model version (`name@version`, see
 * window.ts), closed after `windowMs` at the next run or on flush/close and emitted; a run's inputs
 * profiled on its call, its outputs and latency when it answers, its failure with its code. Sketch
 * updates are folded in one timer turn every 50 ms, off every run's path.
 */
import { EdgefleetError } from '@edgefleet/protocol';
import type { Feeds, Outputs } from '../engine/types.ts';
import type { ModelState, TelemetryEntry, TelemetryWindowEvent } from '../runtime/types.ts';
import type { InstalledVersion } from '../store/types.ts';
import { WindowProfile } from './window.ts';

export interface TelemetrySettings {
  readonly enabled: boolean;
  readonly windowMs: number;
  readonly profileEveryMs: number;
}

export interface TelemetryRecorder {
  readonly settings: TelemetrySettings;
  /** Counts a run that failed before reaching the engine (its feeds were refused). */
  recordFailure(state: ModelState, error: unknown, started: number): void;
  /** Profiles a run the engine has started: its inputs now, its outputs or failure when it answers. */
  track(state: ModelState, feeds: Feeds, running: Promise<Outputs>, started: number): void;
  /** Folds a shadow run of candidate `version` (or its failure, or a skipped sample) into the model's open window. */
  recordShadow(state: ModelState, version: string, outcome: Parameters<WindowProfile['recordShadow']>[1]): void;
  /** Closes every open window now and returns them (each is also emitted). */
  flush(): TelemetryWindowEvent[];
  /** Flushes and stops the drain timer. */
  close(): void;
}

export interface RecorderOptions {
  readonly settings: TelemetrySettings;
  readonly now: () => number;
  readonly emitWindow: (window: TelemetryWindowEvent) => void;
  /** Telemetry never fails a run: what goes wrong in it is reported here. */
  readonly onError: (error: unknown) => void;
}

export function createTelemetryRecorder(options: RecorderOptions): TelemetryRecorder {
  const { settings, now, emitWindow, onError } = options;
  /** The open telemetry window per model version (`name@version`). */
  const windows = new Map<string, TelemetryEntry>();

  function closeWindow(key: string, end: number): TelemetryWindowEvent | undefined {
    const entry = windows.get(key);
    windows.delete(key);
    if (!entry || entry.window.empty) return undefined;
    const closed = { ...entry.window.close(end), executionProvider: entry.executionProvider };
    emitWindow(closed);
    return closed;
  }

  function windowOf(state: ModelState): WindowProfile {
    const active = state.record.active as InstalledVersion;
    const at = now();
    let entry = state.telemetry;
    if (entry && (entry.version !== active.version || at - entry.window.start >= settings.windowMs)) {
      closeWindow(entry.key, at);
      entry = undefined;
    }
    if (!entry || windows.get(entry.key) !== entry) {
      const key = `${state.record.name}@${active.version}`;
      entry = windows.get(key) ?? {
        key,
        version: active.version,
        window: new WindowProfile({ name: state.record.name, version: active.version }, at, active.manifest.payload.telemetry),
        executionProvider: active.executionProvider,
      };
      windows.set(key, entry);
      state.telemetry = entry;
    }
    return entry.window;
  }

  let draining: ReturnType<typeof setInterval> | undefined;
  /** Started with the first telemetry, unref'd so it never keeps a process alive. */
  function scheduleDrain(window: WindowProfile): void {
    if (window.pendingCount > 65_536) window.drain(); // a burst with no idle turn: bound the memory
    if (draining) return;
    draining = setInterval(() => {
      for (const entry of windows.values()) entry.window.drain();
    }, 50);
    (draining as { unref?: () => void }).unref?.();
  }

  function recordFailure(state: ModelState, error: unknown, started: number): void {
    try {
      const code = error instanceof EdgefleetError ? error.code : 'EF_INTERNAL_ERROR';
      windowOf(state).recordError(code, performance.now() - started);
    } catch (failure) {
      onError(failure);
    }
  }

  function flush(): TelemetryWindowEvent[] {
    const at = now();
    return [...windows.keys()].flatMap((key) => closeWindow(key, at) ?? []);
  }

  return {
    settings,
    recordFailure,

    recordShadow(state, version, outcome) {
      try {
        windowOf(state).recordShadow(version, outcome);
      } catch (error) {
        onError(error);
      }
    },

    track(state, feeds, running, started) {
      // The inputs are profiled now, as the model sees them (an app may reuse its buffers once
      // the run answers); the outputs and the latency when it answers. onnxruntime-node and the
      // WASM engine compute on this thread a turn later (measured: 8-15 µs of a Silero run
      // happen inside this call), so the profiling adds to the run: hence the time sample.
      let window: WindowProfile | undefined;
      // Profiled runs are spaced by at least profileEveryMs (a time sample, blind to the data).
      const profiled = started - state.lastProfiled >= settings.profileEveryMs;
      if (profiled) state.lastProfiled = started;
      try {
        window = windowOf(state);
        if (profiled) window.recordInputs(feeds);
      } catch (error) {
        onError(error); // telemetry must never fail a run
      }
      // On a side branch: the caller gets the engine's promise itself, and this reaction, added
      // before the caller's, reads the answer before the caller's code runs.
      running.then(
        (outputs) => {
          try {
            if (window) {
              // Closed meanwhile (its time was up, or a flush): the answer counts in the open one.
              const target = window.closed ? windowOf(state) : window;
              if (profiled) target.recordOutputs(outputs, performance.now() - started);
              else target.recordLatency(performance.now() - started);
              scheduleDrain(target);
            }
          } catch (error) {
            onError(error);
          }
        },
        (error: unknown) => recordFailure(state, error, started),
      );
    },

    flush,

    close() {
      flush();
      if (draining) clearInterval(draining);
      draining = undefined;
    },
  };
}

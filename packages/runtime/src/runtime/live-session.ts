import type { EngineSession, Feeds, Outputs } from '../engine/types.ts';

/**
 * A session shared by concurrent runs. Retiring it (a new version activated) releases it only when
 * the runs already in flight have finished, so an activation never fails a run mid-way.
 */
export class LiveSession {
  private inFlight = 0;
  private retired = false;
  private released: Promise<void> | undefined;
  private readonly onReleased: { promise: Promise<void>; resolve: () => void };

  constructor(
    readonly session: EngineSession,
    readonly engine: string,
  ) {
    let resolve = () => {};
    const promise = new Promise<void>((done) => {
      resolve = done;
    });
    this.onReleased = { promise, resolve };
  }

  /** Resolves once the session is released: retired and its last run finished. */
  whenReleased(): Promise<void> {
    return this.onReleased.promise;
  }

  run(feeds: Feeds): Promise<Outputs> {
    this.inFlight++;
    // The engine's promise itself goes back to the caller; the count is kept on a side branch,
    // so the caller's answer waits for no extra promise or microtask turn (a path that may run
    // every 0.1 ms).
    const running = this.session.run(feeds);
    running.then(this.settled, this.settled);
    return running;
  }

  private readonly settled = (): void => {
    this.inFlight--;
    if (this.retired && this.inFlight === 0) void this.release();
  };

  retire(): Promise<void> {
    this.retired = true;
    return this.inFlight === 0 ? this.release() : Promise.resolve();
  }

  private release(): Promise<void> {
    this.released ??= this.session
      .release()
      .catch(() => undefined)
      .then(() => this.onReleased.resolve());
    return this.released;
  }
}

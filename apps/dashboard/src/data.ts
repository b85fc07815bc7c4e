/** Loading what a view shows: one hook for "fetch this, show it, fetch it again when asked". */
import { useCallback, useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { describeError } from './session.ts';

export interface Resource<T> {
  readonly data: T | undefined;
  readonly error: string | undefined;
  readonly loading: boolean;
  /** Loads again, keeping the current data on screen meanwhile (no flicker on live updates). */
  reload(): void;
}

export function useResource<T>(load: (signal: AbortSignal) => Promise<T>, deps: readonly unknown[]): Resource<T> {
  const [state, setState] = useState<{ data: T | undefined; error: string | undefined; loading: boolean }>({
    data: undefined,
    error: undefined,
    loading: true,
  });
  const [generation, setGeneration] = useState(0);
  const loader = useRef(load);
  loader.current = load;
  // Started as soon as the view is in the DOM, not after the next paint (which a background or
  // headless tab may delay by 100 ms): requests go out with the render that needs them.
  useLayoutEffect(() => {
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    loader.current(controller.signal).then(
      (data) => {
        if (!controller.signal.aborted) setState({ data, error: undefined, loading: false });
      },
      (error: unknown) => {
        if (!controller.signal.aborted) setState((s) => ({ data: s.data, error: describeError(error), loading: false }));
      },
    );
    return () => controller.abort();
  }, [...deps, generation]);
  const reload = useCallback(() => setGeneration((g) => g + 1), []);
  return { ...state, reload };
}

/** Calls `fn` at most once per `ms`, the last call winning (live events come in bursts). */
export function useThrottled(fn: () => void, ms: number): () => void {
  const last = useRef(fn);
  last.current = fn;
  const timer = useRef<ReturnType<typeof setTimeout> | undefined>(undefined);
  useEffect(() => () => clearTimeout(timer.current), []);
  return useCallback(() => {
    if (timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = undefined;
      last.current();
    }, ms);
  }, [ms]);
}

/**
 * A list read a page at a time (the server's cursors): the first page at once, the next ones when
 * `more()` is called (a virtual table calls it near its end). `reset()` starts over (filters changed,
 * or something changed on the server).
 */
export function usePaged<T>(
  fetchPage: (cursor: string | undefined, signal: AbortSignal) => Promise<{ items: T[]; next: string | null }>,
  deps: readonly unknown[],
): { items: T[]; done: boolean; loading: boolean; error: string | undefined; more(): void; reset(): void } {
  const [state, setState] = useState<{ items: T[]; next: string | null; done: boolean; loading: boolean; error: string | undefined }>({
    items: [],
    next: null,
    done: false,
    loading: true,
    error: undefined,
  });
  const [generation, setGeneration] = useState(0);
  const fetcher = useRef(fetchPage);
  fetcher.current = fetchPage;
  const inflight = useRef<AbortController | undefined>(undefined);
  const current = useRef(state);
  current.current = state;

  const load = useCallback((cursor: string | undefined, replace: boolean) => {
    inflight.current?.abort();
    const controller = new AbortController();
    inflight.current = controller;
    setState((s) => ({ ...s, loading: true }));
    fetcher.current(cursor, controller.signal).then(
      (page) => {
        if (controller.signal.aborted) return;
        inflight.current = undefined;
        setState((s) => ({
          items: replace ? page.items : [...s.items, ...page.items],
          next: page.next,
          done: page.next === null,
          loading: false,
          error: undefined,
        }));
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        inflight.current = undefined;
        setState((s) => ({ ...s, loading: false, error: describeError(error) }));
      },
    );
  }, []);

  useLayoutEffect(() => {
    load(undefined, true);
    return () => inflight.current?.abort();
  }, [...deps, generation]);

  const more = useCallback(() => {
    const s = current.current;
    if (s.loading || s.done || !s.next || inflight.current) return;
    load(s.next, false);
  }, [load]);
  const reset = useCallback(() => setGeneration((g) => g + 1), []);
  return { items: state.items, done: state.done, loading: state.loading, error: state.error, more, reset };
}

/**
 * Client-side routing over the History API: every view has a path of its own (deep links; the
 * server answers the page for each), links are plain <a href> that this module intercepts.
 */
import { signal } from '@preact/signals';

export interface Location {
  readonly path: string;
  readonly query: URLSearchParams;
}

const read = (): Location => ({ path: window.location.pathname, query: new URLSearchParams(window.location.search) });

export const here = signal<Location>(read());

export function navigate(href: string, options: { replace?: boolean } = {}): void {
  if (options.replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  here.value = read();
  if (!options.replace) window.scrollTo(0, 0);
}

/** Changes query parameters of the current view in place (filters, selections), without a history entry each. */
export function setQuery(changes: Record<string, string | null>): void {
  const query = new URLSearchParams(window.location.search);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === '') query.delete(key);
    else query.set(key, value);
  }
  const search = query.toString();
  navigate(`${window.location.pathname}${search ? `?${search}` : ''}`, { replace: true });
}

/** `/rollouts/:id` against `/rollouts/abc` → { id: 'abc' }; null when it does not match. */
export function match(pattern: string, path: string): Record<string, string> | null {
  const want = pattern.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (want.length !== got.length) return null;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i] as string;
    const g = got[i] as string;
    if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(g);
    else if (w !== g) return null;
  }
  return params;
}

export function startRouter(): void {
  window.addEventListener('popstate', () => {
    here.value = read();
  });
  document.addEventListener('click', (event) => {
    if (event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = (event.target as Element | null)?.closest('a');
    if (!anchor || anchor.target || anchor.hasAttribute('download') || anchor.origin !== window.location.origin) return;
    // The API and its docs are not views of this app.
    if (/^\/(v1|docs|metrics|healthz|readyz)(\/|$)/.test(anchor.pathname)) return;
    event.preventDefault();
    navigate(`${anchor.pathname}${anchor.search}`);
  });
}

/** Builds a path with encoded segments: path('/devices', id). */
export function path(...segments: string[]): string {
  return segments.map((s, i) => (i === 0 ? s : encodeURIComponent(s))).join('/');
}

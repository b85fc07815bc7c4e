/**
 * Who is signed in: a token (admin or read-only), checked with GET /v1/whoami, kept for the tab
 * (sessionStorage) or, when asked, for this browser (localStorage). A 401 on any call signs out.
 */
import { createClient, type EdgefleetClient, isApiError, ok } from '@edgefleet/client';
import { computed, signal } from '@preact/signals';

const KEY = 'edgefleet.token';

export interface Me {
  readonly id: string;
  readonly name: string | null;
  readonly scope: 'admin' | 'read';
  readonly expiresAt: string | null;
}

export interface Session {
  readonly client: EdgefleetClient;
  /** For the requests the client does not make (uploads, with their progress). */
  readonly token: string;
  readonly me: Me;
}

export const session = signal<Session | null>(null);
/** Only admin tokens see the controls that change anything (the server refuses the others anyway). */
export const isAdmin = computed(() => session.value?.me.scope === 'admin');

export function client(): EdgefleetClient {
  const current = session.value;
  if (!current) throw new Error('not signed in');
  return current.client;
}

export async function signIn(token: string, remember: boolean): Promise<void> {
  const api = createClient({ baseUrl: location.origin, token: token.trim(), retries: 2 });
  const me = await ok(api.api.GET('/v1/whoami'));
  localStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY);
  (remember ? localStorage : sessionStorage).setItem(KEY, token.trim());
  session.value = { client: api, token: token.trim(), me };
}

export function signOut(): void {
  localStorage.removeItem(KEY);
  sessionStorage.removeItem(KEY);
  session.value = null;
}

/** Signs in again with the token kept by an earlier visit, if any. */
export async function restore(): Promise<void> {
  const remembered = localStorage.getItem(KEY);
  const token = sessionStorage.getItem(KEY) ?? remembered;
  if (!token) return;
  try {
    await signIn(token, remembered !== null);
  } catch (error) {
    if (isApiError(error) && (error.status === 401 || error.status === 403)) signOut();
    else throw error;
  }
}

/** What to show for a failed call; signs out when the token stopped working. */
export function describeError(error: unknown): string {
  if (isApiError(error)) {
    if (error.status === 401) signOut();
    return error.message; // its EF_ code and what to fix
  }
  return error instanceof Error ? error.message : String(error);
}

/** Sign in with a token: an admin token (efa_…, or EDGEFLEET_ADMIN_TOKEN) or a read-only one. */
import { useState } from 'preact/hooks';
import { here, navigate } from '../router.ts';
import { session, signIn } from '../session.ts';
import { ErrorBox } from '../ui/bits.tsx';

export function LoginView() {
  const [token, setToken] = useState('');
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const next = here.value.query.get('next');
  const go = () => navigate(next?.startsWith('/') && !next.startsWith('//') ? next : '/', { replace: true });
  if (session.value) go();
  return (
    <main id="main" class="login">
      <h1>edgefleet</h1>
      <p>Sign in with an API token of this fleet server. A read-only token shows everything and changes nothing.</p>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          setBusy(true);
          setError(undefined);
          try {
            await signIn(token, remember);
            go();
          } catch (e) {
            setError(e instanceof Error ? e.message : String(e));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label for="token">API token</label>
        <input
          id="token"
          name="token"
          type="password"
          autocomplete="off"
          required
          value={token}
          onInput={(e) => setToken((e.currentTarget as HTMLInputElement).value)}
        />
        <label class="check">
          <input type="checkbox" checked={remember} onChange={(e) => setRemember((e.currentTarget as HTMLInputElement).checked)} /> Keep me
          signed in on this browser
        </label>
        <button type="submit" class="primary" disabled={busy || token.trim() === ''}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
      {error ? <ErrorBox error={error} /> : null}
      <p class="muted">
        The first admin token is in the server's data folder (<code>admin-token</code>); <code>fleetctl tokens create --scope read</code>{' '}
        makes a read-only one.
      </p>
    </main>
  );
}

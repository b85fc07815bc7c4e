/** The shell: sign-in, navigation, the live indicator, and the view the path names. */
import type { VNode } from 'preact';
import { useEffect, useLayoutEffect, useState } from 'preact/hooks';
import { liveState } from './live.ts';
import { here, match, navigate, startRouter } from './router.ts';
import { isAdmin, restore, session, signOut } from './session.ts';
import { ErrorBox, Loading } from './ui/bits.tsx';
import { DeviceView } from './views/device.tsx';
import { DriftView } from './views/drift.tsx';
import { FleetView } from './views/fleet.tsx';
import { LoginView } from './views/login.tsx';
import { ModelsView, ModelView, VersionView } from './views/models.tsx';
import { RolloutsView, RolloutView } from './views/rollouts.tsx';

startRouter();

const NAV = [
  { href: '/', label: 'Fleet', active: (p: string) => p === '/' || p.startsWith('/devices') },
  { href: '/models', label: 'Models', active: (p: string) => p.startsWith('/models') },
  { href: '/rollouts', label: 'Rollouts', active: (p: string) => p.startsWith('/rollouts') },
  { href: '/drift', label: 'Drift', active: (p: string) => p.startsWith('/drift') },
];

/** Each view's path pattern and what it renders with the path's parameters. */
const ROUTES: readonly [string, (p: Record<string, string>) => VNode][] = [
  ['/', () => <FleetView />],
  ['/devices', () => <FleetView />],
  ['/devices/:id', (p) => <DeviceView id={p.id as string} />],
  ['/models', () => <ModelsView />],
  ['/models/:name', (p) => <ModelView name={p.name as string} />],
  ['/models/:name/versions/:version', (p) => <VersionView name={p.name as string} version={p.version as string} />],
  ['/rollouts', () => <RolloutsView />],
  ['/rollouts/:id', (p) => <RolloutView id={p.id as string} />],
  ['/drift', () => <DriftView />],
  ['/drift/:model/:version', (p) => <DriftView model={p.model as string} version={p.version as string} />],
];

function Routed() {
  const { path } = here.value;
  for (const [pattern, view] of ROUTES) {
    const params = match(pattern, path);
    if (params) return view(params);
  }
  return (
    <main id="main">
      <h1>Not found</h1>
      <p>
        There is no view at <code>{path}</code>. <a href="/">Back to the fleet</a>.
      </p>
    </main>
  );
}

/** The kept token is checked as the script starts, not after the first paint. */
const restored: Promise<string | undefined> = restore().then(
  () => undefined,
  (e: unknown) => (e instanceof Error ? e.message : String(e)),
);

export function App() {
  const [restoring, setRestoring] = useState(true);
  const [error, setError] = useState<string | undefined>(undefined);
  useLayoutEffect(() => {
    void restored.then((message) => {
      setError(message);
      setRestoring(false);
    });
  }, []);
  const current = session.value;
  const { path } = here.value;

  useEffect(() => {
    // The sign-in page sends its reader back where they were going.
    if (!restoring && !current && path !== '/login')
      navigate(`/login?next=${encodeURIComponent(path + window.location.search)}`, { replace: true });
  }, [restoring, current, path]);

  if (restoring) return <Loading what="your session" />;
  if (!current) {
    return (
      <>
        {error ? <ErrorBox error={error} /> : null}
        <LoginView />
      </>
    );
  }
  return (
    <>
      <a class="skip" href="#main">
        Skip to content
      </a>
      <header class="top">
        <a class="brand" href="/">
          edgefleet
        </a>
        <nav aria-label="Views">
          {NAV.map((item) => (
            <a key={item.href} href={item.href} aria-current={item.active(path) ? 'page' : undefined}>
              {item.label}
            </a>
          ))}
        </nav>
        {liveState.value === 'off' ? null : (
          <span class={`live ${liveState.value}`} role="status" aria-live="polite" data-testid="live">
            {liveState.value === 'live' ? 'Live' : 'Reconnecting…'}
          </span>
        )}
        <span class="who">
          {current.me.name ?? current.me.id} · <strong>{isAdmin.value ? 'admin' : 'read-only'}</strong>
        </span>
        <button
          type="button"
          class="link"
          onClick={() => {
            signOut();
            navigate('/login', { replace: true });
          }}
        >
          Sign out
        </button>
      </header>
      <Routed />
    </>
  );
}

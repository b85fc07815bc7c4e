/** Small pieces every view uses. */
import type { ComponentChildren } from 'preact';

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

export function ErrorBox({ error }: { error: string }) {
  return (
    <p class="error" role="alert">
      {error}
    </p>
  );
}

const TONES: Record<string, string> = {
  running: 'info',
  active: 'ok',
  completed: 'ok',
  ok: 'ok',
  online: 'ok',
  'up to date': 'ok',
  paused: 'warn',
  warning: 'warn',
  pending: 'muted',
  assigned: 'info',
  shadowing: 'info',
  installing: 'info',
  rolling_back: 'warn',
  offline: 'muted',
  failed: 'bad',
  failing: 'bad',
  drifting: 'bad',
  firing: 'bad',
  aborted: 'bad',
  rolled_back: 'warn',
  revoked: 'muted',
  resolved: 'ok',
  'no-reference': 'muted',
  'no-data': 'muted',
};

export function Badge({ value, label }: { value: string; label?: string }) {
  return <span class={`badge ${TONES[value] ?? 'muted'}`}>{label ?? value.replaceAll('_', ' ')}</span>;
}

export function Stat({ label, value, tone, href }: { label: string; value: string | number; tone?: string; href?: string }) {
  const body = (
    <>
      <span class="stat-value">{typeof value === 'number' ? value.toLocaleString() : value}</span>
      <span class="stat-label">{label}</span>
    </>
  );
  return href ? (
    <a class={`stat ${tone ?? ''}`} href={href}>
      {body}
    </a>
  ) : (
    <div class={`stat ${tone ?? ''}`}>{body}</div>
  );
}

/** A bar of parts (compliance, stage progress) with a text equivalent for screen readers. */
export function StackedBar({ parts, label }: { parts: { value: number; tone: string; label: string }[]; label: string }) {
  const total = parts.reduce((sum, p) => sum + p.value, 0);
  const text = parts.map((p) => `${p.label} ${p.value}`).join(', ');
  return (
    <div class="stacked" role="img" aria-label={`${label}: ${text}`}>
      {parts.map((p) =>
        p.value > 0 ? <span key={p.label} class={`seg ${p.tone}`} style={{ flexGrow: p.value }} title={`${p.label}: ${p.value}`} /> : null,
      )}
      {total === 0 ? <span class="seg empty" style={{ flexGrow: 1 }} /> : null}
    </div>
  );
}

export function Section({ title, children, actions }: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="card" aria-label={title}>
      <header class="card-head">
        <h2>{title}</h2>
        {actions ? <div class="card-actions">{actions}</div> : null}
      </header>
      {children}
    </section>
  );
}

export function Empty({ children }: { children: ComponentChildren }) {
  return <p class="muted empty-note">{children}</p>;
}

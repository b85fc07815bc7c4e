/** One device: its state and tags, the models it runs and is meant to run, its history, and its inference latency over time. */
import { type ItemOf, ok } from '@edgefleet/client';
import { useEffect } from 'preact/hooks';
import { usePaged, useResource, useThrottled } from '../data.ts';
import { ago, number, when } from '../format.ts';
import { onRolloutChange } from '../live.ts';
import { path } from '../router.ts';
import { client } from '../session.ts';
import { Badge, Empty, ErrorBox, Loading, Section } from '../ui/bits.tsx';
import { Chart } from '../ui/chart.tsx';
import { lastError } from './fleet.tsx';

type Event = ItemOf<'/v1/devices/{id}/history'>;
type Window = ItemOf<'/v1/telemetry/windows'>;
const COLORS = ['#0b5394', '#6a3d9a', '#b15928', '#1e7d32', '#b3261e'];

function Latency({ id }: { id: string }) {
  const windows = useResource(
    async (signal) =>
      (await ok(client().api.GET('/v1/telemetry/windows', { params: { query: { device: id, limit: '500' } }, signal }))).windows,
    [id],
  );
  if (windows.error) return <ErrorBox error={windows.error} />;
  if (!windows.data) return <Loading what="telemetry" />;
  const byModel = new Map<string, Window[]>();
  for (const w of [...windows.data].reverse()) {
    const key = `${w.model.name}@${w.model.version}`;
    byModel.set(key, [...(byModel.get(key) ?? []), w]);
  }
  if (byModel.size === 0) return <Empty>No telemetry from this device yet.</Empty>;
  const all = [...windows.data].reverse();
  const x = all.map((w) => Date.parse(w.windowEnd) / 1000);
  const keys = [...byModel.keys()];
  const series = keys.flatMap((key, i) => [
    {
      label: `${key} p50`,
      values: all.map((w) => (`${w.model.name}@${w.model.version}` === key ? (w.latencyMs?.p50 ?? null) : null)),
      color: COLORS[i % COLORS.length] as string,
      points: true,
    },
    {
      label: `${key} p95`,
      values: all.map((w) => (`${w.model.name}@${w.model.version}` === key ? (w.latencyMs?.p95 ?? null) : null)),
      color: COLORS[i % COLORS.length] as string,
      dash: [4, 4],
    },
  ]);
  const last = all.at(-1);
  return (
    <Chart
      title="Inference latency per telemetry window (ms)"
      x={x}
      series={series}
      yLabel="ms"
      summary={`${all.length} windows; latest ${last ? `${last.model.name}@${last.model.version} p50 ${number(last.latencyMs?.p50)} ms, p95 ${number(last.latencyMs?.p95)} ms on ${last.executionProvider}` : 'none'}.`}
    />
  );
}

function History({ id }: { id: string }) {
  const list = usePaged<Event>(
    async (cursor, signal) => {
      const page = await ok(
        client().api.GET('/v1/devices/{id}/history', {
          params: { path: { id }, query: { limit: '50', ...(cursor ? { cursor } : {}) } },
          signal,
        }),
      );
      return { items: page.events, next: page.next };
    },
    [id],
  );
  return (
    <>
      {list.error ? <ErrorBox error={list.error} /> : null}
      {list.items.length === 0 && !list.loading ? <Empty>No event yet.</Empty> : null}
      <ol class="plain timeline" data-testid="history">
        {list.items.map((e) => (
          <li key={e.id}>
            <time dateTime={e.at} title={when(e.at)}>
              {ago(e.at)}
            </time>{' '}
            <Badge value={e.error ? 'failed' : 'ok'} label={e.kind} /> {e.model ? `${e.model}@${e.version ?? '?'}` : ''}
            {e.variant && e.variant !== 'reference' ? ` (variant ${e.variant})` : ''}
            {e.executionProvider ? ` on ${e.executionProvider}` : ''}
            {e.fallback ? ` (fell back from ${e.fallback.from}: ${e.fallback.reason})` : ''}
            {e.error ? (
              <>
                {' '}
                <code>{e.error.code}</code> <span class="muted">{e.error.message}</span>
              </>
            ) : null}
            {e.rolloutId ? (
              <>
                {' '}
                <a href={path('/rollouts', e.rolloutId)}>rollout</a>
              </>
            ) : null}
          </li>
        ))}
      </ol>
      {!list.done && !list.loading ? (
        <button type="button" onClick={list.more}>
          Older events
        </button>
      ) : null}
    </>
  );
}

export function DeviceView({ id }: { id: string }) {
  const device = useResource((signal) => ok(client().api.GET('/v1/devices/{id}', { params: { path: { id } }, signal })), [id]);
  const refresh = useThrottled(device.reload, 1000);
  useEffect(() => onRolloutChange(() => refresh()), [refresh]);
  if (device.error && !device.data)
    return (
      <main id="main">
        <h1>{id}</h1>
        <ErrorBox error={device.error} />
      </main>
    );
  const d = device.data;
  if (!d)
    return (
      <main id="main">
        <Loading what="the device" />
      </main>
    );
  const error = lastError(d);
  return (
    <main id="main">
      <h1>
        {d.id} {d.status === 'revoked' ? <Badge value="revoked" /> : <Badge value={d.online ? 'online' : 'offline'} />}{' '}
        {d.failing ? <Badge value="failing" /> : null}
      </h1>
      <p class="muted">
        Tags:{' '}
        {d.tags.length > 0
          ? d.tags.map((t) => (
              <a key={t} class="chip" href={`/?tag=${encodeURIComponent(t)}`}>
                {t}
              </a>
            ))
          : 'none'}{' '}
        · last seen {ago(d.lastSeenAt)} · enrolled {when(d.createdAt)}
        {d.reported
          ? ` · agent ${d.reported.agent.version} (${d.reported.agent.platform}) · ${d.reported.capabilities.executionProviders.join(', ')}`
          : ''}
      </p>
      {error ? (
        <p class="error" role="alert">
          {error.model}: <code>{error.code}</code> {error.message}
        </p>
      ) : null}
      <div class="grid two">
        <Section title="Models">
          {(d.reported?.models ?? []).length === 0 ? (
            <Empty>The device has reported no model.</Empty>
          ) : (
            <table data-testid="device-models">
              <thead>
                <tr>
                  <th scope="col">Model</th>
                  <th scope="col">State</th>
                  <th scope="col">Active</th>
                  <th scope="col">Serving</th>
                  <th scope="col">Previous</th>
                </tr>
              </thead>
              <tbody>
                {(d.reported?.models ?? []).map((m) => (
                  <tr key={m.name}>
                    <td>
                      <a href={path('/models', m.name)}>{m.name}</a>
                    </td>
                    <td>
                      <Badge value={m.state} />
                    </td>
                    <td>{m.active ? <a href={path('/models', m.name, 'versions', m.active.version)}>{m.active.version}</a> : '—'}</td>
                    <td>
                      {m.active ? `${m.active.variant ?? 'reference'} on ${m.active.executionProvider}` : '—'}
                      {m.shadow ? ` · ${m.shadow.version} in shadow (${Math.round(m.shadow.rate * 100)}% of inputs)` : ''}
                    </td>
                    <td>{m.previous?.version ?? '—'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Section>
        <Section title="Latency">
          <Latency id={id} />
        </Section>
      </div>
      <Section title="History">
        <History id={id} />
      </Section>
    </main>
  );
}

/**
 * Drift: per model version and device group, the score of each time bucket and of each feature
 * over time against its threshold, with the alerts marked; for a chosen feature the reference
 * distribution against the live one; open alerts and their webhook deliveries. Live: a drift pass
 * that stores new scores of this version redraws the charts.
 */
import { type ItemOf, ok } from '@edgefleet/client';
import { useEffect, useState } from 'preact/hooks';
import { useResource, useThrottled } from '../data.ts';
import { ago, number, when } from '../format.ts';
import { onDriftScored } from '../live.ts';
import { here, path, setQuery } from '../router.ts';
import { client } from '../session.ts';
import { Badge, Empty, ErrorBox, Loading, Section } from '../ui/bits.tsx';
import { Chart } from '../ui/chart.tsx';
import { Histogram } from '../ui/histogram.tsx';

type Score = ItemOf<'/v1/drift/scores'>;
type Alert = ItemOf<'/v1/drift/alerts'>;
const RANGES: Record<string, number> = { '15m': 15 * 60, '1h': 3600, '6h': 6 * 3600, '24h': 86400, '7d': 7 * 86400 };
const P_VALUE = new Set(['ks', 'chi-square']);
const ALL = '*';
const groupName = (g: string) => (g === ALL ? 'all devices' : g);

function Alerts({ alerts }: { alerts: readonly Alert[] }) {
  if (alerts.length === 0) return <Empty>No alert.</Empty>;
  return (
    <ul class="plain alerts" data-testid="alerts">
      {alerts.map((a) => (
        <li key={a.id} data-alert-group={a.group}>
          <Badge value={a.state} /> <strong>{groupName(a.group)}</strong> · {a.model}@{a.version} · {a.features.join(', ')} · score{' '}
          {number(a.score)} · opened {ago(a.openedAt)}
          {a.resolvedAt ? `, resolved ${ago(a.resolvedAt)}` : ''}
          {a.deliveries.length > 0 ? (
            <ul class="deliveries">
              {a.deliveries.map((d) => (
                <li key={d.id}>
                  webhook <code>{d.event}</code>:{' '}
                  {d.deliveredAt ? (
                    <Badge value="ok" label={`delivered (${d.responseStatus ?? '2xx'})`} />
                  ) : d.attempts === 0 ? (
                    <Badge value="pending" label="not attempted yet" />
                  ) : (
                    <Badge value="failed" label="not delivered yet" />
                  )}{' '}
                  {d.attempts === 0 ? (
                    <span class="muted">(is EDGEFLEET_WEBHOOK_URL set?)</span>
                  ) : (
                    `after ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`
                  )}
                  {d.lastError ? <span class="muted"> · last error: {d.lastError}</span> : null}
                </li>
              ))}
            </ul>
          ) : null}
        </li>
      ))}
    </ul>
  );
}

function Overview() {
  const models = useResource((signal) => ok(client().api.GET('/v1/models', { params: { query: { limit: '100' } }, signal })), []);
  const firing = useResource(
    (signal) => ok(client().api.GET('/v1/drift/alerts', { params: { query: { state: 'firing', limit: '50' } }, signal })),
    [],
  );
  const refresh = useThrottled(firing.reload, 1000);
  useEffect(() => onDriftScored(() => refresh()), [refresh]);
  return (
    <main id="main">
      <h1>Drift</h1>
      <Section title="Firing alerts">
        {firing.error ? <ErrorBox error={firing.error} /> : null}
        {firing.data ? <Alerts alerts={firing.data.alerts} /> : <Loading what="alerts" />}
      </Section>
      <Section title="Models">
        {models.data ? (
          <ul class="plain">
            {models.data.models.map((m) => (
              <ModelVersions key={m.name} name={m.name} />
            ))}
          </ul>
        ) : null}
      </Section>
    </main>
  );
}

function ModelVersions({ name }: { name: string }) {
  const versions = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/versions', { params: { path: { name }, query: { limit: '20' } }, signal })),
    [name],
  );
  return (
    <li>
      <strong>{name}</strong>:{' '}
      {(versions.data?.versions ?? []).map((v) => (
        <a key={v.version} class="chip" href={path('/drift', name, v.version)}>
          {v.version}
        </a>
      ))}
    </li>
  );
}

/** All pages of a version's scores for one group since `since` (oldest first). */
async function loadScores(model: string, version: string, group: string, since: string, signal: AbortSignal): Promise<Score[]> {
  const scores: Score[] = [];
  let cursor: string | undefined;
  do {
    const page = await ok(
      client().api.GET('/v1/drift/scores', {
        params: { query: { model, version, group, since, limit: '1000', ...(cursor ? { cursor } : {}) } },
        signal,
      }),
    );
    scores.push(...page.scores);
    cursor = page.next ?? undefined;
  } while (cursor && scores.length < 10_000);
  return scores;
}

function Distribution(props: { model: string; version: string; group: string; feature: string; since: string; until: string }) {
  const dist = useResource(
    (signal) =>
      ok(
        client().api.GET('/v1/models/{name}/versions/{version}/distribution', {
          params: {
            path: { name: props.model, version: props.version },
            query: { feature: props.feature, group: props.group, since: props.since, until: props.until },
          },
          signal,
        }),
      ),
    [props.model, props.version, props.group, props.feature, props.since, props.until],
  );
  if (dist.error) return <ErrorBox error={dist.error} />;
  const d = dist.data;
  if (!d) return <Loading what="the distribution" />;
  const title = `${props.feature}: reference against live (${groupName(props.group)}, ${d.windows} windows)`;
  if (d.histogram) {
    const edges = d.histogram.edges;
    const labels = [...edges.map((e) => `≤ ${number(e)}`), `> ${number(edges.at(-1))}`];
    return (
      <div data-testid="distribution">
        <Histogram title={title} labels={labels} reference={d.histogram.reference} live={d.histogram.live} />
        <table data-testid="quantiles">
          <caption>Quantiles</caption>
          <thead>
            <tr>
              <th scope="col">side</th>
              {(d.reference ?? d.live)?.quantiles.map((q) => (
                <th key={q.q} scope="col">
                  p{Math.round(q.q * 100)}
                </th>
              ))}
              <th scope="col">mean</th>
            </tr>
          </thead>
          <tbody>
            {(['reference', 'live'] as const).map((side) => (
              <tr key={side}>
                <th scope="row">{side}</th>
                {(d[side]?.quantiles ?? []).map((q) => (
                  <td key={q.q}>{number(q.value)}</td>
                ))}
                <td>{number(d[side]?.mean)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    );
  }
  const categories = d.categories ?? [];
  return (
    <div data-testid="distribution">
      <Histogram
        title={title}
        labels={categories.map((c) => c.name)}
        reference={categories.map((c) => c.reference)}
        live={categories.map((c) => c.live)}
      />
    </div>
  );
}

function VersionDrift({ model, version }: { model: string; version: string }) {
  const query = here.value.query;
  const group = query.get('group') ?? ALL;
  const range = query.get('range') ?? '1h';
  const chosen = query.get('feature');
  const status = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/versions/{version}/drift', { params: { path: { name: model, version } }, signal })),
    [model, version],
  );
  // The charted range ends now; "now" moves when new scores arrive (not on every render).
  const [now, setNow] = useState(() => Date.now());
  const until = new Date(now).toISOString();
  const since = new Date(now - (RANGES[range] ?? 3600) * 1000).toISOString();
  const scores = useResource((signal) => loadScores(model, version, group, since, signal), [model, version, group, since]);
  const alerts = useResource(
    (signal) => ok(client().api.GET('/v1/drift/alerts', { params: { query: { model, version, limit: '50' } }, signal })),
    [model, version, now],
  );
  const refresh = useThrottled(() => {
    status.reload();
    setNow(Date.now());
  }, 1000);
  useEffect(
    () => onDriftScored((d) => (!d || (d.model === model && d.version === version) ? refresh() : undefined)),
    [model, version, refresh],
  );

  const list = scores.data ?? [];
  const x = list.map((s) => Date.parse(s.bucketStart) / 1000);
  const features = [...new Set(list.flatMap((s) => Object.keys(s.features)))].sort();
  const groupAlerts = (alerts.data?.alerts ?? []).filter((a) => a.group === group);
  // While an alert fires, "live" means what devices have seen since it began drifting.
  const firing = groupAlerts.find((a) => a.state === 'firing');
  const markers = groupAlerts.flatMap((a) => [
    { x: Date.parse(a.openedAt) / 1000, label: 'alert', color: '#b3261e' },
    ...(a.resolvedAt ? [{ x: Date.parse(a.resolvedAt) / 1000, label: 'resolved', color: '#1e7d32' }] : []),
  ]);
  const feature = chosen ?? list.at(-1)?.driftedFeatures[0] ?? features[0];
  const groups = status.data?.groups.map((g) => g.group) ?? [];
  const groupStatus = status.data?.groups.find((g) => g.group === group);
  return (
    <main id="main">
      <h1>
        Drift of{' '}
        <a href={path('/models', model, 'versions', version)}>
          {model}@{version}
        </a>{' '}
        {status.data ? (
          <span data-testid="drift-status">
            <Badge value={status.data.status} />
          </span>
        ) : null}
      </h1>
      {status.data?.reference ? (
        <p class="muted">
          Reference: {status.data.reference.source} ({status.data.reference.runs.toLocaleString()} runs). A bucket drifts when one of its
          features does; an alert fires after consecutive drifted buckets.
        </p>
      ) : status.data ? (
        <Empty>This version has no reference profile: nothing to compare with.</Empty>
      ) : null}
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Choose what to chart">
        <label>
          Device group
          <select value={group} onChange={(e) => setQuery({ group: (e.currentTarget as HTMLSelectElement).value, feature: null })}>
            {[...new Set([ALL, ...groups])].map((g) => (
              <option key={g} value={g}>
                {groupName(g)}
                {status.data?.groups.find((s) => s.group === g)?.status === 'drifting' ? ' (drifting)' : ''}
              </option>
            ))}
          </select>
        </label>
        <label>
          Range
          <select value={range} onChange={(e) => setQuery({ range: (e.currentTarget as HTMLSelectElement).value })}>
            {Object.keys(RANGES).map((r) => (
              <option key={r} value={r}>
                last {r}
              </option>
            ))}
          </select>
        </label>
        {groupStatus ? (
          <span data-testid="group-status">
            {groupName(group)}: <Badge value={groupStatus.status} />
          </span>
        ) : null}
      </form>
      {scores.error ? <ErrorBox error={scores.error} /> : null}
      {list.length === 0 && !scores.loading ? (
        <Empty>
          No drift score for {groupName(group)} in the last {range}.
        </Empty>
      ) : list.length > 0 ? (
        <>
          <Section title="Buckets">
            <Chart
              title={`Share of features drifted per bucket (${groupName(group)})`}
              x={x}
              series={[{ label: 'share drifted', values: list.map((s) => s.score), color: '#0b5394', points: true }]}
              thresholds={[{ value: 0, label: 'any drifted feature flags the bucket' }]}
              markers={markers}
              yLabel="share"
              summary={`${list.filter((s) => s.drifted).length} of ${list.length} buckets drifted; latest ${number(list.at(-1)?.score)}.`}
            />
          </Section>
          <Section title="Features">
            <div class="charts" data-testid="feature-charts">
              {features.map((name) => {
                const last = [...list].reverse().find((s) => s.features[name])?.features[name];
                const method = last?.method ?? '';
                const pValue = P_VALUE.has(method);
                const values = list.map((s) => s.features[name]?.score ?? null);
                const threshold = last?.threshold ?? 0;
                const drifted = list.filter((s) => s.features[name]?.drifted).length;
                return (
                  <div key={name} class={`feature ${name === feature ? 'chosen' : ''}`} data-feature={name}>
                    <Chart
                      title={`${name} · ${method}${pValue ? ' p-value (drift below the line)' : ' distance (drift above the line)'}`}
                      x={x}
                      log={pValue}
                      series={[
                        {
                          label: name,
                          values: pValue ? values.map((v) => (v === null ? null : Math.max(v, 1e-12))) : values,
                          color: '#6a3d9a',
                          points: true,
                        },
                      ]}
                      thresholds={[{ value: pValue ? Math.max(threshold, 1e-12) : threshold, label: `threshold ${number(threshold)}` }]}
                      markers={markers}
                      height={160}
                      summary={`${drifted} of ${list.length} buckets drifted on ${name}; threshold ${number(threshold)}.`}
                    />
                    <button type="button" class="link" aria-pressed={name === feature} onClick={() => setQuery({ feature: name })}>
                      Reference against live
                    </button>
                  </div>
                );
              })}
            </div>
          </Section>
        </>
      ) : (
        <Loading what="scores" />
      )}
      {feature ? (
        <Section title={`Distribution of ${feature}`}>
          <p class="muted small">
            {firing
              ? `Live: since the first drifted bucket of the firing alert (${when(firing.firstBucket)}).`
              : `Live: the last ${range}.`}
          </p>
          <Distribution
            model={model}
            version={version}
            group={group}
            feature={feature}
            since={firing && Date.parse(firing.firstBucket) > Date.parse(since) ? firing.firstBucket : since}
            until={until}
          />
        </Section>
      ) : null}
      <Section title="Alerts and webhook deliveries">
        {alerts.error ? <ErrorBox error={alerts.error} /> : null}
        {alerts.data ? <Alerts alerts={alerts.data.alerts} /> : null}
      </Section>
      <p class="muted small">Scores from {when(since)} to now.</p>
    </main>
  );
}

export function DriftView(props: { model?: string; version?: string }) {
  if (!props.model || !props.version) return <Overview />;
  return <VersionDrift model={props.model} version={props.version} />;
}

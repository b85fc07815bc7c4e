/**
 * Rollouts: the list, and one rollout's stages and cohorts, each gate's value against its
 * threshold, every device's state, moving live as the server reports it (server-sent events), with
 * the admin's controls (each asks before acting).
 */
import { type ItemOf, ok } from '@edgefleet/client';
import { useEffect, useRef, useState } from 'preact/hooks';
import { usePaged, useResource, useThrottled } from '../data.ts';
import { ago, number, when } from '../format.ts';
import { onRolloutChange, type RolloutSummary } from '../live.ts';
import { here, navigate, path, setQuery } from '../router.ts';
import { client, describeError, isAdmin } from '../session.ts';
import { Badge, Empty, ErrorBox, Loading, Section, StackedBar } from '../ui/bits.tsx';
import { ConfirmButton } from '../ui/confirm.tsx';
import { VirtualTable } from '../ui/virtual.tsx';

type Member = ItemOf<'/v1/rollouts/{id}/members'>;
const LIVE_STATES = new Set(['running', 'paused', 'rolling_back']);

function stageLabel(stage: { percent?: number; count?: number; soakSeconds?: number; shadow?: boolean; shadowRate?: number }): string {
  const size = stage.count !== undefined ? `${stage.count} devices` : `${stage.percent ?? 100}%`;
  const kind = stage.shadow ? `, in shadow on ${Math.round((stage.shadowRate ?? 0.1) * 100)}% of inputs` : '';
  return stage.soakSeconds ? `${size}${kind}, soak ${stage.soakSeconds}s` : `${size}${kind}`;
}

export function RolloutsView() {
  const state = here.value.query.get('state') ?? '';
  const list = usePaged<RolloutSummary>(
    async (cursor, signal) => {
      const page = await ok(
        client().api.GET('/v1/rollouts', {
          params: {
            query: { limit: '50', ...(cursor ? { cursor } : {}), ...(state ? { state: state as RolloutSummary['state'] } : {}) },
          },
          signal,
        }),
      );
      return { items: page.rollouts, next: page.next };
    },
    [state],
  );
  const [live, setLive] = useState<Record<string, RolloutSummary>>({});
  const reset = useThrottled(list.reset, 500);
  const shown = useRef(list.items);
  shown.current = list.items;
  useEffect(
    () =>
      onRolloutChange((rollout) => {
        if (!rollout) return reset();
        setLive((current) => ({ ...current, [rollout.id]: rollout }));
        // A rollout this page does not show yet (just created): read the list again.
        if (!shown.current.some((r) => r.id === rollout.id)) reset();
      }),
    [reset],
  );
  const rows = list.items.map((r) => live[r.id] ?? r).filter((r) => !state || r.state === state);
  return (
    <main id="main">
      <h1>Rollouts</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter rollouts">
        <label>
          State
          <select value={state} onChange={(e) => setQuery({ state: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">any</option>
            {['running', 'paused', 'rolling_back', 'completed', 'rolled_back', 'aborted'].map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
      </form>
      {list.error ? <ErrorBox error={list.error} /> : null}
      {rows.length === 0 && !list.loading ? (
        <Empty>
          No rollout{state ? ` ${state.replace('_', ' ')}` : ''}. Start one with <code>fleetctl rollouts create</code>.
        </Empty>
      ) : (
        <table data-testid="rollouts">
          <thead>
            <tr>
              <th scope="col">Rollout</th>
              <th scope="col">Model</th>
              <th scope="col">State</th>
              <th scope="col">Stage</th>
              <th scope="col">Progress</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => {
              const all = r.stages.at(-1);
              return (
                <tr key={r.id}>
                  <td>
                    <a href={path('/rollouts', r.id)}>{r.id.slice(0, 8)}</a>
                  </td>
                  <td>
                    {r.model}@{r.version}
                    {r.versionAlias ? <span class="muted"> ({r.versionAlias})</span> : null}
                  </td>
                  <td>
                    <Badge value={r.state} />
                  </td>
                  <td>
                    {r.currentStage + 1} of {r.stages.length}
                  </td>
                  <td class="wide">
                    {all ? (
                      <StackedBar
                        label="devices"
                        parts={[
                          { value: all.active, tone: 'ok', label: 'active' },
                          { value: all.failed, tone: 'bad', label: 'failed' },
                          { value: all.pending, tone: 'muted', label: 'pending' },
                        ]}
                      />
                    ) : null}
                  </td>
                  <td title={when(r.createdAt)}>{ago(r.createdAt)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {!list.done && !list.loading ? (
        <button type="button" onClick={list.more}>
          More rollouts
        </button>
      ) : null}
    </main>
  );
}

const GATE_NAMES: Record<string, string> = {
  failure_rate: 'Failure rate',
  devices_reporting: 'Devices reporting',
  latency_ratio: 'Latency ratio (new / old, median)',
  drift_score: 'Drift score',
  output_shift: 'Output shift',
  shadow_runs: 'Inputs compared in shadow',
  shadow_error_rate: 'Shadow error rate',
  shadow_agreement: 'Agreement with the live version',
  shadow_latency_ratio: 'Shadow latency ratio (median)',
};

/** A shadow stage: what the candidate's comparisons with the live version add up to. */
function ShadowReadings({ rollout }: { rollout: RolloutSummary }) {
  const shadow = rollout.gates?.shadow;
  if (!shadow) return null;
  const share = (value: number | null) => (value === null ? '—' : `${number(value * 100, 1)}%`);
  return (
    <>
      <h3>
        {rollout.model}@{rollout.version} in shadow
      </h3>
      <dl class="facts" data-testid="shadow-readings">
        <dt>Compared</dt>
        <dd>
          {number(shadow.runs)} inputs on {number(shadow.devices)} devices ({number(shadow.skipped)} skipped, {number(shadow.errors)}{' '}
          failed)
        </dd>
        <dt>Same class as live</dt>
        <dd>
          {share(shadow.agreement)} of {number(shadow.rows)} rows (pooled {share(shadow.pooledAgreement)}, median of devices{' '}
          {share(shadow.medianDeviceAgreement)})
          {shadow.worstDevice ? ` (lowest: ${shadow.worstDevice.id}, ${share(shadow.worstDevice.agreement)})` : ''}
        </dd>
        <dt>Top-3 overlap</dt>
        <dd>{share(shadow.topKOverlap)}</dd>
        <dt>Output difference</dt>
        <dd>
          mean {number(shadow.meanAbsDiff)}, max {number(shadow.maxAbsDiff)}
        </dd>
        <dt>Latency over live</dt>
        <dd>{shadow.latencyRatio ? `p50 ${number(shadow.latencyRatio.p50)}×, p95 ${number(shadow.latencyRatio.p95)}×` : '—'}</dd>
      </dl>
    </>
  );
}

function Gates({ rollout }: { rollout: RolloutSummary }) {
  const readings = rollout.gates;
  if (!readings) {
    return (
      <Empty>
        {LIVE_STATES.has(rollout.state)
          ? 'Not measured yet: the engine measures the gates once devices answer.'
          : 'Measured only while the rollout runs.'}
      </Empty>
    );
  }
  return (
    <>
      <table data-testid="gates">
        <thead>
          <tr>
            <th scope="col">Gate</th>
            <th scope="col">Value</th>
            <th scope="col">Threshold</th>
            <th scope="col">Verdict</th>
          </tr>
        </thead>
        <tbody>
          {readings.gates.map((g) => {
            const passes = g.value === null ? null : g.bound === 'max' ? g.value <= g.threshold : g.value >= g.threshold;
            return (
              <tr key={g.name} data-gate={g.name}>
                <th scope="row">{GATE_NAMES[g.name] ?? g.name}</th>
                <td>{g.value === null ? 'not yet' : number(g.value)}</td>
                <td>
                  {g.bound === 'max' ? '≤ ' : '≥ '}
                  {number(g.threshold)}
                </td>
                <td>
                  {passes === null ? (
                    <Badge value="pending" label="waiting" />
                  ) : (
                    <Badge value={passes ? 'ok' : 'failed'} label={passes ? 'passes' : 'fails'} />
                  )}
                </td>
              </tr>
            );
          })}
        </tbody>
      </table>
      <p class="muted small">
        Stage {readings.stage + 1}, measured {ago(readings.measuredAt)}.
      </p>
    </>
  );
}

function Stages({ rollout }: { rollout: RolloutSummary }) {
  return (
    <ol class="stages" data-testid="stages">
      {rollout.spec.stages.map((spec, i) => {
        const progress = rollout.stages[i];
        const current = i === rollout.currentStage && LIVE_STATES.has(rollout.state);
        const done = i < rollout.currentStage || rollout.state === 'completed';
        return (
          <li key={i} class={current ? 'current' : done ? 'done' : ''} aria-current={current ? 'step' : undefined} data-stage={i}>
            <div class="stage-head">
              <strong>Stage {i + 1}</strong> <span class="muted">{stageLabel(spec)}</span>{' '}
              {current ? (
                <Badge value={rollout.state} label={`current · ${ago(rollout.stageStartedAt)}`} />
              ) : done ? (
                <Badge value="completed" label="passed" />
              ) : null}
            </div>
            {progress ? (
              <>
                <StackedBar
                  label={`Stage ${i + 1}`}
                  parts={[
                    { value: progress.active, tone: 'ok', label: 'active' },
                    ...(progress.shadow ? [{ value: progress.shadowing, tone: 'info' as const, label: 'in shadow' }] : []),
                    { value: progress.failed, tone: 'bad', label: 'failed' },
                    { value: progress.pending - progress.offline, tone: 'info', label: 'pending' },
                    { value: progress.offline, tone: 'muted', label: 'offline' },
                  ]}
                />
                <span class="small" data-testid={`stage-${i}-counts`}>
                  {progress.shadow ? `${progress.shadowing} of ${progress.size} running it in shadow · ` : ''}
                  {progress.active} of {progress.size} active · {progress.failed} failed · {progress.pending} pending ({progress.offline}{' '}
                  offline)
                </span>
              </>
            ) : null}
          </li>
        );
      })}
    </ol>
  );
}

function Actions({ rollout, onDone }: { rollout: RolloutSummary; onDone: (r: RolloutSummary) => void }) {
  const [error, setError] = useState<string | undefined>(undefined);
  if (!isAdmin.value) return null;
  const id = rollout.id;
  const act = (action: 'pause' | 'resume' | 'promote' | 'abort' | 'rollback') => async () => {
    setError(undefined);
    const { devices: _devices, ...summary } = await ok(client().api.POST(`/v1/rollouts/{id}/${action}`, { params: { path: { id } } }));
    onDone(summary);
  };
  const fail = (e: unknown) => setError(describeError(e));
  const running = rollout.state === 'running';
  const paused = rollout.state === 'paused';
  return (
    <fieldset class="actions">
      <legend class="sr-only">Rollout actions</legend>
      {running ? (
        <ConfirmButton
          label="Pause"
          question={`Pause rollout of ${rollout.model}@${rollout.version}?`}
          detail="No device gets it until you resume; devices that have it keep it."
          onConfirm={act('pause')}
          onError={fail}
        />
      ) : null}
      {paused ? (
        <ConfirmButton
          label="Resume"
          question="Resume this rollout?"
          detail="Its failed devices get another chance."
          onConfirm={act('resume')}
          onError={fail}
        />
      ) : null}
      {running ? (
        <ConfirmButton
          label="Promote"
          question={`Skip the rest of stage ${rollout.currentStage + 1}'s soak?`}
          detail="The gates still decide."
          onConfirm={act('promote')}
          onError={fail}
        />
      ) : null}
      {running || paused ? (
        <>
          <ConfirmButton
            label="Abort"
            danger
            question="Abort this rollout?"
            detail="Its devices return to their previous version; it cannot be resumed."
            onConfirm={act('abort')}
            onError={fail}
          />
          <ConfirmButton
            label="Roll back"
            danger
            question="Roll this rollout back?"
            detail="Its devices return to their previous version (state rolled back)."
            onConfirm={act('rollback')}
            onError={fail}
          />
        </>
      ) : null}
      {rollout.state === 'completed' ? <RollBackCompleted rollout={rollout} onError={fail} /> : null}
      {error ? <ErrorBox error={error} /> : null}
    </fieldset>
  );
}

/** Every member of a rollout, page by page. */
async function allMembers(id: string, signal?: AbortSignal): Promise<Member[]> {
  const members: Member[] = [];
  for await (const page of client().pages('/v1/rollouts/{id}/members', {
    params: { path: { id }, query: { limit: '1000' } },
    ...(signal ? { signal } : {}),
  })) {
    members.push(...page.members);
  }
  return members;
}

/**
 * A completed rollout is final: rolling its devices back is a new rollout of the version they ran
 * before (the most common one among them), signed as a rollback, as `fleetctl rollouts rollback --to` does.
 */
function RollBackCompleted({ rollout, onError }: { rollout: RolloutSummary; onError: (e: unknown) => void }) {
  const previous = useResource(
    async (signal) => {
      const counts = new Map<string, number>();
      for (const m of await allMembers(rollout.id, signal)) {
        if (m.previousVersion) counts.set(m.previousVersion, (counts.get(m.previousVersion) ?? 0) + 1);
      }
      return [...counts].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
    },
    [rollout.id],
  );
  const target = previous.data;
  if (!target) return null;
  return (
    <ConfirmButton
      label={`Roll back to ${target}`}
      danger
      question={`Roll the devices of this rollout back to ${rollout.model}@${target}?`}
      detail="A new rollout of that version to exactly these devices, one stage, signed as a rollback."
      onConfirm={async () => {
        const members = await allMembers(rollout.id);
        const created = await ok(
          client().api.POST('/v1/rollouts', {
            body: {
              model: rollout.model,
              version: target,
              selector: { devices: members.map((m) => m.id) },
              stages: [{ percent: 100 }],
              rollback: true,
            },
          }),
        );
        navigate(path('/rollouts', created.id));
      }}
      onError={onError}
    />
  );
}

function Members({ id, version }: { id: string; version: number }) {
  const status = here.value.query.get('status') ?? '';
  const list = usePaged<Member>(
    async (cursor, signal) => {
      const page = await ok(
        client().api.GET('/v1/rollouts/{id}/members', {
          params: {
            path: { id },
            query: { limit: '200', ...(cursor ? { cursor } : {}), ...(status ? { status: status as Member['status'] } : {}) },
          },
          signal,
        }),
      );
      return { items: page.members, next: page.next };
    },
    [id, status, version],
  );
  return (
    <Section
      title="Devices"
      actions={
        <label>
          Status{' '}
          <select value={status} onChange={(e) => setQuery({ status: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">any</option>
            {['pending', 'assigned', 'shadowing', 'active', 'failed', 'rolled_back'].map((s) => (
              <option key={s} value={s}>
                {s.replace('_', ' ')}
              </option>
            ))}
          </select>
        </label>
      }
    >
      {list.error ? <ErrorBox error={list.error} /> : null}
      <VirtualTable
        label="Rollout devices"
        rows={list.items}
        columns={5}
        height={360}
        onNearEnd={list.more}
        head={
          <tr>
            <th scope="col">Device</th>
            <th scope="col">Stage</th>
            <th scope="col">Status</th>
            <th scope="col">Previous</th>
            <th scope="col">Error / latency ratio</th>
          </tr>
        }
        row={(m) => (
          <tr key={m.id} data-member={m.id}>
            <td>
              <a href={path('/devices', m.id)}>{m.id}</a>
            </td>
            <td>{m.stage + 1}</td>
            <td>
              <Badge value={m.status} />
            </td>
            <td>{m.previousVersion ?? '—'}</td>
            <td>{m.errorCode ? <code>{m.errorCode}</code> : m.latencyRatio !== null ? number(m.latencyRatio) : ''}</td>
          </tr>
        )}
      />
    </Section>
  );
}

export function RolloutView({ id }: { id: string }) {
  const initial = useResource(
    async (signal) => {
      const { devices: _devices, ...summary } = await ok(client().api.GET('/v1/rollouts/{id}', { params: { path: { id } }, signal }));
      return summary as RolloutSummary;
    },
    [id],
  );
  const [latest, setLatest] = useState<RolloutSummary | undefined>(undefined);
  const [changes, setChanges] = useState(0);
  const bump = useThrottled(() => setChanges((n) => n + 1), 1000);
  useEffect(() => setLatest(undefined), [id]);
  useEffect(
    () =>
      onRolloutChange((rollout) => {
        if (!rollout) {
          initial.reload();
          bump();
        } else if (rollout.id === id) {
          setLatest(rollout);
          bump();
        }
      }),
    [id, bump, initial.reload],
  );
  const rollout = latest ?? initial.data;
  if (initial.error && !rollout)
    return (
      <main id="main">
        <h1>Rollout</h1>
        <ErrorBox error={initial.error} />
      </main>
    );
  if (!rollout)
    return (
      <main id="main">
        <Loading what="the rollout" />
      </main>
    );
  const reason = rollout.reason as Record<string, unknown> | null;
  return (
    <main id="main">
      <h1>
        Rollout of{' '}
        <a href={path('/models', rollout.model, 'versions', rollout.version)}>
          {rollout.model}@{rollout.version}
        </a>{' '}
        <span data-testid="rollout-state">
          <Badge value={rollout.state} />
        </span>
      </h1>
      <p class="muted">
        {rollout.id} · created {ago(rollout.createdAt)} by {rollout.createdBy}
        {rollout.versionAlias ? ` · from alias ${rollout.versionAlias}` : ''} · on gate failure: {rollout.spec.onGateFailure ?? 'rollback'}
      </p>
      <Actions rollout={rollout} onDone={setLatest} />
      {reason ? (
        <Section title="Why it stopped">
          <dl class="reason" data-testid="reason">
            {Object.entries(reason).map(([k, v]) => (
              <div key={k}>
                <dt>{k}</dt>
                <dd>{typeof v === 'number' ? number(v) : typeof v === 'string' ? v : JSON.stringify(v)}</dd>
              </div>
            ))}
          </dl>
        </Section>
      ) : null}
      <div class="grid two">
        <Section title="Stages">
          <Stages rollout={rollout} />
        </Section>
        <Section title="Gates">
          <Gates rollout={rollout} />
          <ShadowReadings rollout={rollout} />
        </Section>
      </div>
      <Members id={id} version={changes} />
    </main>
  );
}

/**
 * The fleet at a glance: devices online and offline, what each model runs against its target
 * (compliance), the failing devices with their last error, what just happened, and every device
 * (filtered by tag, state or id; virtualized, a page loaded at a time as it scrolls).
 */
import type { ItemOf } from '@edgefleet/client';
import { ok } from '@edgefleet/client';
import { useEffect } from 'preact/hooks';
import { usePaged, useResource, useThrottled } from '../data.ts';
import { ago, when } from '../format.ts';
import { onRolloutChange } from '../live.ts';
import { here, path, setQuery } from '../router.ts';
import { client } from '../session.ts';
import { Badge, Empty, ErrorBox, Loading, Section, StackedBar, Stat } from '../ui/bits.tsx';
import { VirtualTable } from '../ui/virtual.tsx';

type Device = ItemOf<'/v1/devices'>;
type DeviceEvent = ItemOf<'/v1/device-events'>;

/** A device's most telling error: a failed model's last error, else any model's. */
export function lastError(device: Device): { model: string; code: string; message: string } | undefined {
  const models = device.reported?.models ?? [];
  const failed = models.find((m) => m.state === 'failed' && m.lastError) ?? models.find((m) => m.lastError);
  return failed?.lastError ? { model: failed.name, code: failed.lastError.code, message: failed.lastError.message } : undefined;
}

export function DeviceRow({ device }: { device: Device }) {
  const error = lastError(device);
  return (
    <tr key={device.id}>
      <td>
        <a href={path('/devices', device.id)}>{device.id}</a>
      </td>
      <td>
        {device.status === 'revoked' ? <Badge value="revoked" /> : <Badge value={device.online ? 'online' : 'offline'} />}
        {device.failing ? <Badge value="failing" /> : null}
      </td>
      <td class="nowrap">
        {(device.reported?.models ?? [])
          .filter((m) => m.state !== 'removed')
          .map((m) => `${m.name}@${m.active?.version ?? '—'}`)
          .join(', ') || '—'}
      </td>
      <td class="nowrap">{device.tags.join(', ')}</td>
      <td class="nowrap">{error ? <code title={error.message}>{error.code}</code> : ''}</td>
      <td class="nowrap">{ago(device.lastSeenAt)}</td>
    </tr>
  );
}

function Devices() {
  const query = here.value.query;
  const tag = query.get('tag') ?? '';
  const state = query.get('state') ?? '';
  const prefix = query.get('id') ?? '';
  const list = usePaged<Device>(
    async (cursor, signal) => {
      const page = await ok(
        client().api.GET('/v1/devices', {
          params: {
            query: {
              limit: '200',
              ...(cursor ? { cursor } : {}),
              ...(tag ? { tag } : {}),
              ...(prefix ? { idPrefix: prefix } : {}),
              ...(state === 'online' ? { online: 'true' as const } : state === 'offline' ? { online: 'false' as const } : {}),
              ...(state === 'failing' ? { failing: 'true' as const } : {}),
              ...(state === 'revoked' ? { status: 'revoked' as const } : {}),
            },
          },
          signal,
        }),
      );
      return { items: page.devices, next: page.next };
    },
    [tag, state, prefix],
  );
  return (
    <Section title="Devices">
      <form class="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter devices">
        <label>
          Tag
          <input
            type="search"
            name="tag"
            placeholder="site=lyon"
            value={tag}
            onChange={(e) => setQuery({ tag: (e.currentTarget as HTMLInputElement).value.trim() })}
          />
        </label>
        <label>
          Id starts with
          <input
            type="search"
            name="id"
            placeholder="cam-"
            value={prefix}
            onChange={(e) => setQuery({ id: (e.currentTarget as HTMLInputElement).value.trim() })}
          />
        </label>
        <label>
          State
          <select name="state" value={state} onChange={(e) => setQuery({ state: (e.currentTarget as HTMLSelectElement).value })}>
            <option value="">any</option>
            <option value="online">online</option>
            <option value="offline">offline</option>
            <option value="failing">failing</option>
            <option value="revoked">revoked</option>
          </select>
        </label>
        <span class="muted" role="status" data-testid="device-count">
          {list.items.length.toLocaleString()}
          {list.done ? '' : '+'} devices{list.loading ? ' (loading…)' : ''}
        </span>
      </form>
      {list.error ? <ErrorBox error={list.error} /> : null}
      {list.items.length === 0 && !list.loading ? (
        <Empty>No device matches.</Empty>
      ) : (
        <VirtualTable
          label="Devices"
          rows={list.items}
          columns={6}
          onNearEnd={list.more}
          head={
            <tr>
              <th scope="col">Device</th>
              <th scope="col">State</th>
              <th scope="col">Models</th>
              <th scope="col">Tags</th>
              <th scope="col">Last error</th>
              <th scope="col">Last seen</th>
            </tr>
          }
          row={(device) => <DeviceRow key={device.id} device={device} />}
        />
      )}
    </Section>
  );
}

function EventRow({ event }: { event: DeviceEvent }) {
  return (
    <li>
      <time dateTime={event.at} title={when(event.at)}>
        {ago(event.at)}
      </time>{' '}
      <a href={path('/devices', event.deviceId)}>{event.deviceId}</a> <Badge value={event.error ? 'failed' : 'ok'} label={event.kind} />{' '}
      {event.model ? `${event.model}@${event.version ?? '?'}` : ''}
      {event.error ? (
        <>
          {' '}
          <code title={event.error.message}>{event.error.code}</code>
        </>
      ) : null}
      {event.rolloutId ? (
        <>
          {' '}
          <a href={path('/rollouts', event.rolloutId)}>rollout</a>
        </>
      ) : null}
    </li>
  );
}

export function FleetView() {
  const summary = useResource((signal) => ok(client().api.GET('/v1/fleet/summary', { signal })), []);
  const failing = useResource(
    (signal) => ok(client().api.GET('/v1/devices', { params: { query: { failing: 'true', limit: '20' } }, signal })),
    [],
  );
  const events = useResource((signal) => ok(client().api.GET('/v1/device-events', { params: { query: { limit: '8' } }, signal })), []);
  const refresh = useThrottled(() => {
    summary.reload();
    failing.reload();
    events.reload();
  }, 1000);
  // Rollouts move devices: what this page counts changes with them.
  useEffect(() => onRolloutChange(() => refresh()), [refresh]);

  const s = summary.data;
  return (
    <main id="main">
      <h1>Fleet</h1>
      {summary.error ? <ErrorBox error={summary.error} /> : null}
      {!s ? (
        <Loading what="the fleet" />
      ) : (
        <div class="stats" data-testid="fleet-stats">
          <Stat label="devices" value={s.devices.active} href="/?state=" />
          <Stat label="online" value={s.devices.online} tone="ok" href="/?state=online" />
          <Stat label="offline" value={s.devices.offline} tone="muted" href="/?state=offline" />
          <Stat label="failing" value={s.devices.failing} tone={s.devices.failing > 0 ? 'bad' : 'ok'} href="/?state=failing" />
          <Stat label="rollouts running" value={s.rollouts.running} tone="info" href="/rollouts?state=running" />
          <Stat label="paused" value={s.rollouts.paused} tone={s.rollouts.paused > 0 ? 'warn' : ''} href="/rollouts?state=paused" />
        </div>
      )}
      <div class="grid">
        <Section title="Models: what runs where">
          {!s ? null : s.models.length === 0 ? (
            <Empty>
              No model yet. <a href="/models">Upload one</a>.
            </Empty>
          ) : (
            <table>
              <thead>
                <tr>
                  <th scope="col">Model</th>
                  <th scope="col">Target</th>
                  <th scope="col">Compliance</th>
                  <th scope="col">Versions running</th>
                </tr>
              </thead>
              <tbody>
                {s.models.map((m) => (
                  <tr key={m.name}>
                    <td>
                      <a href={path('/models', m.name)}>{m.name}</a>
                    </td>
                    <td>{m.target ?? '—'}</td>
                    <td class="wide">
                      <StackedBar
                        label={`${m.name} against ${m.target ?? 'its newest version'}`}
                        parts={[
                          { value: m.compliance.upToDate, tone: 'ok', label: 'up to date' },
                          { value: m.compliance.inProgress, tone: 'info', label: 'in progress' },
                          { value: m.compliance.behind, tone: 'muted', label: 'behind' },
                          { value: m.compliance.failed, tone: 'bad', label: 'failed' },
                        ]}
                      />
                      <span class="muted small">
                        {m.compliance.upToDate} up to date · {m.compliance.inProgress} in progress · {m.compliance.behind} behind ·{' '}
                        {m.compliance.failed} failed
                      </span>
                    </td>
                    <td>
                      {m.versions.map((v) => (
                        <span key={v.version} class="chip">
                          <a href={path('/models', m.name, 'versions', v.version)}>{v.version}</a>: {v.devices} ({v.online} online)
                        </span>
                      ))}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </Section>
        <Section title="Failing devices">
          {failing.error ? <ErrorBox error={failing.error} /> : null}
          {!failing.data ? null : failing.data.devices.length === 0 ? (
            <Empty>No device is failing.</Empty>
          ) : (
            <ul class="plain" data-testid="failing">
              {failing.data.devices.map((d) => {
                const error = lastError(d);
                return (
                  <li key={d.id}>
                    <a href={path('/devices', d.id)}>{d.id}</a>{' '}
                    {error ? (
                      <>
                        {error.model}: <code title={error.message}>{error.code}</code>
                      </>
                    ) : null}
                  </li>
                );
              })}
              {failing.data.next ? (
                <li>
                  <a href="/?state=failing">All failing devices</a>
                </li>
              ) : null}
            </ul>
          )}
        </Section>
        <Section title="Recent events">
          {events.error ? <ErrorBox error={events.error} /> : null}
          {!events.data ? null : events.data.events.length === 0 ? (
            <Empty>Nothing has happened on a device yet.</Empty>
          ) : (
            <ul class="plain events" data-testid="recent-events">
              {events.data.events.map((e) => (
                <EventRow key={e.id} event={e} />
              ))}
            </ul>
          )}
        </Section>
      </div>
      <Devices />
    </main>
  );
}

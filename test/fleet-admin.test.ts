/**
 * What a fleet admin runs a fleet with (issue 14), against real devices over MQTT: tags changed
 * under If-Match reaching the next rollout, rollouts that target an alias, each device's history,
 * the fleet summary, the compliance view per model, and rolling a live rollout back.
 */
import { encodeTensor, type GoldenVector } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;
const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]];
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
const devices: FleetDevice[] = [];

beforeAll(async () => {
  fleet = await startFleet({ rateLimitPerMinute: 100_000 });
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: sample });
  await fleet.register('mlp', '2.0.0', mlpModel(8).bytes, { sampleInputs: sample });
  // 3.0.0's golden vectors cannot match its own outputs: every device fails its acceptance test.
  const wrong: GoldenVector = {
    inputs: sample[0] ?? [],
    outputs: [encodeTensor('scores', 'float32', [1, 3], Float32Array.from([9, 9, 9]))],
  };
  await fleet.register('mlp', '3.0.0', mlpModel(9).bytes, { goldenVectors: [wrong] });
  for (let i = 0; i < 4; i++) devices.push(await fleet.startDevice(`adm-${i}`, { tags: ['site=lyon'] }));
  for (const device of devices) await fleet.api('PUT', `/v1/devices/${device.id}/desired/mlp`, { version: '1.0.0' });
  await until(() => devices.every((d) => d.activeVersion('mlp') === '1.0.0'), 'every device on 1.0.0');
}, 90_000);

afterAll(async () => {
  await fleet?.close();
});

const inject = (method: 'GET' | 'PATCH' | 'POST' | 'PUT', url: string, payload?: unknown, headers: Record<string, string> = {}) =>
  fleet.server.app.inject({
    method,
    url,
    headers: { ...auth, ...headers },
    ...(payload === undefined ? {} : { payload: payload as object }),
  });

describe('the admin API on a live fleet', () => {
  it('changes tags under If-Match, and the next rollout, given an alias, reaches exactly the retagged devices', async () => {
    const read = await inject('GET', '/v1/devices/adm-0');
    const etag = read.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const patched = await inject('PATCH', '/v1/devices/adm-0', { tags: ['site=lyon', 'ring=canary'] }, { 'if-match': etag });
    expect(patched.statusCode).toBe(200);
    expect(patched.json().tags).toEqual(['site=lyon', 'ring=canary']);
    expect(patched.headers.etag).not.toBe(etag);
    // A second admin who read the device before the change is refused, and told the current ETag.
    const stale = await inject('PATCH', '/v1/devices/adm-0', { tags: ['site=paris'] }, { 'if-match': etag });
    expect(stale.statusCode).toBe(412);
    expect(stale.json()).toMatchObject({ code: 'EF_PRECONDITION_FAILED' });
    expect(stale.headers.etag).toBe(patched.headers.etag);
    expect((await inject('GET', '/v1/devices/adm-0')).json().tags).toEqual(['site=lyon', 'ring=canary']);
    // Merge-patch content type accepted; an empty patch or an unknown field is refused.
    const merge = await inject('PATCH', '/v1/devices/adm-1', JSON.stringify({ tags: ['site=lyon', 'ring=canary'] }), {
      'content-type': 'application/merge-patch+json',
    });
    expect(merge.statusCode).toBe(200);
    expect((await inject('PATCH', '/v1/devices/adm-1', {})).json().code).toBe('EF_SCHEMA_INVALID');
    expect((await inject('PATCH', '/v1/devices/adm-1', { status: 'revoked' })).json().code).toBe('EF_SCHEMA_INVALID');
    const audit = (await inject('GET', '/v1/audit?target=device:adm-0&action=device.update')).json().entries;
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ before: { tags: ['site=lyon'] }, after: { tags: ['site=lyon', 'ring=canary'] } });

    await fleet.api('PUT', '/v1/models/mlp/aliases/production', { version: '2.0.0' });
    const created = await inject('POST', '/v1/rollouts', {
      model: 'mlp',
      version: 'production',
      selector: { tags: ['ring=canary'] },
      stages: [{ percent: 100 }],
    });
    expect(created.statusCode).toBe(201);
    expect(created.json()).toMatchObject({ version: '2.0.0', versionAlias: 'production' });
    expect(
      created
        .json()
        .devices.map((d: { id: string }) => d.id)
        .sort(),
    ).toEqual(['adm-0', 'adm-1']);
    // Moving the alias afterwards changes nothing the rollout decided.
    await fleet.api('PUT', '/v1/models/mlp/aliases/production', { version: '1.0.0' });
    const id = created.json().id as string;
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${id}`)).state === 'completed', 'the canary rollout to complete');
    expect((await fleet.api('GET', `/v1/rollouts/${id}`)).version).toBe('2.0.0');
    expect(devices.map((d) => d.activeVersion('mlp'))).toEqual(['2.0.0', '2.0.0', '1.0.0', '1.0.0']);
    expect(
      (
        await inject('POST', '/v1/rollouts', { model: 'mlp', version: 'nightly', selector: { all: true }, stages: [{ percent: 100 }] })
      ).json(),
    ).toMatchObject({ status: 404, code: 'EF_NOT_FOUND' });
    expect(
      (
        await inject('POST', '/v1/rollouts', { model: 'mlp', version: 'Bad Alias!', selector: { all: true }, stages: [{ percent: 100 }] })
      ).json(),
    ).toMatchObject({ code: 'EF_VERSION_INVALID' });
  }, 90_000);

  it('shows where the fleet stands: the summary and the compliance view per model', async () => {
    // The summary is read from the devices' reported states, written in batches: it shows the
    // canary rollout's two devices on 2.0.0 once their reports are stored.
    let summary = (await inject('GET', '/v1/fleet/summary')).json();
    await until(async () => {
      summary = (await inject('GET', '/v1/fleet/summary')).json();
      // Both canary devices' reports of 2.0.0 stored (they arrive one by one, in batches).
      const versions = summary.models.find((m: { name: string }) => m.name === 'mlp')?.versions ?? [];
      return versions.find((v: { version: string; devices: number }) => v.version === '2.0.0')?.devices === 2;
    }, 'the summary to show both canary devices on 2.0.0');
    expect(summary.devices).toMatchObject({ total: 4, active: 4, online: 4, offline: 0, failing: 0 });
    const mlp = summary.models.find((m: { name: string }) => m.name === 'mlp');
    expect(mlp.versions).toEqual([
      { version: '2.0.0', devices: 2, online: 2, variants: [{ variant: 'reference', devices: 2 }] },
      { version: '1.0.0', devices: 2, online: 2, variants: [{ variant: 'reference', devices: 2 }] },
    ]);
    expect(mlp.states).toMatchObject({ active: 4, failed: 0 });
    const compliance = (await inject('GET', '/v1/models/mlp/compliance?target=2.0.0')).json();
    expect(compliance).toMatchObject({ model: 'mlp', target: '2.0.0', devices: 4, upToDate: 2, inProgress: 0, behind: 2, failed: 0 });
    // By default the production alias (now 1.0.0) is the target.
    expect((await inject('GET', '/v1/models/mlp/compliance')).json()).toMatchObject({ target: '1.0.0', upToDate: 2, behind: 2 });
    expect((await inject('GET', '/v1/models/mlp/compliance?target=9.9.9')).json().code).toBe('EF_NOT_FOUND');
    expect((await inject('GET', '/v1/models/ghost/compliance')).json().code).toBe('EF_NOT_FOUND');
  });

  it('keeps each device’s history, with codes and times, and counts a failing device', async () => {
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '3.0.0',
      selector: { devices: ['adm-2'] },
      stages: [{ percent: 100 }],
      onGateFailure: 'pause',
      gates: { maxFailureRate: 0 },
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'paused', 'the failing rollout to pause');
    const history = (await inject('GET', '/v1/devices/adm-2/history?model=mlp')).json();
    const kinds = history.events.map((e: { kind: string }) => e.kind);
    expect(kinds).toContain('acceptance-failed');
    const failure = history.events.find((e: { kind: string }) => e.kind === 'acceptance-failed');
    expect(failure).toMatchObject({ model: 'mlp', version: '3.0.0', rolloutId: created.id, error: { code: 'EF_ACCEPTANCE_FAILED' } });
    expect(Date.parse(failure.at)).not.toBeNaN();
    expect(history.events.find((e: { kind: string; version: string }) => e.kind === 'activated' && e.version === '1.0.0')).toBeDefined();
    expect(kinds).not.toContain('download-progress');
    // Newest first, a page at a time, filtered by kind.
    const ids = history.events.map((e: { id: number }) => e.id);
    expect(ids).toEqual([...ids].sort((a, b) => b - a));
    const pages: number[] = [];
    let cursor: string | null = null;
    do {
      const page: { events: { id: number }[]; next: string | null } = (
        await inject('GET', `/v1/devices/adm-2/history?model=mlp&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).json();
      pages.push(...page.events.map((e) => e.id));
      cursor = page.next;
    } while (cursor);
    expect(pages).toEqual(ids);
    expect(
      (await inject('GET', '/v1/devices/adm-2/history?kind=activated'))
        .json()
        .events.every((e: { kind: string }) => e.kind === 'activated'),
    ).toBe(true);
    expect((await inject('GET', '/v1/devices/ghost/history')).json().code).toBe('EF_DEVICE_UNKNOWN');
    // Fleet-wide, newest first: the same failure with the device it happened on, paged alike.
    const fleetEvents = (await inject('GET', '/v1/device-events?kind=acceptance-failed')).json();
    expect(fleetEvents.events[0]).toMatchObject({ deviceId: 'adm-2', kind: 'acceptance-failed', version: '3.0.0' });
    const firstTwo = (await inject('GET', '/v1/device-events?limit=2')).json();
    expect(firstTwo.events).toHaveLength(2);
    expect(firstTwo.events[0].id).toBeGreaterThan(firstTwo.events[1].id);
    const following = (await inject('GET', `/v1/device-events?limit=2&cursor=${firstTwo.next}`)).json();
    expect(following.events[0].id).toBeLessThan(firstTwo.events[1].id);
    expect((await inject('GET', `/v1/devices/adm-2/history?cursor=${firstTwo.next}`)).json().code).toBe('EF_CURSOR_INVALID');
    expect((await inject('GET', '/v1/devices/adm-2/history?kind=nope')).json().code).toBe('EF_SCHEMA_INVALID');

    // The device reports the failure: it counts as failing, and lists filter on it.
    await until(async () => (await inject('GET', '/v1/fleet/summary')).json().devices.failing === 1, 'the failing device counted');
    expect((await inject('GET', '/v1/devices?failing=true')).json().devices.map((d: { id: string }) => d.id)).toEqual(['adm-2']);
    expect((await inject('GET', '/v1/models/mlp/compliance?target=3.0.0')).json()).toMatchObject({ failed: 1 });

    // Rolling the paused rollout back returns the device; a second rollback changes nothing.
    const rolled = await inject('POST', `/v1/rollouts/${created.id}/rollback`);
    expect(rolled.json()).toMatchObject({ state: 'rolled_back', reason: { requestedBy: 'env' } });
    expect((await inject('POST', `/v1/rollouts/${created.id}/rollback`)).json()).toMatchObject({ state: 'rolled_back' });
    await until(() => devices[2]?.activeVersion('mlp') === '1.0.0', 'adm-2 back on 1.0.0');
    // Its old error no longer makes it failing: it runs what it is meant to.
    await until(
      async () => (await inject('GET', '/v1/fleet/summary')).json().devices.failing === 0,
      'no failing device after the rollback',
    );
  }, 90_000);

  it('honours If-Match on rollout actions and aliases', async () => {
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { devices: ['adm-3'] },
      stages: [{ percent: 100, soakSeconds: 3600 }],
    });
    // Prometheus sees its progress and its gates as the engine measured them.
    // The engine measures the gates at its next pass after the device answered: wait for both.
    await until(async () => {
      const metrics = (await inject('GET', '/metrics')).body;
      return (
        metrics.includes(
          `edgefleet_rollout_devices{rollout="${created.id}",model="mlp",version="2.0.0",state="running",status="active"} 1`,
        ) && metrics.includes(`edgefleet_rollout_gate_value{rollout="${created.id}",model="mlp",version="2.0.0",gate="failure_rate"} 0`)
      );
    }, 'the rollout metrics');
    const metrics = (await inject('GET', '/metrics')).body;
    expect(metrics).toContain(`edgefleet_rollout_stage{rollout="${created.id}",model="mlp",version="2.0.0"} 0`);
    expect(metrics).toContain(`edgefleet_rollout_stages{rollout="${created.id}",model="mlp",version="2.0.0"} 1`);
    expect(metrics).toContain(`edgefleet_rollout_gate_value{rollout="${created.id}",model="mlp",version="2.0.0",gate="failure_rate"} 0`);
    expect(metrics).toContain(
      `edgefleet_rollout_gate_threshold{rollout="${created.id}",model="mlp",version="2.0.0",gate="failure_rate"} 0`,
    );
    const read = await inject('GET', `/v1/rollouts/${created.id}`);
    // The API shows the same readings, each against its threshold and which way it passes.
    expect(read.json().gates).toMatchObject({
      stage: 0,
      gates: expect.arrayContaining([
        { name: 'failure_rate', value: 0, threshold: 0, bound: 'max' },
        { name: 'devices_reporting', value: 1, threshold: expect.any(Number), bound: 'min' },
      ]),
    });
    expect(Date.parse(read.json().gates.measuredAt)).not.toBeNaN();
    const paused = await inject('POST', `/v1/rollouts/${created.id}/pause`, undefined, { 'if-match': read.headers.etag as string });
    expect(paused.json()).toMatchObject({ state: 'paused' });
    // The ETag read before the pause no longer matches: a resume based on it is refused.
    const stale = await inject('POST', `/v1/rollouts/${created.id}/resume`, undefined, { 'if-match': read.headers.etag as string });
    expect(stale.json()).toMatchObject({ status: 412, code: 'EF_PRECONDITION_FAILED' });
    expect((await fleet.api('GET', `/v1/rollouts/${created.id}`)).state).toBe('paused');
    expect(
      (await inject('POST', `/v1/rollouts/${created.id}/abort`, undefined, { 'if-match': paused.headers.etag as string })).json(),
    ).toMatchObject({
      state: 'aborted',
    });

    const alias = await inject('GET', '/v1/models/mlp/aliases/production');
    expect(alias.json()).toMatchObject({ alias: 'production', version: '1.0.0' });
    const moved = await inject(
      'PUT',
      '/v1/models/mlp/aliases/production',
      { version: '2.0.0' },
      { 'if-match': alias.headers.etag as string },
    );
    expect(moved.statusCode).toBe(200);
    const lost = await inject(
      'PUT',
      '/v1/models/mlp/aliases/production',
      { version: '1.0.0' },
      { 'if-match': alias.headers.etag as string },
    );
    expect(lost.json()).toMatchObject({ status: 412, code: 'EF_PRECONDITION_FAILED' });
    expect((await inject('PUT', '/v1/models/mlp/aliases/staging', { version: '1.0.0' }, { 'if-match': '*' })).statusCode).toBe(412);
    expect((await inject('GET', '/v1/models/mlp/aliases/production')).json().version).toBe('2.0.0');
  }, 60_000);
});

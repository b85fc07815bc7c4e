/**
 * The rollout engine against a real server (SQLite file, embedded broker) with devices that never
 * connect: what it writes into each device's desired state, and when a stage may pass. Each
 * assertion that something did not happen is made after `rollouts.tick()`, the engine's own step,
 * has run: the witness that it had its chance.
 */
import { numericProfile, observe, toWire } from '@edgefleet/drift';
import { type DeviceEvent, encodeMessageText, encodeTensor, type SignedDesiredState, type TelemetryWindow } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { describeClockContract } from '@edgefleet/test-utils/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer, uploadForm } from '../testing.ts';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
  for (const [version, seed] of [
    ['1.0.0', 1],
    ['2.0.0', 2],
  ] as const) {
    const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, seed))]];
    await register(server, 'mlp', version, mlpModel(seed).bytes, { sampleInputs: sample });
  }
}, 60_000);
afterAll(async () => {
  await server.close();
});

async function register(target: TestServer, name: string, version: string, bytes: Uint8Array, fields: Record<string, unknown> = {}) {
  const response = await target.app.inject({
    method: 'POST',
    url: `/v1/models/${name}/versions`,
    headers: target.auth,
    payload: uploadForm(version, bytes, fields),
  });
  expect(response.statusCode, response.body).toBe(201);
}

// biome-ignore lint/suspicious/noExplicitAny: tests read JSON bodies ad hoc
async function api(method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, payload?: unknown, target = server): Promise<any> {
  const response = await target.app.inject({
    method,
    url,
    headers: target.auth,
    ...(payload === undefined ? {} : { payload: payload as object }),
  });
  if (response.statusCode >= 300) throw new Error(`${method} ${url}: ${response.statusCode} ${response.body}`);
  return response.statusCode === 204 ? undefined : response.json();
}

const desiredOf = async (id: string, target = server) =>
  (await api('GET', `/v1/devices/${id}/desired`, undefined, target)) as SignedDesiredState;

describe('rollout engine', () => {
  it('never completes a stage nobody has reported on, even when every member is offline', async () => {
    await api('POST', '/v1/devices', { id: 'silent-1', tags: ['group=silent'] });
    const rollout = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['group=silent'] },
      stages: [{ percent: 100 }],
    });
    await server.rollouts.tick();
    const view = await api('GET', `/v1/rollouts/${rollout.id}`);
    expect(view.state).toBe('running');
    expect(view.stages[0]).toMatchObject({ size: 1, active: 0, failed: 0 });
    await api('POST', `/v1/rollouts/${rollout.id}/abort`);
  });

  it('sends the documents of members not heard from again when it starts driving a rollout (a replica may have died before publishing them)', async () => {
    for (const id of ['unsent-1', 'unsent-2']) await api('POST', '/v1/devices', { id, tags: ['group=unsent'] });
    const rollout = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['group=unsent'] },
      stages: [{ percent: 100 }],
    });
    expect(rollout.devices.map((d: { status: string }) => d.status)).toEqual(['assigned', 'assigned']);
    const published: string[] = [];
    const broker = server.broker as { publish: typeof server.broker.publish };
    const original = broker.publish.bind(server.broker);
    broker.publish = (topic, payload, options) => {
      published.push(topic);
      return original(topic, payload, options);
    };
    try {
      // As after a takeover (or a broker that came back): the engine starts driving it afresh.
      server.rollouts.resync();
      await server.rollouts.tick();
    } finally {
      broker.publish = original;
    }
    for (const id of ['unsent-1', 'unsent-2']) {
      expect(published).toContain(`edgefleet/v1/devices/${id}/desired`);
      expect(published).toContain(`edgefleet/v1/devices/${id}/commands`);
    }
    await api('POST', `/v1/rollouts/${rollout.id}/abort`);
  });

  it('pauses and resumes idempotently (a retried request changes nothing), and refuses both on a finished rollout', async () => {
    await api('POST', '/v1/devices', { id: 'pausing-1', tags: ['group=pausing'] });
    const rollout = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['group=pausing'] },
      stages: [{ percent: 100 }],
    });
    for (const [action, state] of [
      ['pause', 'paused'],
      ['pause', 'paused'],
      ['resume', 'running'],
      ['resume', 'running'],
    ] as const) {
      expect((await api('POST', `/v1/rollouts/${rollout.id}/${action}`)).state, action).toBe(state);
    }
    const audit = await api('GET', `/v1/audit?target=rollout:${rollout.id}`);
    const actions = audit.entries.map((e: { action: string }) => e.action);
    expect(actions.filter((a: string) => a === 'rollout.pause')).toHaveLength(1);
    expect(actions.filter((a: string) => a === 'rollout.resume')).toHaveLength(1);
    await api('POST', `/v1/rollouts/${rollout.id}/abort`);
    for (const action of ['pause', 'resume'] as const) {
      const refused = await server.app.inject({ method: 'POST', url: `/v1/rollouts/${rollout.id}/${action}`, headers: server.auth });
      expect(refused.statusCode, action).toBe(409);
      expect(refused.json()).toMatchObject({ code: 'EF_ROLLOUT_STATE' });
      expect(refused.json().detail).toContain('aborted');
    }
  });

  it('refuses an empty selector and targets the whole fleet only when told so explicitly', async () => {
    await api('POST', '/v1/devices', { id: 'everyone-1' });
    for (const selector of [{}, { tags: [] }, { devices: [] }, { tags: [], devices: [] }, { all: true, tags: ['x'] }]) {
      const refused = await server.app.inject({
        method: 'POST',
        url: '/v1/rollouts',
        headers: server.auth,
        payload: { model: 'mlp', version: '1.0.0', selector, stages: [{ percent: 100 }] },
      });
      expect(refused.statusCode, JSON.stringify(selector)).toBe(400);
      expect(refused.json().code).toBe('EF_ROLLOUT_SELECTOR_INVALID');
      expect(refused.json().detail).toContain('"all": true');
    }
    expect((await api('GET', '/v1/rollouts')).rollouts.filter((r: { state: string }) => r.state === 'running')).toHaveLength(0);
    const all = await api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { all: true }, stages: [{ percent: 100 }] });
    const devices = (await api('GET', '/v1/devices')).devices.map((d: { id: string }) => d.id).sort();
    expect(all.devices.map((d: { id: string }) => d.id).sort()).toEqual(devices);
    await api('POST', `/v1/rollouts/${all.id}/abort`);
  });

  it('restores each device’s desired state exactly when a rollout is aborted', async () => {
    await api('POST', '/v1/devices', { id: 'exact-1', tags: ['group=exact'] });
    await api('POST', '/v1/devices', { id: 'exact-2', tags: ['group=exact'] });
    await api('PUT', '/v1/devices/exact-1/desired/mlp', { version: '1.0.0' }); // exact-2 has no mlp at all
    const before = new Map([
      ['exact-1', (await desiredOf('exact-1')).payload.models],
      ['exact-2', (await desiredOf('exact-2').catch(() => undefined))?.payload.models ?? []],
    ]);
    const rollout = await api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['group=exact'] },
      stages: [{ percent: 100 }],
    });
    for (const id of before.keys()) expect((await desiredOf(id)).payload.models.map((m) => m.manifest.payload.version)).toEqual(['2.0.0']);
    const aborted = await api('POST', `/v1/rollouts/${rollout.id}/abort`);
    expect(aborted.state).toBe('aborted');
    for (const [id, models] of before) {
      const after = await desiredOf(id);
      expect(after.payload.models, id).toEqual(models);
      expect(after.payload.rollback).toBe(true);
    }
  });

  it('refuses to delete a version devices run or a rollout would roll back to, and never reuses a deleted version for other bytes', async () => {
    for (const [version, seed] of [
      ['1.0.0', 11],
      ['2.0.0', 12],
      ['3.0.0', 13],
    ] as const) {
      await register(server, 'kept', version, mlpModel(seed).bytes);
    }
    await api('POST', '/v1/devices', { id: 'keeper-1', tags: ['group=keeper'] });
    await api('POST', '/v1/devices', { id: 'keeper-2', tags: ['group=keeper'] });
    for (const id of ['keeper-1', 'keeper-2']) await api('PUT', `/v1/devices/${id}/desired/kept`, { version: '1.0.0' });
    const del = (version: string) =>
      server.app.inject({ method: 'DELETE', url: `/v1/models/kept/versions/${version}`, headers: server.auth });

    const running = await del('1.0.0');
    expect(running.statusCode).toBe(409);
    expect(running.json()).toMatchObject({ code: 'EF_MODEL_VERSION_IN_USE' });
    expect(running.json().detail).toMatch(/keeper-1/);
    // Stage 1 moves keeper-1 (by cohort) to 2.0.0; a rollback would return it to 1.0.0.
    const rollout = await api('POST', '/v1/rollouts', {
      model: 'kept',
      version: '2.0.0',
      selector: { devices: ['keeper-1', 'keeper-2'] },
      stages: [{ count: 1 }, { percent: 100 }],
    });
    const moved = rollout.devices.find((d: { stage: number }) => d.stage === 0).id;
    const stayed = moved === 'keeper-1' ? 'keeper-2' : 'keeper-1';
    await api('PUT', `/v1/devices/${stayed}/desired/kept`, { version: '3.0.0' });
    // Nobody's document names 1.0.0 now, but the rollout would roll `moved` back to it.
    for (const id of ['keeper-1', 'keeper-2']) expect(JSON.stringify(await desiredOf(id))).not.toContain('"version":"1.0.0"');
    const target = await del('1.0.0');
    expect(target.json()).toMatchObject({ code: 'EF_MODEL_VERSION_IN_USE' });
    expect(target.json().detail).toContain(rollout.id);
    expect((await del('2.0.0')).json()).toMatchObject({ code: 'EF_MODEL_VERSION_IN_USE' });
    await api('POST', `/v1/rollouts/${rollout.id}/abort`);
    // Once nothing needs it, it goes; its name stays taken by its bytes.
    await api('PUT', `/v1/devices/${moved}/desired/kept`, { version: '3.0.0' });
    expect((await del('2.0.0')).statusCode).toBe(204);
    expect((await del('1.0.0')).statusCode).toBe(204);
    const reused = await server.app.inject({
      method: 'POST',
      url: '/v1/models/kept/versions',
      headers: server.auth,
      payload: uploadForm('1.0.0', mlpModel(99).bytes),
    });
    expect(reused.statusCode).toBe(409);
    expect(reused.json()).toMatchObject({ code: 'EF_MODEL_VERSION_DELETED' });
    // The same bytes may come back under their own version.
    await register(server, 'kept', '1.0.0', mlpModel(11).bytes);
  });

  it('fails a device whose document would exceed the broker limit, visibly, without rewriting it again and again', async () => {
    const small = await startTestServer({ mqttMaxPayload: 4096 });
    try {
      const metadata = Object.fromEntries(Array.from({ length: 2 }, (_, i) => [`note-${i}`, 'x'.repeat(900)]));
      for (const name of ['first', 'second', 'third']) await register(small, name, '1.0.0', mlpModel(3).bytes, { metadata });
      await api('POST', '/v1/devices', { id: 'full-1', tags: ['group=full'] }, small);
      await api('PUT', '/v1/devices/full-1/desired/first', { version: '1.0.0' }, small);
      const refused = await small.app.inject({
        method: 'PUT',
        url: '/v1/devices/full-1/desired/second',
        headers: small.auth,
        payload: { version: '1.0.0' },
      });
      // Two entries fit in 4 KiB? Not with this metadata: the single assignment is refused with the code.
      expect(refused.json()).toMatchObject({ code: 'EF_DESIRED_STATE_TOO_LARGE', status: 422 });
      const before = await desiredOf('full-1', small);
      const rollout = await api(
        'POST',
        '/v1/rollouts',
        { model: 'third', version: '1.0.0', selector: { tags: ['group=full'] }, stages: [{ percent: 100 }] },
        small,
      );
      await small.rollouts.tick();
      const view = await api('GET', `/v1/rollouts/${rollout.id}`, undefined, small);
      expect(view.state).toBe('rolled_back');
      expect(view.reason).toMatchObject({ gate: 'maxFailureRate', errors: ['EF_DESIRED_STATE_TOO_LARGE'] });
      expect(view.devices).toEqual([expect.objectContaining({ id: 'full-1', status: 'failed', errorCode: 'EF_DESIRED_STATE_TOO_LARGE' })]);
      // The device's document was never replaced, and the engine does not try again on later ticks.
      await small.rollouts.tick();
      expect((await desiredOf('full-1', small)).payload.sequence).toBe(before.payload.sequence);
      const audit = await api('GET', `/v1/audit?target=device:full-1`, undefined, small);
      expect(audit.entries.filter((e: { action: string }) => e.action.startsWith('device.desired'))).toHaveLength(1);
    } finally {
      await small.close();
    }
  });

  describe('a shadow stage', () => {
    const bootId = '00000000-boot-0002';
    let seq = 0;
    const event = (deviceId: string, kind: DeviceEvent['kind'], version: string, error?: string): DeviceEvent => ({
      type: 'edgefleet.event/v1',
      deviceId,
      bootId,
      seq: seq++,
      at: new Date().toISOString(),
      kind,
      model: { name: 'mlp', version },
      ...(error ? { error: { code: error, message: 'shadow failed' } } : {}),
    });
    /** A telemetry window of 1.0.0 carrying a shadow summary of 2.0.0, through the real ingest. */
    async function shadowWindow(deviceId: string, rows: number, agreed: number): Promise<void> {
      const latency = numericProfile();
      const ratio = numericProfile();
      for (let i = 0; i < rows; i++) {
        observe(latency, 2 + i / rows);
        observe(ratio, 1.1);
      }
      const now = new Date().toISOString();
      const window: TelemetryWindow = {
        type: 'edgefleet.telemetry/v1',
        deviceId,
        bootId,
        seq: seq++,
        windowStart: now,
        windowEnd: now,
        model: { name: 'mlp', version: '1.0.0' },
        executionProvider: 'cpu',
        runs: rows,
        errors: [],
        latencyMs: toWire(latency) as TelemetryWindow['latencyMs'],
        features: [],
        dropped: 0,
        shadow: {
          version: '2.0.0',
          runs: rows,
          skipped: 0,
          errors: 0,
          rows,
          agreed,
          overlap: agreed,
          elements: rows * 3,
          maxAbsDiff: 0.2,
          absDiffSum: rows * 0.3,
          latencyRatio: toWire(ratio) as TelemetryWindow['latencyMs'],
        },
      };
      const text = encodeMessageText('telemetry', window);
      server.telemetry.observe({ deviceId, kind: 'telemetry' }, JSON.parse(text), new TextEncoder().encode(text));
      await server.telemetry.flush();
    }
    async function shadowRollout(group: string, agreed: number) {
      const ids = [`${group}-1`, `${group}-2`, `${group}-3`];
      for (const id of ids) {
        await api('POST', '/v1/devices', { id, tags: [`group=${group}`] });
        await api('PUT', `/v1/devices/${id}/desired/mlp`, { version: '1.0.0' });
      }
      // A member that runs no version of the model has nothing to compare with: it waits for the live stage.
      await api('POST', '/v1/devices', { id: `${group}-new`, tags: [`group=${group}`] });
      const rollout = await api('POST', '/v1/rollouts', {
        model: 'mlp',
        version: '2.0.0',
        selector: { tags: [`group=${group}`] },
        stages: [{ count: 4, shadow: true, shadowRate: 0.5 }, { percent: 100 }],
        gates: { minShadowAgreement: 0.9, minShadowRuns: 40, minDevicesReporting: 2 },
      });
      for (const id of ids) {
        const entry = (await desiredOf(id)).payload.models.find((m) => m.manifest.payload.name === 'mlp');
        expect(entry?.manifest.payload.version).toBe('1.0.0');
        expect(entry?.shadow?.manifest.payload.version).toBe('2.0.0');
        expect(entry?.shadow?.rate).toBe(0.5);
        expect(entry?.rolloutId).toBe(rollout.id);
      }
      expect((await desiredOf(`${group}-new`).catch(() => undefined))?.payload.models ?? []).toEqual([]);
      expect(rollout.stages[0]).toMatchObject({ shadow: true, size: 4, shadowing: 0 });
      // Two run the candidate in shadow, the third failed to and then did (its reported state says so).
      server.rollouts.observe(
        { deviceId: ids[0] as string, kind: 'events' },
        new Uint8Array(),
        event(ids[0] as string, 'shadow-installed', '2.0.0'),
      );
      server.rollouts.observe(
        { deviceId: ids[1] as string, kind: 'events' },
        new Uint8Array(),
        event(ids[1] as string, 'shadow-installed', '2.0.0'),
      );
      await server.rollouts.tick();
      let view = await api('GET', `/v1/rollouts/${rollout.id}`);
      expect(view.stages[0]).toMatchObject({ shadowing: 2, pending: 2 });
      expect(view.gates.gates).toContainEqual({ name: 'shadow_agreement', value: null, threshold: 0.9, bound: 'min' });
      server.rollouts.observe(
        { deviceId: ids[2] as string, kind: 'events' },
        new Uint8Array(),
        event(ids[2] as string, 'shadow-installed', '2.0.0'),
      );
      // Comparisons arrive, too few at first: the stage waits (witness: the engine ticked and read them).
      await shadowWindow(ids[0] as string, 10, agreed === 10 ? 10 : 5);
      await server.rollouts.tick();
      view = await api('GET', `/v1/rollouts/${rollout.id}`);
      expect(view).toMatchObject({ state: 'running', currentStage: 0 });
      expect(view.gates.shadow).toMatchObject({ devices: 1, runs: 10 });
      expect(view.gates.gates).toContainEqual({ name: 'shadow_runs', value: 10, threshold: 40, bound: 'min' });
      await shadowWindow(ids[1] as string, 20, agreed === 10 ? 20 : 10);
      await shadowWindow(ids[2] as string, 10, agreed === 10 ? 9 : 5);
      await server.rollouts.tick();
      return { rollout, ids, view: await api('GET', `/v1/rollouts/${rollout.id}`) };
    }

    it('sends the candidate in shadow beside what each device runs, then live once its comparisons pass', async () => {
      const { rollout, ids, view } = await shadowRollout('shadow-pass', 10);
      expect(view).toMatchObject({ state: 'running', currentStage: 1 });
      expect(view.gates.gates).toEqual([
        expect.objectContaining({ name: 'failure_rate' }),
        expect.objectContaining({ name: 'devices_reporting' }),
      ]);
      // Every member, the new one too, is sent 2.0.0 live: no shadow left in any document.
      for (const id of [...ids, 'shadow-pass-new']) {
        const entry = (await desiredOf(id)).payload.models.find((m) => m.manifest.payload.name === 'mlp');
        expect(entry?.manifest.payload.version).toBe('2.0.0');
        expect(entry?.shadow).toBeUndefined();
      }
      expect(view.devices.map((d: { status: string }) => d.status)).toEqual(['assigned', 'assigned', 'assigned', 'assigned']);
      const audit = await api('GET', `/v1/audit?target=rollout:${rollout.id}`);
      expect(audit.entries.find((e: { action: string }) => e.action === 'rollout.stage').after).toMatchObject({
        current_stage: 1,
        live: true,
        // What the shadow stage measured, on the record: 40 inputs on 3 devices, 39 of 40 rows agreed.
        shadow: { devices: 3, runs: 40, rows: 40, pooledAgreement: 39 / 40 },
      });
      await api('POST', `/v1/rollouts/${rollout.id}/abort`);
    });

    it('rolls back a candidate whose answers disagree: every device keeps its version, without the shadow', async () => {
      const { ids, view } = await shadowRollout('shadow-trip', 5);
      expect(view).toMatchObject({ state: 'rolled_back', currentStage: 0 });
      expect(view.reason).toMatchObject({ gate: 'minShadowAgreement', agreement: 20 / 40, rows: 40, limit: 0.9, runs: 40 });
      expect(view.reason.worstDevice).toMatchObject({ agreement: 0.5 });
      for (const id of ids) {
        const entry = (await desiredOf(id)).payload.models.find((m) => m.manifest.payload.name === 'mlp');
        expect(entry?.manifest.payload.version).toBe('1.0.0');
        expect(entry?.shadow).toBeUndefined();
      }
      expect((await desiredOf('shadow-trip-new').catch(() => undefined))?.payload.models ?? []).toEqual([]);
    });

    it('refuses stages that cannot run in order, and shadow gates without a shadow stage', async () => {
      await api('POST', '/v1/devices', { id: 'shadow-bad-1', tags: ['group=shadow-bad'] });
      const base = { model: 'mlp', version: '2.0.0', selector: { tags: ['group=shadow-bad'] } };
      for (const [body, text] of [
        [{ stages: [{ percent: 100, shadow: true }] }, /never answer/],
        [{ stages: [{ count: 1 }, { count: 2, shadow: true }, { percent: 100 }] }, /stage 1 is a shadow stage after stage 0/],
        [{ stages: [{ percent: 100, shadowRate: 0.5 }] }, /stage 0 has a shadowRate/],
        [{ stages: [{ percent: 100 }], gates: { minShadowAgreement: 0.9 } }, /minShadowAgreement judge shadow stages/],
        [{ stages: [{ count: 1, shadow: true }, { percent: 100 }], rollback: true }, /rollback runs no shadow stage/],
      ] as const) {
        const refused = await server.app.inject({
          method: 'POST',
          url: '/v1/rollouts',
          headers: server.auth,
          payload: { ...base, ...body },
        });
        expect(refused.statusCode, refused.body).toBe(400);
        expect(refused.json()).toMatchObject({ code: 'EF_ROLLOUT_STAGES_INVALID' });
        expect(refused.json().detail).toMatch(text);
      }
      const { rollouts } = await api('GET', '/v1/rollouts?state=running');
      expect(
        rollouts.filter((r: { model: string; version: string; spec: { selector: unknown } }) =>
          JSON.stringify(r.spec.selector).includes('shadow-bad'),
        ),
      ).toEqual([]);
    });
  });

  it('soaks a stage by the injected clock, not the wall clock: the next stage opens when an hour has passed on it', async () => {
    let clock = Date.now();
    const timed = await startTestServer({}, { clock: () => clock });
    try {
      await register(timed, 'mlp', '1.0.0', mlpModel(1).bytes);
      for (const id of ['soak-1', 'soak-2']) await api('POST', '/v1/devices', { id, tags: ['group=soak'] }, timed);
      const rollout = await api(
        'POST',
        '/v1/rollouts',
        { model: 'mlp', version: '1.0.0', selector: { tags: ['group=soak'] }, stages: [{ count: 1, soakSeconds: 3600 }, { percent: 100 }] },
        timed,
      );
      const first = rollout.devices.find((d: { stage: number }) => d.stage === 0).id as string;
      // The first stage's device says it activated (as its agent would, over MQTT).
      const activated = (deviceId: string): DeviceEvent => ({
        type: 'edgefleet.event/v1',
        deviceId,
        bootId: '00000000-boot-0001',
        seq: 0,
        at: new Date(clock).toISOString().replace('.000Z', 'Z'),
        kind: 'activated',
        model: { name: 'mlp', version: '1.0.0' },
      });
      timed.rollouts.observe({ deviceId: first, kind: 'events' }, new Uint8Array(), activated(first));
      const stageOf = async () => (await api('GET', `/v1/rollouts/${rollout.id}`, undefined, timed)).currentStage as number;
      await timed.rollouts.tick();
      expect((await api('GET', `/v1/rollouts/${rollout.id}`, undefined, timed)).stages[0]).toMatchObject({ active: 1 });
      clock += 3599_000;
      await timed.rollouts.tick();
      expect(await stageOf()).toBe(0);
      clock += 1000;
      await timed.rollouts.tick();
      expect(await stageOf()).toBe(1);
    } finally {
      await timed.close();
    }
  });
});

describeClockContract('the rollout engine (rollouts, their devices, their audit entries)', async (clock) => {
  const timed = await startTestServer({}, { clock: clock.now });
  await register(timed, 'mlp', '1.0.0', mlpModel(1).bytes);
  for (const id of ['clock-1', 'clock-2']) await api('POST', '/v1/devices', { id, tags: ['group=clock'] }, timed);
  let rollout: { id: string; devices: { id: string; stage: number }[] } | undefined;
  return {
    async act() {
      if (!rollout) {
        const stages = [{ count: 1, soakSeconds: 60 }, { percent: 100 }];
        rollout = await api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { tags: ['group=clock'] }, stages }, timed);
      } else {
        // The first stage's device activated (as its agent would say over MQTT); its soak is over by now.
        const deviceId = rollout.devices.find((d) => d.stage === 0)?.id as string;
        const at = new Date(clock.now()).toISOString();
        timed.rollouts.observe({ deviceId, kind: 'events' }, new Uint8Array(), {
          type: 'edgefleet.event/v1',
          deviceId,
          bootId: '00000000-boot-0001',
          seq: 0,
          at,
          kind: 'activated',
          model: { name: 'mlp', version: '1.0.0' },
        } satisfies DeviceEvent);
      }
      await timed.rollouts.tick();
      await timed.rollouts.tick();
    },
    async timestamps() {
      const id = rollout?.id as string;
      const view = await api('GET', `/v1/rollouts/${id}`, undefined, timed);
      const { entries } = await api('GET', `/v1/audit?target=rollout:${id}`, undefined, timed);
      return [view.createdAt, view.stageStartedAt, ...entries.map((e: { at: string }) => e.at)];
    },
    close: () => timed.close(),
  };
});

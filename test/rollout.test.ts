/**
 * Staged rollouts end to end: the real server drives real agents (runtime + MQTT) through stages,
 * gates on what the devices report, rolls back on its own, and survives its own restart.
 */
import { encodeTensor, type GoldenVector } from '@edgefleet/protocol';
import { heavyMlpModel, mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cohortOf, stageSizes } from '../apps/fleet-server/src/rollouts/spec.ts';
import { ADMIN_TOKEN, type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;
const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]];

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: sample });
  await fleet.register('mlp', '2.0.0', mlpModel(8).bytes, { sampleInputs: sample });
  // 3.0.0 ships golden vectors that its own outputs cannot match: every device fails acceptance.
  const wrong: GoldenVector = {
    inputs: sample[0] ?? [],
    outputs: [encodeTensor('scores', 'float32', [1, 3], Float32Array.from([9, 9, 9]))],
  };
  await fleet.register('mlp', '3.0.0', mlpModel(9).bytes, { goldenVectors: [wrong] });
  // 4.0.0 answers like the others but with 1.6 million multiply-adds a row instead of 12.
  await fleet.register('mlp', '4.0.0', heavyMlpModel(512, 6).bytes, {
    sampleInputs: [[encodeTensor('features', 'float32', [32, 4], seededValues(128, 3))]],
  });
}, 60_000);

afterAll(async () => {
  await fleet?.close();
});

async function devices(prefix: string, n: number, tag: string): Promise<FleetDevice[]> {
  const started: FleetDevice[] = [];
  for (let i = 0; i < n; i++) started.push(await fleet.startDevice(`${prefix}-${i}`, { tags: [tag] }));
  return started;
}

async function baseline(all: FleetDevice[], version: string): Promise<void> {
  for (const device of all) await fleet.api('PUT', `/v1/devices/${device.id}/desired/mlp`, { version });
  await until(() => all.every((d) => d.activeVersion('mlp') === version), `every device on ${version}`);
}

describe('cohorts and stages', () => {
  it('places devices deterministically and sizes stages cumulatively', () => {
    expect(cohortOf('ro-1', 'dev-a')).toBe(cohortOf('ro-1', 'dev-a'));
    expect(cohortOf('ro-1', 'dev-a')).not.toBe(cohortOf('ro-2', 'dev-a'));
    expect(stageSizes([{ percent: 1 }, { percent: 10 }, { percent: 50 }, { percent: 100 }], 1000)).toEqual([10, 100, 500, 1000]);
    expect(stageSizes([{ percent: 1 }, { percent: 10 }, { percent: 100 }], 6)).toEqual([1, 2, 6]);
    expect(stageSizes([{ count: 2 }, { percent: 100 }], 5)).toEqual([2, 5]);
  });
});

describe('staged rollouts over MQTT', () => {
  it('moves every device through three stages and reports each one active', async () => {
    const all = await devices('stage', 6, 'group=stage');
    await baseline(all, '1.0.0');
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['group=stage'] },
      stages: [{ percent: 17 }, { percent: 50 }, { percent: 100 }],
      gates: { maxFailureRate: 0 },
    });
    expect(created.stages.map((s: { size: number }) => s.size)).toEqual([2, 3, 6]);
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'completed', 'the rollout to complete');
    expect(all.every((d) => d.activeVersion('mlp') === '2.0.0')).toBe(true);
    const done = await fleet.api('GET', `/v1/rollouts/${created.id}`);
    expect(done.devices.every((d: { status: string }) => d.status === 'active')).toBe(true);
    // Its members, a page at a time, by stage then id; the list of rollouts carries none.
    const members: { id: string; stage: number; status: string }[] = [];
    let cursor: string | null = null;
    do {
      const page: { members: typeof members; next: string | null } = await fleet.api(
        'GET',
        `/v1/rollouts/${created.id}/members?limit=2${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.members.length).toBeLessThanOrEqual(2);
      members.push(...page.members);
      cursor = page.next;
    } while (cursor);
    expect(members.map((m) => m.id).sort()).toEqual(all.map((d) => d.id).sort());
    expect(members.map((m) => m.stage)).toEqual([0, 0, 1, 2, 2, 2]);
    expect(members.every((m) => m.status === 'active')).toBe(true);
    expect((await fleet.api('GET', `/v1/rollouts/${created.id}/members?stage=1`)).members).toHaveLength(1);
    expect((await fleet.api('GET', `/v1/rollouts/${created.id}/members?status=failed`)).members).toEqual([]);
    const listed = (await fleet.api('GET', '/v1/rollouts?state=completed')).rollouts.find((r: { id: string }) => r.id === created.id);
    expect(listed).toMatchObject({ id: created.id, state: 'completed' });
    expect(listed).not.toHaveProperty('devices');
    const audit = await fleet.api('GET', `/v1/audit?target=rollout:${created.id}`);
    const actions = audit.entries.map((e: { action: string }) => e.action).reverse();
    expect(actions.filter((a: string) => a.startsWith('rollout.'))).toEqual([
      'rollout.create',
      'rollout.stage',
      'rollout.stage',
      'rollout.complete',
    ]);
    // One signed desired-state batch per stage, audited once each.
    expect(actions.filter((a: string) => a === 'device.desired.set')).toHaveLength(3);
    for (const d of all) await d.stop();
  }, 90_000);

  it('trips the failure gate at the first stage and rolls the stage back; later stages never see the version', async () => {
    const all = await devices('bad', 5, 'group=bad');
    await baseline(all, '1.0.0');
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '3.0.0',
      selector: { tags: ['group=bad'] },
      stages: [{ count: 2 }, { percent: 100 }],
      gates: { maxFailureRate: 0 },
      onGateFailure: 'rollback',
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'rolled_back', 'the automatic rollback');
    const rolled = await fleet.api('GET', `/v1/rollouts/${created.id}`);
    expect(rolled.reason).toMatchObject({ gate: 'maxFailureRate', stage: 0, errors: ['EF_ACCEPTANCE_FAILED'] });
    const stageOne = new Set(rolled.devices.filter((d: { stage: number }) => d.stage === 0).map((d: { id: string }) => d.id));
    for (const device of all) {
      const document = await fleet.api('GET', `/v1/devices/${device.id}/desired`);
      const versions = document.payload.models.map((m: { manifest: { payload: { version: string } } }) => m.manifest.payload.version);
      if (stageOne.has(device.id))
        expect(document.payload.rollback, JSON.stringify({ id: device.id, seq: document.payload.sequence, rolled })).toBe(true);
      expect(versions).toEqual(['1.0.0']);
    }
    await until(() => all.every((d) => d.activeVersion('mlp') === '1.0.0'), 'every device on 1.0.0');
    for (const d of all) await d.stop();
  }, 90_000);

  it("counts a device that refuses the rollout's document as failed with its code at once, rather than waiting for it", async () => {
    // A device whose clock runs an hour behind: every document the server signs is not yet valid there.
    const late = await fleet.startDevice('late-0', { tags: ['group=late'], now: () => Date.now() - 3600_000 });
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['group=late'] },
      stages: [{ percent: 100 }],
      gates: { maxFailureRate: 0 },
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'rolled_back', 'the rollback');
    const rolled = await fleet.api('GET', `/v1/rollouts/${created.id}`);
    expect(rolled.reason).toMatchObject({ gate: 'maxFailureRate', errors: ['EF_DOCUMENT_NOT_YET_VALID'] });
    expect(late.activeVersion('mlp')).toBeUndefined();
    await late.stop();
  }, 60_000);

  it('trips the latency gate when the new version is far slower on the devices than the one it replaces, and rolls back', async () => {
    const all = await devices('slow', 3, 'group=slow');
    await baseline(all, '1.0.0');
    const verified = new Map<string, string[]>(all.map((d) => [d.id, []]));
    for (const d of all) d.runtime.on('verified', ({ model }) => verified.get(d.id)?.push(model.version));
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '4.0.0',
      selector: { tags: ['group=slow'] },
      stages: [{ count: 2 }, { percent: 100 }],
      gates: { maxLatencyRatio: 3, minDevicesReporting: 2 },
      onGateFailure: 'rollback',
    });
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'rolled_back',
      'the automatic rollback',
      60_000,
    );
    const rolled = await fleet.api('GET', `/v1/rollouts/${created.id}`);
    expect(rolled.reason).toMatchObject({ gate: 'maxLatencyRatio', stage: 0, devicesMeasured: 2, limit: 3 });
    expect(rolled.reason.medianRatio).toBeGreaterThan(3);
    // The third device was in the second stage: it never received 4.0.0.
    const later = rolled.devices.filter((d: { stage: number }) => d.stage === 1).map((d: { id: string }) => d.id);
    expect(later).toHaveLength(1);
    expect(verified.get(later[0] as string)).toEqual([]);
    for (const d of rolled.devices.filter((x: { stage: number }) => x.stage === 0)) expect(verified.get(d.id)).toContain('4.0.0');
    await until(() => all.every((d) => d.activeVersion('mlp') === '1.0.0'), 'every device back on 1.0.0');
    for (const d of all) await d.stop();
  }, 120_000);

  it('continues a rollout after the server is stopped and started again, and a device offline throughout converges when it returns', async () => {
    const all = await devices('resume', 4, 'group=resume');
    await baseline(all, '1.0.0');
    const sleeper = all[3] as FleetDevice;
    await sleeper.stop();
    const created = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['group=resume'] },
      // Two in the first stage: a stage nobody can report on (the sleeper alone) never passes.
      stages: [{ count: 2, soakSeconds: 2 }, { percent: 100 }],
      offlineAfterSeconds: 10,
    });
    await fleet.restartServer();
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).currentStage === 1,
      'the second stage after the restart',
      60_000,
    );
    const online = all.slice(0, 3);
    await until(() => online.every((d) => d.activeVersion('mlp') === '2.0.0'), 'the online devices on 2.0.0', 60_000);
    const back = await fleet.startDevice(sleeper.id, { existing: sleeper });
    await until(() => back.activeVersion('mlp') === '2.0.0', 'the returning device on 2.0.0', 60_000);
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${created.id}`)).state === 'completed',
      'the rollout to complete',
      60_000,
    );
    for (const d of [...online, back]) {
      expect(d.activeVersion('mlp')).toBe('2.0.0');
      await d.stop();
    }
  }, 120_000);

  it('rolls the whole group back to an older version only as a signed, audited rollback; a plain downgrade is refused at creation', async () => {
    const all = await devices('back', 3, 'group=back');
    await baseline(all, '1.0.0');
    const forward = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['group=back'] },
      stages: [{ percent: 100 }],
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${forward.id}`)).state === 'completed', 'the rollout to 2.0.0', 60_000);
    const spec = { model: 'mlp', version: '1.0.0', selector: { tags: ['group=back'] }, stages: [{ count: 1 }, { percent: 100 }] };
    const plain = await fleet.server.app.inject({
      method: 'POST',
      url: '/v1/rollouts',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: spec,
    });
    expect(plain.statusCode).toBe(409);
    expect(plain.json()).toMatchObject({ code: 'EF_MODEL_DOWNGRADE' });
    expect(plain.json().detail).toContain('"rollback": true');
    const back = await fleet.api('POST', '/v1/rollouts', { ...spec, rollback: true });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${back.id}`)).state === 'completed', 'the rollback rollout', 60_000);
    for (const device of all) {
      expect(device.activeVersion('mlp')).toBe('1.0.0');
      const document = await fleet.api('GET', `/v1/devices/${device.id}/desired`);
      expect(document.payload).toMatchObject({
        rollback: true,
        models: [{ manifest: { payload: { version: '1.0.0' } }, rolloutId: back.id }],
      });
    }
    const audit = await fleet.api('GET', `/v1/audit?target=rollout:${back.id}`);
    expect(audit.entries.find((e: { action: string }) => e.action === 'rollout.create').after).toMatchObject({
      rollback: true,
      version: '1.0.0',
    });
    expect(audit.entries.filter((e: { action: string }) => e.action === 'device.desired.rollback')).toHaveLength(2);
    for (const d of all) await d.stop();
  }, 120_000);

  it('refuses a second active rollout of the same model on the same devices', async () => {
    const [device] = await devices('busy', 1, 'group=busy');
    await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['group=busy'] },
      stages: [{ percent: 100, soakSeconds: 3600 }],
    });
    const response = await fleet.server.app.inject({
      method: 'POST',
      url: '/v1/rollouts',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { model: 'mlp', version: '1.0.0', selector: { tags: ['group=busy'] }, stages: [{ percent: 100 }] },
    });
    expect(response.json()).toMatchObject({ code: 'EF_ROLLOUT_CONFLICT', status: 409 });
    const del = await fleet.server.app.inject({
      method: 'DELETE',
      url: '/v1/models/mlp/versions/2.0.0',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(del.json()).toMatchObject({ code: 'EF_MODEL_VERSION_IN_USE' });
    await device?.stop();
  });
});

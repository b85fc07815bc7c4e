/**
 * The heart of the product at fleet scale: Silero VAD rolled out in three stages to 2 real agents
 * (runtime + agent) and 50 simulated devices, all over real MQTT with real downloads; then a model
 * that fails its acceptance test on part of the fleet is stopped at the first stage.
 */
import { enrollDevices, type Simulation, startSimulation } from '@edgefleet/device-agent';
import { encodeTensor } from '@edgefleet/protocol';
import { mlpModel, readModel, SILERO_VAD_V5_PATH, seededValues, sileroFrame } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;
const simulations: Simulation[] = [];

beforeAll(async () => {
  fleet = await startFleet();
}, 60_000);

afterAll(async () => {
  for (const simulation of simulations) await simulation.stop();
  await fleet?.close();
});

async function simulate(count: number, prefix: string, tags: string[], faults = {}): Promise<Simulation> {
  const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags, uses: count });
  const { devices, mqtt } = await enrollDevices(fleet.server.url, token, count, prefix);
  const simulation = await startSimulation({ serverUrl: fleet.server.url, mqttUrl: mqtt.tcp, keySet: fleet.keySet, devices, faults });
  simulations.push(simulation);
  return simulation;
}

describe('a fleet of real and simulated devices', () => {
  it('rolls Silero VAD out in 3 stages to 2 real agents and 50 simulated devices; every one reports it active', async () => {
    const frame = sileroFrame(2);
    await fleet.register('silero-vad', '5.0.0', readModel(SILERO_VAD_V5_PATH), {
      sampleInputs: [
        [
          encodeTensor('input', 'float32', [1, 512], frame.input),
          encodeTensor('state', 'float32', [2, 1, 128], frame.state),
          encodeTensor('sr', 'int64', [], frame.sr),
        ],
      ],
    });
    const real: FleetDevice[] = [
      await fleet.startDevice('real-1', { tags: ['fleet=vad'] }),
      await fleet.startDevice('real-2', { tags: ['fleet=vad'] }),
    ];
    const simulated = await simulate(50, 'vad', ['fleet=vad']);
    const rollout = await fleet.api('POST', '/v1/rollouts', {
      model: 'silero-vad',
      version: '5.0.0',
      selector: { tags: ['fleet=vad'] },
      stages: [{ percent: 10 }, { percent: 50 }, { percent: 100 }],
      gates: { maxFailureRate: 0 },
    });
    expect(rollout.stages.map((s: { size: number }) => s.size)).toEqual([6, 26, 52]);
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${rollout.id}`)).state === 'completed',
      'the rollout to complete',
      90_000,
    );
    expect(simulated.countActive('silero-vad', '5.0.0')).toBe(50);
    for (const device of real) {
      expect(device.activeVersion('silero-vad')).toBe('5.0.0');
      const { output } = await device.runtime.run('silero-vad', {
        input: { dtype: 'float32', shape: [1, 512], data: frame.input },
        state: { dtype: 'float32', shape: [2, 1, 128], data: frame.state },
        sr: { dtype: 'int64', shape: [], data: frame.sr },
      });
      expect((output?.data as Float32Array | undefined)?.[0]).toBeGreaterThan(0);
    }
    const listed = await fleet.api('GET', '/v1/devices?tag=fleet=vad');
    await until(
      async () =>
        (await fleet.api('GET', '/v1/devices?tag=fleet=vad')).devices.every(
          (d: { reported?: { models?: { active?: { version: string } }[] } }) => d.reported?.models?.[0]?.active?.version === '5.0.0',
        ),
      'every reported state on 5.0.0',
    );
    expect(listed.devices).toHaveLength(52);
    for (const device of real) await device.stop();
  }, 120_000);

  it('stops a model that fails acceptance on a quarter of the fleet at the first stage, and resumes downloads cut half-way', async () => {
    const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]];
    await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, { sampleInputs: sample });
    await fleet.register('mlp', '2.0.0', mlpModel(8).bytes, { sampleInputs: sample });
    const simulated = await simulate(40, 'flaky', ['fleet=flaky'], { failAcceptance: 0.25, dropDownload: 0.5 });
    const first = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '1.0.0',
      selector: { tags: ['fleet=flaky'] },
      stages: [{ percent: 100 }],
      gates: { maxFailureRate: 0.5 },
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${first.id}`)).state === 'completed', 'the tolerant rollout', 60_000);
    const baseline = simulated.countActive('mlp', '1.0.0');
    expect(baseline).toBeGreaterThan(20); // the quarter failing acceptance stays without the model
    const second = await fleet.api('POST', '/v1/rollouts', {
      model: 'mlp',
      version: '2.0.0',
      selector: { tags: ['fleet=flaky'] },
      stages: [{ percent: 25 }, { percent: 100 }],
      gates: { maxFailureRate: 0.05 },
      onGateFailure: 'rollback',
    });
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${second.id}`)).state === 'rolled_back', 'the gate to roll back', 60_000);
    const rolled = await fleet.api('GET', `/v1/rollouts/${second.id}`);
    expect(rolled.reason).toMatchObject({ gate: 'maxFailureRate', stage: 0, errors: ['EF_ACCEPTANCE_FAILED'] });
    const stageOne = new Set(rolled.devices.filter((d: { stage: number }) => d.stage === 0).map((d: { id: string }) => d.id));
    // No device outside stage 1 ever had 2.0.0 in its desired state.
    for (const device of simulated.devices.filter((d) => !stageOne.has(d.id))) expect(device.active.get('mlp')).not.toBe('2.0.0');
    await until(() => simulated.devices.every((d) => d.active.get('mlp') !== '2.0.0'), 'stage-1 devices back on 1.0.0', 30_000);
  }, 120_000);

  it('pauses a rollout whose version the simulated devices measure as 4x slower, and passes one at par', async () => {
    const sample = [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]];
    await fleet.register('ranker', '1.0.0', mlpModel(17).bytes, { sampleInputs: sample });
    await fleet.register('ranker', '1.1.0', mlpModel(18).bytes, { sampleInputs: sample });
    await fleet.register('ranker', '2.0.0', mlpModel(19).bytes, { sampleInputs: sample });
    const simulated = await simulate(30, 'speed', ['fleet=speed'], { slowdown: { version: '2.0.0', factor: 4 } });
    const rollout = async (version: string) =>
      fleet.api('POST', '/v1/rollouts', {
        model: 'ranker',
        version,
        selector: { tags: ['fleet=speed'] },
        stages: [{ percent: 20 }, { percent: 100 }],
        gates: { maxLatencyRatio: 1.5, minDevicesReporting: 3 },
        onGateFailure: 'pause',
      });
    const first = await rollout('1.0.0');
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${first.id}`)).state === 'completed',
      'the first version everywhere',
      60_000,
    );
    const par = await rollout('1.1.0');
    await until(
      async () => (await fleet.api('GET', `/v1/rollouts/${par.id}`)).state === 'completed',
      'a version at par passing the gate',
      60_000,
    );
    expect(simulated.countActive('ranker', '1.1.0')).toBe(30);
    const slow = await rollout('2.0.0');
    await until(async () => (await fleet.api('GET', `/v1/rollouts/${slow.id}`)).state === 'paused', 'the latency gate to pause', 60_000);
    const paused = await fleet.api('GET', `/v1/rollouts/${slow.id}`);
    expect(paused.reason).toMatchObject({ gate: 'maxLatencyRatio', stage: 0, limit: 1.5 });
    expect(paused.reason.medianRatio).toBeCloseTo(4, 6);
    // Paused at the first stage: the other 80% never got it.
    expect(simulated.countActive('ranker', '2.0.0')).toBe(paused.stages[0].size);
    expect(paused.stages[0].size).toBe(6);
  }, 120_000);
});

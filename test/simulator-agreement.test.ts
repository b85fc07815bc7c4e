/**
 * Simulated devices decide as real agents do. Tests and benchmarks trust the simulator, so each
 * case below is sent, as the same signed document, to a real agent (runtime + MQTT) and to a
 * simulated device, and both must end the same way: the same version active, the same event, the
 * same error code.
 */
import { type Simulation, startSimulation } from '@edgefleet/device-agent';
import {
  createDesiredState,
  createManifest,
  createTopicScheme,
  type DesiredStatePayload,
  type DeviceEvent,
  encodeMessage,
  encodeTensor,
  generateSigningKey,
  goldenVectorsEntry,
  type ManifestPayload,
  type SignedDocument,
  type SigningKey,
  signDesiredState,
  signManifest,
} from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateKeys } from '../apps/fleet-server/src/keys/index.ts';
import { type Fleet, type FleetDevice, startFleet, until } from './helpers/fleet.ts';

const topics = createTopicScheme();
let fleet: Fleet;
let real: FleetDevice;
let simulation: Simulation;
let key: SigningKey;
const events = new Map<string, DeviceEvent[]>([
  ['agree-real', []],
  ['agree-sim', []],
]);
let sequence = 1000;

beforeAll(async () => {
  fleet = await startFleet();
  for (const [version, seed] of [
    ['1.0.0', 1],
    ['2.0.0', 2],
  ] as const) {
    await fleet.register('mlp', version, mlpModel(seed).bytes, {
      sampleInputs: [[encodeTensor('features', 'float32', [1, 4], seededValues(4, seed))]],
    });
  }
  key = (await loadOrCreateKeys(fleet.server.config.dataDir)).signing;
  fleet.server.broker.onDeviceMessage((address, _payload, message) => {
    if (address.kind === 'events') events.get(address.deviceId)?.push(message as DeviceEvent);
  });
  real = await fleet.startDevice('agree-real');
  const { secret } = await fleet.api('POST', '/v1/devices', { id: 'agree-sim' });
  simulation = await startSimulation({
    serverUrl: fleet.server.url,
    mqttUrl: fleet.server.broker.urls.tcp,
    keySet: fleet.keySet,
    devices: [{ id: 'agree-sim', secret }],
  });
}, 60_000);

afterAll(async () => {
  await simulation?.stop();
  await fleet?.close();
});

async function registered(version: string): Promise<SignedDocument<ManifestPayload>> {
  return (await fleet.api('GET', `/v1/models/mlp/versions/${version}`)).manifest;
}

/** A manifest the fleet's key signs, derived from a registered one (what a compromised or careless signer could issue). */
function derived(from: ManifestPayload, change: Partial<ManifestPayload>, now = Date.now()): SignedDocument<ManifestPayload> {
  const { type: _type, issuedAt: _issued, expiresAt: _expires, ...fields } = { ...from, ...change };
  return signManifest(createManifest({ ...fields, now, ttlMs: 3_600_000 }), [key]);
}

const DECISIVE = new Set(['activated', 'install-failed', 'desired-state-rejected']);

/** Runs `send` for both devices and returns how each ended: its decisive event and active version. */
async function outcomes(send: (deviceId: string) => Promise<unknown>) {
  const seen = new Map([...events].map(([id, list]) => [id, list.length]));
  for (const deviceId of events.keys()) await send(deviceId);
  const outcome = (id: string) => (events.get(id) ?? []).slice(seen.get(id)).find((e) => DECISIVE.has(e.kind));
  await until(() => [...events.keys()].every((id) => outcome(id) !== undefined), 'both devices to decide');
  return [...events.keys()].map((id) => {
    const event = outcome(id) as DeviceEvent;
    const active = id === 'agree-real' ? real.activeVersion('mlp') : simulation.devices[0]?.active.get('mlp');
    return { kind: event.kind, code: event.error?.code, version: event.model?.version, active };
  });
}

/** The server assigns a version, as an admin would. */
const assign = (version: string) => outcomes((id) => fleet.api('PUT', `/v1/devices/${id}/desired/mlp`, { version }));

/** Sends both devices the same signed document, bypassing the server's own checks (what a compromised or careless signer could publish). */
function decide(manifest: SignedDocument<ManifestPayload>, options: { rollback?: boolean; signer?: SigningKey } = {}) {
  sequence++;
  return outcomes(async (deviceId) => {
    const payload: DesiredStatePayload = createDesiredState({
      deviceId,
      sequence,
      models: [{ manifest }],
      rollback: options.rollback ?? false,
    });
    const document = signDesiredState(payload, [options.signer ?? key]);
    await fleet.server.broker.publish(topics.build('desired', deviceId), encodeMessage('desired', document), { retain: true });
  });
}

describe('simulated devices and real agents decide alike', () => {
  it('on versions: newer installs, older is refused unless a signed rollback says so', async () => {
    for (const version of ['1.0.0', '2.0.0']) {
      const [agent, simulated] = await assign(version);
      expect(agent).toMatchObject({ kind: 'activated', active: version });
      expect(simulated).toEqual(agent);
    }
    const v1 = await registered('1.0.0');
    const cases = [
      { rollback: false, expected: { kind: 'install-failed', code: 'EF_MODEL_VERSION_ROLLBACK', active: '2.0.0' } },
      // Both hold 1.0.0 still (the version replaced is kept to roll back to): no download needed.
      { rollback: true, expected: { kind: 'activated', active: '1.0.0' } },
    ];
    for (const { rollback, expected } of cases) {
      const [agent, simulated] = await decide(v1, { rollback });
      expect(agent, `1.0.0 rollback=${rollback}`).toMatchObject(expected);
      expect(simulated).toEqual(agent);
    }
  }, 60_000);

  it('on targets, acceptance data, expiry and signatures', async () => {
    const v2 = (await registered('2.0.0')).payload;
    const cases = [
      {
        what: 'a model built for another device class',
        manifest: derived(v2, { version: '3.0.0', runtime: { ...v2.runtime, deviceClasses: ['jetson-orin'] } }),
        expected: { kind: 'install-failed', code: 'EF_MODEL_TARGET_MISMATCH', active: '1.0.0' },
      },
      {
        // Hash-listed and served, but not golden vectors at all: the acceptance test cannot run.
        what: 'acceptance data that is not golden vectors',
        manifest: derived(v2, {
          version: '3.1.0',
          files: [goldenVectorsEntry(v2.artifact.sha256, v2.artifact.size)],
          acceptance: { tolerance: { absolute: 1e-4, relative: 1e-3 }, vectors: [], vectorsFile: 'golden-vectors.json' },
        }),
        expected: { kind: 'install-failed', code: 'EF_ACCEPTANCE_DATA_INVALID', active: '1.0.0' },
      },
      {
        what: 'an expired manifest',
        manifest: derived(v2, { version: '3.2.0' }, Date.now() - 7_200_000),
        expected: { kind: 'desired-state-rejected', code: 'EF_DOCUMENT_EXPIRED', active: '1.0.0' },
      },
    ];
    for (const { what, manifest, expected } of cases) {
      const [agent, simulated] = await decide(manifest);
      expect(agent, what).toMatchObject(expected);
      expect(simulated, what).toEqual(agent);
    }
    const [agent, simulated] = await decide(derived(v2, { version: '3.3.0' }), { signer: generateSigningKey() });
    expect(agent).toMatchObject({ kind: 'desired-state-rejected', code: 'EF_SIGNATURE_UNKNOWN_KEY', active: '1.0.0' });
    expect(simulated).toEqual(agent);
    expect(real.activeVersion('mlp')).toBe('1.0.0');
  }, 60_000);
});

/**
 * A real fleet: the fleet server (registry, embedded broker), and devices running the real
 * runtime + agent over real MQTT. Desired state goes down signed; the devices converge.
 */

import { createMqttTransport, type Transport } from '@edgefleet/agent';
import {
  createDesiredState,
  createTopicScheme,
  encodeMessage,
  encodeTensor,
  generateSigningKey,
  type ReportedState,
  signDesiredState,
} from '@edgefleet/protocol';
import { mlpModel, readModel, SILERO_VAD_V5_PATH, seededValues } from '@edgefleet/test-utils';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_TOKEN, type Fleet, startFleet, until } from './helpers/fleet.ts';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startFleet();
  await fleet.register('mlp', '1.0.0', mlpModel(7).bytes, {
    sampleInputs: [[encodeTensor('features', 'float32', [1, 4], seededValues(4, 1))]],
  });
  await fleet.register('mlp', '2.0.0', mlpModel(8).bytes);
}, 60_000);

afterAll(async () => {
  await fleet?.close();
});

describe('agent and server over real MQTT', () => {
  it('installs the version the server assigns, reports it, and converges again after a change', async () => {
    const device = await fleet.startDevice('agent-1');
    await fleet.api('PUT', '/v1/devices/agent-1/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'mlp 1.0.0 active');
    const { scores } = await device.runtime.run('mlp', { features: { dtype: 'float32', shape: [1, 4], data: seededValues(4, 2) } });
    expect(scores?.shape).toEqual([1, 3]);
    await until(
      async () => (await fleet.api('GET', '/v1/devices/agent-1')).reported?.models?.[0]?.active?.version === '1.0.0',
      'reported 1.0.0',
    );
    await fleet.api('PUT', '/v1/devices/agent-1/desired/mlp', { version: '2.0.0' });
    await until(() => device.activeVersion('mlp') === '2.0.0', 'mlp 2.0.0 active');
    const view = await fleet.api('GET', '/v1/devices/agent-1');
    await until(async () => (await fleet.api('GET', '/v1/devices/agent-1')).reported?.appliedSequence === 2, 'applied sequence 2');
    expect(view.online).toBe(true);
    await device.stop();
  });

  it('does not reinstall after a restart or when the same document arrives twice', async () => {
    const device = await fleet.startDevice('agent-2');
    await fleet.api('PUT', '/v1/devices/agent-2/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'mlp 1.0.0 active');
    const downloaded = device.downloads();
    // Witness: the agent answers a document it has already applied with its reported state.
    const reports: ReportedState[] = [];
    const off = fleet.server.broker.onDeviceMessage((address, _payload, message) => {
      if (address.deviceId === 'agent-2' && address.kind === 'reported') reports.push(message as ReportedState);
    });
    const document = await fleet.api('GET', '/v1/devices/agent-2/desired');
    const before = reports.length;
    await fleet.server.broker.publish(createTopicScheme().build('desired', 'agent-2'), JSON.stringify(document), { retain: true });
    await until(() => reports.length > before, 'the agent to answer the repeated document');
    await device.agent.idle();
    expect(device.downloads()).toBe(downloaded);
    await device.stop();
    const restarted = await fleet.startDevice('agent-2', { existing: device });
    // The new boot reports once on connecting, and once more when it has handled the retained document.
    const firstBoot = reports[before]?.bootId;
    await until(() => reports.filter((r) => r.bootId !== firstBoot).length >= 2, 'the restarted agent to handle its retained document');
    await restarted.agent.idle();
    off();
    expect(restarted.activeVersion('mlp')).toBe('1.0.0');
    expect(restarted.downloads()).toBe(0);
    await restarted.stop();
  });

  it('converges when it comes back after missing changes while offline', async () => {
    const device = await fleet.startDevice('agent-3');
    await device.stop();
    await fleet.api('PUT', '/v1/devices/agent-3/desired/mlp', { version: '1.0.0' });
    await fleet.api('PUT', '/v1/devices/agent-3/desired/mlp', { version: '2.0.0' });
    const back = await fleet.startDevice('agent-3', { existing: device });
    await until(() => back.activeVersion('mlp') === '2.0.0', 'mlp 2.0.0 after coming back');
    await back.stop();
  });

  it('rolls back to an older version only when the server signs a rollback', async () => {
    const device = await fleet.startDevice('agent-4');
    await fleet.api('PUT', '/v1/devices/agent-4/desired/mlp', { version: '2.0.0' });
    await until(() => device.activeVersion('mlp') === '2.0.0', 'mlp 2.0.0');
    // A plain downgrade is refused by the server, naming the signed way back (the device would
    // refuse it too: test/simulator-agreement.test.ts sends it one).
    const plain = await fleet.server.app.inject({
      method: 'PUT',
      url: '/v1/devices/agent-4/desired/mlp',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: { version: '1.0.0' },
    });
    expect(plain.json()).toMatchObject({ code: 'EF_MODEL_DOWNGRADE', status: 409 });
    expect(device.activeVersion('mlp')).toBe('2.0.0');
    await fleet.api('PUT', '/v1/devices/agent-4/desired/mlp', { version: '1.0.0', rollback: true });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'mlp rolled back to 1.0.0');
    await device.stop();
  });

  it('refuses a desired state forged by someone who can publish but lacks the fleet key', async () => {
    const device = await fleet.startDevice('agent-5');
    await fleet.api('PUT', '/v1/devices/agent-5/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'mlp 1.0.0');
    const forger = generateSigningKey();
    const forged = signDesiredState(createDesiredState({ deviceId: 'agent-5', sequence: 999, models: [], remove: ['mlp'] }), [forger]);
    const events: { kind: string; error?: { code: string } }[] = [];
    const off = fleet.server.broker.onDeviceMessage((address, payload) => {
      if (address.deviceId === 'agent-5' && address.kind === 'events') events.push(JSON.parse(Buffer.from(payload).toString('utf8')));
    });
    // A privileged publisher (it could be anyone with broker access) without the fleet's signing key.
    await fleet.server.broker.publish(createTopicScheme().build('desired', 'agent-5'), encodeMessage('desired', forged), { retain: true });
    await until(() => events.some((e) => e.kind === 'desired-state-rejected'), 'the rejection event');
    off();
    await device.agent.idle();
    expect(device.activeVersion('mlp')).toBe('1.0.0');
    expect(events.find((e) => e.kind === 'desired-state-rejected')?.error?.code).toBe('EF_SIGNATURE_UNKNOWN_KEY');
    await device.stop();
  });

  it('converges when the broker drops the device in the middle of a download, installing once', async () => {
    const device = await fleet.startDevice('agent-6');
    const activations: string[] = [];
    device.runtime.on('activated', ({ model }) => activations.push(`${model.name}@${model.version}`));
    let dropped = false;
    device.runtime.on('download-progress', ({ bytes, total }) => {
      if (!dropped && bytes > 0 && bytes < total) {
        dropped = true;
        void fleet.server.broker.disconnect('agent-6');
      }
    });
    await fleet.register('silero-vad', '5.0.0', readModel(SILERO_VAD_V5_PATH));
    await fleet.api('PUT', '/v1/devices/agent-6/desired/silero-vad', { version: '5.0.0' });
    await until(() => device.activeVersion('silero-vad') === '5.0.0', 'silero-vad after the drop');
    expect(dropped).toBe(true);
    await until(() => device.agent.connected, 'the agent to reconnect');
    await device.agent.idle();
    expect(activations).toEqual(['silero-vad@5.0.0']);
    await until(
      async () =>
        (await fleet.api('GET', '/v1/devices/agent-6')).reported?.models?.some(
          (m: { name: string; active?: { version: string } }) => m.name === 'silero-vad' && m.active?.version === '5.0.0',
        ),
      'the reported state after reconnecting',
    );
    await device.stop();
  });
});

describe('agent start', () => {
  it('is subscribed to its desired state when start() resolves: a message published right then, not retained, arrives', async () => {
    const rejected: string[] = [];
    const off = fleet.server.broker.onDeviceMessage((address, _payload, message) => {
      const event = message as { kind?: string; error?: { code: string } };
      if (address.deviceId === 'agent-7' && address.kind === 'events' && event.kind === 'desired-state-rejected') {
        rejected.push(event.error?.code ?? '');
      }
    });
    const device = await fleet.startDevice('agent-7');
    // Not retained: only a subscription that exists now receives it.
    await fleet.server.broker.publish(createTopicScheme().build('desired', 'agent-7'), 'not json', { retain: false, qos: 1 });
    await until(() => rejected.length > 0, 'the agent to refuse the message it received');
    expect(rejected).toEqual(['EF_JSON_INVALID']);
    off();
    await device.stop();
  });
});

describe('agent commands', () => {
  it('reports its state when the server asks (report-state, resync), and ignores a malformed command', async () => {
    const reports: ReportedState[] = [];
    const off = fleet.server.broker.onDeviceMessage((address, _payload, message) => {
      if (address.deviceId === 'agent-8' && address.kind === 'reported') reports.push(message as ReportedState);
    });
    const device = await fleet.startDevice('agent-8');
    await until(() => reports.length >= 1, 'the report a connection sends');
    const topic = createTopicScheme().build('commands', 'agent-8');
    const send = (command: string) =>
      fleet.server.broker.publish(
        topic,
        encodeMessage('commands', {
          type: 'edgefleet.command/v1',
          id: `c-${command}`,
          issuedAt: new Date().toISOString(),
          command,
        } as never),
        { qos: 1 },
      );
    // Malformed first: the agent stays up, and the valid command after it is the one answered.
    await fleet.server.broker.publish(topic, '{"type":"edgefleet.command/v1","command":"format-disk"}', { qos: 1 });
    const before = reports.length;
    await send('report-state');
    await until(() => reports.length === before + 1, 'a report answering report-state');
    await send('resync');
    await until(() => reports.length >= before + 2, 'a report answering resync');
    off();
    await device.stop();
  });
});

describe('agent subscriptions', () => {
  it('subscribes again when the broker refuses its desired-state subscription (a cluster electing leaders), and converges', async () => {
    let refusals = 2;
    const warnings: string[] = [];
    const device = await fleet.startDevice('agent-9', {
      // The real MQTT transport, whose first two desired-state SUBSCRIBEs the broker "refuses".
      transport: (options) => {
        const real = createMqttTransport(options);
        return Object.assign(Object.create(real) as Transport, {
          subscribe: (topic: string, qos: 0 | 1) =>
            topic.endsWith('/desired') && refusals-- > 0
              ? Promise.reject(new Error('Subscribe error: Unspecified error'))
              : real.subscribe(topic, qos),
        });
      },
      log: (level, message) => {
        if (level === 'warn') warnings.push(message);
      },
    });
    await fleet.api('PUT', '/v1/devices/agent-9/desired/mlp', { version: '1.0.0' });
    await until(() => device.activeVersion('mlp') === '1.0.0', 'mlp 1.0.0 active after the refusals', 15_000);
    expect(refusals).toBeLessThan(0);
    expect(warnings.filter((w) => w.startsWith('could not subscribe to the desired state'))).toHaveLength(2);
    await device.stop();
  });
});

describe('agent without a broker', () => {
  it('stops at once while the broker is unreachable, saying nothing it cannot deliver', async () => {
    const lonely = await startFleet();
    try {
      const device = await lonely.startDevice('agent-alone');
      await lonely.stopServer();
      await until(() => !device.agent.connected, 'the agent to notice the broker is gone');
      // Before the fix the goodbye message (QoS 1) waited for a broker that never came back.
      await device.stop();
      expect(device.agent.connected).toBe(false);
    } finally {
      await lonely.startServer();
      await lonely.close();
    }
  });
});

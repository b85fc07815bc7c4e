/**
 * The contract of the agent's Transport (@edgefleet/agent), run against a real broker over every
 * link it speaks (MQTT over TCP, MQTT over WebSocket): credentials checked before anything else,
 * messages both ways at QoS 1, a dropped connection retried on its own with nothing published at
 * QoS 1 lost, the will said only for an ungraceful drop. Typed by what it exercises.
 */
import { describe, expect, it } from 'vitest';

export interface TransportUnderTest {
  readonly connected: boolean;
  connect(): Promise<void>;
  publish(topic: string, payload: string, options: { readonly qos: 0 | 1; readonly retain?: boolean }): Promise<void>;
  subscribe(topic: string, qos: 0 | 1): Promise<void>;
  on(event: 'connect' | 'close', listener: () => void): () => void;
  on(event: 'message', listener: (message: { readonly topic: string; readonly payload: Uint8Array }) => void): () => void;
  end(options?: { readonly graceful?: boolean }): Promise<void>;
}

export interface TransportOptionsLike {
  readonly url: string;
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
  readonly will?: { readonly topic: string; readonly payload: string; readonly qos: 0 | 1; readonly retain: boolean };
  readonly reconnectPeriodMs?: number;
}

/** A device's credential and the topics the broker lets it use. */
export interface BrokerDevice {
  readonly id: string;
  readonly secret: string;
  /** A topic it may publish to, that the broker side observes. */
  readonly publishTopic: string;
  /** A topic it may subscribe to, that the broker side publishes to. */
  readonly subscribeTopic: string;
  /** Another device's topic: subscribing is refused. */
  readonly forbiddenTopic: string;
  /** Where its will goes. */
  readonly willTopic: string;
  /** A valid message for `publishTopic`, distinct for each `n` (the broker may check what devices send). */
  message(n: number): string;
  /** A valid message for `willTopic`. */
  will(): string;
}

export interface TransportHarness {
  /** The broker URL for this link (mqtt://…, ws://…). */
  readonly url: string;
  createTransport(options: TransportOptionsLike): TransportUnderTest;
  /** A new device the broker accepts. */
  device(): Promise<BrokerDevice>;
  /** Revokes a device: its next connection is refused as revoked. */
  revoke(id: string): Promise<void>;
  /** What the broker side received on a topic, in order. */
  received(topic: string): readonly string[];
  /** Publishes from the broker side (retained or not). */
  send(topic: string, payload: string, retain: boolean): Promise<void>;
  /** Drops a device's connection from the broker side (a network fault). */
  drop(id: string): Promise<void>;
}

async function until(check: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

export function describeTransportContract(name: string, makeHarness: () => Promise<TransportHarness>): void {
  describe(`Transport contract: ${name}`, () => {
    const open = async (harness: TransportHarness, device: BrokerDevice, extra: Partial<TransportOptionsLike> = {}) => {
      const transport = harness.createTransport({
        url: harness.url,
        clientId: device.id,
        username: device.id,
        password: device.secret,
        reconnectPeriodMs: 100,
        ...extra,
      });
      const messages: { topic: string; text: string }[] = [];
      transport.on('message', ({ topic, payload }) => messages.push({ topic, text: new TextDecoder().decode(payload) }));
      return { transport, messages };
    };

    it('connects with its credential and carries messages both ways at QoS 1, retained ones on subscribing', async () => {
      const harness = await makeHarness();
      const device = await harness.device();
      await harness.send(device.subscribeTopic, 'retained before', true);
      const { transport, messages } = await open(harness, device);
      await transport.connect();
      expect(transport.connected).toBe(true);
      await transport.subscribe(device.subscribeTopic, 1);
      await until(() => messages.some((m) => m.text === 'retained before'), 'the retained message');
      await harness.send(device.subscribeTopic, 'live', false);
      await until(() => messages.some((m) => m.text === 'live'), 'the live message');
      expect(messages.map((m) => m.topic)).toEqual([device.subscribeTopic, device.subscribeTopic]);
      await transport.publish(device.publishTopic, device.message(1), { qos: 1 });
      await until(() => harness.received(device.publishTopic).includes(device.message(1)), 'the broker side to receive it');
      await transport.end();
      expect(transport.connected).toBe(false);
    });

    it('is refused, not retried, for a wrong secret and once revoked', async () => {
      const harness = await makeHarness();
      const device = await harness.device();
      const wrong = (await open(harness, { ...device, secret: `${device.secret}x` })).transport;
      await expect(wrong.connect()).rejects.toMatchObject({ code: 'EF_UNAUTHORIZED' });
      expect(wrong.connected).toBe(false);
      await harness.revoke(device.id);
      const revoked = (await open(harness, device)).transport;
      // MQTT 3.1.1 refuses with a bare code: a revoked device cannot always be told from a wrong secret.
      const refusal = await revoked.connect().then(
        () => undefined,
        (error: { code?: string }) => error.code,
      );
      expect(['EF_UNAUTHORIZED', 'EF_DEVICE_REVOKED']).toContain(refusal);
      expect(revoked.connected).toBe(false);
    });

    it("refuses a subscription to another device's topic with EF_FORBIDDEN", async () => {
      const harness = await makeHarness();
      const { transport } = await open(harness, await harness.device());
      await transport.connect();
      await expect(transport.subscribe((await harness.device()).forbiddenTopic, 1)).rejects.toMatchObject({ code: 'EF_FORBIDDEN' });
      await transport.end();
    });

    it('reconnects on its own after a drop, says close then connect, and loses nothing published at QoS 1 meanwhile', async () => {
      const harness = await makeHarness();
      const device = await harness.device();
      const { transport } = await open(harness, device);
      const seen: string[] = [];
      transport.on('close', () => seen.push('close'));
      transport.on('connect', () => seen.push('connect'));
      await transport.connect();
      await harness.drop(device.id);
      await until(() => seen.includes('close'), 'the close event');
      const queued = transport.publish(device.publishTopic, device.message(2), { qos: 1 });
      await until(() => seen.filter((s) => s === 'connect').length >= 2, 'the reconnection');
      await queued;
      await until(() => harness.received(device.publishTopic).includes(device.message(2)), 'the queued message after reconnecting');
      expect(seen.slice(0, 3)).toEqual(['connect', 'close', 'connect']);
      await transport.end();
    });

    it('has its will said on an ungraceful drop only', async () => {
      const harness = await makeHarness();
      const dropped = await harness.device();
      const graceful = await harness.device();
      const withWill = (device: BrokerDevice) => ({
        will: { topic: device.willTopic, payload: device.will(), qos: 1 as const, retain: false },
      });
      const a = (await open(harness, dropped, withWill(dropped))).transport;
      const b = (await open(harness, graceful, withWill(graceful))).transport;
      await a.connect();
      await b.connect();
      await b.end({ graceful: true });
      await a.end({ graceful: false });
      await harness.drop(dropped.id).catch(() => undefined);
      await until(() => harness.received(dropped.willTopic).includes(dropped.will()), 'the will of the dropped device');
      // Witness that the graceful one had its chance: it ended first, so its will would have come first.
      expect(harness.received(graceful.willTopic)).not.toContain(graceful.will());
    });
  });
}

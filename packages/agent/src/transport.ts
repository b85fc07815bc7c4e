/**
 * The agent's link to the fleet: connect, publish, subscribe, and the events of a connection that
 * comes and goes. One implementation, over mqtt.js (TCP `mqtt://`, TLS `mqtts://`, WebSocket
 * `ws://` / `wss://`, in Node and in browsers); the contract every implementation passes is in
 * @edgefleet/test-utils (transportContract).
 */
import { EdgefleetError } from '@edgefleet/protocol';
import mqtt, { type MqttClient } from 'mqtt';

export interface TransportEvents {
  /** Connected (again): subscriptions are renewed by the caller, the broker's session is clean. */
  connect: undefined;
  /** The connection dropped or was ended; a dropped one is retried on its own. */
  close: undefined;
  message: { readonly topic: string; readonly payload: Uint8Array };
  /** Something went wrong on the link that the transport handles itself (logged, never thrown). */
  error: Error;
}

export interface Transport {
  readonly connected: boolean;
  /**
   * Connects and resolves on the first accepted connection; afterwards a dropped connection is
   * retried on its own. A broker that refuses the credential rejects it with EF_UNAUTHORIZED (or
   * EF_DEVICE_REVOKED) and is not retried: a refused credential does not become valid by retrying.
   */
  connect(): Promise<void>;
  /**
   * Publishes at QoS 0 or 1; at QoS 1 a message published while disconnected waits for the next
   * connection. Resolves once sent (QoS 0) or acknowledged (QoS 1).
   */
  publish(topic: string, payload: string, options: { readonly qos: 0 | 1; readonly retain?: boolean }): Promise<void>;
  subscribe(topic: string, qos: 0 | 1): Promise<void>;
  on<K extends keyof TransportEvents>(event: K, listener: (payload: TransportEvents[K]) => void): () => void;
  /** Ends the connection; `graceful` (default) sends what is queued first and leaves without the will. */
  end(options?: { readonly graceful?: boolean }): Promise<void>;
}

export interface MqttTransportOptions {
  /** mqtt://host:port, mqtts://, ws://host:port/mqtt or wss:// (browsers: ws/wss only). */
  readonly url: string;
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
  /** Published by the broker if the connection drops without a graceful end. */
  readonly will?: { readonly topic: string; readonly payload: string; readonly qos: 0 | 1; readonly retain: boolean };
  /** Default 30 s. */
  readonly keepaliveS?: number;
  /**
   * Delay before the first reconnection attempt; default 2 s. Each failed attempt doubles it, up to
   * `maxReconnectPeriodMs`, with jitter (see reconnectDelay); a connection resets it.
   */
  readonly reconnectPeriodMs?: number;
  /** The longest delay between attempts; default 60 s. */
  readonly maxReconnectPeriodMs?: number;
  /** Random numbers in [0, 1) for the jitter (tests); default Math.random. */
  readonly random?: () => number;
  /** Default 10 s. */
  readonly connectTimeoutMs?: number;
}

/**
 * The delay before reconnection attempt `attempt` (0 for the first after a drop): capped exponential
 * backoff with "equal jitter", half fixed and half random, min(max, initial × 2^attempt) × [0.5, 1).
 * A fleet that lost its broker does not come back in lockstep, and each delay is at least as long
 * as the one before it until the cap.
 */
export function reconnectDelay(attempt: number, initialMs: number, maxMs: number, random: () => number = Math.random): number {
  const base = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.round(base * (0.5 + random() / 2)));
}

/** MQTT CONNACK return codes 4 and 5 (v3.1.1): bad user name or password, not authorized. */
const REFUSED = new Set([4, 5]);

export function createMqttTransport(options: MqttTransportOptions): Transport {
  const initialMs = options.reconnectPeriodMs ?? 2000;
  const maxMs = Math.max(initialMs, options.maxReconnectPeriodMs ?? 60_000);
  const random = options.random ?? Math.random;
  let client: MqttClient | undefined;
  const listeners: { [K in keyof TransportEvents]: Set<(payload: TransportEvents[K]) => void> } = {
    connect: new Set(),
    close: new Set(),
    message: new Set(),
    error: new Set(),
  };
  const emit = <K extends keyof TransportEvents>(event: K, payload: TransportEvents[K]) => {
    for (const listener of listeners[event]) listener(payload);
  };
  const need = (): MqttClient => {
    if (!client) throw new EdgefleetError('EF_INTERNAL_ERROR', 'the transport is not connected yet: call connect() first');
    return client;
  };

  return {
    get connected() {
      return client?.connected ?? false;
    },

    connect() {
      if (client) return Promise.reject(new EdgefleetError('EF_INTERNAL_ERROR', 'connect() was called twice'));
      const connection = mqtt.connect(options.url, {
        clientId: options.clientId,
        username: options.username,
        password: options.password,
        protocolVersion: 4,
        clean: true,
        keepalive: options.keepaliveS ?? 30,
        reconnectPeriod: reconnectDelay(0, initialMs, maxMs, random),
        connectTimeout: options.connectTimeoutMs ?? 10_000,
        ...(options.will ? { will: { ...options.will } } : {}),
      });
      client = connection;
      // mqtt.js waits options.reconnectPeriod after each close, read anew every time: set the
      // next delay when an attempt starts, and start over once connected.
      let attempt = 0;
      connection.on('reconnect', () => {
        attempt += 1;
        connection.options.reconnectPeriod = reconnectDelay(attempt, initialMs, maxMs, random);
      });
      connection.on('connect', () => {
        attempt = 0;
        connection.options.reconnectPeriod = reconnectDelay(0, initialMs, maxMs, random);
      });
      connection.on('connect', () => emit('connect', undefined));
      connection.on('close', () => emit('close', undefined));
      connection.on('message', (topic, payload) => emit('message', { topic, payload }));
      return new Promise<void>((resolve, reject) => {
        const onConnect = () => {
          connection.off('error', onError);
          connection.on('error', (error) => emit('error', error));
          resolve();
        };
        const onError = (error: Error) => {
          const code = (error as { code?: number }).code;
          if (code === undefined || !REFUSED.has(code)) {
            emit('error', error); // a transient failure: mqtt.js tries again
            return;
          }
          connection.off('connect', onConnect);
          connection.off('error', onError);
          connection.on('error', () => undefined); // late errors of a connection given up
          connection.end(true);
          reject(
            new EdgefleetError(
              error.message.includes('revoked') ? 'EF_DEVICE_REVOKED' : 'EF_UNAUTHORIZED',
              `the broker at ${options.url} refused ${options.username}: ${error.message}`,
            ),
          );
        };
        connection.once('connect', onConnect);
        connection.on('error', onError);
      });
    },

    publish(topic, payload, publishOptions) {
      // One promise per message (publishAsync inside an async function made three): thousands of
      // agents in one process publish through here.
      return new Promise<void>((resolve, reject) =>
        need().publish(topic, payload, { qos: publishOptions.qos, retain: publishOptions.retain ?? false }, (error) =>
          error ? reject(error) : resolve(),
        ),
      );
    },

    async subscribe(topic, qos) {
      const forbidden = () =>
        new EdgefleetError('EF_FORBIDDEN', `the broker refused the subscription to ${topic} (not this device's topic?)`);
      let granted: { qos: number }[];
      try {
        granted = await need().subscribeAsync(topic, { qos });
      } catch (error) {
        // mqtt.js rejects a SUBACK with a failure code itself (ErrorWithSubackPacket).
        const suback = (error as { packet?: { granted?: (number | { qos: number })[] } }).packet;
        if (suback?.granted?.some((g) => (typeof g === 'number' ? g : g.qos) >= 128)) throw forbidden();
        throw error;
      }
      if (granted.some((g) => g.qos >= 128)) throw forbidden();
    },

    on(event, listener) {
      listeners[event].add(listener);
      return () => listeners[event].delete(listener);
    },

    async end(endOptions = {}) {
      if (!client) return;
      await client.endAsync(endOptions.graceful === false);
    },
  };
}

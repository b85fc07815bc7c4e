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
  /** Delay before each reconnection attempt; default 2 s. */
  readonly reconnectPeriodMs?: number;
  /** Default 10 s. */
  readonly connectTimeoutMs?: number;
}

/** MQTT CONNACK return codes 4 and 5 (v3.1.1): bad user name or password, not authorized. */
const REFUSED = new Set([4, 5]);

export function createMqttTransport(options: MqttTransportOptions): Transport {
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
        reconnectPeriod: options.reconnectPeriodMs ?? 2000,
        connectTimeout: options.connectTimeoutMs ?? 10_000,
        ...(options.will ? { will: { ...options.will } } : {}),
      });
      client = connection;
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

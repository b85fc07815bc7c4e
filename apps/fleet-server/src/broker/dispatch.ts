/**
 * What every broker does with a message a device published, whichever broker carried it: find the
 * device and kind from the topic, decode and validate the payload once, hand it to the server's
 * consumers (rollouts, telemetry, history), and write presence and reported state behind.
 *
 * The embedded broker calls it after its own authorization; an external broker has authorized the
 * publish with its own ACLs (the device may publish only to its own topics) before the server, a
 * subscriber, sees it.
 */
import { type DeviceTopic, decodeMessage, EdgefleetError, type Presence, type ReportedState, type TopicScheme } from '@edgefleet/protocol';
import { failingFlag } from '../devices/failing.ts';
import type { ServerMetrics } from '../metrics/index.ts';
import type { DevicesTable } from '../store/schema.ts';
import type { WriteBehind } from '../store/write-behind.ts';

export type DeviceMessageListener = (address: DeviceTopic, payload: Uint8Array, message?: unknown) => void;

export interface DeviceMessageDispatch {
  /** A message a device published (already authorized): decoded, validated, handed on. */
  fromDevice(topic: string, payload: Uint8Array): void;
  /** Counts a message the server published (metrics only). */
  fromServer(topic: string): void;
  /** Online/offline and last seen, written behind. */
  recordDevice(deviceId: string, values: Partial<Pick<DevicesTable, 'online' | 'reported'>>): void;
  onDeviceMessage(listener: DeviceMessageListener): () => void;
}

export interface DispatchOptions {
  readonly topics: TopicScheme;
  readonly metrics: ServerMetrics;
  readonly writes: WriteBehind;
  /** Largest payload accepted (bytes): an external broker may be configured with a larger limit. */
  readonly maxPayload: number;
  readonly log: { warn(obj: object, msg: string): void };
  readonly now: () => number;
}

/** Parsed topics kept (about 150 bytes each). */
const PARSED_TOPICS = 100_000;

/** Kinds whose payload is decoded for the consumers (the others are handled where they arrive). */
const DECODED = new Set(['reported', 'presence', 'events', 'telemetry']);

export function createDeviceMessageDispatch(options: DispatchOptions): DeviceMessageDispatch {
  const { topics, metrics, writes, log, now } = options;
  const listeners = new Set<DeviceMessageListener>();
  // Topics seen before, parsed: each device publishes on the same few again and again, and a parse
  // (prefix, levels, the device id's pattern) is a measurable share of a message's cost at ingest
  // rates. Valid topics only; emptied when full, so it stays bounded whatever the fleet's size.
  const parsedTopics = new Map<string, DeviceTopic>();
  const parseTopic = (topic: string): DeviceTopic => {
    let address = parsedTopics.get(topic);
    if (address === undefined) {
      address = Object.freeze(topics.parse(topic));
      if (parsedTopics.size >= PARSED_TOPICS) parsedTopics.clear();
      parsedTopics.set(topic, address);
    }
    return address;
  };
  const recordDevice: DeviceMessageDispatch['recordDevice'] = (deviceId, values) =>
    writes.update(`device:${deviceId}`, { ...values, last_seen_at: new Date(now()).toISOString() }, async (trx, set) => {
      // Whether the device is failing is judged against its desired state as committed with the batch.
      const failing = set.reported ? { failing: await failingFlag(trx, deviceId, JSON.parse(set.reported) as ReportedState) } : {};
      await trx
        .updateTable('devices')
        .set({ ...set, ...failing })
        .where('id', '=', deviceId)
        .execute();
    });

  return {
    recordDevice,
    onDeviceMessage(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    fromServer(topic) {
      try {
        metrics.mqttMessage('out', parseTopic(topic).kind);
      } catch {
        // not one of ours
      }
    },
    fromDevice(topic, payload) {
      let address: DeviceTopic;
      try {
        address = parseTopic(topic);
      } catch {
        return;
      }
      metrics.mqttMessage('in', address.kind);
      if (payload.byteLength > options.maxPayload) {
        metrics.mqttRefused('payload-too-large');
        log.warn(
          { deviceId: address.deviceId, kind: address.kind, code: 'EF_MESSAGE_TOO_LARGE', bytes: payload.byteLength },
          'refused a device message above EDGEFLEET_MQTT_MAX_PAYLOAD',
        );
        return;
      }
      // Decoded (and validated) once here for every consumer; a malformed message reaches none.
      let message: unknown;
      try {
        if (DECODED.has(address.kind)) message = decodeMessage(address, payload);
      } catch (error) {
        metrics.mqttRefused(error instanceof EdgefleetError ? error.code : 'bad-message');
        // The device's mistake, not the server's: its code and what is wrong, without a stack trace.
        log.warn(
          {
            deviceId: address.deviceId,
            kind: address.kind,
            code: error instanceof EdgefleetError ? error.code : 'EF_JSON_INVALID',
            err: error instanceof Error ? error.message : String(error),
          },
          'refused a malformed device message',
        );
        return;
      }
      for (const listener of listeners) {
        try {
          listener(address, payload, message);
        } catch (error) {
          log.warn({ err: error }, 'a device message listener failed');
        }
      }
      if (address.kind === 'reported') {
        recordDevice(address.deviceId, { reported: JSON.stringify(message as ReportedState) });
      } else if (address.kind === 'presence') {
        recordDevice(address.deviceId, { online: (message as Presence).state === 'online' ? 1 : 0 });
      }
    },
  };
}

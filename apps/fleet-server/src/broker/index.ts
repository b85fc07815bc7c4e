/**
 * The MQTT broker behind an interface: embedded aedes by default; the scale-out issue adds a client
 * of an external broker with the same shape.
 */
import type { DeviceTopic } from '@edgefleet/protocol';

export interface BrokerMessage {
  readonly topic: string;
  readonly payload: Uint8Array;
}

/**
 * A publish refused because the broker is stopping: expected during a shutdown (a telemetry
 * acknowledgement then is not sent; the device sends the window again and gets it after the
 * restart), never an error to report.
 */
export class BrokerStoppingError extends Error {
  constructor(topic: string) {
    super(`the broker is stopping: nothing more is published (${topic})`);
    this.name = 'BrokerStoppingError';
  }
}

export interface FleetBroker {
  /** Publishes as the server (privileged); rejects with BrokerStoppingError once close() began. */
  publish(topic: string, payload: Uint8Array | string, options?: { retain?: boolean; qos?: 0 | 1 }): Promise<void>;
  /** Drops a device's connection at once (revocation). */
  disconnect(deviceId: string): Promise<void>;
  isConnected(deviceId: string): boolean;
  /**
   * Every message a device published on one of its own topics (after authorization), for the
   * server's consumers: events, telemetry, reported state. Events, reported state and presence come
   * decoded and validated as `message` (a malformed one is refused and reaches no listener).
   * Returns the function that unsubscribes.
   */
  onDeviceMessage(listener: (address: DeviceTopic, payload: Uint8Array, message?: unknown) => void): () => void;
  readonly connectedCount: number;
  /** Where devices connect: mqtt://host:port and ws://host:port/mqtt. */
  readonly urls: { readonly tcp: string; readonly ws: string };
  close(): Promise<void>;
}

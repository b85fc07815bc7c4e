/**
 * The MQTT broker behind an interface: embedded aedes by default (embedded.ts), or an external
 * broker the server is a privileged client of (external.ts: Mosquitto 2 with dynamic security, or
 * any MQTT broker that authenticates devices through the server's HTTP hooks).
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
  /**
   * Lets a new device connect with its secret. The embedded broker checks every CONNECT against
   * the database and needs nothing; an external broker is told the credential (and the device's
   * topics) now. Rejects with EF_BROKER_UNAVAILABLE when the broker did not take it.
   */
  admitDevice(deviceId: string, secret: string): Promise<void>;
  /** Drops a device's connection at once and for good (revocation, deletion). */
  disconnect(deviceId: string): Promise<void>;
  isConnected(deviceId: string): boolean;
  /**
   * Every message a device published on one of its own topics (after authorization), for the
   * server's consumers: events, telemetry, reported state. Events, reported state and presence come
   * decoded and validated as `message` (a malformed one is refused and reaches no listener).
   * Returns the function that unsubscribes.
   */
  onDeviceMessage(listener: (address: DeviceTopic, payload: Uint8Array, message?: unknown) => void): () => void;
  /**
   * Called when the connection to an external broker came back after a loss: retained messages may
   * have gone with a broker restart, so the server publishes every desired state again. The
   * embedded broker, which lives and dies with the server, never calls it.
   */
  onReconnect(listener: () => void): () => void;
  /** Clients connected to the broker (an external broker's own count, its server clients included). */
  readonly connectedCount: number;
  /** Where devices connect: mqtt://host:port and ws://host:port/mqtt. */
  readonly urls: { readonly tcp: string; readonly ws: string };
  close(): Promise<void>;
}

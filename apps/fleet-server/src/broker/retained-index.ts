/**
 * Retained messages by exact topic. aedes' memory persistence answers a SUBSCRIBE by testing every
 * retained topic against each subscribed pattern, wildcard or not. Every device subscribes to its
 * own exact topics while every device keeps a retained document, report and presence: a connect
 * or reconnect storm of N devices tests N × 3N topics (10,000 devices: 300 million tests, seconds
 * of the broker's only thread, measured in the rollout benchmark's server profile). An exact topic
 * is now looked up by name; a pattern with `+` or `#` still goes to the persistence's own search.
 */
import { Readable } from 'node:stream';

interface RetainedPacket {
  readonly topic: string;
  readonly payload: { readonly length: number };
}

/** The part of an aedes persistence this index wraps (aedes-persistence's memory implementation). */
export interface RetainedPersistence {
  storeRetained(packet: RetainedPacket, cb?: (error?: Error | null) => void): unknown;
  createRetainedStream(pattern: string): Readable;
  createRetainedStreamCombi(patterns: string[]): Readable;
}

const isExact = (pattern: string) => !pattern.includes('+') && !pattern.includes('#');

/** Wraps `persistence` in place (aedes calls it through the broker): same answers, exact topics by name. */
export function indexRetainedByTopic<P extends RetainedPersistence>(persistence: P): P {
  const retained = new Map<string, RetainedPacket>();
  const store = persistence.storeRetained.bind(persistence);
  const search = persistence.createRetainedStream.bind(persistence);
  const searchAll = persistence.createRetainedStreamCombi.bind(persistence);
  const byName = (patterns: readonly string[]) =>
    Readable.from(patterns.flatMap((topic) => (retained.has(topic) ? [retained.get(topic) as RetainedPacket] : [])));

  persistence.storeRetained = (packet, cb) => {
    // An empty retained payload deletes the topic's retained message [MQTT-3.3.1-10].
    if (packet.payload.length === 0) retained.delete(packet.topic);
    else retained.set(packet.topic, { ...packet });
    return store(packet, cb);
  };
  persistence.createRetainedStream = (pattern) => (isExact(pattern) ? byName([pattern]) : search(pattern));
  persistence.createRetainedStreamCombi = (patterns) => (patterns.every(isExact) ? byName(patterns) : searchAll(patterns));
  return persistence;
}

/**
 * Encoding and decoding of MQTT payloads by topic kind: size limit, strict UTF-8 JSON, schema, and
 * the rule that a message about a device travels only on that device's own topics.
 */
import { utf8Encode } from '../encoding/index.ts';
import { EdgefleetError } from '../errors/index.ts';
import { MESSAGE_LIMITS, MESSAGE_SCHEMAS, type MessageOf } from '../schemas/index.ts';
import type { DeviceTopic, TopicKind } from '../topics/index.ts';
import { parseAndValidate, validate } from '../validation/index.ts';

export interface DecodeOptions {
  /** Override the default limit for this kind (MESSAGE_LIMITS). */
  readonly maxBytes?: number;
}

/**
 * Decodes a payload received on a device topic. Throws EF_MESSAGE_TOO_LARGE, EF_JSON_INVALID,
 * EF_SCHEMA_INVALID, or EF_SCHEMA_INVALID when the payload names another device than the topic
 * (a device publishing "as" another one).
 *
 * @example
 * const address = topics.parse(packet.topic);
 * const window = decodeMessage(address, packet.payload); // typed by address.kind
 */
export function decodeMessage<K extends TopicKind>(
  address: DeviceTopic & { kind: K },
  payload: Uint8Array | string,
  options: DecodeOptions = {},
): MessageOf<K> {
  const message = parseAndValidate(MESSAGE_SCHEMAS[address.kind], payload, {
    maxBytes: options.maxBytes ?? MESSAGE_LIMITS[address.kind],
  }) as MessageOf<K>;
  const named = deviceNamedIn(message);
  if (named !== undefined && named !== address.deviceId) {
    throw new EdgefleetError(
      'EF_SCHEMA_INVALID',
      `${address.kind} message names device "${named}" but arrived on the topic of "${address.deviceId}"`,
      {
        details: { topicDeviceId: address.deviceId, payloadDeviceId: named },
      },
    );
  }
  return message;
}

/** Validates and serializes a message for its topic kind, as UTF-8 bytes. */
export function encodeMessage<K extends TopicKind>(kind: K, message: MessageOf<K>): Uint8Array {
  return utf8Encode(encodeMessageText(kind, message));
}

/**
 * Validates and serializes a message for its topic kind, as JSON text: what an MQTT client that
 * takes strings (mqtt.js, in browsers too) publishes, without a round trip through bytes.
 */
export function encodeMessageText<K extends TopicKind>(kind: K, message: MessageOf<K>): string {
  validate(MESSAGE_SCHEMAS[kind], message);
  const text = JSON.stringify(message);
  const limit = MESSAGE_LIMITS[kind];
  // A UTF-16 code unit is at most 3 UTF-8 bytes: count them only for a text that might be too large.
  const size = text.length * 3 <= limit ? text.length : utf8Encode(text).length;
  if (size > limit) {
    throw new EdgefleetError('EF_MESSAGE_TOO_LARGE', `${kind} message is ${size} bytes, above the limit of ${limit}`, {
      details: { size, limit },
    });
  }
  return text;
}

function deviceNamedIn(message: unknown): string | undefined {
  const record = message as { deviceId?: unknown; payload?: { deviceId?: unknown } };
  const id = record.deviceId ?? record.payload?.deviceId;
  return typeof id === 'string' ? id : undefined;
}

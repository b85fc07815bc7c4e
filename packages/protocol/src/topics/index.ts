/**
 * The MQTT topic scheme of a fleet.
 *
 *   <root>/v1/devices/<deviceId>/<kind>
 *
 * One subtree per device keeps authorization a prefix check, lets the server subscribe to one kind
 * across the fleet with a single-level wildcard (`<root>/v1/devices/+/telemetry`), and lets an
 * external broker's ACLs express the same rules with `%c`/`%u` patterns. The protocol version is a
 * topic level so that a v2 fleet can run beside v1 devices during an upgrade.
 */
import { PROTOCOL_DEFAULTS } from '../defaults.ts';
import { EdgefleetError } from '../errors/index.ts';
import { assertDeviceId, isDeviceId } from '../ids/index.ts';

export type TopicDirection = 'to-device' | 'from-device';

export interface TopicKindSpec {
  /** Who publishes: the server (`to-device`) or the device itself (`from-device`). */
  readonly direction: TopicDirection;
  /** Retained messages are what a (re)connecting subscriber gets first. */
  readonly retain: boolean;
  readonly qos: 0 | 1;
  readonly description: string;
}

/** Every kind of topic a device has. Broker ACLs, the agent and the server all derive from this. */
export const TOPIC_KINDS = {
  desired: {
    direction: 'to-device',
    retain: true,
    qos: 1,
    description: 'Signed desired-state document: which model versions the device should run.',
  },
  reported: {
    direction: 'from-device',
    retain: true,
    qos: 1,
    description: 'What the device actually runs, on which execution provider, and the last desired sequence it applied.',
  },
  presence: {
    direction: 'from-device',
    retain: true,
    qos: 1,
    description: 'online on connect; offline as the last will when the connection drops.',
  },
  events: {
    direction: 'from-device',
    retain: false,
    qos: 1,
    description: 'Progress and outcome of installs: download progress, verified, activated, failed (with code), rolled back.',
  },
  telemetry: {
    direction: 'from-device',
    retain: false,
    qos: 1,
    description: 'One telemetry window: latency, errors, input and output profiles.',
  },
  'telemetry-ack': {
    direction: 'to-device',
    retain: false,
    qos: 1,
    description: 'The server has durably stored these telemetry windows; the device may drop them from its queue.',
  },
  commands: {
    direction: 'to-device',
    retain: false,
    qos: 1,
    description: 'Requests that change nothing on their own: report state now, flush telemetry, re-read desired state.',
  },
  'artifact-request': {
    direction: 'from-device',
    retain: false,
    qos: 1,
    description: 'An MQTT-only device asks for a byte range of an artifact.',
  },
  'artifact-chunk': {
    direction: 'to-device',
    retain: false,
    qos: 1,
    description: 'A byte range of an artifact, answering an artifact-request.',
  },
} as const satisfies Record<string, TopicKindSpec>;

export type TopicKind = keyof typeof TOPIC_KINDS;
export const TOPIC_KIND_NAMES = Object.keys(TOPIC_KINDS) as TopicKind[];

export interface DeviceTopic {
  readonly deviceId: string;
  readonly kind: TopicKind;
}

export const PROTOCOL_VERSION = 'v1';
export const DEFAULT_TOPIC_ROOT = PROTOCOL_DEFAULTS.topicRoot;
const ROOT_LEVEL = /^[A-Za-z0-9_-]{1,32}$/;
const MAX_ROOT_LEVELS = 4;

export interface TopicScheme {
  readonly root: string;
  /** The topic of `kind` for one device. Refuses device ids that could escape their subtree. */
  build(kind: TopicKind, deviceId: string): string;
  /** The inverse of build; throws EF_TOPIC_INVALID for anything build could not have produced. */
  parse(topic: string): DeviceTopic;
  /** The subscription filter for one kind across every device (server side). */
  fleetFilter(kind: TopicKind): string;
  /** May this device publish to this topic? Only its own `from-device` topics. */
  deviceMayPublish(deviceId: string, topic: string): boolean;
  /**
   * May this device subscribe to this filter? Only exact (wildcard-free) `to-device` topics of its
   * own, plus its own retained `reported` state so that a restarted device can read what it last said.
   */
  deviceMaySubscribe(deviceId: string, filter: string): boolean;
}

/**
 * @example
 * const topics = createTopicScheme();
 * topics.build('desired', 'cam-042'); // 'edgefleet/v1/devices/cam-042/desired'
 * topics.parse('edgefleet/v1/devices/cam-042/telemetry'); // { deviceId: 'cam-042', kind: 'telemetry' }
 */
export function createTopicScheme(root: string = DEFAULT_TOPIC_ROOT): TopicScheme {
  const rootLevels = root.split('/');
  // A root may not start with $ ([MQTT-4.7.2-1] reserves those for the broker) or hold wildcards.
  if (rootLevels.length > MAX_ROOT_LEVELS || !rootLevels.every((level) => ROOT_LEVEL.test(level))) {
    throw new EdgefleetError('EF_TOPIC_INVALID', `topic root "${root}" must be 1-${MAX_ROOT_LEVELS} levels of A-Z a-z 0-9 _ -`);
  }
  const prefix = `${root}/${PROTOCOL_VERSION}/devices/`;

  function parse(topic: string): DeviceTopic {
    if (!topic.startsWith(prefix)) {
      throw new EdgefleetError('EF_TOPIC_INVALID', `topic "${clip(topic)}" is not under "${prefix}"`);
    }
    const rest = topic.slice(prefix.length).split('/');
    const [deviceId, kind] = rest;
    if (rest.length !== 2 || deviceId === undefined || kind === undefined) {
      throw new EdgefleetError('EF_TOPIC_INVALID', `topic "${clip(topic)}" must be ${prefix}<deviceId>/<kind>`);
    }
    if (!isDeviceId(deviceId)) {
      throw new EdgefleetError('EF_TOPIC_INVALID', `topic "${clip(topic)}" names an invalid device id`);
    }
    if (!Object.hasOwn(TOPIC_KINDS, kind)) {
      throw new EdgefleetError(
        'EF_TOPIC_INVALID',
        `topic "${clip(topic)}" has unknown kind "${clip(kind)}"; expected one of ${TOPIC_KIND_NAMES.join(', ')}`,
      );
    }
    return { deviceId, kind: kind as TopicKind };
  }

  function tryParse(topic: string): DeviceTopic | undefined {
    try {
      return parse(topic);
    } catch {
      return undefined;
    }
  }

  return {
    root,
    build(kind, deviceId) {
      if (!Object.hasOwn(TOPIC_KINDS, kind)) throw new EdgefleetError('EF_TOPIC_INVALID', `unknown topic kind "${clip(String(kind))}"`);
      return `${prefix}${assertDeviceId(deviceId)}/${kind}`;
    },
    parse,
    fleetFilter(kind) {
      if (!Object.hasOwn(TOPIC_KINDS, kind)) throw new EdgefleetError('EF_TOPIC_INVALID', `unknown topic kind "${clip(String(kind))}"`);
      return `${prefix}+/${kind}`;
    },
    deviceMayPublish(deviceId, topic) {
      const address = tryParse(topic);
      return address !== undefined && address.deviceId === deviceId && TOPIC_KINDS[address.kind].direction === 'from-device';
    },
    deviceMaySubscribe(deviceId, filter) {
      const address = tryParse(filter);
      return (
        address !== undefined &&
        address.deviceId === deviceId &&
        (TOPIC_KINDS[address.kind].direction === 'to-device' || address.kind === 'reported')
      );
    },
  };
}

function clip(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/**
 * Mosquitto 2's dynamic-security plugin, driven over its control topic: the server registers each
 * device as a broker client (username = client id = device id, its secret as password) with a role
 * of its own that allows exactly the device's topics, and deletes both on revocation (Mosquitto
 * then disconnects the device at once).
 *
 * Why a role per device: Mosquitto 2.0's dynamic-security ACLs match topics literally; `%c`/`%u`
 * patterns are a feature of its ACL file only (checked on 2.0.11: a role allowing
 * `…/devices/%u/telemetry` refuses the device's own publish). A shared role would have to allow
 * every device's topics to every device.
 *
 * Commands travel in batches on `$CONTROL/dynamic-security/v1`, each with a correlation id the
 * answer on `…/v1/response` carries back (several replicas share one admin user and all receive
 * every answer).
 */
import { randomUUID } from 'node:crypto';
import { EdgefleetError, TOPIC_KINDS, type TopicKind, type TopicScheme } from '@edgefleet/protocol';
import type { MqttClient } from 'mqtt';

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;
/** The role that lets the server's user publish to devices and consume their messages. */
export const SERVER_ROLE = 'edgefleet-server';
/** Shared subscriptions of the server replicas use this group: each message reaches one replica. */
export const SHARED_GROUP = 'edgefleet';
const DEVICE_ROLE_PREFIX = 'edgefleet-device-';
/** Commands per control message (Mosquitto 2.0 still saves its whole JSON file after each command in it). */
const BATCH = 200;
/** How long commands gather before they are sent (ms). */
const GATHER_MS = 20;
/**
 * A command fails when the broker has said nothing on the response topic for this long since it was
 * sent: not after a fixed time, since with thousands of devices registered each command costs
 * Mosquitto a save of a file of megabytes, and a batch takes longer than this while the broker
 * answers all along (a 10,000-device enrollment failed at 6,820 on a fixed 15 s).
 */
export const DYNSEC_SILENCE_MS = 15_000;
/** However busy the broker, a command not answered within this long fails. */
const DYNSEC_MAX_WAIT_MS = 10 * 60_000;

export interface DynsecAcl {
  readonly acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribePattern' | 'subscribeLiteral' | 'unsubscribePattern';
  readonly topic: string;
  readonly allow: boolean;
  readonly priority?: number;
}

export interface DynsecResponse {
  readonly command: string;
  readonly error?: string;
  readonly data?: unknown;
  readonly correlationData?: string;
}

export interface DynsecControl {
  /** Runs one command (batched with others issued in the same tick); its answer, error included. */
  run(command: { readonly command: string; readonly [key: string]: unknown }): Promise<DynsecResponse>;
  /** Feed every message received on DYNSEC_RESPONSE_TOPIC here. */
  handleResponse(payload: Uint8Array): void;
  /** Fails what is still waiting (the connection is closing). */
  close(): void;
}

export function deviceRole(deviceId: string): string {
  return `${DEVICE_ROLE_PREFIX}${deviceId}`;
}

/**
 * Exactly the protocol's topic table for one device (protocol/topics): nothing else, nobody else's.
 * Publishing and subscribing are listed topic by topic; receiving is one pattern over the device's
 * own subtree, since a device receives only what it could subscribe to. Every entry counts:
 * Mosquitto 2.0 rewrites its whole file after each change, so the file's size per device sets the
 * cost of registering the next one (15 entries were 2.6 kB a device).
 */
export function deviceAcls(topics: TopicScheme, deviceId: string): DynsecAcl[] {
  const acls: DynsecAcl[] = [];
  for (const [kind, spec] of Object.entries(TOPIC_KINDS) as [TopicKind, (typeof TOPIC_KINDS)[TopicKind]][]) {
    const topic = topics.build(kind, deviceId);
    if (spec.direction === 'from-device') acls.push({ acltype: 'publishClientSend', topic, allow: true });
    // Its own to-device topics, and its own retained reported state (a restarted device reads what it last said).
    if (spec.direction === 'to-device' || kind === 'reported') acls.push({ acltype: 'subscribeLiteral', topic, allow: true });
  }
  const own = topics.build('desired', deviceId);
  acls.push({ acltype: 'publishClientReceive', topic: `${own.slice(0, own.lastIndexOf('/'))}/+`, allow: true });
  return acls;
}

/** What the server's own user may do: publish to-device kinds, consume from-device kinds (shared), read the client count. */
export function serverAcls(topics: TopicScheme): DynsecAcl[] {
  const acls: DynsecAcl[] = [];
  for (const [kind, spec] of Object.entries(TOPIC_KINDS) as [TopicKind, (typeof TOPIC_KINDS)[TopicKind]][]) {
    const filter = topics.fleetFilter(kind);
    if (spec.direction === 'to-device') {
      acls.push({ acltype: 'publishClientSend', topic: filter, allow: true });
    } else {
      acls.push(
        { acltype: 'subscribePattern', topic: `$share/${SHARED_GROUP}/${filter}`, allow: true },
        { acltype: 'subscribePattern', topic: filter, allow: true },
        { acltype: 'publishClientReceive', topic: filter, allow: true },
      );
    }
  }
  acls.push(
    { acltype: 'subscribePattern', topic: '$SYS/broker/clients/connected', allow: true },
    { acltype: 'publishClientReceive', topic: '$SYS/broker/clients/connected', allow: true },
  );
  return acls;
}

export function createDynsecControl(client: MqttClient): DynsecControl {
  const prefix = randomUUID().slice(0, 8);
  let next = 0;
  const pending = new Map<string, { resolve(r: DynsecResponse): void; reject(e: Error): void; sentAt: number }>();
  let queue: { command: object; correlationData: string }[] = [];
  let scheduled = false;
  let closed = false;
  /** When the broker last answered anything on the response topic (any replica's command). */
  let lastAnswer = 0;
  let watchdog: NodeJS.Timeout | undefined;
  const watch = () => {
    const now = Date.now();
    for (const [correlationData, waiting] of pending) {
      const silent = now - Math.max(waiting.sentAt, lastAnswer);
      if (silent > DYNSEC_SILENCE_MS) {
        fail(
          correlationData,
          new Error(
            `no answer on ${DYNSEC_RESPONSE_TOPIC} for ${DYNSEC_SILENCE_MS / 1000} s (is mosquitto_dynamic_security.so loaded, and is EDGEFLEET_BROKER_USERNAME a dynamic-security admin?)`,
          ),
        );
      } else if (now - waiting.sentAt > DYNSEC_MAX_WAIT_MS) {
        fail(correlationData, new Error(`no answer within ${DYNSEC_MAX_WAIT_MS / 60_000} minutes although the broker answers others`));
      }
    }
    if (pending.size === 0 && watchdog) {
      clearInterval(watchdog);
      watchdog = undefined;
    }
  };

  const flush = () => {
    scheduled = false;
    while (queue.length > 0) {
      const batch = queue.slice(0, BATCH);
      queue = queue.slice(BATCH);
      const body = JSON.stringify({ commands: batch.map((c) => ({ ...c.command, correlationData: c.correlationData })) });
      client.publish(DYNSEC_TOPIC, body, { qos: 1 }, (error) => {
        if (!error) return;
        for (const c of batch) fail(c.correlationData, error);
      });
    }
  };
  const fail = (correlationData: string, cause: Error) => {
    const waiting = pending.get(correlationData);
    if (!waiting) return;
    pending.delete(correlationData);
    waiting.reject(
      new EdgefleetError('EF_BROKER_UNAVAILABLE', `the broker did not answer a dynamic-security command: ${cause.message}`, { cause }),
    );
  };

  return {
    run(command) {
      if (closed) return Promise.reject(new EdgefleetError('EF_BROKER_UNAVAILABLE', 'the broker connection is closing'));
      const correlationData = `${prefix}-${next++}`;
      return new Promise<DynsecResponse>((resolve, reject) => {
        pending.set(correlationData, { resolve, reject, sentAt: Date.now() });
        if (!watchdog) {
          watchdog = setInterval(watch, 1_000);
          watchdog.unref();
        }
        queue.push({ command, correlationData });
        // Gathered for a few milliseconds: an enrollment burst becomes a few large messages, not many small ones.
        if (queue.length >= BATCH) flush();
        else if (!scheduled) {
          scheduled = true;
          setTimeout(flush, GATHER_MS);
        }
      });
    },
    handleResponse(payload) {
      let body: { responses?: DynsecResponse[] };
      try {
        body = JSON.parse(Buffer.from(payload).toString('utf8')) as { responses?: DynsecResponse[] };
      } catch {
        return;
      }
      lastAnswer = Date.now(); // the broker is working through the queue: nobody's command is lost yet
      for (const response of body.responses ?? []) {
        const waiting = response.correlationData === undefined ? undefined : pending.get(response.correlationData);
        if (!waiting || response.correlationData === undefined) continue; // another replica's
        pending.delete(response.correlationData);
        waiting.resolve(response);
      }
    },
    close() {
      closed = true;
      if (watchdog) clearInterval(watchdog);
      watchdog = undefined;
      for (const key of [...pending.keys()]) fail(key, new Error('the connection closed'));
    },
  };
}

/** Runs a command and throws EF_BROKER_UNAVAILABLE with the broker's reason when it failed. */
export async function mustRun(
  control: DynsecControl,
  command: { readonly command: string; readonly [key: string]: unknown },
): Promise<DynsecResponse> {
  const response = await control.run(command);
  if (response.error) {
    throw new EdgefleetError('EF_BROKER_UNAVAILABLE', `the broker refused ${command.command}: ${response.error}`);
  }
  return response;
}

/**
 * Registers a device: a role with its topics and a client with its secret. Two commands when the
 * id is new (Mosquitto 2.0 saves its whole file after every change, so each command counts);
 * whatever an earlier device of the same id left is deleted first only when it is there.
 */
export async function admitDevice(control: DynsecControl, topics: TopicScheme, deviceId: string, secret: string): Promise<void> {
  const rolename = deviceRole(deviceId);
  const create = () =>
    Promise.all([
      control.run({ command: 'createRole', rolename, acls: deviceAcls(topics, deviceId) }),
      control.run({ command: 'createClient', username: deviceId, clientid: deviceId, password: secret, roles: [{ rolename }] }),
    ]);
  let [role, client] = await create();
  if ((role?.error && /exist/i.test(role.error)) || (client?.error && /exist/i.test(client.error))) {
    // Left by an earlier device of this id: replaced, and a connection of it dropped.
    await Promise.all([control.run({ command: 'deleteClient', username: deviceId }), control.run({ command: 'deleteRole', rolename })]);
    [role, client] = await create();
  }
  const refused = role?.error ? role : client?.error ? client : undefined;
  if (refused) throw new EdgefleetError('EF_BROKER_UNAVAILABLE', `the broker refused ${refused.command}: ${refused.error}`);
}

/** Deletes a device's client (Mosquitto disconnects it at once) and its role. */
export async function removeDevice(control: DynsecControl, deviceId: string): Promise<void> {
  const [client] = await Promise.all([
    control.run({ command: 'deleteClient', username: deviceId }),
    control.run({ command: 'deleteRole', rolename: deviceRole(deviceId) }),
  ]);
  if (client?.error && !/not found/i.test(client.error)) {
    throw new EdgefleetError('EF_BROKER_UNAVAILABLE', `the broker refused deleteClient: ${client.error}`);
  }
}

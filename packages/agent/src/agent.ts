/**
 * (About 420 lines: reconciliation, events, reports and the telemetry outbox share the connection,
 * the boot id and the event sequence; the rules are in reconcile.ts, the link in transport.ts.)
 *
 * The agent: a runtime's membership in a fleet. It connects to the broker with the device's
 * credential, receives its signed desired state, and reconciles the runtime towards it: verify the
 * document, download and install what differs (the runtime verifies, tests and activates), remove
 * what is to be removed, then report the state (retained) and every step as an event.
 *
 * Idempotent and restart-safe: the last applied sequence is persisted, a document at or below it is
 * not applied again, and a model that already runs the desired version is not reinstalled. The
 * network is never on the inference path: `runtime.run` does not wait on the agent.
 */
import {
  type Command,
  createTopicScheme,
  type DeviceEvent,
  decodeMessage,
  type EventKind,
  encodeMessageText,
  type ModelRef,
  type Presence,
  type TelemetryAck,
  type TopicKind,
  type Trust,
  timestamp,
  verifyDesiredState,
} from '@edgefleet/protocol';
import type { Runtime } from '@edgefleet/runtime/core';
import { errorInfo, planReconcile, reportedState } from './reconcile.ts';
import { type TelemetryQueueStore, telemetryMessage } from './telemetry.ts';
import { createMqttTransport, type MqttTransportOptions, type Transport } from './transport.ts';

/** Where the agent keeps the one thing it must remember: the last desired sequence applied. */
export interface AgentStateStore {
  read(): Promise<{ lastSequence: number }>;
  write(state: { lastSequence: number }): Promise<void>;
}

export interface AgentOptions {
  readonly deviceId: string;
  readonly secret: string;
  /** mqtt://host:port (Node) or ws://host:port/mqtt (browsers). */
  readonly mqttUrl: string;
  /**
   * Builds the link to the broker from the options the agent would use (`mqttUrl`, the device's
   * credential, an `offline` presence as the will); default mqtt.js (createMqttTransport). Tune
   * them, or bring another Transport (see transport.ts).
   */
  readonly transport?: (options: MqttTransportOptions) => Transport;
  /** Base URL of the fleet server's HTTP API, for artifact downloads. */
  readonly serverUrl: string;
  readonly runtime: Runtime;
  readonly trust: Trust;
  readonly state: AgentStateStore;
  readonly agentVersion?: string;
  readonly platform: 'node' | 'browser';
  readonly deviceClass?: string;
  /**
   * Where closed telemetry windows wait for the server's acknowledgement (createFileTelemetryQueue
   * in Node, createIndexedDbTelemetryQueue in browsers). Without it, no telemetry is sent.
   */
  readonly telemetry?: TelemetryQueueStore;
  /** How often the agent closes the runtime's open windows even when no run does; default 60 s. */
  readonly telemetryFlushMs?: number;
  /**
   * A window sent but not acknowledged this long is sent again on the same connection (its ack may
   * have been lost); default 30 s. The server stores each window once however often it arrives.
   */
  readonly telemetryResendMs?: number;
  /** First reconnect delay after a dropped connection, doubled per failed attempt up to 60 s; default 2 s. */
  readonly reconnectPeriodMs?: number;
  readonly now?: () => number;
  /**
   * Where the agent says what happens. The link's state changes are said once each (lost,
   * retrying, back after how long); each failed attempt in between only at debug.
   */
  readonly log?: (level: 'debug' | 'info' | 'warn' | 'error', message: string, fields?: Record<string, unknown>) => void;
}

export interface Agent {
  /** Resolves once connected and subscribed; reconciliation then runs in the background. */
  start(): Promise<void>;
  /** The reconciliations so far have settled (tests, graceful shutdown). */
  idle(): Promise<void>;
  readonly connected: boolean;
  stop(): Promise<void>;
}

const decoder = new TextDecoder();
/** Downloads smaller than this send no progress events. */
const PROGRESS_MIN_BYTES = 1024 * 1024;
function newBootId(): string {
  return globalThis.crypto.randomUUID();
}

export function createAgent(options: AgentOptions): Agent {
  const topics = createTopicScheme();
  const bootId = newBootId();
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => undefined);
  const deviceId = options.deviceId;
  const basic = `Basic ${btoa(`${deviceId}:${options.secret}`)}`;
  let transport: Transport | undefined;
  let eventSeq = 0;
  let appliedSequence = 0;
  let queue: Promise<void> = Promise.resolve();
  let pendingDocument: unknown;
  /** Set once the connection is being ended: a publish failing then is expected, not logged. */
  let stopped = false;
  let stopping: Promise<void> | undefined;
  let unsubscribeTelemetry: (() => void) | undefined;

  const presence = (state: Presence['state']): Presence => ({
    type: 'edgefleet.presence/v1',
    deviceId,
    bootId,
    state,
    since: timestamp(now()),
  });

  function publish(kind: Extract<TopicKind, 'events' | 'reported' | 'presence' | 'telemetry'>, payload: string, retain: boolean): void {
    // QoS 1: the transport queues while offline and delivers on reconnect.
    transport?.publish(topics.build(kind, deviceId), payload, { qos: 1, retain }).catch((error: Error) => {
      if (!stopped) log('warn', 'publish failed', { kind, error: error.message });
    });
  }

  function event(kind: EventKind, fields: Partial<Omit<DeviceEvent, 'type' | 'deviceId' | 'bootId' | 'seq' | 'at' | 'kind'>> = {}): void {
    const message: DeviceEvent = { type: 'edgefleet.event/v1', deviceId, bootId, seq: eventSeq++, at: timestamp(now()), kind, ...fields };
    publish('events', encodeMessageText('events', message), false);
  }

  function report(): void {
    const reported = reportedState({
      deviceId,
      bootId,
      at: now(),
      appliedSequence,
      agent: {
        version: options.agentVersion ?? '0.1.0',
        platform: options.platform,
        ...(options.deviceClass ? { deviceClass: options.deviceClass } : {}),
      },
      models: options.runtime.models(),
    });
    publish('reported', encodeMessageText('reported', reported), true);
  }

  // Runtime events become fleet events, with the rollout they belong to when known.
  let currentRollout: Map<string, string> = new Map();
  const withRollout = (model: ModelRef) => (currentRollout.has(model.name) ? { rolloutId: currentRollout.get(model.name) as string } : {});
  const unsubscribe = [
    options.runtime.on('download-progress', ({ model, bytes, total }) => {
      // Progress of a download worth watching (1 MiB and more), at every quarter: enough to watch,
      // not a flood. A smaller one is over before anyone could look; `activated` says it arrived.
      if (total < PROGRESS_MIN_BYTES) return;
      if (bytes === total || Math.floor((bytes / total) * 4) !== Math.floor(((bytes - 1) / total) * 4)) {
        event('download-progress', { model, progress: { bytes, total }, ...withRollout(model) });
      }
    }),
    options.runtime.on('verified', ({ model }) => event('verified', { model, ...withRollout(model) })),
    options.runtime.on('acceptance-passed', ({ model, executionProvider, variant }) =>
      event('acceptance-passed', { model, executionProvider, ...(variant ? { variant } : {}), ...withRollout(model) }),
    ),
    options.runtime.on('acceptance-failed', ({ model, executionProvider, reason, variant }) =>
      event('acceptance-failed', {
        model,
        executionProvider,
        ...(variant ? { variant } : {}),
        error: { code: 'EF_ACCEPTANCE_FAILED', message: reason.slice(0, 2000) },
        ...withRollout(model),
      }),
    ),
    options.runtime.on('execution-provider-fallback', ({ model, from, to, reason }) =>
      event('execution-provider-fallback', { model, fallback: { from, to, reason: reason.slice(0, 2000) }, ...withRollout(model) }),
    ),
    options.runtime.on('activated', ({ model, executionProvider, variant, providers, latency }) =>
      event('activated', {
        model,
        executionProvider,
        ...(variant ? { variant } : {}),
        // Older runtimes than this agent send none.
        ...(providers ? { providers: providers.slice(0, 6) } : {}),
        ...(latency ? { latency } : {}),
        ...withRollout(model),
      }),
    ),
    options.runtime.on('install-failed', ({ model, error }) =>
      event('install-failed', { model, error: { code: error.code, message: error.message.slice(0, 2000) }, ...withRollout(model) }),
    ),
    options.runtime.on('rolled-back', ({ model }) => event('rolled-back', { model, ...withRollout(model) })),
    // A rollout's shadow stage: the server counts a member once its candidate runs (or failed to).
    options.runtime.on('shadow-installed', ({ model, executionProvider, variant }) =>
      event('shadow-installed', { model, executionProvider, variant, ...withRollout(model) }),
    ),
    options.runtime.on('shadow-failed', ({ model, error }) =>
      event('shadow-failed', { model, error: { code: error.code, message: error.message.slice(0, 2000) }, ...withRollout(model) }),
    ),
    options.runtime.on('shadow-removed', ({ model }) => event('shadow-removed', { model, ...withRollout(model) })),
  ];

  // --- telemetry: runtime windows → durable outbox → MQTT (QoS 1) → removed when the server acks ---
  let telemetrySeq = 0;
  let flushTimer: ReturnType<typeof setInterval> | undefined;
  /** Keys sent on the current connection, with when (sent again after a reconnect, or when old, until acknowledged). */
  let sent = new Map<string, number>();
  const resendMs = options.telemetryResendMs ?? 30_000;
  let resendTimer: ReturnType<typeof setInterval> | undefined;
  let outbox: Promise<void> = Promise.resolve();
  const outboxWork = (task: () => Promise<void>) => {
    outbox = outbox.then(task).catch((error: unknown) => log('warn', 'telemetry outbox', errorInfo(error)));
    return outbox;
  };

  function sendQueued(): Promise<void> {
    const queue = options.telemetry;
    if (!queue) return Promise.resolve();
    return outboxWork(async () => {
      if (!transport?.connected) return;
      const at = Date.now(); // the real clock: resends pace the network, whatever clock the documents use
      for (const { key, window } of await queue.list()) {
        const sentAt = sent.get(key);
        if (sentAt !== undefined && at - sentAt < resendMs) continue;
        sent.set(key, at);
        publish('telemetry', encodeMessageText('telemetry', window), false);
      }
    });
  }

  if (options.telemetry) {
    const queue = options.telemetry;
    unsubscribeTelemetry = options.runtime.on('telemetry-window', (closed) => {
      const seq = telemetrySeq++;
      void outboxWork(async () => {
        const message = telemetryMessage(closed, { deviceId, bootId, seq, dropped: await queue.takeDropped() });
        await queue.append(message);
      }).then(sendQueued);
    });
  }

  function acknowledged(payload: Uint8Array): void {
    const queue = options.telemetry;
    if (!queue) return;
    let ack: TelemetryAck;
    try {
      ack = decodeMessage({ deviceId, kind: 'telemetry-ack' }, payload) as TelemetryAck;
    } catch (error) {
      log('warn', 'refused a telemetry acknowledgement', errorInfo(error));
      return;
    }
    const seqs = new Set(ack.seqs);
    void outboxWork(async () => {
      const done = (await queue.list()).filter((q) => q.window.bootId === ack.bootId && seqs.has(q.window.seq)).map((q) => q.key);
      await queue.remove(done);
      for (const key of done) sent.delete(key);
    });
  }

  async function reconcile(document: unknown): Promise<void> {
    let verified: ReturnType<typeof verifyDesiredState>;
    try {
      verified = verifyDesiredState(document, options.trust, { deviceId, now: now() });
    } catch (error) {
      // The sequence it claims (unverified: only for the server to tell which of its documents this
      // device refused; a rollout counts the member as failed with the code).
      const claimed = (document as { payload?: { sequence?: unknown } } | null)?.payload?.sequence;
      const desiredSequence = typeof claimed === 'number' && Number.isSafeInteger(claimed) && claimed >= 0 ? claimed : undefined;
      event('desired-state-rejected', { error: errorInfo(error), ...(desiredSequence !== undefined ? { desiredSequence } : {}) });
      log('warn', 'refused a desired-state document', errorInfo(error));
      return;
    }
    const plan = planReconcile(verified, options.runtime.models(), appliedSequence);
    if (plan.stale) {
      report(); // nothing to do but say where we are
      return;
    }
    // No receipt event: `verified` (or `install-failed`) follows for every model to install, and the
    // reported state's appliedSequence says when the document was applied (one message less per
    // device and document, on both sides, in a rollout to thousands).
    currentRollout = new Map(plan.rollouts);
    let failures = 0;
    for (const [index, { manifest, signed }] of plan.installs.entries()) {
      try {
        // The model and every file its manifest lists (golden vectors...) come from the server by hash.
        const artifact = (sha256: string) => ({ url: `${options.serverUrl}/v1/artifacts/${sha256}`, headers: { authorization: basic } });
        await options.runtime.install(signed, artifact(manifest.artifact.sha256), {
          files: Object.fromEntries(manifest.files.map((file) => [file.name, artifact(file.sha256)])),
          variants: Object.fromEntries((manifest.variants ?? []).map((variant) => [variant.name, artifact(variant.sha256)])),
          ...(plan.rollback ? { rollback: document } : {}),
        });
      } catch (error) {
        failures++;
        log('warn', 'install failed', { model: `${manifest.name}@${manifest.version}`, ...errorInfo(error) });
      }
      // Progress through a document of several models; after the last, the report below says it all.
      if (index < plan.installs.length - 1) report();
    }
    // Shadows after the installs: a candidate runs beside the version the document makes active.
    for (const { manifest, signed, rate } of plan.shadows) {
      try {
        const artifact = (sha256: string) => ({ url: `${options.serverUrl}/v1/artifacts/${sha256}`, headers: { authorization: basic } });
        await options.runtime.installShadow(signed, artifact(manifest.artifact.sha256), {
          files: Object.fromEntries(manifest.files.map((file) => [file.name, artifact(file.sha256)])),
          variants: Object.fromEntries((manifest.variants ?? []).map((variant) => [variant.name, artifact(variant.sha256)])),
          rate,
        });
      } catch (error) {
        failures++;
        log('warn', 'shadow install failed', { model: `${manifest.name}@${manifest.version}`, ...errorInfo(error) });
      }
    }
    for (const name of plan.unshadows) {
      try {
        await options.runtime.removeShadow(name);
      } catch (error) {
        log('warn', 'shadow removal failed', { name, ...errorInfo(error) });
      }
    }
    for (const { name, version } of plan.removes) {
      try {
        await options.runtime.remove(name);
        if (version) event('removed', { model: { name, version } });
      } catch (error) {
        log('warn', 'remove failed', { name, ...errorInfo(error) });
      }
    }
    // The sequence is "applied" once every install has been tried: a failed install is reported,
    // and the server answers with a new document (rollback or retry), not by resending this one.
    appliedSequence = plan.sequence;
    await options.state.write({ lastSequence: appliedSequence });
    report();
    log('info', 'desired state applied', { sequence: plan.sequence, failures });
  }

  function enqueue(document: unknown): void {
    // Only the newest document matters: one arriving while another is applied replaces the waiting one.
    const first = pendingDocument === undefined;
    pendingDocument = document;
    if (!first) return;
    queue = queue.then(async () => {
      const next = pendingDocument;
      pendingDocument = undefined;
      await reconcile(next).catch((error: unknown) => log('error', 'reconciliation failed', errorInfo(error)));
    });
  }

  function onMessage({ topic, payload }: { readonly topic: string; readonly payload: Uint8Array }): void {
    if (topic === topics.build('telemetry-ack', deviceId)) {
      acknowledged(payload);
      return;
    }
    if (topic === topics.build('commands', deviceId)) {
      command(payload);
      return;
    }
    if (topic !== topics.build('desired', deviceId)) return;
    let document: unknown;
    try {
      document = JSON.parse(decoder.decode(payload));
    } catch (error) {
      event('desired-state-rejected', { error: { code: 'EF_JSON_INVALID', message: String(error).slice(0, 500) } });
      return;
    }
    enqueue(document);
  }

  /**
   * A command from the server (protocol COMMANDS): report the state now (a server replica that took
   * a rollout over asks the devices it has not heard from), send queued telemetry now, or read the
   * desired state again (subscribing again delivers the retained document).
   */
  function command(payload: Uint8Array): void {
    let received: Command;
    try {
      received = decodeMessage({ deviceId, kind: 'commands' }, payload) as Command;
    } catch (error) {
      log('warn', 'ignored a malformed command', errorInfo(error));
      return;
    }
    log('info', 'command', { command: received.command, id: received.id });
    if (received.command === 'report-state') report();
    else if (received.command === 'flush-telemetry') {
      if (options.telemetry) {
        options.runtime.flushTelemetry();
        void sendQueued();
      }
    } else if (received.command === 'resync') {
      report();
      transport
        ?.subscribe(topics.build('desired', deviceId), 1)
        .catch((error: Error) => log('error', 'could not subscribe to the desired state', { error: error.message }));
    }
  }

  /**
   * Subscribes, and when the broker refuses (SUBACK failure: a clustered broker electing new leaders
   * after losing a node refuses QoS 1 subscriptions for seconds) tries again, 1 s then doubling up
   * to 30 s, for as long as this connection lasts; a new connection subscribes afresh. Settles on
   * the first grant, or when the connection is gone.
   */
  async function subscribeUntilGranted(link: Transport, topic: string, what: string): Promise<void> {
    const generation = connections;
    for (let delay = 1000; ; delay = Math.min(delay * 2, 30_000)) {
      try {
        await link.subscribe(topic, 1);
        return;
      } catch (error) {
        if (stopping || !link.connected) return;
        log('warn', `could not subscribe to ${what}; trying again in ${delay / 1000} s`, { error: (error as Error).message });
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (stopping || !link.connected || generation !== connections) return;
    }
  }
  /** Connections so far: a retry loop of an earlier connection stops when a new one begins. */
  let connections = 0;

  /** What a (re)connection does: say online, report, subscribe. Settles once subscribed. */
  async function onConnect(): Promise<void> {
    connections++;
    const link = transport as Transport;
    publish('presence', encodeMessageText('presence', presence('online')), true);
    report();
    // Subscribing on every (re)connect: the session is clean, and the retained desired state arrives each time.
    const desiredTopic = subscribeUntilGranted(link, topics.build('desired', deviceId), 'the desired state');
    const acks = options.telemetry
      ? subscribeUntilGranted(link, topics.build('telemetry-ack', deviceId), 'telemetry acknowledgements').then(() => {
          // Everything not yet acknowledged goes again on a new connection (the server deduplicates).
          sent = new Map();
          void sendQueued();
        })
      : undefined;
    const commands = subscribeUntilGranted(link, topics.build('commands', deviceId), 'commands');
    await Promise.all([desiredTopic, acks, commands]);
  }

  return {
    get connected() {
      return transport?.connected ?? false;
    },

    async start() {
      appliedSequence = (await options.state.read()).lastSequence;
      const linkOptions: MqttTransportOptions = {
        url: options.mqttUrl,
        clientId: deviceId,
        username: deviceId,
        password: options.secret,
        reconnectPeriodMs: options.reconnectPeriodMs ?? 2000,
        will: {
          topic: topics.build('presence', deviceId),
          payload: encodeMessageText('presence', presence('offline')),
          qos: 1,
          retain: true,
        },
      };
      transport = (options.transport ?? createMqttTransport)(linkOptions);
      transport.on('message', onMessage);
      let subscribed: Promise<void> | undefined;
      transport.on('connect', () => {
        const connection = onConnect();
        subscribed ??= connection;
      });
      watchLink(transport, linkOptions.url);
      if (options.telemetry) {
        flushTimer = setInterval(() => options.runtime.flushTelemetry(), options.telemetryFlushMs ?? 60_000);
        resendTimer = setInterval(() => void sendQueued(), Math.max(10, resendMs / 2));
        (resendTimer as { unref?: () => void }).unref?.();
      }
      try {
        await transport.connect();
        // Resolved once it can hear the server: subscribed to its desired state (and acknowledgements).
        await subscribed;
      } catch (error) {
        if (flushTimer) clearInterval(flushTimer);
        if (resendTimer) clearInterval(resendTimer);
        throw error;
      }
    },

    async idle() {
      for (let previous: Promise<void> | undefined; previous !== queue; ) {
        previous = queue;
        await queue;
      }
      for (let previous: Promise<void> | undefined; previous !== outbox; ) {
        previous = outbox;
        await outbox;
      }
    },

    stop() {
      stopping ??= shutDown();
      return stopping;
    },
  };

  /**
   * Logs the link's state changes once each: unreachable (at boot) or lost, then back, with how
   * long it was down and how many attempts it took. An hour offline is two lines, not 1,800.
   */
  function watchLink(link: Transport, url: string): void {
    let up = false;
    let down: { since: number; failures: number; lost: boolean } | undefined = { since: now(), failures: 0, lost: false };
    link.on('connect', () => {
      if (down && (down.lost || down.failures > 0)) {
        log('info', down.lost ? 'reconnected to the fleet broker' : 'connected to the fleet broker', {
          url,
          offlineSeconds: Math.round((now() - down.since) / 100) / 10,
          attempts: down.failures + 1,
        });
      }
      up = true;
      down = undefined;
    });
    link.on('close', () => {
      if (!up || stopping) return;
      up = false;
      down = { since: now(), failures: 0, lost: true };
      log('warn', 'lost the connection to the fleet broker; reconnecting with backoff', { url });
    });
    link.on('error', (error) => {
      if (!down) {
        log('warn', 'mqtt error', { error: error.message });
        return;
      }
      down.failures += 1;
      if (!down.lost && down.failures === 1)
        log('warn', 'cannot reach the fleet broker; retrying with backoff', { url, error: error.message });
      else log('debug', 'mqtt connection attempt failed', { url, error: error.message, attempt: down.failures });
    });
  }

  async function shutDown(): Promise<void> {
    for (const off of unsubscribe) off();
    if (flushTimer) clearInterval(flushTimer);
    if (resendTimer) clearInterval(resendTimer);
    await queue.catch(() => undefined);
    // What was measured until now is kept for the next start (sent then, if not now).
    if (options.telemetry) options.runtime.flushTelemetry();
    unsubscribeTelemetry?.();
    await outbox;
    if (transport) {
      // A graceful stop says offline itself (the will is only for ungraceful drops) when it can:
      // a goodbye queued for a broker that is gone would hold the stop forever.
      const link = transport;
      const connected = link.connected;
      if (connected) {
        // Not past the connection: one that drops meanwhile ends the wait (the will says it instead).
        await new Promise<void>((resolve) => {
          const off = link.on('close', () => resolve());
          link
            .publish(topics.build('presence', deviceId), encodeMessageText('presence', presence('offline')), { qos: 1, retain: true })
            .catch(() => undefined)
            .finally(() => {
              off();
              resolve();
            });
        });
      }
      stopped = true;
      await link.end({ graceful: connected && link.connected });
    }
    stopped = true;
  }
}

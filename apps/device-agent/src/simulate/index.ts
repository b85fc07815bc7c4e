/**
 * N simulated devices in one process, each a real agent (@edgefleet/agent: the same reconcile,
 * reports, events, telemetry outbox and MQTT transport as a device in the field) over a stand-in
 * runtime (runtime.ts) that verifies, downloads and hashes for real and skips only inference. So
 * a rollout that simulated devices accept is one real devices accept, and there is no second copy
 * of the device protocol to drift. Faults can be injected: failed acceptance tests, added latency,
 * devices offline, downloads dropped half-way, a version measured slower.
 */
import { createHash } from 'node:crypto';
import {
  type Agent,
  createAgent,
  createMemoryAgentState,
  createMemoryTelemetryQueue,
  createMqttTransport,
  type TelemetryQueueStore,
} from '@edgefleet/agent';
import { splitmix } from '@edgefleet/drift';
import { createTrust, EdgefleetError, type KeySetPayload, type ManifestPayload } from '@edgefleet/protocol';
import { nodeVerify } from '@edgefleet/protocol/node';
import { createDownloader } from './downloads.ts';
import { createSimulatedRuntime, SIMULATED_CLASS, type SimulatedRuntime } from './runtime.ts';
import type { SimulatedTelemetry } from './telemetry.ts';

export { SIMULATED_CLASS } from './runtime.ts';
export { type SimulatedTelemetry, simulatedWindow } from './telemetry.ts';

export interface SimulationFaults {
  /** Share of devices (0-1, chosen by id hash) whose acceptance test fails. */
  readonly failAcceptance?: number;
  /** Extra delay before each install, in ms. */
  readonly latencyMs?: number;
  /**
   * Inference is simulated, not run: each device reports an install-time latency probe like the
   * runtime's (p95 of the new version against the one it replaced). Every version runs at the
   * device's own base p95 (1-3 ms, by id) except `version`, which runs `factor` times slower.
   */
  readonly slowdown?: { readonly version: string; readonly factor: number };
  /** Share of devices that stay offline (never connect). */
  readonly offline?: number;
  /** Share of devices whose first download attempt is cut half-way (then resumed with Range). */
  readonly dropDownload?: number;
}

export interface SimulationOptions {
  readonly serverUrl: string;
  readonly mqttUrl: string;
  readonly keySet: KeySetPayload;
  readonly devices: readonly { readonly id: string; readonly secret: string }[];
  readonly faults?: SimulationFaults;
  /** Simulated inference telemetry, closed and sent by each agent every `windowMs`. */
  readonly telemetry?: SimulatedTelemetry;
  /** Connections opened at once: a real fleet does not reconnect in lockstep. */
  readonly connectConcurrency?: number;
  /** Downloads in flight at once in this process (file descriptors are finite); default 256. */
  readonly downloadConcurrency?: number;
  /** How long a device may take to connect before the simulation gives up on starting; default 60 s. */
  readonly connectTimeoutMs?: number;
  readonly log?: (line: Record<string, unknown>) => void;
}

export interface SimulatedDevice {
  readonly id: string;
  readonly online: boolean;
  /** name → active version. */
  readonly active: ReadonlyMap<string, string>;
  readonly installs: number;
  /** Telemetry windows queued for sending, and acknowledged by the server (then forgotten). */
  readonly telemetrySent: number;
  readonly telemetryAcked: number;
}

export interface Simulation {
  readonly devices: readonly SimulatedDevice[];
  /** How many simulated devices run `model` at `version` (kept as they change: cheap to poll). */
  countActive(model: string, version: string): number;
  stop(): Promise<void>;
}

/** A stable share in [0, 1) per device and purpose: faults hit the same devices on every run. */
export function deviceShare(id: string, purpose: string): number {
  return createHash('sha256').update(`${purpose}\n${id}`).digest().readUInt32BE(0) / 2 ** 32;
}

/**
 * ed25519 for thousands of simulated devices in one process: a signature over bytes this process
 * has verified before (the signed manifest every device of a rollout receives) is not checked
 * again; each device's own desired-state document, signed for that device alone, always is.
 */
export function verifiedOnce(verify: typeof nodeVerify, capacity = 1024): typeof nodeVerify {
  const verified = new Map<string, Buffer>();
  return (signature, message, publicKey) => {
    const id = `${Buffer.from(publicKey).toString('base64')} ${Buffer.from(signature).toString('base64')}`;
    const known = verified.get(id);
    if (known?.equals(message)) return true;
    if (!verify(signature, message, publicKey)) return false;
    if (verified.size >= capacity) verified.clear();
    verified.set(id, Buffer.from(message));
    return true;
  };
}

/** A telemetry outbox in memory that counts what it was given and what the server acknowledged. */
function countingQueue(): TelemetryQueueStore & { readonly appended: number; readonly removed: number } {
  const queue = createMemoryTelemetryQueue();
  let appended = 0;
  let removed = 0;
  return {
    get appended() {
      return appended;
    },
    get removed() {
      return removed;
    },
    append: (window) => {
      appended++;
      return queue.append(window);
    },
    list: () => queue.list(),
    remove: (keys) => {
      removed += keys.length;
      return queue.remove(keys);
    },
    takeDropped: () => queue.takeDropped(),
  };
}

export async function startSimulation(options: SimulationOptions): Promise<Simulation> {
  const downloader = createDownloader({ https: options.serverUrl.startsWith('https:'), concurrency: options.downloadConcurrency ?? 256 });
  const trust = createTrust(options.keySet, { verify: verifiedOnce(nodeVerify) });
  const faults = options.faults ?? {};
  const log = options.log ?? (() => undefined);
  const fileCache = new Map<string, Uint8Array>();
  const verified = new Map<string, { readonly manifest: ManifestPayload; readonly at: number }>();
  const agents: Agent[] = [];
  const devices: SimulatedDevice[] = [];
  /** Devices per `name@version` they run. */
  const activeCounts = new Map<string, number>();

  async function startDevice(id: string, secret: string): Promise<void> {
    const telemetry = options.telemetry;
    const runtime: SimulatedRuntime = createSimulatedRuntime({
      deviceId: id,
      trust,
      downloader,
      fileCache,
      verified,
      faults: {
        failAcceptance: deviceShare(id, 'acceptance') < (faults.failAcceptance ?? 0),
        dropDownload: deviceShare(id, 'drop') < (faults.dropDownload ?? 0),
        ...(faults.latencyMs ? { latencyMs: faults.latencyMs } : {}),
        baseP95Ms: 1 + 2 * deviceShare(id, 'latency'),
        ...(faults.slowdown ? { slowdown: faults.slowdown } : {}),
      },
      ...(telemetry
        ? {
            telemetry: {
              spec: telemetry,
              shift: () => telemetry.shift?.(id) ?? 0,
              random: splitmix(deviceShare(id, 'telemetry') * 2 ** 32),
            },
          }
        : {}),
    });
    // What each device runs, counted as it changes: countActive is polled by benchmarks and tests
    // while thousands of devices work, and must not walk them all each time.
    const running = new Map<string, string>();
    const moved = (name: string, version: string | undefined) => {
      const before = running.get(name);
      if (before === version) return;
      if (before !== undefined) activeCounts.set(`${name}@${before}`, (activeCounts.get(`${name}@${before}`) ?? 0) - 1);
      if (version === undefined) running.delete(name);
      else {
        running.set(name, version);
        activeCounts.set(`${name}@${version}`, (activeCounts.get(`${name}@${version}`) ?? 0) + 1);
      }
    };
    runtime.on('activated', ({ model }) => moved(model.name, model.version));
    runtime.on('rolled-back', ({ model }) => moved(model.name, model.version));
    runtime.on('removed', ({ name }) => moved(name, undefined));
    const queue = telemetry ? countingQueue() : undefined;
    const offline = deviceShare(id, 'offline') < (faults.offline ?? 0);
    const agent = createAgent({
      deviceId: id,
      secret,
      mqttUrl: options.mqttUrl,
      serverUrl: options.serverUrl,
      runtime,
      trust,
      state: createMemoryAgentState(),
      platform: 'node',
      deviceClass: SIMULATED_CLASS,
      // Keepalive and reconnect paced for thousands of connections in one process.
      transport: (link) => createMqttTransport({ ...link, keepaliveS: 60, reconnectPeriodMs: 1000 }),
      ...(queue ? { telemetry: queue, telemetryFlushMs: telemetry?.windowMs ?? 60_000 } : {}),
      log: (level, msg, fields) => {
        if (level !== 'info') log({ level, deviceId: id, msg, ...fields });
      },
    });
    devices.push({
      id,
      get online() {
        return agent.connected;
      },
      get active() {
        return new Map(runtime.models().flatMap((m) => (m.active ? [[m.name, m.active.version] as const] : [])));
      },
      get installs() {
        return runtime.installs;
      },
      get telemetrySent() {
        return queue?.appended ?? 0;
      },
      get telemetryAcked() {
        return queue?.removed ?? 0;
      },
    });
    if (offline) return;
    agents.push(agent);
    const timeoutMs = options.connectTimeoutMs ?? 60_000;
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await Promise.race([
        agent.start(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new EdgefleetError(
                  'EF_INTERNAL_ERROR',
                  `simulated device ${id} could not connect to ${options.mqttUrl} in ${timeoutMs} ms`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  const waiting = [...options.devices];
  try {
    await Promise.all(
      Array.from({ length: Math.min(options.connectConcurrency ?? 100, waiting.length) }, async () => {
        for (let next = waiting.shift(); next; next = waiting.shift()) await startDevice(next.id, next.secret);
      }),
    );
  } catch (error) {
    await Promise.all(agents.map((agent) => agent.stop().catch(() => undefined)));
    downloader.close();
    throw error;
  }
  log({ level: 'info', msg: 'simulation started', devices: options.devices.length, online: devices.filter((d) => d.online).length });

  return {
    devices,
    countActive: (model, version) => activeCounts.get(`${model}@${version}`) ?? 0,
    async stop() {
      await Promise.all(agents.map((agent) => agent.stop().catch(() => undefined)));
      downloader.close();
    },
  };
}

export interface EnrolledDevices {
  readonly devices: { id: string; secret: string }[];
  /** The broker URLs the server announced at enrollment. */
  readonly mqtt: { tcp: string; ws: string };
}

/** Enrolls N devices with an enrollment token, `concurrency` requests at a time. */
export async function enrollDevices(
  serverUrl: string,
  token: string,
  count: number,
  prefix: string,
  concurrency = 8,
): Promise<EnrolledDevices> {
  const ids = Array.from({ length: count }, (_, i) => `${prefix}-${String(i).padStart(5, '0')}`);
  const enrolled: { id: string; secret: string }[] = [];
  let mqttUrls: { tcp: string; ws: string } | undefined;
  const queue = [...ids];
  await Promise.all(
    Array.from({ length: Math.min(concurrency, ids.length) }, async () => {
      for (let id = queue.shift(); id; id = queue.shift()) {
        const response = await fetch(`${serverUrl}/v1/enroll`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ token, id }),
        });
        const body = (await response.json()) as { secret?: string; mqtt?: { tcp: string; ws: string }; code?: string; detail?: string };
        if (!response.ok || !body.secret || !body.mqtt) throw new Error(`enrolling ${id}: ${response.status} ${body.code} ${body.detail}`);
        enrolled.push({ id, secret: body.secret });
        mqttUrls ??= body.mqtt;
      }
    }),
  );
  if (!mqttUrls) throw new Error('no device was enrolled');
  return { devices: enrolled.sort((a, b) => a.id.localeCompare(b.id)), mqtt: mqttUrls };
}

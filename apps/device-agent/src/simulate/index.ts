/**
 * N lightweight simulated devices in one process. Each speaks real MQTT with its own credential,
 * verifies its signed desired state with the fleet's key set, downloads and hash-verifies the real
 * artifacts over HTTP (with Range resume), and reports state and events like a real agent; it only
 * skips inference. It applies the agent's rules (signature and expiry, version floor unless a
 * signed rollback, device class, acceptance data that must be readable and fit the model), so a
 * rollout that simulated devices accept is one real devices accept. Faults can be injected: failed
 * acceptance tests, added latency, devices offline, downloads dropped half-way.
 */
import { createHash } from 'node:crypto';
import { Agent as HttpAgent, get as httpGet, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, get as httpsGet } from 'node:https';
import { telemetryMessage } from '@edgefleet/agent';
import {
  checkVersionFloor,
  compareSemver,
  createTopicScheme,
  createTrust,
  type DeviceEvent,
  decodeGoldenVectors,
  EdgefleetError,
  encodeMessage,
  type KeySetPayload,
  type ManifestPayload,
  type ReportedState,
  type SignedDocument,
  timestamp,
  verifyDesiredState,
} from '@edgefleet/protocol';
import { nodeVerify } from '@edgefleet/protocol/node';
import { type ClosedWindow, WindowProfile } from '@edgefleet/runtime/core';
import mqtt, { type MqttClient } from 'mqtt';

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

/**
 * Simulated inference telemetry: every `windowMs` each online device closes a window of `runs`
 * runs of its active version, folded by the runtime's own WindowProfile (so the features, their
 * names and sketches are those of a real device) from inputs drawn from N(0, 1) per element, the
 * same for every device, and outputs drawn uniformly. `shift(deviceId)` adds a constant to the
 * values of one input (`shiftInput`, default the first) on the devices it returns non-zero for:
 * the way one group of devices starts seeing another world.
 */
export interface SimulatedTelemetry {
  readonly windowMs: number;
  readonly runs: number;
  readonly shift?: (deviceId: string) => number;
  readonly shiftInput?: string;
  /** Only this column (index in the last dimension) of the input shifts; all of it when absent. */
  readonly shiftColumn?: number;
}

export interface SimulationOptions {
  readonly serverUrl: string;
  readonly mqttUrl: string;
  readonly keySet: KeySetPayload;
  readonly devices: readonly { readonly id: string; readonly secret: string }[];
  readonly faults?: SimulationFaults;
  readonly telemetry?: SimulatedTelemetry;
  /** Connections opened at once: a real fleet does not reconnect in lockstep. */
  readonly connectConcurrency?: number;
  /** Downloads in flight at once in this process (file descriptors are finite); default 256. */
  readonly downloadConcurrency?: number;
  readonly log?: (line: Record<string, unknown>) => void;
}

export interface SimulatedDevice {
  readonly id: string;
  readonly online: boolean;
  /** name → active version. */
  readonly active: ReadonlyMap<string, string>;
  readonly installs: number;
  /** Telemetry windows sent, and acknowledged by the server. */
  readonly telemetrySent: number;
  readonly telemetryAcked: number;
}

export interface Simulation {
  readonly devices: readonly SimulatedDevice[];
  /** How many online devices run `model` at `version`. */
  countActive(model: string, version: string): number;
  stop(): Promise<void>;
}

/**
 * One connection attempt. Unlike mqtt.connectAsync, a failed attempt leaves nothing behind: the
 * client is ended, so it cannot keep reconnecting and later throw an error nobody listens to.
 * Once connected, mqtt.js reconnects on its own (every `reconnectPeriod` ms).
 */
function connectOnce(url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  const client = mqtt.connect(url, { ...options, reconnectPeriod: 0 });
  return new Promise((resolve, reject) => {
    const closed = () => fail(new Error('connection closed before CONNACK'));
    const fail = (error: Error) => {
      client.removeListener('error', fail);
      client.removeListener('close', closed);
      client.removeListener('connect', connected);
      client.on('error', () => undefined); // a late error from the dead socket is expected
      client.end(true);
      reject(error);
    };
    const connected = () => {
      client.removeListener('error', fail);
      client.removeListener('close', closed);
      client.options.reconnectPeriod = options.reconnectPeriod ?? 1000;
      resolve(client);
    };
    client.on('error', fail);
    client.on('close', closed);
    client.on('connect', connected);
  });
}

/** The device class simulated devices report and are checked against (a manifest's runtime.deviceClasses). */
export const SIMULATED_CLASS = 'simulated';

/** A stable share in [0, 1) per device and purpose: faults hit the same devices on every run. */
export function deviceShare(id: string, purpose: string): number {
  return createHash('sha256').update(`${purpose}\n${id}`).digest().readUInt32BE(0) / 2 ** 32;
}

export async function startSimulation(options: SimulationOptions): Promise<Simulation> {
  // node:http with keep-alive: thousands of small downloads cost a fraction of what fetch costs.
  const agent = new (options.serverUrl.startsWith('https:') ? HttpsAgent : HttpAgent)({
    keepAlive: true,
    maxSockets: options.downloadConcurrency ?? 256,
  });
  const get = (url: string, headers: Record<string, string>) =>
    new Promise<IncomingMessage>((resolve, reject) => {
      const request = (url.startsWith('https:') ? httpsGet : httpGet)(url, { agent, headers, timeout: 60_000 }, resolve);
      request.on('timeout', () => request.destroy(Object.assign(new Error('download timed out'), { code: 'EF_DOWNLOAD_TIMEOUT' })));
      request.on('error', reject);
    });
  const topics = createTopicScheme();
  const trust = createTrust(options.keySet, { verify: nodeVerify });
  const faults = options.faults ?? {};
  const log = options.log ?? (() => undefined);
  // Manifests are the same for every device: verify each signed manifest once.
  // A small semaphore: thousands of simulated devices share one process's sockets.
  let slots = options.downloadConcurrency ?? 256;
  const waiting: (() => void)[] = [];
  const acquire = (): Promise<void> => {
    if (slots > 0) {
      slots--;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => waiting.push(resolve));
  };
  const release = () => {
    const next = waiting.shift();
    if (next) next();
    else slots++;
  };
  /**
   * What a real device checks before downloading a byte: the device class, then the version floor
   * (TUF rollback attack: only a verified rollback document installs an older version).
   */
  function checkTarget(manifest: ManifestPayload, floor: string | undefined, rollback: boolean): void {
    const classes = manifest.runtime.deviceClasses;
    if (classes && !classes.includes(SIMULATED_CLASS)) {
      throw new EdgefleetError(
        'EF_MODEL_TARGET_MISMATCH',
        `${manifest.name}@${manifest.version} is built for device classes ${classes.join(', ')}; this device is ${SIMULATED_CLASS}`,
      );
    }
    checkVersionFloor(manifest.name, manifest.version, floor, rollback);
  }

  /**
   * The acceptance data a real device needs before it may activate (short of running the model):
   * inline golden vectors, or a golden vectors file (downloaded and hash-checked) that decodes and
   * fits the model's inputs and outputs. A model whose acceptance test cannot run never activates.
   */
  function checkAcceptanceData(manifest: ManifestPayload, files: ReadonlyMap<string, Uint8Array>): void {
    const acceptance = manifest.acceptance;
    if (!acceptance) return;
    let vectors = acceptance.vectors.length;
    if (acceptance.vectorsFile !== undefined) {
      const bytes = files.get(acceptance.vectorsFile);
      if (!bytes) throw new EdgefleetError('EF_ACCEPTANCE_DATA_INVALID', `${manifest.name}@${manifest.version}: no golden vectors file`);
      vectors += decodeGoldenVectors(bytes, manifest).length;
    }
    if (vectors === 0) {
      throw new EdgefleetError(
        'EF_ACCEPTANCE_DATA_INVALID',
        `${manifest.name}@${manifest.version} has an acceptance test without golden vectors`,
      );
    }
  }

  /** The bytes of manifest files (golden vectors) by hash, shared by every simulated device. */
  const fileCache = new Map<string, Uint8Array>();
  const devices: (SimulatedDevice & {
    client?: MqttClient | undefined;
    active: Map<string, string>;
    installs: number;
    online: boolean;
    telemetrySent: number;
    telemetryAcked: number;
  })[] = [];
  const timers: ReturnType<typeof setInterval>[] = [];

  async function runDevice(id: string, secret: string) {
    const state = {
      id,
      online: false,
      active: new Map<string, string>(),
      installs: 0,
      telemetrySent: 0,
      telemetryAcked: 0,
      client: undefined as MqttClient | undefined,
    };
    /** The verified manifest of each active model (what its telemetry is shaped by). */
    const manifests = new Map<string, ManifestPayload>();
    /** The version floor of each model: below it, only a signed rollback installs. */
    const floors = new Map<string, string>();
    /** The version each model replaced: kept, as a runtime keeps it, to roll back to without a download. */
    const previous = new Map<string, ManifestPayload>();
    /** Artifacts this device holds (those of the active and previous versions), as a runtime's store. */
    const held = () =>
      new Set([...manifests.values(), ...previous.values()].flatMap((m) => [m.artifact.sha256, ...m.files.map((f) => f.sha256)]));
    devices.push(state);
    if (deviceShare(id, 'offline') < (faults.offline ?? 0)) return;
    const bootId = globalThis.crypto.randomUUID();
    let seq = 0;
    let applied = 0;
    let busy: Promise<void> = Promise.resolve();
    const basic = `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;
    const connectOptions: mqtt.IClientOptions = {
      clientId: id,
      username: id,
      password: secret,
      protocolVersion: 4,
      reconnectPeriod: 1000,
      keepalive: 60,
      will: {
        topic: topics.build('presence', id),
        payload: Buffer.from(
          encodeMessage('presence', {
            type: 'edgefleet.presence/v1',
            deviceId: id,
            bootId,
            state: 'offline',
            since: timestamp(Date.now()),
          }),
        ),
        qos: 1,
        retain: true,
      },
    };
    // Under a connection storm a loaded server or kernel backlog may reset a socket: try again a
    // few times instead of giving the device up.
    let client: MqttClient | undefined;
    for (let attempt = 1; !client; attempt++) {
      try {
        client = await connectOnce(options.mqttUrl, connectOptions);
      } catch (error) {
        if (attempt >= 5) throw error;
        log({ level: 'warn', deviceId: id, msg: `connect attempt ${attempt} failed: ${(error as Error).message}` });
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
      }
    }
    state.client = client;
    state.online = true;
    // A dropped connection is reconnected by mqtt.js; the error must not crash the simulation.
    client.on('error', (error) => log({ level: 'warn', deviceId: id, msg: `mqtt: ${error.message}` }));
    /** What the runtime's install-time probe would report on this device (see faults.slowdown). */
    const baseP95Ms = 1 + 2 * deviceShare(id, 'latency');
    const p95Of = (version: string) => baseP95Ms * (faults.slowdown?.version === version ? faults.slowdown.factor : 1);
    const latencyProbe = (version: string, replaced: string | undefined): NonNullable<DeviceEvent['latency']> => {
      const p95Ms = p95Of(version);
      if (replaced === undefined) return { p95Ms, runs: 20 };
      const previousP95Ms = p95Of(replaced);
      return { p95Ms, previousP95Ms, ratio: p95Ms / previousP95Ms, runs: 20 };
    };
    const event = (kind: DeviceEvent['kind'], fields: Partial<DeviceEvent>) => {
      const message: DeviceEvent = {
        type: 'edgefleet.event/v1',
        deviceId: id,
        bootId,
        seq: seq++,
        at: timestamp(Date.now()),
        kind,
        ...fields,
      };
      client.publish(topics.build('events', id), Buffer.from(encodeMessage('events', message)), { qos: 1 });
    };
    const report = () => {
      const reported: ReportedState = {
        type: 'edgefleet.reported-state/v1',
        deviceId: id,
        bootId,
        reportedAt: timestamp(Date.now()),
        appliedSequence: applied,
        agent: { version: '0.1.0', platform: 'node', deviceClass: SIMULATED_CLASS },
        capabilities: { executionProviders: ['wasm'] },
        models: [...state.active].map(([name, version]) => ({
          name,
          state: 'active' as const,
          active: {
            version,
            sha256: manifests.get(name)?.artifact.sha256 ?? '0'.repeat(64),
            executionProvider: 'wasm' as const,
            activatedAt: timestamp(Date.now()),
          },
          ...(previous.has(name)
            ? { previous: { version: previous.get(name)?.version as string, sha256: previous.get(name)?.artifact.sha256 as string } }
            : {}),
          ...(floors.has(name) ? { floor: floors.get(name) as string } : {}),
        })),
      };
      client.publish(topics.build('reported', id), Buffer.from(encodeMessage('reported', reported)), { qos: 1, retain: true });
    };

    /** Downloads and hash-checks an artifact; `keep` returns its bytes (small files only). */
    async function download(sha256: string, size: number, dropFirst: boolean, keep = false): Promise<Uint8Array | undefined> {
      await acquire();
      try {
        return await downloadOnce(sha256, size, dropFirst, keep);
      } finally {
        release();
      }
    }

    async function downloadOnce(sha256: string, size: number, dropFirst: boolean, keep: boolean): Promise<Uint8Array | undefined> {
      const hash = createHash('sha256');
      const kept: Buffer[] = [];
      let received = 0;
      for (let attempt = 0; attempt < 5 && received < size; attempt++) {
        const response = await get(`${options.serverUrl}/v1/artifacts/${sha256}`, {
          authorization: basic,
          ...(received > 0 ? { range: `bytes=${received}-` } : {}),
        });
        if (response.statusCode !== 200 && response.statusCode !== 206) {
          response.resume();
          throw Object.assign(new Error(`HTTP ${response.statusCode}`), { code: 'EF_DOWNLOAD_FAILED' });
        }
        for await (const chunk of response as AsyncIterable<Buffer>) {
          received += chunk.length;
          if (received > size) {
            response.destroy();
            throw Object.assign(new Error('more than the signed size'), { code: 'EF_DOWNLOAD_TOO_LARGE' });
          }
          hash.update(chunk);
          if (keep) kept.push(chunk);
          if (dropFirst && attempt === 0 && received >= size / 2) {
            response.destroy(); // the link drops half-way: resume with Range on the next attempt
            break;
          }
        }
      }
      if (received !== size) throw Object.assign(new Error(`got ${received} of ${size} bytes`), { code: 'EF_DOWNLOAD_INCOMPLETE' });
      if (hash.digest('hex') !== sha256) throw Object.assign(new Error('sha256 mismatch'), { code: 'EF_ARTIFACT_HASH_MISMATCH' });
      return keep ? new Uint8Array(Buffer.concat(kept)) : undefined;
    }

    /**
     * A small file of a manifest (golden vectors): from this process's cache when the device holds
     * it already, else downloaded and hash-checked. The cache is by hash, so thousands of
     * simulated devices share one copy of the bytes.
     */
    async function fileBytes(sha256: string, size: number, stored: ReadonlySet<string>): Promise<Uint8Array> {
      const cached = fileCache.get(sha256);
      if (cached && stored.has(sha256)) return cached;
      const bytes = (await download(sha256, size, false, true)) as Uint8Array;
      fileCache.set(sha256, bytes);
      return bytes;
    }

    async function reconcile(document: unknown): Promise<void> {
      let verified: ReturnType<typeof verifyDesiredState>;
      try {
        verified = verifyDesiredState(document, trust, { deviceId: id });
      } catch (error) {
        event('desired-state-rejected', {
          error: { code: (error as { code?: string }).code ?? 'EF_INTERNAL_ERROR', message: String(error).slice(0, 500) },
        });
        return;
      }
      if (verified.payload.sequence <= applied) return report();
      for (const [index, manifest] of verified.manifests.entries()) {
        const rolloutId = verified.payload.models[index]?.rolloutId;
        const model = { name: manifest.name, version: manifest.version };
        if (state.active.get(manifest.name) === manifest.version) continue;
        try {
          checkTarget(manifest, floors.get(manifest.name), verified.payload.rollback);
          if (faults.latencyMs) await new Promise((resolve) => setTimeout(resolve, faults.latencyMs));
          const stored = held();
          const files = new Map<string, Uint8Array>();
          for (const file of manifest.files) files.set(file.name, await fileBytes(file.sha256, file.size, stored));
          checkAcceptanceData(manifest, files);
          if (!stored.has(manifest.artifact.sha256)) {
            await download(manifest.artifact.sha256, manifest.artifact.size, deviceShare(id, 'drop') < (faults.dropDownload ?? 0));
          }
          event('verified', { model, ...(rolloutId ? { rolloutId } : {}) });
          if (deviceShare(id, 'acceptance') < (faults.failAcceptance ?? 0)) {
            throw Object.assign(new Error('simulated acceptance failure'), { code: 'EF_ACCEPTANCE_FAILED' });
          }
          const replaced = state.active.get(manifest.name);
          // The floor follows the runtime's rule: raised by a newer version, set by a rollback.
          const floor = floors.get(manifest.name);
          if (verified.payload.rollback || floor === undefined || compareSemver(manifest.version, floor) > 0) {
            floors.set(manifest.name, manifest.version);
          }
          const replacedManifest = manifests.get(manifest.name);
          if (replacedManifest && replacedManifest.artifact.sha256 !== manifest.artifact.sha256)
            previous.set(manifest.name, replacedManifest);
          state.active.set(manifest.name, manifest.version);
          manifests.set(manifest.name, manifest);
          state.installs++;
          event('activated', {
            model,
            executionProvider: 'wasm',
            latency: latencyProbe(manifest.version, replaced),
            ...(rolloutId ? { rolloutId } : {}),
          });
        } catch (error) {
          event('install-failed', {
            model,
            error: { code: (error as { code?: string }).code ?? 'EF_INTERNAL_ERROR', message: String(error).slice(0, 500) },
            ...(rolloutId ? { rolloutId } : {}),
          });
        }
      }
      for (const name of verified.payload.remove) {
        state.active.delete(name);
        manifests.delete(name);
        previous.delete(name);
      }
      applied = verified.payload.sequence;
      report();
    }

    const desiredTopic = topics.build('desired', id);
    client.on('message', (topic, payload) => {
      if (topic !== desiredTopic) return;
      let document: unknown;
      try {
        document = JSON.parse(payload.toString('utf8')) as SignedDocument<unknown>;
      } catch {
        return;
      }
      busy = busy.then(() => reconcile(document)).catch((error: unknown) => log({ level: 'warn', deviceId: id, msg: String(error) }));
    });
    client.on('connect', () => {
      state.online = true;
      report();
    });
    client.on('close', () => {
      state.online = false;
    });
    await client.subscribeAsync(topics.build('desired', id), { qos: 1 });
    report();
    if (options.telemetry) startTelemetry(id, bootId, client, state, manifests, options.telemetry);
  }

  /** Closes a window per active model every `windowMs` and sends it at QoS 1 (acks counted). */
  function startTelemetry(
    id: string,
    bootId: string,
    client: MqttClient,
    state: (typeof devices)[number],
    manifests: ReadonlyMap<string, ManifestPayload>,
    spec: SimulatedTelemetry,
  ): void {
    let seq = 0;
    const random = seededRandom(deviceShare(id, 'telemetry') * 2 ** 32);
    const ackTopic = topics.build('telemetry-ack', id);
    void client.subscribeAsync(ackTopic, { qos: 1 }).catch(() => undefined);
    client.on('message', (topic, payload) => {
      if (topic !== ackTopic) return;
      try {
        state.telemetryAcked += (JSON.parse(payload.toString('utf8')) as { seqs?: unknown[] }).seqs?.length ?? 0;
      } catch {
        // not an ack
      }
    });
    let opened = Date.now();
    const timer = setInterval(() => {
      if (!state.online) return;
      const end = Date.now();
      for (const manifest of manifests.values()) {
        if (state.active.get(manifest.name) !== manifest.version) continue;
        const closed = simulatedWindow(manifest, opened, end, spec, spec.shift?.(id) ?? 0, random);
        const message = telemetryMessage({ ...closed, executionProvider: 'wasm' }, { deviceId: id, bootId, seq: seq++, dropped: 0 });
        client.publish(topics.build('telemetry', id), Buffer.from(encodeMessage('telemetry', message)), { qos: 1 });
        state.telemetrySent++;
      }
      opened = end;
    }, spec.windowMs);
    timer.unref();
    timers.push(timer);
  }

  const queue = [...options.devices];
  const workers = Array.from({ length: Math.min(options.connectConcurrency ?? 100, queue.length) }, async () => {
    for (let next = queue.shift(); next; next = queue.shift()) await runDevice(next.id, next.secret);
  });
  await Promise.all(workers);
  log({ level: 'info', msg: 'simulation started', devices: options.devices.length, online: devices.filter((d) => d.online).length });

  return {
    devices,
    countActive: (model, version) => devices.filter((d) => d.active.get(model) === version).length,
    async stop() {
      for (const timer of timers) clearInterval(timer);
      await Promise.all(devices.map((d) => d.client?.endAsync(true).catch(() => undefined)));
      agent.destroy();
    },
  };
}

/** A deterministic stream in [0, 1) (splitmix32, as @edgefleet/test-utils' splitmix: this package ships, test-utils does not). */
function seededRandom(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

/** A concrete shape for a declared one: symbolic dimensions become 1 (the last one 16), at most 4,096 elements. */
function concreteShape(shape: readonly (number | string)[]): number[] {
  const dims = shape.map((d, i) => (typeof d === 'number' ? d : i === shape.length - 1 ? 16 : 1));
  let size = dims.reduce((a, b) => a * b, 1);
  for (let i = 0; i < dims.length && size > 4096; i++) {
    size /= dims[i] as number;
    dims[i] = 1;
  }
  return dims;
}

/** One window of simulated runs, folded exactly as the runtime folds real ones. */
export function simulatedWindow(
  manifest: ManifestPayload,
  start: number,
  end: number,
  spec: Pick<SimulatedTelemetry, 'runs' | 'shiftInput' | 'shiftColumn'>,
  shift: number,
  random: () => number,
): ClosedWindow {
  const profile = new WindowProfile({ name: manifest.name, version: manifest.version }, start, manifest.telemetry);
  const shifted = spec.shiftInput ?? manifest.model.inputs[0]?.name;
  const normal = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const tensor = (dtype: string, shape: readonly (number | string)[], fill: (column: number) => number) => {
    const dims = concreteShape(shape);
    const size = dims.reduce((a, b) => a * b, 1);
    const width = dims.at(-1) ?? 1;
    if (dtype === 'int64') return { dtype: 'int64' as const, shape: dims, data: BigInt64Array.from({ length: size }, () => 16_000n) };
    return { dtype: 'float32' as const, shape: dims, data: Float32Array.from({ length: size }, (_, i) => fill(i % width)) };
  };
  const offset = (input: string, column: number) =>
    input === shifted && (spec.shiftColumn === undefined || spec.shiftColumn === column) ? shift : 0;
  for (let run = 0; run < spec.runs; run++) {
    const feeds = Object.fromEntries(
      manifest.model.inputs.map((input) => [
        input.name,
        tensor(input.dtype, input.shape, (column) => normal() + offset(input.name, column)),
      ]),
    );
    const outputs = Object.fromEntries(manifest.model.outputs.map((output) => [output.name, tensor(output.dtype, output.shape, random)]));
    profile.recordRun(feeds, outputs, 0.5 + random());
  }
  return profile.close(end);
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

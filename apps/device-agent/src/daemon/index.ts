/**
 * The device daemon: runtime + agent from one data folder. On first start it enrolls with an
 * enrollment token and keeps the credential (mode 0600); afterwards it needs no token. A server
 * that cannot be reached at first boot (network not up yet) is retried with capped exponential
 * backoff and jitter, never given up on; a token the server refuses stops the start.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAgent, createFileAgentState, reconnectDelay } from '@edgefleet/agent';
import { createTrust, EdgefleetError, type KeySetPayload, type SignedDocument } from '@edgefleet/protocol';
import { nodeVerify, writeFileAtomically } from '@edgefleet/protocol/node';
import { createRuntime } from '@edgefleet/runtime';

export interface Credential {
  readonly id: string;
  readonly secret: string;
  readonly mqtt: { readonly tcp: string; readonly ws: string };
  readonly keySet: SignedDocument<KeySetPayload>;
}

/** The logger the daemon writes to: pino's (the CLI's), or anything with the same four methods. */
export interface DaemonLogger {
  debug(fields: object, message: string): void;
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
  error(fields: object, message: string): void;
}

export interface DaemonOptions {
  readonly serverUrl: string;
  readonly dataDir: string;
  readonly token?: string;
  readonly id?: string;
  readonly mqttUrl?: string;
  readonly logger: DaemonLogger;
  /** Models from this size on log their download progress; default 1 MiB. */
  readonly progressMinBytes?: number;
  /** At most one progress line per model this often; default 5 s. */
  readonly progressEveryMs?: number;
  /** Enrollment retries: first delay and cap; default 1 s and 60 s. */
  readonly enrollRetry?: { readonly initialMs: number; readonly maxMs: number };
  /** Stops enrollment retries (shutdown while the network is down). */
  readonly signal?: AbortSignal;
}

/** An answer that a retry can change: the network, a proxy, or the server's own trouble. */
function retryable(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

export async function loadOrEnroll(
  options: Pick<DaemonOptions, 'serverUrl' | 'dataDir' | 'token' | 'id' | 'logger' | 'enrollRetry' | 'signal'>,
): Promise<Credential> {
  const path = join(options.dataDir, 'credential.json');
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Credential;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ENOENT') throw error;
  }
  if (!options.token) {
    throw new EdgefleetError(
      'EF_ENROLLMENT_TOKEN_INVALID',
      `no credential in ${path} and no enrollment token: put one in a file (--token-file, or "tokenFile" in the config) or in EDGEFLEET_ENROLLMENT_TOKEN`,
    );
  }
  const { initialMs, maxMs } = options.enrollRetry ?? { initialMs: 1000, maxMs: 60_000 };
  const url = `${options.serverUrl}/v1/enroll`;
  const started = Date.now();
  // One key for every attempt: a retry after an answer lost on the way gets that answer (the
  // device the server created), never a second device or EF_DEVICE_EXISTS.
  const idempotencyKey = randomUUID();
  for (let attempt = 0; ; attempt++) {
    let failure: string;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': idempotencyKey },
        body: JSON.stringify({ token: options.token, ...(options.id ? { id: options.id } : {}) }),
        signal: AbortSignal.any([AbortSignal.timeout(30_000), ...(options.signal ? [options.signal] : [])]),
      });
      const text = await response.text();
      let body: (Credential & { code?: string; detail?: string }) | undefined;
      try {
        body = JSON.parse(text) as Credential & { code?: string; detail?: string };
      } catch {
        body = undefined;
      }
      if (response.ok && body) {
        await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
        const credential: Credential = { id: body.id, secret: body.secret, mqtt: body.mqtt, keySet: body.keySet };
        await writeFileAtomically(path, JSON.stringify(credential, null, 2)); // mode 0600
        if (attempt > 0)
          options.logger.info({ attempts: attempt + 1, seconds: Math.round((Date.now() - started) / 1000) }, 'enrolled after retrying');
        return credential;
      }
      if (!retryable(response.status)) {
        throw new EdgefleetError(
          body?.code === 'EF_DEVICE_EXISTS' ? 'EF_DEVICE_EXISTS' : 'EF_ENROLLMENT_TOKEN_INVALID',
          `enrollment refused by ${url}: ${response.status} ${body?.code ?? ''} ${body?.detail ?? text.slice(0, 200)}`.trim(),
        );
      }
      failure = `${response.status} ${body?.code ?? response.statusText}`;
    } catch (error) {
      if (error instanceof EdgefleetError) throw error;
      if (options.signal?.aborted) throw options.signal.reason;
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      failure = cause?.code ?? cause?.message ?? (error as Error).message;
    }
    const delay = reconnectDelay(attempt, initialMs, maxMs);
    if (attempt === 0) options.logger.warn({ url, error: failure }, 'cannot enroll yet; retrying with backoff');
    else options.logger.debug({ url, error: failure, attempt: attempt + 1, retryInMs: delay }, 'enrollment attempt failed');
    await sleep(delay, options.signal);
  }
}

export async function runDaemon(options: DaemonOptions): Promise<{ stop(): Promise<void> }> {
  const credential = await loadOrEnroll(options);
  const { logger } = options;
  const progressMinBytes = options.progressMinBytes ?? 1024 * 1024;
  const progressEveryMs = options.progressEveryMs ?? 5000;
  logger.info({ deviceId: credential.id, mqtt: options.mqttUrl ?? credential.mqtt.tcp }, 'device ready');
  const runtime = await createRuntime({
    dir: join(options.dataDir, 'models'),
    trust: credential.keySet.payload,
    deviceId: credential.id,
    listeners: {
      restored: ({ model, executionProvider }) =>
        logger.info({ deviceId: credential.id, model: `${model.name}@${model.version}`, executionProvider }, 'model restored'),
    },
  });
  runtime.on('activated', ({ model, executionProvider }) =>
    logger.info({ deviceId: credential.id, model: `${model.name}@${model.version}`, executionProvider }, 'model activated'),
  );
  runtime.on('install-failed', ({ model, error }) =>
    logger.warn(
      { deviceId: credential.id, model: `${model.name}@${model.version}`, code: error.code, error: error.message },
      'install failed',
    ),
  );
  // Download progress of large files: a line when it starts, at most one every progressEveryMs,
  // and one when the last byte is in, with bytes, percent and rate.
  const downloads = new Map<string, { started: number; logged: number }>();
  runtime.on('download-progress', ({ model, file, bytes, total }) => {
    if (total < progressMinBytes) return;
    const key = `${model.name}@${model.version}/${file}`;
    const now = Date.now();
    let download = downloads.get(key);
    if (!download || bytes === 0) {
      download = { started: now, logged: 0 };
      downloads.set(key, download);
    }
    const done = bytes >= total;
    if (!done && download.logged !== 0 && now - download.logged < progressEveryMs) return;
    download.logged = now;
    const seconds = (now - download.started) / 1000;
    logger.info(
      {
        deviceId: credential.id,
        model: `${model.name}@${model.version}`,
        file,
        bytes,
        total,
        percent: Math.floor((bytes / total) * 1000) / 10,
        bytesPerSecond: seconds > 0 ? Math.round(bytes / seconds) : undefined,
        seconds: Math.round(seconds * 10) / 10,
      },
      done ? 'download complete' : 'downloading',
    );
    if (done) downloads.delete(key);
  });
  const agent = createAgent({
    deviceId: credential.id,
    secret: credential.secret,
    mqttUrl: options.mqttUrl ?? credential.mqtt.tcp,
    serverUrl: options.serverUrl,
    runtime,
    trust: createTrust(credential.keySet.payload, { verify: nodeVerify }),
    state: createFileAgentState(options.dataDir),
    platform: 'node',
    log: (level, msg, fields) => logger[level]({ deviceId: credential.id, ...fields }, msg),
  });
  await agent.start();
  logger.info({ deviceId: credential.id }, 'connected');
  return {
    async stop() {
      await agent.stop();
      await runtime.close();
    },
  };
}

/**
 * Server configuration: every default in one typed place, each overridable by an EDGEFLEET_*
 * environment variable. `--help` prints this table.
 */
import { join } from 'node:path';

export interface ServerConfig {
  /** Interface the HTTP API and MQTT over WebSocket listen on. */
  readonly host: string;
  readonly port: number;
  /** MQTT over TCP; 0 picks a free port (tests). */
  readonly mqttPort: number;
  readonly dataDir: string;
  /** For automation: an admin token to accept; otherwise one is generated on first start and printed once. */
  readonly adminToken: string | undefined;
  /** Largest model upload in bytes. */
  readonly maxModelBytes: number;
  /** Largest JSON request body in bytes. */
  readonly bodyLimit: number;
  readonly requestTimeoutMs: number;
  /** Admin API requests per minute per client. */
  readonly rateLimitPerMinute: number;
  /** Largest MQTT payload in bytes (the biggest protocol message is a desired-state document). */
  readonly mqttMaxPayload: number;
  /** How long a manifest signed at upload lets devices install (days). */
  readonly manifestTtlDays: number;
  readonly logLevel: string;
  /** Public base URL devices use for artifacts, when the server sits behind a proxy. */
  readonly publicUrl: string | undefined;
  /** PostgreSQL connection string; SQLite in the data folder when unset. */
  readonly databaseUrl: string | undefined;
  /** An external MQTT broker the server connects to (mqtt:// or mqtts://) instead of embedding one. */
  readonly brokerUrl: string | undefined;
  /** The server's own credentials on the external broker (Mosquitto: a dynamic-security admin). */
  readonly brokerUsername: string | undefined;
  readonly brokerPassword: string | undefined;
  /**
   * How the external broker authenticates devices: `dynsec` (the server registers each device with
   * Mosquitto's dynamic-security plugin) or `http` (the broker asks the server's /v1/broker hooks).
   */
  readonly brokerAuth: 'dynsec' | 'http';
  /** The MQTT URL devices are given for the external broker (when it differs from brokerUrl). */
  readonly brokerDeviceUrl: string | undefined;
  /** What the broker presents (Bearer) when it calls /v1/broker/* (EDGEFLEET_BROKER_AUTH=http). */
  readonly brokerHookSecret: string | undefined;
  /** Where artifacts are kept: `folder` (the data folder) or `database` (shared by replicas; the default with PostgreSQL). */
  readonly artifacts: 'folder' | 'database';
  /** Web origins whose pages may call the API (browser devices). */
  readonly corsOrigins: readonly string[];
  /** Largest reference dataset (CSV, JSON lines) in bytes. */
  readonly maxReferenceBytes: number;
  readonly maxEvaluationBytes: number;
  readonly maxEvaluationSamples: number;
  /** Width of the time buckets drift is evaluated over (seconds): one drift score per bucket and group. */
  readonly driftBucketSeconds: number;
  /** How often new telemetry is evaluated for drift (ms). */
  readonly driftEvaluateMs: number;
  /** Consecutive drifted buckets of a group before an alert fires (K). */
  readonly driftAlertWindows: number;
  /** Telemetry windows and drift scores older than this many days are deleted (0 keeps them). */
  readonly telemetryRetentionDays: number;
  /** Where drift alerts are POSTed (HMAC-signed); none when unset. */
  readonly webhookUrl: string | undefined;
  /** The HMAC-SHA256 key of webhook bodies; required with a webhook URL. */
  readonly webhookSecret: string | undefined;
  /** Failed authentications (admin or device, HTTP or MQTT) one address may make per minute before it is refused outright. */
  readonly authFailuresPerMinute: number;
  /** How long registration may take to load a model in onnxruntime (and compute its golden vectors) before refusing it. */
  readonly modelLoadTimeoutMs: number;
  /** The web dashboard at `/`: on (the built one shipped in this package), off, or a folder holding another build. */
  readonly dashboard: string;
}

interface Setting {
  readonly env: string;
  readonly key: keyof ServerConfig;
  readonly description: string;
  readonly parse: (value: string) => ServerConfig[keyof ServerConfig];
  readonly fallback: (env: NodeJS.ProcessEnv) => ServerConfig[keyof ServerConfig];
  /** How `--help` shows the default, when the value itself depends on where the server runs. */
  readonly shownDefault?: string;
}

const integer = (name: string, min: number, max: number) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer from ${min} to ${max}, got "${value}"`);
  return n;
};

export const SETTINGS: readonly Setting[] = [
  {
    env: 'EDGEFLEET_HOST',
    key: 'host',
    description: 'interface for the HTTP API and MQTT over WebSocket (/mqtt)',
    parse: (v) => v,
    fallback: () => '127.0.0.1',
  },
  { env: 'EDGEFLEET_PORT', key: 'port', description: 'HTTP port', parse: integer('EDGEFLEET_PORT', 0, 65535), fallback: () => 8080 },
  {
    env: 'EDGEFLEET_MQTT_PORT',
    key: 'mqttPort',
    description: 'MQTT over TCP port',
    parse: integer('EDGEFLEET_MQTT_PORT', 0, 65535),
    fallback: () => 1883,
  },
  {
    env: 'EDGEFLEET_DATA_DIR',
    key: 'dataDir',
    description: 'SQLite database, artifacts and the signing key',
    parse: (v) => v,
    fallback: (env) => defaultDataDir(env),
    shownDefault: '$STATE_DIRECTORY under systemd, else ./.edgefleet/server where the command was started',
  },
  {
    env: 'EDGEFLEET_ADMIN_TOKEN',
    key: 'adminToken',
    description: 'an admin token to accept (otherwise one is generated and printed once)',
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_MAX_MODEL_BYTES',
    key: 'maxModelBytes',
    description: 'largest model upload in bytes',
    parse: integer('EDGEFLEET_MAX_MODEL_BYTES', 1, 2 ** 40),
    fallback: () => 512 * 1024 * 1024,
  },
  {
    env: 'EDGEFLEET_BODY_LIMIT',
    key: 'bodyLimit',
    description: 'largest JSON request body in bytes',
    parse: integer('EDGEFLEET_BODY_LIMIT', 1024, 2 ** 30),
    fallback: () => 1024 * 1024,
  },
  {
    env: 'EDGEFLEET_REQUEST_TIMEOUT_MS',
    key: 'requestTimeoutMs',
    description: 'time allowed for a whole request (uploads included)',
    parse: integer('EDGEFLEET_REQUEST_TIMEOUT_MS', 1000, 24 * 3600 * 1000),
    fallback: () => 10 * 60 * 1000,
  },
  {
    env: 'EDGEFLEET_RATE_LIMIT',
    key: 'rateLimitPerMinute',
    description: 'admin API requests per minute per client',
    parse: integer('EDGEFLEET_RATE_LIMIT', 1, 1e9),
    fallback: () => 600,
  },
  {
    env: 'EDGEFLEET_MQTT_MAX_PAYLOAD',
    key: 'mqttMaxPayload',
    description: 'largest MQTT payload in bytes',
    parse: integer('EDGEFLEET_MQTT_MAX_PAYLOAD', 1024, 256 * 1024 * 1024),
    fallback: () => 1024 * 1024,
  },
  {
    env: 'EDGEFLEET_MANIFEST_TTL_DAYS',
    key: 'manifestTtlDays',
    description: 'days a signed manifest lets devices install',
    parse: integer('EDGEFLEET_MANIFEST_TTL_DAYS', 1, 3650),
    fallback: () => 90,
  },
  { env: 'EDGEFLEET_LOG_LEVEL', key: 'logLevel', description: 'pino log level', parse: (v) => v, fallback: () => 'info' },
  {
    env: 'EDGEFLEET_PUBLIC_URL',
    key: 'publicUrl',
    description: 'base URL devices use to reach this server (behind a proxy)',
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_DATABASE_URL',
    key: 'databaseUrl',
    description: 'PostgreSQL (postgres://user:password@host:5432/db) instead of SQLite in the data folder: for several replicas',
    parse: (v) => {
      const url = new URL(v);
      if (url.protocol !== 'postgres:' && url.protocol !== 'postgresql:') {
        throw new Error(`EDGEFLEET_DATABASE_URL must be a postgres:// URL, got "${url.protocol}"`);
      }
      return v;
    },
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_BROKER_URL',
    key: 'brokerUrl',
    description: 'an external MQTT broker (mqtt://host:1883 or mqtts://) instead of the embedded one: see docs/scaling.md',
    parse: (v) => {
      const url = new URL(v);
      if (url.protocol !== 'mqtt:' && url.protocol !== 'mqtts:')
        throw new Error(`EDGEFLEET_BROKER_URL must be mqtt:// or mqtts://, got "${v}"`);
      return v;
    },
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_BROKER_USERNAME',
    key: 'brokerUsername',
    description: "the server's username on the external broker (Mosquitto: a dynamic-security admin client)",
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_BROKER_PASSWORD',
    key: 'brokerPassword',
    description: "the server's password on the external broker",
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_BROKER_AUTH',
    key: 'brokerAuth',
    description: 'how the external broker checks devices: dynsec (Mosquitto 2 dynamic security) or http (the broker calls /v1/broker/*)',
    parse: (v) => {
      if (v !== 'dynsec' && v !== 'http') throw new Error(`EDGEFLEET_BROKER_AUTH must be dynsec or http, got "${v}"`);
      return v;
    },
    fallback: () => 'dynsec',
  },
  {
    env: 'EDGEFLEET_BROKER_DEVICE_URL',
    key: 'brokerDeviceUrl',
    description: 'the MQTT URL devices are given for the external broker (default: EDGEFLEET_BROKER_URL)',
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_BROKER_HOOK_SECRET',
    key: 'brokerHookSecret',
    description: 'the bearer secret the broker sends to /v1/broker/authenticate and /authorize (EDGEFLEET_BROKER_AUTH=http)',
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_ARTIFACTS',
    key: 'artifacts',
    description: 'where model files are kept: folder (in the data folder) or database (shared by every replica)',
    parse: (v) => {
      if (v !== 'folder' && v !== 'database') throw new Error(`EDGEFLEET_ARTIFACTS must be folder or database, got "${v}"`);
      return v;
    },
    fallback: () => 'folder', // 'database' with a database URL: see loadConfig
    shownDefault: 'database with EDGEFLEET_DATABASE_URL, else folder',
  },
  {
    env: 'EDGEFLEET_CORS_ORIGINS',
    key: 'corsOrigins',
    description: 'comma-separated web origins whose pages may call the API (browser devices)',
    parse: (v) =>
      v
        .split(',')
        .map((o) => o.trim())
        .filter(Boolean),
    fallback: () => [],
  },
  {
    env: 'EDGEFLEET_MAX_REFERENCE_BYTES',
    key: 'maxReferenceBytes',
    description: 'largest reference dataset (CSV, JSON lines) in bytes',
    parse: integer('EDGEFLEET_MAX_REFERENCE_BYTES', 1, 2 ** 40),
    fallback: () => 256 * 1024 * 1024,
  },
  {
    env: 'EDGEFLEET_EVALUATION_MAX_BYTES',
    key: 'maxEvaluationBytes',
    description: 'largest evaluation dataset (CSV, JSON lines, .npz) in bytes, and largest array an .npz may inflate to',
    parse: integer('EDGEFLEET_EVALUATION_MAX_BYTES', 1, 2 ** 40),
    fallback: () => 1024 * 1024 * 1024,
  },
  {
    env: 'EDGEFLEET_EVALUATION_MAX_SAMPLES',
    key: 'maxEvaluationSamples',
    description: 'most samples one evaluation reads (its metrics keep one score per sample for the AUC)',
    parse: integer('EDGEFLEET_EVALUATION_MAX_SAMPLES', 1, 100_000_000),
    fallback: () => 2_000_000,
  },
  {
    env: 'EDGEFLEET_DRIFT_BUCKET_SECONDS',
    key: 'driftBucketSeconds',
    description: 'width of the time buckets drift is scored over, per device group',
    parse: integer('EDGEFLEET_DRIFT_BUCKET_SECONDS', 1, 7 * 24 * 3600),
    fallback: () => 300,
  },
  {
    env: 'EDGEFLEET_DRIFT_EVALUATE_MS',
    key: 'driftEvaluateMs',
    description: 'how often new telemetry is scored for drift (ms)',
    parse: integer('EDGEFLEET_DRIFT_EVALUATE_MS', 10, 24 * 3600 * 1000),
    fallback: () => 10_000,
  },
  {
    env: 'EDGEFLEET_DRIFT_ALERT_WINDOWS',
    key: 'driftAlertWindows',
    description: 'consecutive drifted buckets of a group before an alert fires',
    parse: integer('EDGEFLEET_DRIFT_ALERT_WINDOWS', 1, 1000),
    fallback: () => 3,
  },
  {
    env: 'EDGEFLEET_TELEMETRY_RETENTION_DAYS',
    key: 'telemetryRetentionDays',
    description: 'telemetry windows and drift scores older than this are deleted (0 keeps everything)',
    parse: integer('EDGEFLEET_TELEMETRY_RETENTION_DAYS', 0, 36_500),
    fallback: () => 30,
  },
  {
    env: 'EDGEFLEET_WEBHOOK_URL',
    key: 'webhookUrl',
    description: 'http(s) URL drift alerts are POSTed to, signed with EDGEFLEET_WEBHOOK_SECRET',
    parse: (v) => {
      const url = new URL(v);
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`EDGEFLEET_WEBHOOK_URL must be http(s), got "${v}"`);
      return url.toString();
    },
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_WEBHOOK_SECRET',
    key: 'webhookSecret',
    description: 'HMAC-SHA256 key of webhook deliveries (X-Edgefleet-Signature: t=<unix seconds>,v1=<hex HMAC of "<t>.<body>">)',
    parse: (v) => v,
    fallback: () => undefined,
  },
  {
    env: 'EDGEFLEET_AUTH_FAILURES_PER_MINUTE',
    key: 'authFailuresPerMinute',
    description: 'failed authentications per minute from one address before it is refused (429) without a check',
    parse: integer('EDGEFLEET_AUTH_FAILURES_PER_MINUTE', 1, 1e6),
    fallback: () => 20,
  },
  {
    env: 'EDGEFLEET_MODEL_LOAD_TIMEOUT_MS',
    key: 'modelLoadTimeoutMs',
    description: 'time allowed to load an uploaded model in onnxruntime and compute its golden vectors',
    parse: integer('EDGEFLEET_MODEL_LOAD_TIMEOUT_MS', 1000, 3_600_000),
    fallback: () => 60_000,
  },
  {
    env: 'EDGEFLEET_DASHBOARD',
    key: 'dashboard',
    description: 'the web dashboard at /: on, off, or the folder of another build of apps/dashboard',
    parse: (v) => {
      if (v.trim() === '') throw new Error('EDGEFLEET_DASHBOARD must be on, off or a folder');
      return v;
    },
    fallback: () => 'on',
  },
];

/** The least an admin token may be: 32 characters and about 100 bits by its character frequencies. */
const MIN_TOKEN_LENGTH = 32;
const MIN_TOKEN_BITS = 100;

/**
 * Refuses a guessable EDGEFLEET_ADMIN_TOKEN (THREATS 22): under 32 characters, or whose characters
 * carry little entropy ("aaaa…", "abab…"), estimated as length × the Shannon entropy of its
 * character frequencies. A random 32-character hex token estimates at ~118 bits, base64url ~145.
 */
export function checkAdminToken(token: string): void {
  const counts = new Map<string, number>();
  for (const char of token) counts.set(char, (counts.get(char) ?? 0) + 1);
  let perChar = 0;
  for (const count of counts.values()) perChar -= (count / token.length) * Math.log2(count / token.length);
  const bits = perChar * token.length;
  if (token.length < MIN_TOKEN_LENGTH || bits < MIN_TOKEN_BITS) {
    throw new Error(
      `EDGEFLEET_ADMIN_TOKEN is too weak (${token.length} characters, about ${Math.floor(bits)} bits): use at least ${MIN_TOKEN_LENGTH} random characters, e.g. $(openssl rand -base64 32), or leave it unset to have one generated`,
    );
  }
}

/** Reads the configuration from the environment, with overrides (tests, embedding). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: Partial<ServerConfig> = {}): ServerConfig {
  const config: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const raw = env[setting.env];
    config[setting.key] = raw === undefined || raw === '' ? setting.fallback(env) : setting.parse(raw);
  }
  const loaded = { ...(config as unknown as ServerConfig), ...overrides };
  // Unless told otherwise, a server on PostgreSQL keeps artifacts in it too (replicas share them).
  if (overrides.artifacts === undefined && !env.EDGEFLEET_ARTIFACTS) loaded.artifacts = loaded.databaseUrl ? 'database' : 'folder';
  if (loaded.adminToken !== undefined) checkAdminToken(loaded.adminToken);
  if (loaded.brokerUrl && (!loaded.brokerUsername || !loaded.brokerPassword)) {
    throw new Error(
      'EDGEFLEET_BROKER_URL needs EDGEFLEET_BROKER_USERNAME and EDGEFLEET_BROKER_PASSWORD: the server connects to the broker as a privileged client',
    );
  }
  if (loaded.brokerUrl && loaded.brokerAuth === 'http' && (!loaded.brokerHookSecret || loaded.brokerHookSecret.length < 32)) {
    throw new Error(
      'EDGEFLEET_BROKER_AUTH=http needs EDGEFLEET_BROKER_HOOK_SECRET of at least 32 characters ($(openssl rand -base64 32)): the broker presents it when it asks the server about a device',
    );
  }
  if (loaded.webhookUrl && !loaded.webhookSecret) {
    throw new Error('EDGEFLEET_WEBHOOK_URL needs EDGEFLEET_WEBHOOK_SECRET: receivers verify every alert by its HMAC-SHA256 signature');
  }
  return loaded;
}

/**
 * The data folder when EDGEFLEET_DATA_DIR is unset: the folder systemd made for the unit
 * (`StateDirectory=` sets $STATE_DIRECTORY), else `.edgefleet/server` in the directory the command
 * was started from. npm and pnpm run a package's scripts in the package's own folder
 * (`pnpm --filter @edgefleet/fleet-server start` runs in apps/fleet-server) and say where the user
 * was in $INIT_CWD: that is the directory meant.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): string {
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state) return state;
  return join(env.INIT_CWD || cwd, '.edgefleet', 'server');
}

export function helpText(version?: string): string {
  const rows = SETTINGS.map((s) => {
    const fallback = s.fallback({});
    const shown =
      s.shownDefault ?? (fallback === undefined || (Array.isArray(fallback) && fallback.length === 0) ? '(none)' : String(fallback));
    return `  ${s.env.padEnd(30)} ${s.description}\n  ${''.padEnd(30)} default: ${shown}`;
  });
  return [
    `edgefleet-server${version ? ` ${version}` : ''}: model registry, device enrollment, staged rollouts, telemetry and drift, with an embedded MQTT broker.`,
    '',
    'Usage: edgefleet-server [--help] [--version]',
    '',
    'Starts on embedded defaults (SQLite and MQTT broker in this process). Stops cleanly on SIGTERM or SIGINT.',
    'Several replicas: EDGEFLEET_DATABASE_URL (PostgreSQL) and EDGEFLEET_BROKER_URL (an external broker); see docs/scaling.md.',
    'Documentation: README.md of @edgefleet/fleet-server; docs/fleet-server.md in the edgefleet repository.',
    '',
    'Configuration (environment variables):',
    ...rows,
    '',
  ].join('\n');
}

/**
 * `edgefleet-agent run`'s settings, from (highest first) flags, environment, the config file, then
 * defaults. The config file is JSON (default /etc/edgefleet/agent.json when it exists, or --config /
 * EDGEFLEET_AGENT_CONFIG); unknown keys and wrong types stop the start with a message naming the
 * file and the key. The enrollment token never comes from the command line, where `ps` shows it to
 * every user: a file (--token-file, `tokenFile`, systemd's LoadCredential=enrollment-token) or the
 * environment (EDGEFLEET_ENROLLMENT_TOKEN).
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

export const DEFAULT_CONFIG_FILE = '/etc/edgefleet/agent.json';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What `run` needs, resolved. */
export interface AgentConfig {
  readonly server: string;
  readonly dataDir: string;
  readonly id?: string;
  readonly mqtt?: string;
  /** The enrollment token, read from where it was kept; undefined when none was given (enrolled devices need none). */
  readonly token?: string;
  /** Where the token came from, for the log (never the token). */
  readonly tokenSource?: string;
  readonly logLevel: LogLevel;
  /** Models above this size log their download progress; default 1 MiB. */
  readonly progressMinBytes: number;
  /** The config file read, if any. */
  readonly configFile?: string;
}

/** A setting that stops the start: exit status 2, so systemd does not restart in a loop (RestartPreventExitStatus=2). */
export class ConfigError extends Error {}

/** The keys of the config file, their type and meaning (also the documentation's table). */
export const CONFIG_KEYS = {
  server: { type: 'string', flag: '--server', meaning: "the fleet server's HTTP API, e.g. https://fleet.example.com" },
  dataDir: { type: 'string', flag: '--data-dir', meaning: 'where the device keeps its credential, models and state' },
  id: { type: 'string', flag: '--id', meaning: 'the device id to enroll as (default: one the server picks)' },
  mqtt: { type: 'string', flag: '--mqtt', meaning: 'the broker URL, instead of the one the server announced at enrollment' },
  tokenFile: { type: 'string', flag: '--token-file', meaning: 'a file holding the enrollment token (first start only)' },
  logLevel: { type: 'string', flag: '--log-level', meaning: `one of ${LOG_LEVELS.join(', ')} (default info)` },
  progressMinBytes: { type: 'number', flag: undefined, meaning: 'downloads from this size on log their progress (default 1048576)' },
} as const;

type FileConfig = { -readonly [K in keyof typeof CONFIG_KEYS]?: (typeof CONFIG_KEYS)[K]['type'] extends 'number' ? number : string };

export interface ConfigSources {
  readonly flags: {
    readonly config?: string | undefined;
    readonly server?: string | undefined;
    readonly 'data-dir'?: string | undefined;
    readonly id?: string | undefined;
    readonly mqtt?: string | undefined;
    readonly 'token-file'?: string | undefined;
    readonly 'log-level'?: string | undefined;
  };
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** Reads a file as text; undefined when it does not exist. */
  readonly readText?: (path: string) => string | undefined;
}

function readTextFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new ConfigError(`cannot read ${path}: ${(error as Error).message}`);
  }
}

function parseConfigFile(path: string, text: string): FileConfig {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(`${path} is not valid JSON (${(error as Error).message}); see docs/device-agent.md for the format`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`${path} must hold a JSON object such as {"server": "https://fleet.example.com"}`);
  }
  for (const [key, value] of Object.entries(parsed)) {
    const spec = (CONFIG_KEYS as Record<string, { type: string }>)[key];
    if (!spec) {
      throw new ConfigError(`${path}: unknown setting "${key}"; the settings are ${Object.keys(CONFIG_KEYS).join(', ')}`);
    }
    if (typeof value !== spec.type) throw new ConfigError(`${path}: "${key}" must be a ${spec.type}, got ${JSON.stringify(value)}`);
  }
  return parsed as FileConfig;
}

function readToken(path: string, read: (path: string) => string | undefined, what: string): string {
  const text = read(path);
  if (text === undefined) throw new ConfigError(`the enrollment token file ${path} (${what}) does not exist`);
  const token = text.trim();
  if (!token) throw new ConfigError(`the enrollment token file ${path} (${what}) is empty`);
  return token;
}

export function loadAgentConfig(sources: ConfigSources): AgentConfig {
  const { flags, env, cwd } = sources;
  const read = sources.readText ?? readTextFile;
  const explicit = flags.config ?? (env.EDGEFLEET_AGENT_CONFIG || undefined);
  const configFile = explicit ? resolve(cwd, explicit) : DEFAULT_CONFIG_FILE;
  const text = read(configFile);
  if (text === undefined && explicit) throw new ConfigError(`the config file ${configFile} does not exist`);
  const file = text === undefined ? {} : parseConfigFile(configFile, text);

  const server = flags.server ?? (env.EDGEFLEET_SERVER_URL || undefined) ?? file.server;
  if (!server) {
    throw new ConfigError(
      `no fleet server: pass --server URL, set EDGEFLEET_SERVER_URL, or put "server" in ${explicit ? configFile : `${DEFAULT_CONFIG_FILE} (or --config FILE)`}`,
    );
  }
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new ConfigError(`the fleet server "${server}" is not a URL; use e.g. https://fleet.example.com`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError(`the fleet server must be http(s)://, got "${server}"`);

  const logLevel = flags['log-level'] ?? (env.EDGEFLEET_LOG_LEVEL || undefined) ?? file.logLevel ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new ConfigError(`log level "${logLevel}" is not one of ${LOG_LEVELS.join(', ')}`);
  }
  const progressMinBytes = file.progressMinBytes ?? 1024 * 1024;
  if (!(Number.isInteger(progressMinBytes) && progressMinBytes >= 0))
    throw new ConfigError('"progressMinBytes" must be a whole number of bytes');

  // The token: a file named by flag or config, the environment, or systemd's credential.
  let token: string | undefined;
  let tokenSource: string | undefined;
  const tokenFile = flags['token-file'] ?? file.tokenFile;
  const credentials = env.CREDENTIALS_DIRECTORY;
  if (tokenFile) {
    token = readToken(resolve(cwd, tokenFile), read, flags['token-file'] ? '--token-file' : `"tokenFile" in ${configFile}`);
    tokenSource = resolve(cwd, tokenFile);
  } else if (env.EDGEFLEET_ENROLLMENT_TOKEN) {
    token = env.EDGEFLEET_ENROLLMENT_TOKEN.trim();
    tokenSource = 'EDGEFLEET_ENROLLMENT_TOKEN';
  } else if (credentials && read(join(credentials, 'enrollment-token')) !== undefined) {
    token = readToken(join(credentials, 'enrollment-token'), read, 'systemd credential');
    tokenSource = 'systemd credential enrollment-token';
  }

  const dataDir =
    flags['data-dir'] ??
    (env.EDGEFLEET_DATA_DIR || undefined) ??
    file.dataDir ??
    env.STATE_DIRECTORY?.split(':')[0] ??
    join(cwd, '.edgefleet', 'device');
  const id = flags.id ?? file.id;
  const mqtt = flags.mqtt ?? file.mqtt;
  return {
    server: server.replace(/\/$/, ''),
    dataDir: resolve(cwd, dataDir),
    ...(id ? { id } : {}),
    ...(mqtt ? { mqtt } : {}),
    ...(token ? { token, tokenSource: tokenSource ?? '' } : {}),
    logLevel: logLevel as LogLevel,
    progressMinBytes,
    ...(text !== undefined ? { configFile } : {}),
  };
}

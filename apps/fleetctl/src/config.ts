/**
 * Where fleetctl keeps its profiles: `$EDGEFLEET_CONFIG`, else `$XDG_CONFIG_HOME/edgefleet/config.json`
 * (`~/.config/edgefleet/config.json`). The file holds tokens: it is written with mode 0600 in a
 * folder of mode 0700, atomically (a crash never leaves half a file), and a file others can read
 * is reported. Flags beat environment variables (EDGEFLEET_SERVER, EDGEFLEET_PROFILE), which beat
 * the profile; the token comes from EDGEFLEET_TOKEN or the profile, never from a flag (THREATS 22:
 * no secret in process arguments).
 */
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { CliError, EXIT } from './exit.ts';

export interface Profile {
  readonly server: string;
  readonly token: string;
  /** The token's name and scope when it logged in (shown by `fleetctl whoami`). */
  readonly name?: string | null;
  readonly scope?: string;
}

export interface ConfigFile {
  current?: string;
  profiles: Record<string, Profile>;
}

export function configPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.EDGEFLEET_CONFIG) return env.EDGEFLEET_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'edgefleet', 'config.json');
}

export async function readConfig(path: string, warn: (line: string) => void): Promise<ConfigFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { profiles: {} };
    throw error;
  }
  const mode = (await stat(path)).mode & 0o777;
  if ((mode & 0o077) !== 0 && process.platform !== 'win32') {
    warn(`warning: ${path} can be read by other users (mode ${mode.toString(8)}); it holds tokens: chmod 600 ${path}`);
  }
  try {
    const parsed = JSON.parse(text) as ConfigFile;
    return { ...parsed, profiles: parsed.profiles ?? {} };
  } catch {
    throw new CliError(EXIT.usage, `${path} is not valid JSON; fix it or remove it and run fleetctl login again`);
  }
}

export async function writeConfig(path: string, config: ConfigFile): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
  await chmod(temporary, 0o600);
  await rename(temporary, path);
}

export interface Connection {
  readonly server: string;
  readonly token: string | undefined;
  readonly profile: string;
}

/** The server and token to use: flags, then the environment, then the profile. */
export function resolveConnection(
  config: ConfigFile,
  flags: { readonly server?: string | undefined; readonly profile?: string | undefined },
  env: NodeJS.ProcessEnv,
): Connection {
  const profileName = flags.profile ?? env.EDGEFLEET_PROFILE ?? config.current ?? 'default';
  const profile = config.profiles[profileName];
  if ((flags.profile ?? env.EDGEFLEET_PROFILE) && !profile && !(flags.server ?? env.EDGEFLEET_SERVER)) {
    throw new CliError(EXIT.auth, `no profile "${profileName}"; log in with: fleetctl login --profile ${profileName} --server URL`);
  }
  const server = flags.server ?? env.EDGEFLEET_SERVER ?? profile?.server;
  if (!server) {
    throw new CliError(EXIT.auth, 'not logged in: run fleetctl login --server URL (or set EDGEFLEET_SERVER and EDGEFLEET_TOKEN)');
  }
  // Never a flag: a token on the command line lands in shell history and in every `ps` listing.
  return { server, token: env.EDGEFLEET_TOKEN ?? profile?.token, profile: profileName };
}

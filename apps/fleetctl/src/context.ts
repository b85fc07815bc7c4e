/** What every command gets: the output, the client of the chosen server, the profiles file. */
import { createClient, type EdgefleetClient } from '@edgefleet/client';
import type { Command } from 'commander';
import { type ConfigFile, configPath, readConfig, resolveConnection } from './config.ts';
import { CliError, EXIT } from './exit.ts';
import { createOutput, type Io, type Output } from './output.ts';

export interface GlobalOptions {
  readonly server?: string;
  readonly profile?: string;
  readonly output?: string;
  readonly json?: boolean;
  readonly color?: boolean;
  readonly yes?: boolean;
}

export interface Context {
  readonly io: Io;
  readonly out: Output;
  readonly options: GlobalOptions;
  readonly configPath: string;
  config(): Promise<ConfigFile>;
  /** The client of the server the flags, environment or profile name; refuses when not logged in. */
  client(): Promise<EdgefleetClient>;
  /** Asks before something destructive: --yes, or a "y" on a terminal; refused otherwise. */
  confirm(question: string): Promise<void>;
}

export function contextOf(command: Command, io: Io, version: string): Context {
  const options = command.optsWithGlobals<GlobalOptions>();
  const out = createOutput(io, options);
  const path = configPath(io.env);
  let config: Promise<ConfigFile> | undefined;
  const loadConfig = () => {
    config ??= readConfig(path, (line) => io.stderr.write(`${line}\n`));
    return config;
  };
  return {
    io,
    out,
    options,
    configPath: path,
    config: loadConfig,
    async client() {
      const connection = resolveConnection(await loadConfig(), options, io.env);
      if (!connection.token) {
        throw new CliError(EXIT.auth, `no token for ${connection.server}: run fleetctl login (or set EDGEFLEET_TOKEN)`);
      }
      return createClient({ baseUrl: connection.server, token: connection.token, userAgent: `fleetctl/${version}` });
    },
    async confirm(question) {
      if (options.yes) return;
      if (!io.stdin.isTTY || !io.stderr.isTTY) throw new CliError(EXIT.usage, `${question}: pass --yes to confirm when not on a terminal`);
      io.stderr.write(`${question} [y/N] `);
      const answer = await new Promise<string>((resolve) => {
        io.stdin.once('data', (chunk) => resolve(String(chunk).trim()));
        io.stdin.resume();
      });
      (io.stdin as NodeJS.ReadStream).pause?.();
      if (!/^y(es)?$/i.test(answer)) throw new CliError(EXIT.usage, 'not confirmed: nothing was changed');
    },
  };
}

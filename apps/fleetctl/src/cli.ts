/**
 * fleetctl: the fleet admin's command line, over @edgefleet/client. `main()` runs one command line
 * and returns its exit code (docs/fleetctl.md lists them); it never calls process.exit, so it runs
 * as well in a test as in the bin.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerAudit } from './commands/audit.ts';
import { registerAuth } from './commands/auth.ts';
import { registerCompletion } from './commands/completion.ts';
import { registerDevices } from './commands/devices.ts';
import { registerDrift } from './commands/drift.ts';
import { registerFleet } from './commands/fleet.ts';
import { registerModels } from './commands/models.ts';
import { registerQuality } from './commands/quality.ts';
import { registerRollouts } from './commands/rollouts.ts';
import type { Run } from './commands/run.ts';
import { registerTokens } from './commands/tokens.ts';
import { contextOf } from './context.ts';
import { describeError, EXIT, exitCodeOf } from './exit.ts';
import type { Io } from './output.ts';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(io: Io, failed: (code: number) => void): Command {
  const program = new Command('fleetctl')
    .description('Drive an edgefleet fleet server: models, devices, tokens, staged rollouts, drift, the fleet’s status')
    // -V only: --version is the option of `models push`, and root options are read anywhere on the line.
    .version(version, '-V', 'print the version of fleetctl')
    .option('--server <url>', 'the fleet server (else EDGEFLEET_SERVER, else the profile)')
    .option('--profile <name>', 'a profile of fleetctl login (else EDGEFLEET_PROFILE, else the last logged in to)')
    .option('-o, --output <format>', 'table, json or yaml', 'table')
    .option('--json', 'the same as -o json: machine-stable output')
    .option('--no-color', 'no colour (also: NO_COLOR, or output that is not a terminal)')
    .option('-y, --yes', 'do not ask before destructive changes')
    .showHelpAfterError('(fleetctl --help lists every command)')
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .exitOverride();
  program.addHelpText(
    'after',
    `\nExit codes: 0 ok, 2 usage, 3 not logged in or not allowed, 4 not found, 5 refused by the server, 6 server unreachable or failing;\nrollouts watch: 10 rolled back, 11 aborted, 12 paused (--exit-on-pause), 13 timed out.\n\nGet started:\n  echo "$TOKEN" | fleetctl login --server http://localhost:8080 --with-token\n  fleetctl fleet status`,
  );

  const run: Run = async (command, action) => {
    try {
      await action(contextOf(command, io, version));
    } catch (error) {
      io.stderr.write(`${describeError(error)}\n`);
      failed(exitCodeOf(error));
    }
  };
  registerAuth(program, run);
  registerModels(program, run);
  registerQuality(program, run);
  registerDevices(program, run);
  registerTokens(program, run);
  registerRollouts(program, run);
  registerDrift(program, run);
  registerFleet(program, run);
  registerAudit(program, run);
  registerCompletion(program, run);
  program
    .command('version')
    .description('The version of fleetctl, and of the server when logged in')
    .action((_options, command: Command) =>
      run(command, async (ctx) => {
        let server: string | null = null;
        try {
          const client = await ctx.client();
          // The OpenAPI document names the server's version (it is public).
          const response = await fetch(`${client.baseUrl}/docs/json`, { signal: AbortSignal.timeout(10_000) });
          server = response.ok ? (((await response.json()) as { info?: { version?: string } }).info?.version ?? null) : null;
        } catch {
          server = null;
        }
        ctx.out.print({ fleetctl: version, server }, () => `fleetctl ${version}${server ? `\nserver   ${server}` : ''}`);
      }),
    );
  // Every subcommand reports its own usage errors the same way, and lets main() decide the exit.
  const configure = (command: Command, path: string) => {
    for (const sub of command.commands) {
      const name = `${path} ${sub.name()}`;
      sub
        .exitOverride()
        .showHelpAfterError(`(${name} --help)`)
        .configureOutput({
          writeOut: (text) => io.stdout.write(text),
          writeErr: (text) => io.stderr.write(text),
        });
      configure(sub, name);
    }
  };
  configure(program, 'fleetctl');
  return program;
}

export async function main(
  argv: readonly string[],
  io: Io = { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env },
): Promise<number> {
  let code: number = EXIT.ok;
  const previous = process.exitCode;
  process.exitCode = undefined;
  const program = buildProgram(io, (failure) => {
    code = failure;
  });
  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end here too, successfully.
      if (error.exitCode === 0 || error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return EXIT.ok;
      if (error.code === 'commander.help') return EXIT.ok;
      return EXIT.usage;
    }
    io.stderr.write(`${describeError(error)}\n`);
    return exitCodeOf(error);
  }
  const set = process.exitCode;
  process.exitCode = previous;
  return code !== EXIT.ok ? code : typeof set === 'number' ? set : EXIT.ok;
}

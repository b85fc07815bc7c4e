/** fleetctl login / logout / whoami: profiles of servers and their tokens. */
import { createClient, ok } from '@edgefleet/client';
import type { Command } from 'commander';
import { writeConfig } from '../config.ts';
import type { Context } from '../context.ts';
import { CliError, EXIT } from '../exit.ts';
import { fields } from '../output.ts';
import type { Run } from './run.ts';

async function readToken(ctx: Context, fromStdin: boolean): Promise<string> {
  if (ctx.io.env.EDGEFLEET_TOKEN && !fromStdin) return ctx.io.env.EDGEFLEET_TOKEN;
  if (fromStdin || !ctx.io.stdin.isTTY) {
    let text = '';
    for await (const chunk of ctx.io.stdin) text += String(chunk);
    const token = text.trim();
    if (!token) throw new CliError(EXIT.usage, 'no token on standard input: echo "$TOKEN" | fleetctl login --server URL --with-token');
    return token;
  }
  // A terminal: ask without echoing what is typed.
  ctx.io.stderr.write('token: ');
  const stdin = ctx.io.stdin as NodeJS.ReadStream;
  stdin.setRawMode?.(true);
  stdin.resume();
  const token = await new Promise<string>((resolve, reject) => {
    let typed = '';
    const onData = (chunk: Buffer) => {
      for (const char of chunk.toString('utf8')) {
        if (char === '\r' || char === '\n') {
          stdin.off('data', onData);
          resolve(typed);
          return;
        }
        if (char === '\u0003') {
          stdin.off('data', onData);
          reject(new CliError(EXIT.usage, 'cancelled'));
          return;
        }
        typed = char === '\u007f' ? typed.slice(0, -1) : typed + char;
      }
    };
    stdin.on('data', onData);
  }).finally(() => {
    stdin.setRawMode?.(false);
    stdin.pause();
    ctx.io.stderr.write('\n');
  });
  if (!token.trim()) throw new CliError(EXIT.usage, 'no token given');
  return token.trim();
}

export function registerAuth(program: Command, run: Run): void {
  program
    .command('login')
    .description('Log in to a fleet server (--server URL): checks the token and keeps it in your config (mode 0600)')
    .option('--with-token', 'read the token from standard input (keeps it out of your shell history)')
    .addHelpText(
      'after',
      '\nThe token comes from --with-token (stdin), EDGEFLEET_TOKEN, or a prompt. --profile NAME keeps several servers;\nthe last one logged in to is used unless --profile or EDGEFLEET_PROFILE says otherwise.\n\nExample:\n  echo "$TOKEN" | fleetctl login --server http://fleet:8080 --with-token --profile prod',
    )
    .action((options: { withToken?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        // --server is the global option (every command takes it); login needs it.
        const given = ctx.options.server ?? ctx.io.env.EDGEFLEET_SERVER;
        if (!given) throw new CliError(EXIT.usage, 'fleetctl login needs --server URL, e.g. --server http://fleet.example:8080');
        const server = given.replace(/\/+$/, '');
        if (!/^https?:\/\/[^/]/.test(server)) throw new CliError(EXIT.usage, `--server ${server}: give an http:// or https:// URL`);
        const token = await readToken(ctx, options.withToken === true);
        const me = await ok(createClient({ baseUrl: server, token }).api.GET('/v1/whoami'));
        const config = await ctx.config();
        const profile = ctx.options.profile ?? ctx.io.env.EDGEFLEET_PROFILE ?? 'default';
        config.profiles[profile] = { server, token, name: me.name, scope: me.scope };
        config.current = profile;
        await writeConfig(ctx.configPath, config);
        ctx.out.print(
          { profile, server, id: me.id, name: me.name, scope: me.scope, expiresAt: me.expiresAt },
          () =>
            `Logged in to ${server} as ${me.name ?? me.id} (${me.scope}${me.expiresAt ? `, expires ${me.expiresAt}` : ''}), profile "${profile}"`,
        );
      }),
    );

  program
    .command('logout')
    .description('Forget the token of a profile (the current one, or --profile)')
    .action((_options, command: Command) =>
      run(command, async (ctx) => {
        const config = await ctx.config();
        const profile = ctx.options.profile ?? ctx.io.env.EDGEFLEET_PROFILE ?? config.current ?? 'default';
        if (!config.profiles[profile]) throw new CliError(EXIT.notFound, `no profile "${profile}" in ${ctx.configPath}`);
        delete config.profiles[profile];
        if (config.current === profile) delete config.current;
        await writeConfig(ctx.configPath, config);
        ctx.out.note(`Logged out of profile "${profile}" (the token itself still works until revoked: fleetctl tokens revoke ID)`);
      }),
    );

  program
    .command('whoami')
    .description('Which server and token this profile uses')
    .action((_options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const me = await ok(client.api.GET('/v1/whoami'));
        ctx.out.print({ server: client.baseUrl, ...me }, () =>
          fields([
            ['server', client.baseUrl],
            ['token', me.id],
            ['name', me.name],
            ['scope', me.scope],
            ['expires', me.expiresAt ?? 'never'],
          ]),
        );
      }),
    );
}

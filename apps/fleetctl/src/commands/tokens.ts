/** fleetctl tokens: admin, read-only and enrollment tokens, listed (never their secrets), created, revoked. */
import { ok } from '@edgefleet/client';
import { type Command, Option } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import { collect, fields, parseDuration, table } from '../output.ts';
import { positive } from './devices.ts';
import type { Run } from './run.ts';

export function registerTokens(program: Command, run: Run): void {
  const tokens = program.command('tokens').description('Admin, read-only and enrollment tokens');

  tokens
    .command('ls')
    .description('List tokens (never their secrets), newest first')
    .option('--enrollment', 'enrollment tokens instead of admin and read-only ones')
    .option('--state <state>', 'active, expired or revoked (enrollment tokens: also used-up)')
    .action((options: { enrollment?: boolean; state?: string }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const c = ctx.out.colors;
        const state = (s: string) => (s === 'active' ? c.green(s) : c.dim(s));
        if (options.enrollment) {
          const all = await collect(
            client.items('/v1/enrollment-tokens', { params: { query: options.state ? { state: options.state as never } : {} } }),
          );
          ctx.out.print(all, () =>
            table(
              ['ID', 'NAME', 'STATE', 'TAGS', 'USES LEFT', 'EXPIRES', 'CREATED'],
              all.map((t) => [
                t.id,
                t.name,
                state(t.state),
                t.tags.join(',') || '-',
                t.usesLeft ?? 'unlimited',
                t.expiresAt ?? 'never',
                t.createdAt,
              ]),
            ),
          );
          return;
        }
        const all = await collect(
          client.items('/v1/admin-tokens', { params: { query: options.state ? { state: options.state as never } : {} } }),
        );
        ctx.out.print(all, () =>
          table(
            ['ID', 'NAME', 'SCOPE', 'STATE', 'EXPIRES', 'CREATED'],
            all.map((t) => [t.id, t.name, t.scope, state(t.state), t.expiresAt ?? 'never', t.createdAt]),
          ),
        );
      }),
    );

  tokens
    .command('create')
    .description('Create a token; its secret is printed once')
    .option('--name <name>', 'what it is for (shown in lists and the audit log)')
    .addOption(new Option('--scope <scope>', 'admin (changes) or read (reads only)').choices(['admin', 'read']))
    .option('--expires <duration>', 'it stops working after this long, e.g. 30d, 12h')
    .option('--enrollment', 'an enrollment token, for devices to enroll themselves')
    .option('--tag <tags...>', 'enrollment: the tags enrolled devices get')
    .addOption(new Option('--uses <n>', 'enrollment: how many devices it enrolls').argParser(positive('--uses')))
    .addHelpText(
      'after',
      '\nExamples:\n  fleetctl tokens create --name ci-deployer --scope admin --expires 90d\n  fleetctl tokens create --enrollment --name line-3 --tag site=lyon --uses 200 --expires 7d',
    )
    .action(
      (
        options: { name?: string; scope?: 'admin' | 'read'; expires?: string; enrollment?: boolean; tag?: string[]; uses?: number },
        command: Command,
      ) =>
        run(command, async (ctx) => {
          const client = await ctx.client();
          const expiresInSeconds = options.expires ? parseDuration(options.expires, '--expires') : undefined;
          if (options.enrollment) {
            const created = await ok(
              client.api.POST('/v1/enrollment-tokens', {
                body: {
                  ...(options.name ? { name: options.name } : {}),
                  ...(options.tag ? { tags: options.tag } : {}),
                  ...(options.uses ? { uses: options.uses } : {}),
                  ...(expiresInSeconds ? { expiresInSeconds } : {}),
                },
              }),
            );
            ctx.out.print(created, () =>
              fields([
                ['id', created.id],
                ['token', created.token],
                ['tags', created.tags.join(', ') || '-'],
                ['uses', created.uses ?? 'unlimited'],
                ['expires', created.expiresAt ?? 'never'],
              ]),
            );
            return;
          }
          if (!options.name || !options.scope) throw new CliError(EXIT.usage, 'an admin token needs --name and --scope admin|read');
          const created = await ok(
            client.api.POST('/v1/admin-tokens', {
              body: { name: options.name, scope: options.scope, ...(expiresInSeconds ? { expiresInSeconds } : {}) },
            }),
          );
          ctx.out.print(created, () =>
            fields([
              ['id', created.id],
              ['token', created.token],
              ['scope', created.scope],
              ['expires', created.expiresAt ?? 'never'],
            ]),
          );
        }),
    );

  tokens
    .command('revoke <id>')
    .description('Revoke a token now (a leaked one stops working at once)')
    .option('--enrollment', 'an enrollment token')
    .action((id: string, options: { enrollment?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        await ctx.confirm(`revoke ${options.enrollment ? 'enrollment ' : ''}token ${id}?`);
        const client = await ctx.client();
        const revoked = options.enrollment
          ? await ok(client.api.POST('/v1/enrollment-tokens/{id}/revoke', { params: { path: { id } } }))
          : await ok(client.api.POST('/v1/admin-tokens/{id}/revoke', { params: { path: { id } } }));
        ctx.out.print(revoked, () => `${revoked.id} (${revoked.name ?? 'unnamed'}): ${revoked.state}`);
      }),
    );
}

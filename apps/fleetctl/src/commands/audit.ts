/** fleetctl audit ls: who changed what, when. */
import { type Command, Option } from 'commander';
import { collect, table } from '../output.ts';
import { positive } from './devices.ts';
import type { Run } from './run.ts';

export function registerAudit(program: Command, run: Run): void {
  const audit = program.command('audit').description('The audit log');
  audit
    .command('ls')
    .description('Who changed what, when, newest first')
    .option('--target <target>', 'e.g. device:cam-17, rollout:ro-1a2b3c4d, model:vad@1.0.0')
    .option('--action <action>', 'e.g. rollout.create, device.revoke')
    .option('--actor <id>', 'a token id (fleetctl tokens ls)')
    .addOption(new Option('--limit <n>', 'at most this many').argParser(positive('--limit')).default(50, '50'))
    .action((options: { target?: string; action?: string; actor?: string; limit: number }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const query = {
          ...(options.target ? { target: options.target } : {}),
          ...(options.action ? { action: options.action } : {}),
          ...(options.actor ? { actor: options.actor } : {}),
          limit: String(Math.min(options.limit, 1000)),
        };
        const entries = await collect(client.items('/v1/audit', { params: { query } }), options.limit);
        ctx.out.print(entries, () =>
          table(
            ['AT', 'ACTOR', 'ACTION', 'TARGET'],
            entries.map((e) => [e.at, e.actorName ? `${e.actorName} (${e.actor})` : e.actor, e.action, e.target]),
          ),
        );
      }),
    );
}

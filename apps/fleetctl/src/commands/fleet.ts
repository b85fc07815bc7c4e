/** fleetctl fleet status: devices online and failing, the versions each model runs, compliance, rollouts in flight. */
import { ok } from '@edgefleet/client';
import type { Command } from 'commander';
import { fields, table } from '../output.ts';
import type { Run } from './run.ts';

export function registerFleet(program: Command, run: Run): void {
  const fleet = program.command('fleet').description('The fleet at a glance');
  fleet
    .command('status')
    .description('Devices online, offline and failing; versions per model with their compliance; rollouts in flight')
    .action((_options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const summary = await ok(client.api.GET('/v1/fleet/summary'));
        ctx.out.print(summary, () => {
          const c = ctx.out.colors;
          const d = summary.devices;
          const parts = [
            fields([
              ['devices', `${d.active} active (${c.green(`${d.online} online`)}, ${d.offline} offline), ${d.revoked} revoked`],
              ['failing', d.failing > 0 ? c.red(String(d.failing)) : '0'],
              [
                'rollouts',
                `${summary.rollouts.running} running, ${summary.rollouts.paused} paused, ${summary.rollouts.rollingBack} rolling back`,
              ],
            ]),
          ];
          if (summary.models.length > 0) {
            parts.push(
              table(
                ['MODEL', 'TARGET', 'UP TO DATE', 'IN PROGRESS', 'BEHIND', 'FAILED', 'VERSIONS RUNNING'],
                summary.models.map((m) => [
                  m.name,
                  m.target,
                  m.compliance.upToDate,
                  m.compliance.inProgress,
                  m.compliance.behind,
                  m.compliance.failed > 0 ? c.red(String(m.compliance.failed)) : 0,
                  m.versions
                    .map((v) => {
                      // Which builds serve, when any device runs another than the reference.
                      const builds = v.variants.some((b) => b.variant !== 'reference')
                        ? ` (${v.variants.map((b) => `${b.variant} ${b.devices}`).join(', ')})`
                        : '';
                      return `${v.version}: ${v.devices}${builds}`;
                    })
                    .join(', ') || '-',
                ]),
              ),
            );
          }
          return parts.join('\n\n');
        });
      }),
    );
}

/** fleetctl drift show: a version's drift status per device group, and each feature's score over time, drawn in the terminal. */
import { type EdgefleetClient, ok } from '@edgefleet/client';
import asciichart from 'asciichart';
import type { Command } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import { collect, fields, parseDuration, table } from '../output.ts';
import { splitRef } from './models.ts';
import type { Run } from './run.ts';

/** The version a ref names: given, an alias, or the production alias, else the newest. */
export async function resolveVersion(client: EdgefleetClient, ref: string): Promise<{ name: string; version: string }> {
  const { name, version } = splitRef(ref);
  if (version && /^\d/.test(version)) return { name, version };
  const alias = version ?? 'production';
  try {
    return {
      name,
      version: (await ok(client.api.GET('/v1/models/{name}/aliases/{alias}', { params: { path: { name, alias } } }))).version,
    };
  } catch (error) {
    if (version) throw error;
  }
  const versions = await collect(client.items('/v1/models/{name}/versions', { params: { path: { name } } }));
  const newest = versions.at(-1)?.version;
  if (!newest) throw new CliError(EXIT.notFound, `${name} has no versions`);
  return { name, version: newest };
}

/** A chart of a series with its threshold (the threshold as a second, flat line). */
function chart(values: readonly number[], threshold: number, height: number, colour: boolean): string {
  const series = values.length === 1 ? [values[0] as number, values[0] as number] : [...values];
  return asciichart.plot([series, series.map(() => threshold)], {
    height,
    // No colour codes off a terminal (or with NO_COLOR): the threshold line is then told by the legend.
    ...(colour ? { colors: [asciichart.default, asciichart.red] } : {}),
    format: (x: number) => x.toFixed(3).padStart(8),
  });
}

export function registerDrift(program: Command, run: Run): void {
  const drift = program.command('drift').description('What the models see in the field against their reference');

  drift
    .command('show <model[@version]>')
    .description('Drift status per device group, and each feature’s score over time (version default: production, else the newest)')
    .option('--group <group>', 'a device group: a tag, or * for every device', '*')
    .option('--since <duration>', 'how far back', '24h')
    .option('--feature <names...>', 'only these features')
    .option('--height <n>', 'chart height in lines', '6')
    .action((ref: string, options: { group: string; since: string; feature?: string[]; height: string }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const { name, version } = await resolveVersion(client, ref);
        const since = new Date(Date.now() - parseDuration(options.since, '--since') * 1000).toISOString();
        const status = await ok(client.api.GET('/v1/models/{name}/versions/{version}/drift', { params: { path: { name, version } } }));
        const scores = await collect(
          client.items('/v1/drift/scores', { params: { query: { model: name, version, group: options.group, since, limit: '1000' } } }),
        );
        ctx.out.print({ ...status, scores }, () => {
          const c = ctx.out.colors;
          const paint = (s: string) => (s === 'drifting' ? c.red(s) : s === 'warning' ? c.yellow(s) : s === 'ok' ? c.green(s) : s);
          const parts = [
            fields([
              ['version', `${name}@${version}`],
              ['status', paint(status.status)],
              [
                'reference',
                status.reference
                  ? `${status.reference.source} (${status.reference.runs} runs)`
                  : 'none: upload one with models push --reference',
              ],
            ]),
          ];
          if (status.groups.length > 0) {
            parts.push(
              table(
                ['GROUP', 'STATUS', 'LAST BUCKET', 'SCORE', 'DRIFTED FEATURES', 'ALERT SINCE'],
                status.groups.map((g) => [
                  g.group,
                  paint(g.status),
                  g.latest.bucketStart,
                  g.latest.score.toFixed(2),
                  g.latest.driftedFeatures.join(', ') || '-',
                  g.alert?.openedAt,
                ]),
              ),
            );
          }
          if (scores.length === 0) {
            parts.push(`no scored buckets for group ${options.group} since ${since}`);
            return parts.join('\n\n');
          }
          const height = Math.max(2, Number(options.height) || 6);
          parts.push(
            `${c.bold(`group ${options.group}: share of features drifted`)} (${scores.length} buckets, ${scores[0]?.bucketStart} to ${scores.at(-1)?.bucketEnd}; flat line: 0.5)\n${chart(
              scores.map((s) => s.score),
              0.5,
              height,
              c.isColorSupported,
            )}`,
          );
          const features = [...new Set(scores.flatMap((s) => Object.keys(s.features)))].filter(
            (f) => !options.feature || options.feature.includes(f),
          );
          for (const feature of features) {
            const points = scores.map((s) => s.features[feature]).filter((r) => r !== undefined);
            const last = points.at(-1);
            if (!last) continue;
            const below = last.method === 'ks' || last.method === 'chi-square';
            const drifted = points.filter((p) => p.drifted).length;
            parts.push(
              `${c.bold(feature)}: ${last.method} ${below ? 'p-value (drift below the flat line' : 'distance (drift above the flat line'}, ${Number(last.threshold.toPrecision(3))}), drifted in ${drifted}/${points.length} buckets${last.drifted ? c.red(' now drifting') : ''}\n${chart(
                points.map((p) => p.score),
                last.threshold,
                height,
                c.isColorSupported,
              )}`,
            );
          }
          return parts.join('\n\n');
        });
      }),
    );
}

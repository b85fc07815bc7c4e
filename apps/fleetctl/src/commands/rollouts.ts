/** fleetctl rollouts: create, list, show, pause, resume, promote, abort, roll back, and watch until done. */
import { type EdgefleetClient, isApiError, ok, type operations } from '@edgefleet/client';
import { MultiBar, Presets } from 'cli-progress';
import { type Command, Option } from 'commander';
import type { Context } from '../context.ts';
import { CliError, EXIT } from '../exit.ts';
import { collect, fields, parseDuration, table } from '../output.ts';
import { positive } from './devices.ts';
import type { Run } from './run.ts';

type Rollout = operations['getRollout']['responses'][200]['content']['application/json'];
/** A rollout without its members, as lists and events give it. */
type Summary = Omit<Rollout, 'devices'>;
type Spec = operations['createRollout']['requestBody'] extends { content: { 'application/json': infer S } } ? S : never;

const FINAL: Readonly<Record<string, number>> = { completed: EXIT.ok, rolled_back: EXIT.rolledBack, aborted: EXIT.aborted };

/** `10%,50%,100%` or `5,100%`, each optionally `:soak` (`10%:15m`). */
export function parseStages(text: string, soak: number | undefined): Spec['stages'] {
  return text.split(',').map((part) => {
    const [size = '', stageSoak] = part.trim().split(':');
    const soakSeconds = stageSoak ? parseDuration(stageSoak, '--stages') : soak;
    const percent = /^(\d+(?:\.\d+)?)%$/.exec(size);
    const stage = percent
      ? { percent: Number(percent[1]) }
      : /^\d+$/.test(size)
        ? { count: Number(size) }
        : (() => {
            throw new CliError(
              EXIT.usage,
              `--stages ${text}: each stage is a percentage (10%) or a device count (5), optionally :soak (10%:15m)`,
            );
          })();
    return { ...stage, ...(soakSeconds !== undefined ? { soakSeconds } : {}) } as Spec['stages'][number];
  });
}

function number(flag: string) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0) throw new CliError(EXIT.usage, `${flag} ${value}: give a number of 0 or more`);
    return n;
  };
}

function stageLine(rollout: Summary): string {
  const stage = rollout.stages[rollout.currentStage];
  if (!stage) return '';
  const done = stage.shadow ? `${stage.shadowing}/${stage.size} running it in shadow` : `${stage.active}/${stage.size} active`;
  const shadow = stage.shadow && rollout.gates?.shadow ? `, ${rollout.gates.shadow.runs} inputs compared` : '';
  return `stage ${rollout.currentStage + 1}/${rollout.stages.length}${stage.shadow ? ' (shadow)' : ''}: ${done}, ${stage.failed} failed, ${stage.pending} pending${stage.offline ? ` (${stage.offline} offline)` : ''}${shadow}`;
}

const percent = (value: number | null) => (value === null ? '-' : `${+(value * 100).toFixed(1)}%`);
const figure = (value: number | null) => (value === null ? '-' : String(+value.toPrecision(3)));

/** What a shadow stage's comparisons add up to, in a few lines. */
function shadowLines(rollout: Summary): string {
  const shadow = rollout.gates?.shadow;
  if (!shadow) return '';
  const worst = shadow.worstDevice
    ? ` (lowest: ${shadow.worstDevice.id}, ${percent(shadow.worstDevice.agreement)} of ${shadow.worstDevice.rows})`
    : '';
  return `\n\n${rollout.model}@${rollout.version} in shadow, stage ${(rollout.gates?.stage ?? 0) + 1}:\n${fields([
    ['compared', `${shadow.runs} inputs on ${shadow.devices} devices (${shadow.skipped} skipped, ${shadow.errors} failed)`],
    [
      'agreement',
      `${percent(shadow.agreement)} of ${shadow.rows} rows (pooled ${percent(shadow.pooledAgreement)}, median of devices ${percent(shadow.medianDeviceAgreement)})${worst}`,
    ],
    ['top-3 overlap', percent(shadow.topKOverlap)],
    ['abs difference', `mean ${figure(shadow.meanAbsDiff)}, max ${figure(shadow.maxAbsDiff)}`],
    ['latency ratio', shadow.latencyRatio ? `p50 ${figure(shadow.latencyRatio.p50)}, p95 ${figure(shadow.latencyRatio.p95)}` : '-'],
  ])}`;
}

function describe(rollout: Summary, ctx: Context): string {
  const c = ctx.out.colors;
  const state =
    rollout.state === 'completed'
      ? c.green(rollout.state)
      : rollout.state === 'running'
        ? c.cyan(rollout.state)
        : rollout.state === 'paused'
          ? c.yellow(rollout.state)
          : c.red(rollout.state);
  const head = fields([
    ['rollout', rollout.id],
    ['version', `${rollout.model}@${rollout.version}${rollout.versionAlias ? ` (${rollout.versionAlias} at creation)` : ''}`],
    ['state', state],
    ['stage', `${rollout.currentStage + 1} of ${rollout.stages.length}, since ${rollout.stageStartedAt}`],
    ['reason', rollout.reason ? JSON.stringify(rollout.reason) : '-'],
    ['created', `${rollout.createdAt} by ${rollout.createdBy}`],
  ]);
  const stages = table(
    ['STAGE', 'KIND', 'DEVICES', 'ACTIVE', 'SHADOWING', 'FAILED', 'PENDING', 'OFFLINE', 'SOAK'],
    rollout.stages.map((s, i) => [
      i === rollout.currentStage ? c.bold(`${i + 1} ←`) : String(i + 1),
      s.shadow ? `shadow ${percent(rollout.spec.stages[i]?.shadowRate ?? 0.1)}` : 'live',
      s.size,
      s.active,
      s.shadow ? s.shadowing : '-',
      s.failed,
      s.pending,
      s.offline,
      rollout.spec.stages[i]?.soakSeconds !== undefined ? `${rollout.spec.stages[i]?.soakSeconds}s` : '-',
    ]),
  );
  const readings = rollout.gates;
  if (!readings) return `${head}\n\n${stages}`;
  const gates = table(
    ['GATE', 'VALUE', 'THRESHOLD', 'VERDICT'],
    readings.gates.map((g) => {
      const passes = g.value === null ? undefined : g.bound === 'max' ? g.value <= g.threshold : g.value >= g.threshold;
      return [
        g.name,
        g.value === null ? 'not yet' : String(+g.value.toPrecision(4)),
        `${g.bound === 'max' ? '<=' : '>='} ${g.threshold}`,
        passes === undefined ? '-' : passes ? c.green('passes') : c.red('fails'),
      ];
    }),
  );
  return `${head}\n\n${stages}\n\ngates of stage ${readings.stage + 1}, measured ${readings.measuredAt}:\n${gates}${shadowLines(rollout)}`;
}

async function getRollout(client: EdgefleetClient, id: string): Promise<{ rollout: Rollout; etag: string | null }> {
  const { data, response } = await client.api.GET('/v1/rollouts/{id}', { params: { path: { id } } });
  return { rollout: data as Rollout, etag: response.headers.get('etag') };
}

/** Follows a rollout until it ends (or pauses, with exitOnPause); returns the exit code its end calls for. */
async function watch(
  ctx: Context,
  client: EdgefleetClient,
  id: string,
  options: { intervalMs: number; exitOnPause: boolean; timeoutMs: number | undefined },
): Promise<number> {
  const deadline = options.timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + options.timeoutMs;
  let last = '';
  const bars =
    ctx.out.interactive && ctx.out.format === 'table'
      ? new MultiBar(
          {
            format: '{label} [{bar}] {value}/{total} {extra}',
            stream: ctx.io.stderr as NodeJS.WriteStream,
            hideCursor: true,
            clearOnComplete: false,
          },
          Presets.shades_classic,
        )
      : undefined;
  const stageBars: ReturnType<MultiBar['create']>[] = [];

  /** Shows the rollout as it is now; the exit code when watching is over, else undefined. */
  function show(rollout: Summary): number | undefined {
    if (bars) {
      rollout.stages.forEach((stage, i) => {
        const extra = `${stage.failed ? `${stage.failed} failed ` : ''}${i === rollout.currentStage ? rollout.state : i < rollout.currentStage ? 'passed' : ''}`;
        if (!stageBars[i]) stageBars[i] = bars.create(stage.size, 0, { label: `stage ${i + 1}`, extra });
        const bar = stageBars[i];
        bar.setTotal(stage.size);
        bar.update(stage.shadow ? stage.shadowing : stage.active, { label: `stage ${i + 1}${stage.shadow ? ' (shadow)' : ''}`, extra });
      });
    }
    const line = `${rollout.state} ${stageLine(rollout)}${rollout.reason ? ` reason: ${JSON.stringify(rollout.reason)}` : ''}`;
    if (line !== last) {
      if (!bars && ctx.out.format === 'table') ctx.out.note(`${new Date().toISOString()} ${rollout.id} ${line}`);
      last = line;
    }
    const final = FINAL[rollout.state];
    if (final !== undefined || (rollout.state === 'paused' && options.exitOnPause)) return final ?? EXIT.paused;
    return undefined;
  }

  async function end(code: number): Promise<number> {
    bars?.stop();
    const { rollout } = await getRollout(client, id);
    ctx.out.print(rollout, () => describe(rollout, ctx));
    if (code === EXIT.timeout) ctx.out.note(`still ${rollout.state} after the --timeout`);
    return code;
  }

  // Changes arrive as server-sent events (GET /v1/events); a server without them, or a stream that
  // breaks, is read again every --interval until the stream can be opened again.
  let streaming = true;
  try {
    for (;;) {
      const outcome = show((await getRollout(client, id)).rollout);
      if (outcome !== undefined) return await end(outcome);
      if (Date.now() >= deadline) return await end(EXIT.timeout);
      if (streaming) {
        const controller = new AbortController();
        const timer = Number.isFinite(deadline) ? setTimeout(() => controller.abort(), Math.max(0, deadline - Date.now())) : undefined;
        try {
          for await (const event of client.events({ rollout: id, signal: controller.signal })) {
            if (event.event !== 'rollout') continue;
            const result = show(event.data);
            if (result !== undefined) {
              controller.abort();
              return await end(result);
            }
          }
        } catch (error) {
          // Not found: a server from before events; anything else: read it again, then reconnect.
          if (isApiError(error, 'EF_NOT_FOUND')) streaming = false;
        } finally {
          if (timer) clearTimeout(timer);
        }
        if (Date.now() >= deadline) return await end(EXIT.timeout);
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
    }
  } finally {
    bars?.stop();
  }
}

const watchOptions = (command: Command) =>
  command
    .option('--interval <duration>', 'how often to look when the server cannot stream its events', '1s')
    .option('--exit-on-pause', `stop watching when it pauses (exit ${EXIT.paused})`)
    .option('--timeout <duration>', `stop watching after this long (exit ${EXIT.timeout})`);

function watchSettings(options: { interval: string; exitOnPause?: boolean; timeout?: string }) {
  return {
    intervalMs: Math.max(200, parseDuration(options.interval.replace(/ms$/, ''), '--interval') * 1000),
    exitOnPause: options.exitOnPause === true,
    timeoutMs: options.timeout ? parseDuration(options.timeout, '--timeout') * 1000 : undefined,
  };
}

export function registerRollouts(program: Command, run: Run): void {
  const rollouts = program.command('rollouts').description('Staged rollouts gated on how the new version behaves');

  watchOptions(
    rollouts
      .command('create <model> <version>')
      .description('Roll a version (or the version an alias names now, e.g. production) out in stages')
      .option('--tag <tags...>', 'devices carrying every one of these tags')
      .option('--device <ids...>', 'these devices')
      .option('--all', 'every active device of the fleet')
      .option('--stages <list>', 'stage sizes: percentages or counts, each optionally :soak', '10%,50%,100%')
      .option('--soak <duration>', 'how long each healthy stage is watched before the next opens', '0s')
      .addOption(
        new Option('--max-failure-rate <rate>', 'largest share of failed devices in a stage, 0-1').argParser(number('--max-failure-rate')),
      )
      .addOption(new Option('--min-devices <n>', 'devices that must report before a stage can pass').argParser(positive('--min-devices')))
      .addOption(
        new Option('--max-latency-ratio <ratio>', 'largest p95 latency of the new version over the old').argParser(
          number('--max-latency-ratio'),
        ),
      )
      .addOption(
        new Option('--max-drift-score <score>', 'largest share of drifting input features, 0-1').argParser(number('--max-drift-score')),
      )
      .addOption(
        new Option('--max-output-shift <distance>', 'largest output distance from the replaced version').argParser(
          number('--max-output-shift'),
        ),
      )
      .option(
        '--shadow <size>',
        'first a shadow stage of this size (10% or 5, optionally :soak): its devices run the version beside theirs, it never answers',
      )
      .addOption(
        new Option('--shadow-rate <rate>', 'share of live inputs the version also runs on in the shadow stage (default 0.1)').argParser(
          number('--shadow-rate'),
        ),
      )
      .addOption(
        new Option(
          '--min-shadow-agreement <share>',
          'shadow stage: least share of inputs where both versions pick the same class, 0-1',
        ).argParser(number('--min-shadow-agreement')),
      )
      .addOption(
        new Option('--max-shadow-latency-ratio <ratio>', 'shadow stage: largest median latency of the version over the live one').argParser(
          number('--max-shadow-latency-ratio'),
        ),
      )
      .addOption(
        new Option('--min-shadow-runs <n>', 'shadow stage: inputs compared before its gates decide (default 100)').argParser(
          positive('--min-shadow-runs'),
        ),
      )
      .addOption(
        new Option('--max-shadow-error-rate <rate>', 'shadow stage: largest share of shadow runs that failed (default 0)').argParser(
          number('--max-shadow-error-rate'),
        ),
      )
      .addOption(new Option('--on-gate-failure <policy>', 'what a failed gate does').choices(['rollback', 'pause']))
      .option('--rollback', 'a fleet rollback: the version may be older than what devices run (signed as a rollback)')
      .option('--override-policy <reason>', 'roll out a version that fails its model’s promotion policy, saying why (audited)')
      .option('--watch', 'then follow it until it ends, with its exit code')
      .option('--idempotency-key <key>', 'a retry with the same key never creates a second rollout')
      .addHelpText(
        'after',
        '\nExamples:\n  fleetctl rollouts create vad 5.1.0 --tag site=lyon --stages 10%,50%,100% --soak 15m --max-failure-rate 0.02\n  fleetctl rollouts create vad production --all --stages 5,100% --watch\n  fleetctl rollouts create vad 5.2.0 --all --shadow 5%:1h --shadow-rate 0.2 --min-shadow-agreement 0.95 --stages 10%,100%',
      ),
  ).action(
    (
      model: string,
      version: string,
      options: {
        tag?: string[];
        device?: string[];
        all?: boolean;
        stages: string;
        soak: string;
        maxFailureRate?: number;
        minDevices?: number;
        maxLatencyRatio?: number;
        maxDriftScore?: number;
        maxOutputShift?: number;
        shadow?: string;
        shadowRate?: number;
        minShadowAgreement?: number;
        maxShadowLatencyRatio?: number;
        minShadowRuns?: number;
        maxShadowErrorRate?: number;
        onGateFailure?: 'rollback' | 'pause';
        rollback?: boolean;
        overridePolicy?: string;
        watch?: boolean;
        idempotencyKey?: string;
        interval: string;
        exitOnPause?: boolean;
        timeout?: string;
      },
      command: Command,
    ) =>
      run(command, async (ctx) => {
        if (!options.all && !options.tag && !options.device) {
          throw new CliError(EXIT.usage, 'say which devices: --tag TAG..., --device ID..., or --all for the whole fleet');
        }
        const soak = parseDuration(options.soak, '--soak');
        const gates = {
          ...(options.maxFailureRate !== undefined ? { maxFailureRate: options.maxFailureRate } : {}),
          ...(options.minDevices !== undefined ? { minDevicesReporting: options.minDevices } : {}),
          ...(options.maxLatencyRatio !== undefined ? { maxLatencyRatio: options.maxLatencyRatio } : {}),
          ...(options.maxDriftScore !== undefined ? { maxDriftScore: options.maxDriftScore } : {}),
          ...(options.maxOutputShift !== undefined ? { maxOutputShift: options.maxOutputShift } : {}),
          ...(options.minShadowAgreement !== undefined ? { minShadowAgreement: options.minShadowAgreement } : {}),
          ...(options.maxShadowLatencyRatio !== undefined ? { maxShadowLatencyRatio: options.maxShadowLatencyRatio } : {}),
          ...(options.minShadowRuns !== undefined ? { minShadowRuns: options.minShadowRuns } : {}),
          ...(options.maxShadowErrorRate !== undefined ? { maxShadowErrorRate: options.maxShadowErrorRate } : {}),
        };
        if (options.shadowRate !== undefined && !options.shadow) {
          throw new CliError(EXIT.usage, '--shadow-rate applies to a shadow stage: add --shadow SIZE (e.g. --shadow 5%)');
        }
        const shadowStages = options.shadow
          ? parseStages(options.shadow, soak).map((stage) => ({
              ...stage,
              shadow: true,
              ...(options.shadowRate !== undefined ? { shadowRate: options.shadowRate } : {}),
            }))
          : [];
        const spec = {
          model,
          version,
          selector: options.all
            ? { all: true as const }
            : { ...(options.tag ? { tags: options.tag } : {}), ...(options.device ? { devices: options.device } : {}) },
          stages: [...shadowStages, ...parseStages(options.stages, soak)],
          ...(Object.keys(gates).length > 0 ? { gates } : {}),
          ...(options.onGateFailure ? { onGateFailure: options.onGateFailure } : {}),
          ...(options.rollback ? { rollback: true } : {}),
          ...(options.overridePolicy ? { policyOverride: { reason: options.overridePolicy } } : {}),
        } as Spec;
        const client = await ctx.client();
        const created = await ok(
          client.api.POST('/v1/rollouts', {
            body: spec,
            ...(options.idempotencyKey ? { headers: { 'idempotency-key': options.idempotencyKey } } : {}),
          }),
        );
        if (!options.watch) {
          ctx.out.print(created, () => describe(created, ctx));
          return;
        }
        ctx.out.note(`created ${created.id}: ${created.model}@${created.version} to ${created.stages.at(-1)?.size ?? 0} devices`);
        process.exitCode = await watch(ctx, client, created.id, watchSettings(options));
      }),
  );

  rollouts
    .command('ls')
    .description('Rollouts, newest first')
    .addOption(
      new Option('--state <state>', 'only in this state').choices([
        'running',
        'paused',
        'rolling_back',
        'completed',
        'rolled_back',
        'aborted',
      ]),
    )
    .addOption(new Option('--limit <n>', 'at most this many').argParser(positive('--limit')).default(20, '20'))
    .action((options: { state?: string; limit: number }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const query = { ...(options.state ? { state: options.state as never } : {}), limit: String(Math.min(options.limit, 1000)) };
        const all = await collect(client.items('/v1/rollouts', { params: { query } }), options.limit);
        ctx.out.print(all, () =>
          table(
            ['ID', 'VERSION', 'STATE', 'STAGE', 'DEVICES', 'ACTIVE', 'FAILED', 'CREATED'],
            all.map((r) => {
              const last = r.stages.at(-1);
              return [
                r.id,
                `${r.model}@${r.version}`,
                r.state,
                `${r.currentStage + 1}/${r.stages.length}`,
                last?.size,
                last?.active,
                last?.failed,
                r.createdAt,
              ];
            }),
          ),
        );
      }),
    );

  rollouts
    .command('show <id>')
    .description('A rollout: its stages, gates, state and why')
    .action((id: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const { rollout } = await getRollout(await ctx.client(), id);
        ctx.out.print(rollout, () => describe(rollout, ctx));
      }),
    );

  const actions = {
    pause: 'Pause a running rollout',
    resume: 'Resume a paused rollout (its failed devices get another chance)',
    promote: 'Skip the rest of the current stage’s soak',
    abort: 'Abort a rollout: its devices go back to what they ran',
  } as const;
  for (const [action, description] of Object.entries(actions) as [keyof typeof actions, string][]) {
    rollouts
      .command(`${action} <id>`)
      .description(description)
      .action((id: string, _options, command: Command) =>
        run(command, async (ctx) => {
          if (action === 'abort') await ctx.confirm(`abort rollout ${id}? its devices go back to what they ran`);
          const client = await ctx.client();
          const { etag } = await getRollout(client, id);
          const path = `/v1/rollouts/{id}/${action}` as const;
          const done = await ok(client.api.POST(path, { params: { path: { id } }, ...(etag ? { headers: { 'if-match': etag } } : {}) }));
          ctx.out.print(done, () => `${done.id}: ${done.state}${done.state === 'running' ? ` (${stageLine(done)})` : ''}`);
        }),
      );
  }

  rollouts
    .command('rollback <id>')
    .description('Roll a rollout back: a live one returns its devices now; a completed one needs --to VERSION')
    .option('--to <version>', 'completed rollouts: roll its devices back to this version (a new rollout, signed as a rollback)')
    .option('--stages <list>', 'with --to: the new rollout’s stages', '100%')
    .action((id: string, options: { to?: string; stages: string }, command: Command) =>
      run(command, async (ctx) => {
        await ctx.confirm(`roll back rollout ${id}?`);
        const client = await ctx.client();
        const { rollout } = await getRollout(client, id);
        if (rollout.state !== 'completed') {
          const done = await ok(client.api.POST('/v1/rollouts/{id}/rollback', { params: { path: { id } } }));
          ctx.out.print(done, () => `${done.id}: ${done.state}`);
          return;
        }
        if (!options.to) {
          throw new CliError(
            EXIT.usage,
            `${id} is completed: say which version its devices go back to with --to VERSION (e.g. --to ${rollout.devices.find((d) => d.previousVersion)?.previousVersion ?? '1.0.0'})`,
          );
        }
        const members = await collect(client.items('/v1/rollouts/{id}/members', { params: { path: { id }, query: { limit: '1000' } } }));
        const created = await ok(
          client.api.POST('/v1/rollouts', {
            body: {
              model: rollout.model,
              version: options.to,
              selector: { devices: members.map((d) => d.id) },
              stages: parseStages(options.stages, undefined),
              rollback: true,
            },
          }),
        );
        ctx.out.print(
          created,
          () => `rolling ${rollout.devices.length} devices of ${id} back to ${created.model}@${created.version}: ${created.id}`,
        );
      }),
    );

  watchOptions(
    rollouts
      .command('watch <id>')
      .description(
        `Follow a rollout's stages and gates live until it ends; exit ${EXIT.ok} completed, ${EXIT.rolledBack} rolled back, ${EXIT.aborted} aborted`,
      ),
  ).action((id: string, options: { interval: string; exitOnPause?: boolean; timeout?: string }, command: Command) =>
    run(command, async (ctx) => {
      const client = await ctx.client();
      process.exitCode = await watch(ctx, client, id, watchSettings(options));
    }),
  );
}

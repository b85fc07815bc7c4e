/**
 * fleetctl and model quality: evaluate a version on labelled held-out data (and wait for the
 * numbers), list and show evaluations, set a model's promotion policy, ask how a version fares.
 */
import { openAsBlob } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { type EdgefleetClient, ok, type operations } from '@edgefleet/client';
import { type Command, Option } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import { collect, fields, table } from '../output.ts';
import { splitRef } from './models.ts';
import type { Run } from './run.ts';

type Evaluation = operations['getEvaluation']['responses'][200]['content']['application/json'];
type Metrics = NonNullable<Evaluation['metrics']>;
type Task = Evaluation['task'];
type Policy = operations['putPolicy']['requestBody'] extends { content: { 'application/json': infer P } } ? P : never;

const METRICS = ['accuracy', 'macroPrecision', 'macroRecall', 'macroF1', 'auc', 'mae', 'rmse'] as const;

const num = (value: number) => String(Number(value.toPrecision(4)));
const withInterval = (value: number | undefined, interval: { low: number; high: number } | undefined) =>
  value === undefined ? undefined : `${num(value)}${interval ? `  [${num(interval.low)}, ${num(interval.high)}] 95%` : ''}`;

/** The metrics as a human reads them: headline numbers with their intervals, then the classes. */
export function describeMetrics(metrics: Metrics): string {
  const head = fields(
    (
      [
        ['task', metrics.task],
        ['samples', metrics.samples],
        ['accuracy', withInterval(metrics.accuracy, metrics.accuracyInterval)],
        ['macro F1', withInterval(metrics.macroF1, metrics.macroF1Interval)],
        ['macro precision', metrics.macroPrecision === undefined ? undefined : num(metrics.macroPrecision)],
        ['macro recall', metrics.macroRecall === undefined ? undefined : num(metrics.macroRecall)],
        ['AUC-ROC', withInterval(metrics.auc, metrics.aucInterval)],
        ['MAE', withInterval(metrics.mae, metrics.maeInterval)],
        ['RMSE', withInterval(metrics.rmse, metrics.rmseInterval)],
      ] as [string, unknown][]
    ).filter(([, v]) => v !== undefined),
  );
  if (!metrics.classes) return head;
  const shown = metrics.classes.slice(0, 50);
  const classes = table(
    ['CLASS', 'SUPPORT', 'PRECISION', 'RECALL', 'F1'],
    shown.map((c) => [c.label, c.support, num(c.precision), num(c.recall), num(c.f1)]),
  );
  const more =
    metrics.classes.length > shown.length ? `\n… and ${metrics.classes.length - shown.length} more classes (-o json has all)` : '';
  return `${head}\n\n${classes}${more}`;
}

export function describeEvaluation(evaluation: Evaluation): string {
  const progress =
    evaluation.progress.total === null
      ? `${evaluation.progress.samples} samples (${Math.round(evaluation.progress.fraction * 100)}% of the file)`
      : `${evaluation.progress.samples}/${evaluation.progress.total} samples`;
  const head = fields([
    ['evaluation', evaluation.id],
    ['version', `${evaluation.model}@${evaluation.version}`],
    ['status', evaluation.status],
    ['dataset', `${evaluation.dataset.name} (${evaluation.dataset.format}, sha256 ${evaluation.dataset.sha256.slice(0, 12)}…)`],
    ['progress', progress],
    ...(evaluation.error ? ([['error', `${evaluation.error.code}: ${evaluation.error.message}`]] as [string, unknown][]) : []),
  ]);
  return evaluation.metrics ? `${head}\n\n${describeMetrics(evaluation.metrics)}` : head;
}

/** Polls an evaluation until it has finished, showing its progress on an interactive terminal. */
async function waitFor(client: EdgefleetClient, id: string, progress: ((evaluation: Evaluation) => void) | undefined, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const evaluation = await ok(client.api.GET('/v1/evaluations/{id}', { params: { path: { id } } }));
    if (evaluation.status === 'succeeded' || evaluation.status === 'failed') return evaluation;
    progress?.(evaluation);
    if (Date.now() > deadline)
      throw new CliError(EXIT.timeout, `evaluation ${id} is still ${evaluation.status} after ${Math.round(timeoutMs / 1000)} s`);
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

function pairs(list: readonly string[] | undefined, flag: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const pair of list ?? []) {
    const [metric, text] = pair.split('=');
    const value = Number(text);
    if (!metric || !METRICS.includes(metric as (typeof METRICS)[number]) || text === undefined || !Number.isFinite(value)) {
      throw new CliError(EXIT.usage, `${flag} ${pair}: write metric=value, the metric one of ${METRICS.join(', ')}`);
    }
    out[metric] = value;
  }
  return out;
}

/** The options addTaskOptions adds, as commander gives them. */
export interface TaskOptions {
  task?: string;
  labels?: string;
  threshold?: number;
  scoreIndex?: number;
  positive?: string;
  outputName?: string;
  labelColumn?: string;
}

/** The task of an evaluation from the command line's options. */
export function taskOf(options: TaskOptions & { task: string }): Task {
  if (!['classification', 'binary', 'regression'].includes(options.task)) {
    throw new CliError(EXIT.usage, `--task ${options.task}: one of classification, binary, regression`);
  }
  return {
    kind: options.task as Task['kind'],
    ...(options.labels ? { labels: options.labels.split(',').map((l) => l.trim()) } : {}),
    ...(options.threshold !== undefined ? { threshold: options.threshold } : {}),
    ...(options.scoreIndex !== undefined ? { scoreIndex: options.scoreIndex } : {}),
    ...(options.outputName ? { output: options.outputName } : {}),
    ...(options.labelColumn ? { labelColumn: options.labelColumn } : {}),
    ...(options.positive ? { positiveLabel: options.positive } : {}),
  };
}

const numberOption = (flag: string) => (value: string) => {
  const parsed = Number(value);
  if (!Number.isFinite(parsed)) throw new CliError(EXIT.usage, `${flag} ${value}: not a number`);
  return parsed;
};

/** The task options, shared by `models evaluate` and `models push --evaluation`. */
export function addTaskOptions(command: Command): Command {
  return command
    .addOption(new Option('--task <kind>', 'how outputs become predictions').choices(['classification', 'binary', 'regression']))
    .option('--labels <list>', 'classification: the class names by output index, comma-separated')
    .addOption(
      new Option('--threshold <score>', 'binary: a score at or above it is positive (default 0.5)').argParser(numberOption('--threshold')),
    )
    .addOption(
      new Option('--score-index <n>', 'binary/regression: which element of the output row to read').argParser(
        numberOption('--score-index'),
      ),
    )
    .option('--positive <label>', 'binary: the label of the positive class (default 1/true)')
    .option('--output-name <name>', 'the model output to read (default: its first)')
    .option('--label-column <name>', 'the label column (CSV, JSON lines) or array (.npz); default "label"');
}

export function registerQuality(program: Command, run: Run): void {
  const models = program.commands.find((c) => c.name() === 'models') ?? program.command('models');

  addTaskOptions(
    models
      .command('evaluate <name@version> <dataset>')
      .description('Evaluate a version on labelled held-out data (CSV, JSON lines or NumPy .npz), wait for the job, print its metrics'),
  )
    .option('--no-wait', 'print the queued evaluation and return')
    .option('--timeout <seconds>', 'give up waiting after this long (exit 13)', '3600')
    .option('--variant <name>', 'evaluate one variant of the version (default: the model, which evaluates every variant beside it)')
    .addHelpText(
      'after',
      '\nThe dataset: one sample per row with a "label" column (CSV, JSON lines), or an .npz with one array per model input and a "label" array (docs/quality.md).\n\nExamples:\n  fleetctl models evaluate digits@2.0.0 held-out.npz --task classification --labels zero,one,two\n  fleetctl models evaluate churn@1.3.0 test.csv --task binary --threshold 0.4',
    )
    .action((ref: string, dataset: string, options: TaskOptions & { wait: boolean; timeout: string; variant?: string }, command: Command) =>
      run(command, async (ctx) => {
        const { name, version } = splitRef(ref);
        if (!version) throw new CliError(EXIT.usage, `${ref}: name the version, e.g. ${name}@1.0.0`);
        if (!options.task) throw new CliError(EXIT.usage, 'say how outputs become predictions: --task classification|binary|regression');
        await stat(dataset).catch(() => {
          throw new CliError(EXIT.usage, `${dataset}: no such file`);
        });
        const task = taskOf({ ...options, task: options.task });
        const client = await ctx.client();
        const started = await client.evaluateVersion({
          name,
          version,
          task,
          dataset: { data: await openAsBlob(dataset), fileName: basename(dataset) },
          ...(options.variant ? { variant: options.variant } : {}),
        });
        if (!options.wait) {
          ctx.out.print(started, () => describeEvaluation(started));
          return;
        }
        const show = ctx.out.interactive
          ? (e: Evaluation) =>
              ctx.io.stderr.write(`\r${e.id} ${e.status} ${e.progress.samples} samples (${Math.round(e.progress.fraction * 100)}%)   `)
          : undefined;
        const done = await waitFor(client, started.id, show, Number(options.timeout) * 1000);
        if (show) ctx.io.stderr.write('\n');
        ctx.out.print(done, () => describeEvaluation(done));
        if (done.status === 'failed') throw new CliError(EXIT.refused, `evaluation ${done.id} failed: ${done.error?.code}`);
      }),
    );

  models
    .command('evaluations <name@version>')
    .description('The evaluations of a version, newest first')
    .action((ref: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const { name, version } = splitRef(ref);
        if (!version) throw new CliError(EXIT.usage, `${ref}: name the version, e.g. ${name}@1.0.0`);
        const client = await ctx.client();
        const all = await collect(
          client.items('/v1/models/{name}/versions/{version}/evaluations', { params: { path: { name, version } } }),
        );
        ctx.out.print(all, () =>
          table(
            ['ID', 'VARIANT', 'STATUS', 'DATASET', 'TASK', 'SAMPLES', 'ACCURACY', 'MACRO F1', 'AUC', 'MAE', 'RMSE'],
            all.map((e) => [
              e.id,
              e.variant,
              e.status,
              e.dataset.name,
              e.task.kind,
              e.progress.samples,
              ...(['accuracy', 'macroF1', 'auc', 'mae', 'rmse'] as const).map((m) =>
                e.metrics?.[m] === undefined ? '-' : num(e.metrics[m] as number),
              ),
            ]),
          ),
        );
      }),
    );

  models
    .command('policy <name>')
    .description('Show a model’s promotion policy, or set it: what a version must reach before a rollout may install it')
    .option('--min <metric=value...>', 'a minimum, e.g. accuracy=0.9 macroF1=0.85 auc=0.8')
    .option('--max <metric=value...>', 'a maximum error, e.g. mae=0.3 rmse=0.5')
    .option(
      '--max-regression <metric=value...>',
      'the most a metric may be worse than the version it replaces, on the same dataset, e.g. accuracy=0.01',
    )
    .option('--clear', 'remove the policy')
    .action((name: string, options: { min?: string[]; max?: string[]; maxRegression?: string[]; clear?: boolean }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        if (options.clear) {
          await ok(client.api.DELETE('/v1/models/{name}/policy', { params: { path: { name } } }));
          ctx.out.print({ model: name, policy: null }, () => `${name}: no promotion policy`);
          return;
        }
        const body: Policy = {
          ...(options.min ? { minimums: pairs(options.min, '--min') } : {}),
          ...(options.max ? { maximums: pairs(options.max, '--max') } : {}),
          ...(options.maxRegression ? { maxRegression: pairs(options.maxRegression, '--max-regression') } : {}),
        } as Policy;
        const view =
          Object.keys(body).length > 0
            ? await ok(client.api.PUT('/v1/models/{name}/policy', { params: { path: { name } }, body }))
            : await ok(client.api.GET('/v1/models/{name}/policy', { params: { path: { name } } }));
        ctx.out.print(view, () => {
          const policy = view.policy;
          if (!policy) return `${name}: no promotion policy`;
          const lines = [
            ...Object.entries(policy.minimums ?? {}).map(([m, v]) => [m, `at least ${v}`]),
            ...Object.entries(policy.maximums ?? {}).map(([m, v]) => [m, `at most ${v}`]),
            ...Object.entries(policy.maxRegression ?? {}).map(([m, v]) => [m, `at most ${v} worse than the version it replaces`]),
          ];
          return `${name} promotion policy (set ${view.updatedAt} by ${view.updatedBy})\n${table(['METRIC', 'RULE'], lines)}`;
        });
      }),
    );

  models
    .command('verdict <name@version>')
    .description('How a version fares against its model’s promotion policy now (what creating its rollout would say)')
    .action((ref: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const { name, version } = splitRef(ref);
        if (!version) throw new CliError(EXIT.usage, `${ref}: name the version, e.g. ${name}@1.0.0`);
        const client = await ctx.client();
        const verdict = await ok(client.api.GET('/v1/models/{name}/versions/{version}/verdict', { params: { path: { name, version } } }));
        ctx.out.print(verdict, () => {
          const against = verdict.champion ? ` against ${name}@${verdict.champion.version}` : '';
          if (verdict.passes) return `${ctx.out.colors.green('✓')} ${name}@${version} passes the promotion policy${against}`;
          return `${ctx.out.colors.red('✗')} ${name}@${version} fails the promotion policy${against}\n${table(
            ['METRIC', 'KIND', 'VALUE', 'THRESHOLD', 'WHY'],
            verdict.failures.map((f) => [f.metric, f.kind, f.value === null ? '-' : num(f.value), f.threshold ?? '-', f.message]),
          )}`;
        });
        if (!verdict.passes) process.exitCode = EXIT.refused;
      }),
    );

  const evaluations = program.command('evaluations').description('Evaluations of model versions on labelled datasets');
  evaluations
    .command('get <id>')
    .description('One evaluation: its progress, then its metrics or its error')
    .action((id: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const evaluation = await ok(client.api.GET('/v1/evaluations/{id}', { params: { path: { id } } }));
        ctx.out.print(evaluation, () => describeEvaluation(evaluation));
      }),
    );
  evaluations
    .command('wait <id>')
    .description('Wait until an evaluation has finished; exit 5 when it failed')
    .option('--timeout <seconds>', 'give up after this long (exit 13)', '3600')
    .action((id: string, options: { timeout: string }, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const done = await waitFor(client, id, undefined, Number(options.timeout) * 1000);
        ctx.out.print(done, () => describeEvaluation(done));
        if (done.status === 'failed') throw new CliError(EXIT.refused, `evaluation ${done.id} failed: ${done.error?.code}`);
      }),
    );
}

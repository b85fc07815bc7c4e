/**
 * A model's promotion policy: the metric values a version must reach on its evaluation before a
 * rollout may install it, and how much worse than the version it replaces (the champion, measured
 * on the same dataset with the same task) it may be. Rollout creation asks `judgeVersion`; an
 * admin may roll out a failing version only by saying so (`policyOverride`, audited).
 *
 * The champion is the version of the model's last completed rollout (what the fleet runs), other
 * than the candidate itself; a model never rolled out has none, and only the minimums apply.
 */
import { EdgefleetError } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import Type, { type Static } from 'typebox';
import type { Database, EvaluationsTable } from '../store/schema.ts';
import { LOWER_IS_BETTER, type MetricName, metricValue, type TaskMetrics } from './metrics.ts';

const Share = Type.Number({ minimum: 0, maximum: 1 });
const Positive = Type.Number({ minimum: 0 });
/** The metrics that are shares (higher is better), each optional. */
const SHARES = {
  accuracy: Type.Optional(Share),
  macroPrecision: Type.Optional(Share),
  macroRecall: Type.Optional(Share),
  macroF1: Type.Optional(Share),
  auc: Type.Optional(Share),
};
/** The errors (lower is better), each optional. */
const ERRORS = { mae: Type.Optional(Positive), rmse: Type.Optional(Positive) };

export const PromotionPolicySchema = Type.Object(
  {
    minimums: Type.Optional(
      Type.Object(SHARES, {
        additionalProperties: false,
        description: 'each metric must be at least this (classification and binary tasks)',
      }),
    ),
    maximums: Type.Optional(
      Type.Object(ERRORS, { additionalProperties: false, description: 'each error must be at most this (regression tasks)' }),
    ),
    maxRegression: Type.Optional(
      Type.Object(
        { ...SHARES, ...ERRORS },
        {
          additionalProperties: false,
          description:
            'champion/challenger: how much worse than the version it replaces (same dataset, same task) each metric may be, in the metric’s own units',
        },
      ),
    ),
  },
  { additionalProperties: false, title: 'promotion policy' },
);
export type PromotionPolicy = Static<typeof PromotionPolicySchema>;

export interface PolicyFailure {
  readonly metric: MetricName | 'evaluation';
  readonly kind: 'minimum' | 'maximum' | 'regression' | 'missing';
  readonly value: number | null;
  readonly threshold: number | null;
  /** regression: the champion's version and value. */
  readonly champion?: { readonly version: string; readonly value: number };
  readonly message: string;
}

export interface Verdict {
  readonly policy: PromotionPolicy | undefined;
  /** The evaluations the verdict read. */
  readonly evaluations: readonly string[];
  /** The version it replaces, and its evaluations compared with. */
  readonly champion: { readonly version: string; readonly evaluations: readonly string[] } | undefined;
  readonly failures: readonly PolicyFailure[];
}

export async function readPolicy(db: Kysely<Database>, model: string): Promise<PromotionPolicy | undefined> {
  const row = await db.selectFrom('model_policies').select('policy').where('model', '=', model).executeTakeFirst();
  return row ? (JSON.parse(row.policy) as PromotionPolicy) : undefined;
}

/** The version the fleet runs: that of the model's last completed rollout, other than `except`. */
export async function championOf(db: Kysely<Database>, model: string, except: string): Promise<string | undefined> {
  const row = await db
    .selectFrom('rollouts')
    .select('version')
    .where('model', '=', model)
    .where('state', '=', 'completed')
    .where('version', '!=', except)
    .orderBy('updated_at', 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row?.version;
}

const fmt = (value: number) => String(Number(value.toPrecision(4)));

/** A version's evaluations, newest first (succeeded ones by when they finished). */
async function evaluationsOf(db: Kysely<Database>, model: string, version: string, on?: { dataset: string; taskKey: string }) {
  // The reference's evaluations: a policy judges what the version is, not one of its builds.
  let query = db
    .selectFrom('evaluations')
    .selectAll()
    .where('model', '=', model)
    .where('version', '=', version)
    .where('variant', 'is', null);
  if (on) query = query.where('dataset_sha256', '=', on.dataset).where('task_key', '=', on.taskKey);
  const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(200).execute();
  const done = rows
    .filter((r) => r.status === 'succeeded')
    .sort((a, b) => (b.finished_at ?? '').localeCompare(a.finished_at ?? '') || b.id.localeCompare(a.id));
  const pending = rows.find((r) => r.status === 'queued' || r.status === 'running');
  const failed = rows.find((r) => r.status === 'failed');
  return { done, pending, failed };
}

function pendingError(row: EvaluationsTable): EdgefleetError {
  return new EdgefleetError(
    'EF_EVALUATION_PENDING',
    `${row.model}@${row.version}'s evaluation ${row.id} is ${row.status} (${Math.round(row.progress * 100)}%); the promotion policy needs its numbers`,
    { details: { evaluation: row.id } },
  );
}

/**
 * Judges a version against its model's policy. Each metric the policy names is read from the
 * version's latest successful evaluation that has it (a version may be evaluated on several
 * datasets and tasks); a regression is measured against the champion's evaluation on that same
 * dataset and task. Throws EF_EVALUATION_PENDING when an evaluation it needs is still running;
 * `request` queues the champion's evaluation on the candidate's dataset when there is none yet
 * (then that is pending too).
 */
export async function judgeVersion(
  db: Kysely<Database>,
  model: string,
  version: string,
  request: (champion: string, like: EvaluationsTable) => Promise<EvaluationsTable>,
  options: { readonly waitForPending?: boolean } = {},
): Promise<Verdict> {
  const waiting: PolicyFailure[] = [];
  /** An evaluation still under way: EF_EVALUATION_PENDING, or (an override does not wait) a failure that says so. */
  const pending = (row: EvaluationsTable, metric: MetricName): void => {
    if (options.waitForPending !== false) throw pendingError(row);
    waiting.push({
      metric,
      kind: 'missing',
      value: null,
      threshold: null,
      message: `${metric}: ${row.model}@${row.version}'s evaluation ${row.id} is still ${row.status}`,
    });
  };
  const policy = await readPolicy(db, model);
  if (!policy) return { policy, evaluations: [], champion: undefined, failures: [] };
  const mine = await evaluationsOf(db, model, version);
  const named = new Set<MetricName>([
    ...(Object.keys(policy.minimums ?? {}) as MetricName[]),
    ...(Object.keys(policy.maximums ?? {}) as MetricName[]),
    ...(Object.keys(policy.maxRegression ?? {}) as MetricName[]),
  ]);
  if (named.size === 0) return { policy, evaluations: [], champion: undefined, failures: [] };
  const failures: PolicyFailure[] = [];
  const used = new Set<string>();
  /** The newest evaluation with this metric, and the metric. */
  const source = (metric: MetricName) => {
    for (const row of mine.done) {
      const value = metricValue(JSON.parse(row.metrics ?? '{}') as TaskMetrics, metric);
      if (value !== undefined) return { row, value };
    }
    return undefined;
  };
  const missing = (metric: MetricName) => {
    if (mine.pending) {
      pending(mine.pending, metric);
      return;
    }
    const why =
      mine.done.length > 0
        ? `no evaluation of ${model}@${version} measures it (their tasks: ${[...new Set(mine.done.map((r) => (JSON.parse(r.task) as { kind: string }).kind))].join(', ')})`
        : mine.failed
          ? `the last evaluation of ${model}@${version} (${mine.failed.id}) failed: ${mine.failed.error_code}`
          : `${model}@${version} has no evaluation; evaluate it on a labelled dataset (POST /v1/models/${model}/versions/${version}/evaluations)`;
    failures.push({ metric, kind: 'missing', value: null, threshold: null, message: `${metric}: ${why}` });
  };
  for (const [metric, threshold] of Object.entries(policy.minimums ?? {}) as [MetricName, number][]) {
    const found = source(metric);
    if (!found) missing(metric);
    else {
      used.add(found.row.id);
      if (found.value < threshold) {
        failures.push({
          metric,
          kind: 'minimum',
          value: found.value,
          threshold,
          message: `${metric} ${fmt(found.value)} < minimum ${fmt(threshold)} (${found.row.id})`,
        });
      }
    }
  }
  for (const [metric, threshold] of Object.entries(policy.maximums ?? {}) as [MetricName, number][]) {
    const found = source(metric);
    if (!found) missing(metric);
    else {
      used.add(found.row.id);
      if (found.value > threshold) {
        failures.push({
          metric,
          kind: 'maximum',
          value: found.value,
          threshold,
          message: `${metric} ${fmt(found.value)} > maximum ${fmt(threshold)} (${found.row.id})`,
        });
      }
    }
  }
  const regressions = Object.entries(policy.maxRegression ?? {}) as [MetricName, number][];
  let champion: Verdict['champion'];
  const championVersion = regressions.length > 0 ? await championOf(db, model, version) : undefined;
  if (championVersion) {
    champion = { version: championVersion, evaluations: [] };
    for (const [metric, allowed] of regressions) {
      const found = source(metric);
      if (!found) {
        missing(metric);
        continue;
      }
      used.add(found.row.id);
      const theirs = await evaluationsOf(db, model, championVersion, { dataset: found.row.dataset_sha256, taskKey: found.row.task_key });
      const reference = theirs.done[0];
      if (!reference) {
        if (theirs.pending) {
          pending(theirs.pending, metric);
          continue;
        }
        if (!theirs.failed) {
          pending(await request(championVersion, found.row), metric);
          continue;
        }
        failures.push({
          metric,
          kind: 'missing',
          value: found.value,
          threshold: allowed,
          message: `${metric}: the champion ${model}@${championVersion} could not be evaluated on the same dataset (${theirs.failed.id}: ${theirs.failed.error_code}), so no regression can be measured`,
        });
        continue;
      }
      if (!champion.evaluations.includes(reference.id)) champion = { ...champion, evaluations: [...champion.evaluations, reference.id] };
      const before = metricValue(JSON.parse(reference.metrics ?? '{}') as TaskMetrics, metric) as number;
      const worse = LOWER_IS_BETTER.has(metric) ? found.value - before : before - found.value;
      if (worse > allowed + 1e-12) {
        failures.push({
          metric,
          kind: 'regression',
          value: found.value,
          threshold: allowed,
          champion: { version: championVersion, value: before },
          message: `${metric} ${fmt(found.value)} is ${fmt(worse)} worse than ${model}@${championVersion}'s ${fmt(before)} on the same dataset (allowed: ${fmt(allowed)})`,
        });
      }
    }
  }
  return { policy, evaluations: [...used], champion, failures: [...failures, ...waiting] };
}

/** EF_POLICY_FAILED naming every failure. */
export function policyError(model: string, version: string, verdict: Verdict): EdgefleetError {
  return new EdgefleetError(
    'EF_POLICY_FAILED',
    `${model}@${version} fails the promotion policy: ${verdict.failures.map((f) => f.message).join('; ')}`,
    { details: { evaluations: verdict.evaluations, champion: verdict.champion ?? null, failures: verdict.failures } },
  );
}

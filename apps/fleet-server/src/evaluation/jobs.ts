/**
 * Evaluations as records and jobs: their view, how one is requested (found again when the same
 * version, dataset and task were evaluated; the champion evaluated alongside when the policy
 * compares with it), and an uploaded dataset staged and checked against the model.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { EdgefleetError, REFERENCE_VARIANT, type TensorSpec } from '@edgefleet/protocol';
import Type from 'typebox';
import type { StagedUpload } from '../artifacts/store.ts';
import type { ServerContext } from '../context.ts';
import { DateTime, Nullable } from '../http/schemas.ts';
import type { EvaluationsTable } from '../store/schema.ts';
import { type EvaluationFormat, evaluationFormat, openEvaluationDataset } from './dataset.ts';
import { championOf, readPolicy } from './policy.ts';
import type { EvaluationRunner } from './runner.ts';
import { checkTask, type EvaluationTask, EvaluationTaskSchema, taskKey } from './task.ts';

const Interval = Type.Object({ low: Type.Number(), high: Type.Number() }, { additionalProperties: false });
const MetricsSchema = Type.Object(
  {
    task: Type.Enum(['classification', 'binary', 'regression']),
    samples: Type.Integer(),
    accuracy: Type.Optional(Type.Number()),
    accuracyInterval: Type.Optional(Interval),
    macroPrecision: Type.Optional(Type.Number()),
    macroRecall: Type.Optional(Type.Number()),
    macroF1: Type.Optional(Type.Number()),
    macroF1Interval: Type.Optional(Interval),
    classes: Type.Optional(
      Type.Array(
        Type.Object(
          {
            label: Type.String(),
            support: Type.Integer(),
            precision: Type.Number(),
            precisionInterval: Interval,
            recall: Type.Number(),
            recallInterval: Interval,
            f1: Type.Number(),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    confusion: Type.Optional(
      Type.Array(Type.Array(Type.Integer()), { description: 'confusion[true][predicted], in the order of classes' }),
    ),
    auc: Type.Optional(Type.Number()),
    aucInterval: Type.Optional(Interval),
    mae: Type.Optional(Type.Number()),
    maeInterval: Type.Optional(Interval),
    rmse: Type.Optional(Type.Number()),
    rmseInterval: Type.Optional(Interval),
  },
  { additionalProperties: false, description: 'task metrics with 95% confidence intervals' },
);

export const EvaluationView = Type.Object(
  {
    id: Type.String(),
    model: Type.String(),
    version: Type.String(),
    status: Type.Enum(['queued', 'running', 'succeeded', 'failed']),
    dataset: Type.Object(
      { sha256: Type.String(), name: Type.String(), format: Type.Enum(['csv', 'jsonl', 'npz', 'npy']), size: Type.Integer() },
      { additionalProperties: false },
    ),
    task: EvaluationTaskSchema,
    variant: Type.String({ description: 'the variant evaluated ("reference": the manifest\'s own artifact)' }),
    progress: Type.Object(
      {
        samples: Type.Integer({ description: 'samples evaluated so far' }),
        total: Nullable(Type.Integer({ description: 'samples in the dataset, once known' })),
        fraction: Type.Number({ description: '0..1' }),
      },
      { additionalProperties: false },
    ),
    metrics: Nullable(MetricsSchema),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false })),
    createdAt: DateTime,
    createdBy: Type.String(),
    startedAt: Nullable(DateTime),
    finishedAt: Nullable(DateTime),
  },
  { additionalProperties: false, title: 'evaluation' },
);

export function evaluationView(row: EvaluationsTable) {
  return {
    id: row.id,
    model: row.model,
    version: row.version,
    status: row.status,
    dataset: {
      sha256: row.dataset_sha256,
      name: row.dataset_name,
      format: row.dataset_format as EvaluationFormat,
      size: Number(row.dataset_size),
    },
    task: JSON.parse(row.task) as EvaluationTask,
    variant: row.variant ?? REFERENCE_VARIANT,
    progress: { samples: row.samples, total: row.total, fraction: row.progress },
    metrics: row.metrics === null ? null : (JSON.parse(row.metrics) as unknown),
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? '' } : null,
    createdAt: row.created_at,
    createdBy: row.created_by,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

export interface DatasetRef {
  readonly sha256: string;
  readonly size: number;
  readonly format: EvaluationFormat;
  readonly name: string;
}

/**
 * Queues an evaluation (or finds the one of the same version, dataset and task: the same inputs
 * give the same numbers, so it is not run twice; a failed one runs again). The dataset must be
 * stored already. When the model's policy compares with a champion, the champion is evaluated on
 * the same dataset too.
 */
export async function requestEvaluation(
  context: Pick<ServerContext, 'db'> & { readonly evaluations: EvaluationRunner },
  input: { model: string; version: string; dataset: DatasetRef; task: EvaluationTask; actor: string; variant?: string },
  withChampion = true,
): Promise<{ row: EvaluationsTable; created: boolean }> {
  const { db } = context;
  const variant = input.variant === undefined || input.variant === REFERENCE_VARIANT ? null : input.variant;
  // One evaluation per version, dataset, task and variant (the key carries the variant: the
  // unique constraint predates variants).
  const key = variant === null ? taskKey(input.task) : `${taskKey(input.task)}#variant=${variant}`;
  const at = new Date().toISOString();
  const id = `ev-${randomBytes(4).toString('hex')}`;
  const inserted = await db
    .insertInto('evaluations')
    .values({
      id,
      model: input.model,
      version: input.version,
      dataset_sha256: input.dataset.sha256,
      dataset_name: input.dataset.name,
      dataset_format: input.dataset.format,
      dataset_size: input.dataset.size,
      task: JSON.stringify(input.task),
      task_key: key,
      variant,
      status: 'queued',
      samples: 0,
      total: null,
      progress: 0,
      metrics: null,
      error_code: null,
      error_message: null,
      runner: null,
      heartbeat_at: null,
      created_at: at,
      created_by: input.actor,
      started_at: null,
      finished_at: null,
    })
    .onConflict((conflict) => conflict.columns(['model', 'version', 'dataset_sha256', 'task_key']).doNothing())
    .executeTakeFirst();
  let created = Number(inserted.numInsertedOrUpdatedRows ?? 0) === 1;
  const find = () =>
    db
      .selectFrom('evaluations')
      .selectAll()
      .where('model', '=', input.model)
      .where('version', '=', input.version)
      .where('dataset_sha256', '=', input.dataset.sha256)
      .where('task_key', '=', key)
      .executeTakeFirstOrThrow();
  let row = await find();
  if (!created && row.status === 'failed') {
    await db
      .updateTable('evaluations')
      .set({ status: 'queued', error_code: null, error_message: null, samples: 0, progress: 0, finished_at: null, runner: null })
      .where('id', '=', row.id)
      .where('status', '=', 'failed')
      .execute();
    row = await find();
    created = true;
  }
  if (created) context.evaluations.kick();
  if (withChampion && variant === null) {
    // Each variant of the version on the same data: its accuracy beside the reference's.
    const version = await db
      .selectFrom('model_versions')
      .select('manifest')
      .where('name', '=', input.model)
      .where('version', '=', input.version)
      .executeTakeFirst();
    const variants = version
      ? ((JSON.parse(version.manifest) as { payload: { variants?: { name: string }[] } }).payload.variants ?? [])
      : [];
    for (const { name } of variants) await requestEvaluation(context, { ...input, variant: name }, false);
    const policy = await readPolicy(db, input.model);
    if (policy?.maxRegression && Object.keys(policy.maxRegression).length > 0) {
      const champion = await championOf(db, input.model, input.version);
      if (champion) await requestEvaluation(context, { ...input, version: champion }, false);
    }
  }
  return { row, created };
}

export interface StagedDataset {
  readonly staged: StagedUpload;
  readonly format: EvaluationFormat;
  readonly name: string;
}

/** Stages an uploaded evaluation dataset (checked for its format, limited in size); the caller commits or discards it. */
export async function stageDataset(
  context: Pick<ServerContext, 'artifacts' | 'config'>,
  file: NodeJS.ReadableStream & { resume(): unknown },
  fileName: string,
  mediaType: string,
): Promise<StagedDataset> {
  const format = evaluationFormat(fileName, mediaType);
  if (!format) {
    file.resume();
    throw new EdgefleetError(
      'EF_DATASET_INVALID',
      `the evaluation dataset "${fileName.slice(0, 64)}" is not CSV (.csv), JSON lines (.jsonl) nor NumPy (.npz): name the file by its format`,
    );
  }
  const limit = context.config.maxEvaluationBytes;
  const staged = await context.artifacts.stage(file as unknown as Readable, limit).catch((error: unknown) => {
    throw error instanceof EdgefleetError && error.code === 'EF_MESSAGE_TOO_LARGE'
      ? new EdgefleetError(
          'EF_MESSAGE_TOO_LARGE',
          `the evaluation dataset is larger than ${limit} bytes (EDGEFLEET_EVALUATION_MAX_BYTES); evaluate a sample of it`,
          {
            details: { limit },
          },
        )
      : error;
  });
  return { staged, format, name: fileName.slice(0, 128) || `dataset.${format}` };
}

export function datasetOf(row: EvaluationsTable): DatasetRef {
  return {
    sha256: row.dataset_sha256,
    size: Number(row.dataset_size),
    format: row.dataset_format as EvaluationFormat,
    name: row.dataset_name,
  };
}

/** Reads the dataset's first batch against the model before anything is queued: a wrong file is refused now, not in the job. */
export async function checkDataset(
  path: string,
  format: EvaluationFormat,
  task: EvaluationTask,
  model: { readonly inputs: readonly TensorSpec[]; readonly outputs: readonly TensorSpec[] },
  maxInflatedBytes: number,
): Promise<void> {
  checkTask(task, model.outputs);
  const dataset = await openEvaluationDataset(path, format, {
    inputs: model.inputs,
    labelColumn: task.labelColumn,
    scratch: `${path}.check`,
    maxInflatedBytes,
  });
  try {
    for await (const _batch of dataset.batches(16)) break;
  } finally {
    await dataset.close();
  }
}

/**
 * The task of an evaluation: how a model's output becomes a prediction, and how a dataset's label
 * becomes the truth it is compared with.
 *
 * - `classification`: the output row holds one score per class; the prediction is the class of
 *   the highest score (its index, or `labels[index]`). An output of one integer per sample is
 *   taken as the class index itself (models that end in ArgMax).
 * - `binary`: one score of the positive class (`scoreIndex` in the output row: by default the
 *   only element, or the second of two, as [p(negative), p(positive)]) against `threshold`
 *   (default 0.5). Labels are 1/0, true/false, or `positiveLabel` and anything else.
 * - `regression`: element `scoreIndex` (default 0) of the output row is the predicted value.
 */
import { createHash } from 'node:crypto';
import { canonicalize, EdgefleetError, type TensorSpec } from '@edgefleet/protocol';
import Type, { type Static } from 'typebox';

export const EvaluationTaskSchema = Type.Object(
  {
    kind: Type.Enum(['classification', 'binary', 'regression']),
    output: Type.Optional(
      Type.String({ minLength: 1, maxLength: 256, description: 'the model output to read; default: its first output' }),
    ),
    labels: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 128 }), {
        minItems: 2,
        maxItems: 10_000,
        description: 'classification: the class names, by output index (dataset labels may then be names, or indexes into this list)',
      }),
    ),
    threshold: Type.Optional(Type.Number({ description: 'binary: a score at or above it predicts the positive class (default 0.5)' })),
    scoreIndex: Type.Optional(
      Type.Integer({ minimum: 0, maximum: 1_000_000, description: 'binary/regression: which element of the output row to read' }),
    ),
    positiveLabel: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'binary: the label of the positive class (default 1/true)' }),
    ),
    labelColumn: Type.Optional(
      Type.String({ minLength: 1, maxLength: 128, description: 'the label’s column (CSV, JSON lines) or array (.npz); default "label"' }),
    ),
  },
  { additionalProperties: false, title: 'evaluation task', description: 'how outputs become predictions and labels become truth' },
);
export type EvaluationTask = Static<typeof EvaluationTaskSchema>;

/** A stable key of the task: the same task spelled in another key order is the same evaluation. */
export function taskKey(task: EvaluationTask): string {
  return createHash('sha256').update(canonicalize(task)).digest('hex');
}

function failed(message: string): EdgefleetError {
  return new EdgefleetError('EF_EVALUATION_FAILED', message);
}

/** Checks the task against the model's outputs before anything runs; the output's name. */
export function checkTask(task: EvaluationTask, outputs: readonly TensorSpec[]): string {
  const name = task.output ?? outputs[0]?.name;
  const spec = outputs.find((o) => o.name === name);
  if (!spec)
    throw new EdgefleetError('EF_DATASET_INVALID', `the model has no output "${name}" (outputs: ${outputs.map((o) => o.name).join(', ')})`);
  if (spec.dtype === 'string') throw new EdgefleetError('EF_DATASET_INVALID', `output "${name}" holds strings; a task reads numbers`);
  if (task.kind !== 'classification' && task.labels) {
    throw new EdgefleetError('EF_DATASET_INVALID', `"labels" names classes of a classification; this task is ${task.kind}`);
  }
  if (task.kind !== 'binary' && (task.threshold !== undefined || task.positiveLabel !== undefined)) {
    throw new EdgefleetError('EF_DATASET_INVALID', `"threshold" and "positiveLabel" belong to a binary task; this task is ${task.kind}`);
  }
  return name as string;
}

/** The truth of a label: a class name, "1"/"0" for binary, a number for regression. */
export function truthOf(task: EvaluationTask, label: string | number, row: number): string | number {
  if (task.kind === 'regression') {
    const value = typeof label === 'number' ? label : Number(label);
    if (label === '' || !Number.isFinite(value))
      throw new EdgefleetError('EF_DATASET_INVALID', `sample ${row}: label "${label}" is not a number`);
    return value;
  }
  if (task.kind === 'binary') {
    const text = String(label).trim().toLowerCase();
    if (task.positiveLabel !== undefined) return String(label) === task.positiveLabel ? '1' : '0';
    if (text === '1' || text === 'true' || text === '1.0') return '1';
    if (text === '0' || text === 'false' || text === '0.0') return '0';
    throw new EdgefleetError(
      'EF_DATASET_INVALID',
      `sample ${row}: binary label "${String(label).slice(0, 40)}" is not 1/0 or true/false (set "positiveLabel")`,
    );
  }
  const numeric = typeof label === 'number' ? label : /^-?\d+(\.0+)?$/.test(label.trim()) ? Number(label) : undefined;
  if (task.labels && numeric !== undefined && Number.isInteger(numeric)) {
    const name = task.labels[numeric];
    if (name === undefined)
      throw new EdgefleetError('EF_DATASET_INVALID', `sample ${row}: class index ${numeric} is past the ${task.labels.length} labels`);
    return name;
  }
  return numeric !== undefined ? String(numeric) : String(label).trim();
}

export type Prediction = { readonly predicted: string; readonly score?: number } | { readonly value: number };

/** The prediction of one sample from its output row (the output's elements for that sample). */
export function predict(task: EvaluationTask, row: ArrayLike<number | bigint>, integral: boolean, sample: number): Prediction {
  const at = (i: number) => Number(row[i]);
  if (task.kind === 'regression') {
    const index = task.scoreIndex ?? 0;
    if (index >= row.length) throw failed(`sample ${sample}: the output row has ${row.length} elements; scoreIndex is ${index}`);
    return { value: at(index) };
  }
  if (task.kind === 'binary') {
    const index = task.scoreIndex ?? (row.length === 2 ? 1 : 0);
    if (index >= row.length || (task.scoreIndex === undefined && row.length > 2)) {
      throw failed(`sample ${sample}: the output row has ${row.length} elements; set "scoreIndex" to the positive class's score`);
    }
    const score = at(index);
    return { predicted: score >= (task.threshold ?? 0.5) ? '1' : '0', score };
  }
  let best = 0;
  if (integral && row.length === 1) best = at(0);
  else {
    if (row.length === 0) throw failed(`sample ${sample}: the output row is empty`);
    for (let i = 1; i < row.length; i++) if (at(i) > at(best)) best = i;
  }
  if (task.labels) {
    const name = task.labels[best];
    if (name === undefined) throw failed(`sample ${sample}: class index ${best} is past the ${task.labels.length} labels`);
    return { predicted: name };
  }
  return { predicted: String(best) };
}

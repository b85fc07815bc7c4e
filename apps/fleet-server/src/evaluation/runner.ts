/**
 * Runs evaluations: jobs in the `evaluations` table, one at a time per server, each in a worker
 * thread holding one onnxruntime-web session (so a model that hangs or crashes onnxruntime never
 * stalls the server). The dataset is read in batches (memory: one batch, plus one score per sample
 * for the AUC); progress and a heartbeat are written as it goes.
 *
 * Several replicas: a job is claimed by a conditional update (queued → running, with this
 * runner's id), so exactly one runs it; a runner that stops saying it is alive for HEARTBEAT_STALE_MS
 * loses it to the next that looks. Results are reproducible: samples are read in file order and
 * folded in that order; the same model, dataset and task give the same numbers.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { EdgefleetError, type ManifestPayload, type SignedDocument } from '@edgefleet/protocol';
import type { Kysely } from 'kysely';
import type { ArtifactStore } from '../artifacts/store.ts';
import type { Database } from '../store/schema.ts';
import { type EvaluationFormat, openEvaluationDataset } from './dataset.ts';
import { ClassificationAccumulator, RegressionAccumulator, type TaskMetrics } from './metrics.ts';
import { runBatch, startSession } from './session.ts';
import { checkTask, type EvaluationTask, predict, truthOf } from './task.ts';

const BATCH = 64;
const POLL_MS = 10_000;
const HEARTBEAT_MS = 1_000;
export const HEARTBEAT_STALE_MS = 60_000;

export interface EvaluationRunner {
  /** Looks for queued evaluations now (after one is created). */
  kick(): void;
  close(): Promise<void>;
}

interface Options {
  readonly db: Kysely<Database>;
  readonly artifacts: Pick<ArtifactStore, 'read'>;
  /** Local folder for the dataset's copy and inflated arrays. */
  readonly scratch: string;
  readonly timeoutMs: number;
  readonly maxSamples: number;
  readonly maxInflatedBytes: number;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void };
  readonly now?: () => number;
}

export function createEvaluationRunner(options: Options): EvaluationRunner {
  const { db, log } = options;
  const now = options.now ?? Date.now;
  const me = `runner-${randomUUID().slice(0, 8)}`;
  let running: Promise<void> | undefined;
  let again = false;
  let closed = false;
  let current: { id: string; abort: boolean } | undefined;
  const iso = () => new Date(now()).toISOString();

  /** Jobs whose runner went silent go back to the queue. */
  async function requeueStale(): Promise<void> {
    const stale = new Date(now() - HEARTBEAT_STALE_MS).toISOString();
    await db
      .updateTable('evaluations')
      .set({ status: 'queued', runner: null })
      .where('status', '=', 'running')
      .where('heartbeat_at', '<', stale)
      .execute();
  }

  async function claim(): Promise<string | undefined> {
    for (;;) {
      const next = await db
        .selectFrom('evaluations')
        .select('id')
        .where('status', '=', 'queued')
        .orderBy('created_at')
        .orderBy('id')
        .limit(1)
        .executeTakeFirst();
      if (!next) return undefined;
      const claimed = await db
        .updateTable('evaluations')
        .set({ status: 'running', runner: me, heartbeat_at: iso(), started_at: iso(), samples: 0, progress: 0 })
        .where('id', '=', next.id)
        .where('status', '=', 'queued')
        .executeTakeFirst();
      if (Number(claimed.numUpdatedRows) === 1) return next.id;
      // Another replica took it first: look again.
    }
  }

  async function pass(): Promise<void> {
    await requeueStale();
    for (let id = await claim(); id !== undefined && !closed; id = await claim()) {
      current = { id, abort: false };
      try {
        await run(id, current);
      } finally {
        current = undefined;
      }
    }
  }

  function kick(): void {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = pass()
      .catch((error: unknown) => log.warn({ err: error }, 'evaluation pass failed'))
      .finally(() => {
        running = undefined;
        if (again && !closed) {
          again = false;
          kick();
        }
      });
  }

  async function run(id: string, job: { abort: boolean }): Promise<void> {
    const row = await db.selectFrom('evaluations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    const folder = join(options.scratch, id);
    const session = startSession(options.timeoutMs);
    let lastBeat = 0;
    const beat = async (samples: number, progress: number, total: number | null) => {
      if (now() - lastBeat < HEARTBEAT_MS) return;
      lastBeat = now();
      const updated = await db
        .updateTable('evaluations')
        .set({ samples, progress, total, heartbeat_at: iso() })
        .where('id', '=', id)
        .where('runner', '=', me)
        .where('status', '=', 'running')
        .executeTakeFirst();
      if (Number(updated.numUpdatedRows) !== 1) job.abort = true; // taken over (this runner was silent too long)
    };
    try {
      const version = await db
        .selectFrom('model_versions')
        .select(['sha256', 'manifest'])
        .where('name', '=', row.model)
        .where('version', '=', row.version)
        .executeTakeFirst();
      if (!version) throw new EdgefleetError('EF_NOT_FOUND', `${row.model}@${row.version} was deleted before it was evaluated`);
      const manifest = (JSON.parse(version.manifest) as SignedDocument<ManifestPayload>).payload;
      const task = JSON.parse(row.task) as EvaluationTask;
      const outputName = checkTask(task, manifest.model.outputs);
      const integral = /int|bool/.test(manifest.model.outputs.find((o) => o.name === outputName)?.dtype ?? '');
      await mkdir(folder, { recursive: true });
      let artifact = version.sha256;
      if (row.variant !== null) {
        const variant = manifest.variants?.find((v) => v.name === row.variant);
        if (!variant) throw new EdgefleetError('EF_NOT_FOUND', `${row.model}@${row.version} has no variant "${row.variant}"`);
        artifact = variant.sha256;
      }
      const model = await readAll(options.artifacts, artifact);
      const datasetPath = join(folder, 'dataset');
      const source = await options.artifacts.read(row.dataset_sha256);
      if (!source) throw new EdgefleetError('EF_NOT_FOUND', `the dataset ${row.dataset_sha256} is gone from the artifact store`);
      await pipeline(source, createWriteStream(datasetPath));
      try {
        await session.open(model);
      } catch (cause) {
        throw new EdgefleetError('EF_EVALUATION_FAILED', `onnxruntime-web cannot load the model: ${(cause as Error).message}`, { cause });
      }
      const dataset = await openEvaluationDataset(datasetPath, row.dataset_format as EvaluationFormat, {
        inputs: manifest.model.inputs,
        labelColumn: task.labelColumn,
        scratch: join(folder, 'array'),
        maxInflatedBytes: options.maxInflatedBytes,
      });
      const classes = task.kind === 'binary' ? ['0', '1'] : (task.labels ?? []);
      const classification = task.kind === 'regression' ? undefined : new ClassificationAccumulator(task.kind, classes);
      const regression = task.kind === 'regression' ? new RegressionAccumulator() : undefined;
      let samples = 0;
      let batching = true;
      try {
        if ((dataset.total ?? 0) > options.maxSamples) {
          throw new EdgefleetError(
            'EF_DATASET_INVALID',
            `the dataset holds ${dataset.total} samples; an evaluation reads at most ${options.maxSamples} (EDGEFLEET_EVALUATION_MAX_SAMPLES)`,
          );
        }
        for await (const batch of dataset.batches(BATCH)) {
          if (job.abort || closed) return;
          const count = batch.labels.length;
          if (samples + count > options.maxSamples) {
            throw new EdgefleetError(
              'EF_DATASET_INVALID',
              `the dataset holds more than ${options.maxSamples} samples (EDGEFLEET_EVALUATION_MAX_SAMPLES): evaluate a sample of it`,
            );
          }
          const rows = await runBatch(session, manifest.model.inputs, outputName, batch.inputs, count, batching, samples).catch(
            async (error: unknown) => {
              if (!batching || error instanceof EdgefleetError) throw error;
              // A declared batch axis the graph does not honour: one sample at a time from now on.
              batching = false;
              return runBatch(session, manifest.model.inputs, outputName, batch.inputs, count, false, samples);
            },
          );
          for (let i = 0; i < count; i++) {
            const sample = samples + i + 1;
            const truth = truthOf(task, batch.labels[i] as string | number, sample);
            const prediction = predict(task, rows[i] as ArrayLike<number>, integral, sample);
            if ('value' in prediction) regression?.add(truth as number, prediction.value);
            else classification?.add(truth as string, prediction.predicted, prediction.score);
          }
          samples += count;
          await beat(samples, dataset.progress(), dataset.total ?? null);
        }
      } finally {
        await dataset.close();
      }
      if (samples === 0) throw new EdgefleetError('EF_DATASET_INVALID', 'the dataset holds no sample');
      const metrics: TaskMetrics = regression ? regression.result() : (classification as ClassificationAccumulator).result();
      await db
        .updateTable('evaluations')
        .set({
          status: 'succeeded',
          samples,
          total: samples,
          progress: 1,
          metrics: JSON.stringify(metrics),
          finished_at: iso(),
          heartbeat_at: iso(),
        })
        .where('id', '=', id)
        .where('runner', '=', me)
        .execute();
      log.info({ evaluation: id, model: row.model, version: row.version, samples }, 'evaluation finished');
    } catch (error) {
      if (closed) return; // stopping: the job goes back to the queue (close)
      const coded = error instanceof EdgefleetError ? error : undefined;
      const code =
        coded && ['EF_DATASET_INVALID', 'EF_EVALUATION_FAILED', 'EF_NOT_FOUND'].includes(coded.code) ? coded.code : 'EF_EVALUATION_FAILED';
      const message = coded ? coded.message : `the evaluation failed: ${(error as Error).message}`;
      await db
        .updateTable('evaluations')
        .set({ status: 'failed', error_code: code, error_message: message.slice(0, 2000), finished_at: iso(), heartbeat_at: iso() })
        .where('id', '=', id)
        .where('runner', '=', me)
        .execute();
      log.warn({ evaluation: id, code, reason: message }, 'evaluation failed');
    } finally {
      await session.close();
      await rm(folder, { recursive: true, force: true });
    }
  }

  const poll = setInterval(() => kick(), POLL_MS);
  poll.unref();

  return {
    kick,
    async close() {
      closed = true;
      clearInterval(poll);
      const stopping = current;
      await running;
      // The job cut short goes back to the queue for whichever runner looks next.
      if (stopping) {
        await db
          .updateTable('evaluations')
          .set({ status: 'queued', runner: null })
          .where('id', '=', stopping.id)
          .where('runner', '=', me)
          .where('status', '=', 'running')
          .execute();
      }
    },
  };
}

async function readAll(artifacts: Pick<ArtifactStore, 'read'>, sha256: string): Promise<Uint8Array> {
  const stream = await artifacts.read(sha256);
  if (!stream) throw new EdgefleetError('EF_NOT_FOUND', `the model ${sha256} is gone from the artifact store`);
  const chunks: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

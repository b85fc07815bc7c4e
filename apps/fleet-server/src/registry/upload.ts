/**
 * Registering a model version: the multipart upload read as it streams, the model parsed and
 * loaded in onnxruntime, golden vectors made a hash-listed file, the manifest signed and checked
 * to travel, the bytes committed under their hash, the row written last.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  assertModelName,
  checkDeliverable,
  checkGoldenVectors,
  createManifest,
  EdgefleetError,
  EXECUTION_PROVIDERS,
  encodeGoldenVectors,
  GOLDEN_VECTORS_FILE,
  GoldenVector,
  goldenVectorsEntry,
  Identifier,
  ManifestPayload,
  type ManifestVariant,
  ModelName,
  parseJson,
  signManifest,
  TelemetrySpec,
  TensorData,
  Tolerance,
  VARIANT_PRECISIONS,
  VariantName,
  validate,
} from '@edgefleet/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import Type from 'typebox';
import type { StagedUpload } from '../artifacts/store.ts';
import { audit } from '../audit/index.ts';
import type { ServerContext } from '../context.ts';
import { storeReference } from '../drift/scoring.ts';
import { checkDataset, requestEvaluation, type StagedDataset, stageDataset } from '../evaluation/jobs.ts';
import { EvaluationTaskSchema } from '../evaluation/task.ts';
import { partsFingerprint } from '../http/idempotency.ts';
import { Ref } from '../http/schemas.ts';
import { type DatasetFormat, type DatasetProfile, datasetFormat, profileDataset } from '../telemetry/reference-dataset.ts';
import { readOnnxSummary } from './onnx.ts';
import { checkVariant, quantizeStaged, type VariantReport } from './variants.ts';
import { versionOf } from './versions.ts';

const NameParams = Type.Object({ name: ModelName }, { additionalProperties: false });

const JSON_FIELD_LIMIT = 8 * 1024 * 1024;

const UploadFields = Type.Object(
  {
    version: Type.String({ maxLength: 64, description: 'a semantic version such as 1.4.0' }),
    metadata: Type.Optional(ManifestPayload.properties.metadata),
    goldenVectors: Type.Optional(Type.Array(GoldenVector, { maxItems: 16 })),
    sampleInputs: Type.Optional(Type.Array(Type.Array(TensorData, { minItems: 1, maxItems: 64 }), { maxItems: 16 })),
    tolerance: Type.Optional(Tolerance),
    executionProviders: Type.Optional(Type.Array(Type.Enum(EXECUTION_PROVIDERS), { minItems: 1, maxItems: 3, uniqueItems: true })),
    deviceClasses: Type.Optional(Type.Array(Identifier, { minItems: 1, maxItems: 64 })),
    telemetry: Type.Optional(TelemetrySpec),
    evaluationTask: Type.Optional(EvaluationTaskSchema),
    quantize: Type.Optional(
      Type.Literal('int8', {
        description: '"int8": the server adds an int8 variant, dynamically quantized from the model (MatMul and Gemm weights)',
      }),
    ),
    variants: Type.Optional(
      Type.Record(
        VariantName,
        Type.Object(
          {
            precision: Type.Optional(Type.Enum(VARIANT_PRECISIONS)),
            executionProviders: Type.Optional(Type.Array(Type.Enum(EXECUTION_PROVIDERS), { minItems: 1, maxItems: 3, uniqueItems: true })),
            tolerance: Type.Optional(Tolerance),
          },
          { additionalProperties: false },
        ),
        { maxProperties: 8, description: 'settings of each variant by name (its file is the part "variant.<name>"; "int8" with quantize)' },
      ),
    ),
  },
  { additionalProperties: false, title: 'upload fields' },
);

const MAX_VARIANTS = 8;
const VARIANT_PART = /^variant\.(.+)$/;
const VARIANT_NAME = new RegExp((VariantName as { pattern?: string }).pattern ?? '^$');

/** The multipart body as the OpenAPI document describes it (parts in any order; JSON fields are JSON text). */
const UPLOAD_DOC_BODY = {
  content: {
    'multipart/form-data': {
      schema: Type.Object(
        {
          ...UploadFields.properties,
          model: Type.String({ contentMediaType: 'application/octet-stream', description: 'the .onnx file' }),
          'variant.NAME': Type.Optional(
            Type.String({
              contentMediaType: 'application/octet-stream',
              description:
                'another build of the same model (float16, int8...), one part per variant named "variant.<name>" (up to 8): same inputs and outputs, checked against the model on the golden inputs',
            }),
          ),
          evaluation: Type.Optional(
            Type.String({
              contentMediaType: 'application/octet-stream',
              description:
                'optional labelled held-out dataset to evaluate the version on (CSV, JSON lines or .npz; see POST …/evaluations), with "evaluationTask"',
            }),
          ),
          reference: Type.Optional(
            Type.String({
              contentMediaType: 'text/csv',
              description:
                'optional reference dataset: CSV with a header row (.csv) or JSON lines (.jsonl), one column per telemetry feature',
            }),
          ),
        },
        { additionalProperties: false },
      ),
      encoding: { model: { contentType: 'application/octet-stream' }, reference: { contentType: 'text/csv, application/x-ndjson' } },
    },
  },
};

const JSON_FIELDS = new Set([
  'metadata',
  'goldenVectors',
  'sampleInputs',
  'tolerance',
  'executionProviders',
  'deviceClasses',
  'telemetry',
  'evaluationTask',
  'variants',
]);

/**
 * What goes wrong while reading a multipart body that is not ours to fix: a missing or wrong
 * boundary, a truncated or garbled body. busboy reports these as plain Errors, which would
 * otherwise answer 500; they are the client's (EF_MULTIPART_INVALID). Coded errors, fastify's own
 * (limits) and the system's (a full disk) pass through as they are.
 */
function asUploadError(error: unknown): unknown {
  if (error instanceof EdgefleetError) return error;
  const { code, statusCode } = error as { code?: unknown; statusCode?: unknown };
  if (typeof statusCode === 'number' || (typeof code === 'string' && /^(E[A-Z]+|ERR_FS_)/.test(code) && !code.startsWith('ERR_STREAM'))) {
    return error;
  }
  return new EdgefleetError(
    'EF_MULTIPART_INVALID',
    `the multipart body is malformed: ${String((error as Error).message ?? error).slice(0, 200)}`,
    {
      cause: error,
    },
  );
}

/**
 * POST /v1/models/{name}/versions: a version registered from a multipart upload (parts in any order,
 * the model file, optionally a reference dataset), checked, loaded in onnxruntime, signed, stored.
 */
export async function registerUploadRoute(app: FastifyInstance, context: ServerContext): Promise<void> {
  const { db, artifacts, keys, config } = context;

  /**
   * Reads the multipart body in whatever order its parts come: fields (JSON ones parsed), the
   * model streamed to a staged file, the optional reference dataset staged too and profiled once
   * every field (its telemetry spec among them) is known. On any failure the staged files are
   * gone and the error is coded (see asUploadError). Sets the request's idempotency fingerprint:
   * its fields and its files' sha256, whatever the order or the multipart boundary.
   */
  async function readUpload(
    request: FastifyRequest,
    name: string,
  ): Promise<{
    raw: Record<string, unknown>;
    staged: StagedUpload | undefined;
    reference: (DatasetProfile & { fileName: string }) | undefined;
    evaluation: StagedDataset | undefined;
    variants: Map<string, StagedUpload>;
  }> {
    const raw: Record<string, unknown> = {};
    const texts: Record<string, string> = {};
    const fileHashes: Record<string, string> = {};
    let staged: StagedUpload | undefined;
    let referenceFile: { staged: StagedUpload; format: DatasetFormat; fileName: string } | undefined;
    let evaluation: StagedDataset | undefined;
    const variants = new Map<string, StagedUpload>();
    try {
      for await (const part of request.parts()) {
        const variantPart = part.type === 'file' ? VARIANT_PART.exec(part.fieldname) : null;
        if (part.type === 'file' && variantPart) {
          const variant = variantPart[1] as string;
          if (!VARIANT_NAME.test(variant) || variants.has(variant) || variants.size >= MAX_VARIANTS) {
            part.file.resume();
            throw new EdgefleetError(
              'EF_VARIANT_INVALID',
              variants.has(variant)
                ? `variant "${variant}" was sent twice`
                : variants.size >= MAX_VARIANTS
                  ? `at most ${MAX_VARIANTS} variants per version`
                  : `"${variant.slice(0, 64)}" is not a variant name: 1-32 characters from a-z 0-9 . _ -, not "reference"`,
            );
          }
          variants.set(variant, await artifacts.stage(part.file, config.maxModelBytes));
          continue;
        }
        if (part.type === 'file' && part.fieldname === 'evaluation' && !evaluation) {
          evaluation = await stageDataset(context, part.file, part.filename, part.mimetype);
          continue;
        }
        if (part.type === 'file' && part.fieldname === 'reference' && !referenceFile) {
          const format = datasetFormat(part.filename, part.mimetype);
          if (!format) {
            part.file.resume();
            throw new EdgefleetError(
              'EF_REFERENCE_INVALID',
              `the reference dataset "${part.filename.slice(0, 64)}" is neither CSV (.csv, text/csv) nor JSON lines (.jsonl, application/x-ndjson)`,
            );
          }
          const file = await artifacts.stage(part.file, config.maxReferenceBytes).catch((error: unknown) => {
            throw error instanceof EdgefleetError && error.code === 'EF_MESSAGE_TOO_LARGE'
              ? new EdgefleetError(
                  'EF_MESSAGE_TOO_LARGE',
                  `the reference dataset is larger than ${config.maxReferenceBytes} bytes (EDGEFLEET_MAX_REFERENCE_BYTES); send a sample of it`,
                  { details: { limit: config.maxReferenceBytes } },
                )
              : error;
          });
          referenceFile = { staged: file, format, fileName: part.filename.slice(0, 128) };
        } else if (part.type === 'file' && (JSON_FIELDS.has(part.fieldname) || part.fieldname === 'version')) {
          // A field sent as a file (curl -F sampleInputs=@samples.json) is the same field.
          const value = await readSmallFile(part.file, JSON_FIELD_LIMIT, part.fieldname);
          fileHashes[part.fieldname] = createHash('sha256').update(value).digest('hex');
          raw[part.fieldname] = JSON_FIELDS.has(part.fieldname) ? parseJson(value, { maxBytes: JSON_FIELD_LIMIT }) : value.trim();
        } else if (part.type === 'file') {
          if (part.fieldname !== 'model' || staged) {
            part.file.resume();
            throw new EdgefleetError(
              'EF_SCHEMA_INVALID',
              `the upload takes one file named "model", one named "reference", one named "evaluation" and variants named "variant.<name>" (got "${part.fieldname.slice(0, 64)}")`,
            );
          }
          // When the version came first, a duplicate is refused before its bytes are read.
          if (typeof raw.version === 'string') await refuseExisting(name, versionOf(raw.version), () => part.file.resume());
          staged = await artifacts.stage(part.file, config.maxModelBytes);
        } else {
          if (!UploadFields.properties[part.fieldname as keyof typeof UploadFields.properties]) {
            throw new EdgefleetError('EF_SCHEMA_INVALID', `unknown upload field "${part.fieldname.slice(0, 64)}"`);
          }
          const value = String(part.value);
          texts[part.fieldname] = value;
          raw[part.fieldname] = JSON_FIELDS.has(part.fieldname) ? parseJson(value, { maxBytes: JSON_FIELD_LIMIT }) : value;
        }
      }
      request.idempotencyFingerprint = partsFingerprint(request.method, request.url.split('?')[0] ?? request.url, texts, {
        ...fileHashes,
        ...(staged ? { model: staged.sha256 } : {}),
        ...(referenceFile ? { reference: referenceFile.staged.sha256 } : {}),
        ...(evaluation ? { evaluation: evaluation.staged.sha256 } : {}),
        ...Object.fromEntries([...variants].map(([name, file]) => [`variant.${name}`, file.sha256])),
      });
      let reference: (DatasetProfile & { fileName: string }) | undefined;
      if (referenceFile) {
        const telemetry = raw.telemetry === undefined ? undefined : validate(TelemetrySpec, raw.telemetry);
        const profile = await profileDataset(createReadStream(referenceFile.staged.path), {
          format: referenceFile.format,
          maxBytes: config.maxReferenceBytes,
          ...(telemetry ? { telemetry } : {}),
        });
        reference = { ...profile, fileName: referenceFile.fileName };
      }
      return { raw, staged, reference, evaluation, variants };
    } catch (error) {
      if (staged) await artifacts.discard(staged);
      if (evaluation) await artifacts.discard(evaluation.staged);
      for (const file of variants.values()) await artifacts.discard(file);
      throw asUploadError(error);
    } finally {
      if (referenceFile) await artifacts.discard(referenceFile.staged);
    }
  }

  async function readSmallFile(file: AsyncIterable<Buffer>, limit: number, field: string): Promise<string> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of file) {
      size += chunk.length;
      if (size > limit) {
        throw new EdgefleetError(
          'EF_MESSAGE_TOO_LARGE',
          `the "${field}" field is larger than ${limit} bytes; send fewer or smaller tensors`,
        );
      }
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  async function refuseExisting(name: string, version: string, drain: () => void): Promise<void> {
    const existing = await db
      .selectFrom('model_versions')
      .select('version')
      .where('name', '=', name)
      .where('version', '=', version)
      .executeTakeFirst();
    if (existing) {
      drain();
      throw new EdgefleetError('EF_MODEL_VERSION_EXISTS', `${name}@${version} already exists`);
    }
  }

  app.post(
    '/v1/models/:name/versions',
    {
      onRequest: context.requireAdmin,
      schema: {
        summary:
          'Upload a model version (multipart, parts in any order: the fields, the ONNX file as "model", optionally a reference dataset, CSV or JSON lines, as "reference"); honours Idempotency-Key',
        params: NameParams,
        consumes: ['multipart/form-data'],
        response: {
          201: Type.Object(
            {
              name: Type.String(),
              version: Type.String(),
              sha256: Type.String(),
              size: Type.Integer(),
              manifest: Ref('SignedManifest'),
              reference: Type.Optional(
                Type.Object({ rows: Type.Integer(), features: Type.Array(Type.String()) }, { additionalProperties: false }),
              ),
              variants: Type.Optional(
                Type.Array(
                  Type.Object(
                    {
                      name: Type.String(),
                      precision: Type.String(),
                      size: Type.Integer(),
                      sizeRatio: Type.Number(),
                      maxAbsoluteError: Type.Optional(Type.Number()),
                      source: Type.Enum(['uploaded', 'quantized']),
                      quantized: Type.Optional(
                        Type.Object(
                          { layers: Type.Integer(), weights: Type.Integer(), skipped: Type.Integer() },
                          { additionalProperties: false },
                        ),
                      ),
                    },
                    { additionalProperties: false },
                  ),
                  { description: 'each variant as registration measured it against the model' },
                ),
              ),
              evaluation: Type.Optional(
                Type.Object(
                  { id: Type.String(), status: Type.Enum(['queued', 'running', 'succeeded', 'failed']) },
                  { additionalProperties: false, description: 'the evaluation started on the uploaded dataset (GET /v1/evaluations/{id})' },
                ),
              ),
            },
            { additionalProperties: false },
          ),
        },
      },
      config: { docBody: UPLOAD_DOC_BODY },
    },
    async (request, reply) => {
      const name = assertModelName((request.params as { name: string }).name);
      const upload = await readUpload(request, name);
      const { raw, reference } = upload;
      let staged = upload.staged;
      let goldenFile: StagedUpload | undefined;
      let evaluation = upload.evaluation;
      // Every staged variant (uploaded, or quantized here) until it is committed or discarded.
      const variantFiles = new Map<
        string,
        { staged: StagedUpload; source: VariantReport['source']; quantized?: VariantReport['quantized'] }
      >([...upload.variants].map(([name, file]) => [name, { staged: file, source: 'uploaded' as const }]));
      try {
        if (!staged) throw new EdgefleetError('EF_SCHEMA_INVALID', 'the upload has no "model" file');
        const fields = validate(UploadFields, raw);
        const version = versionOf(fields.version);

        const handle = await open(staged.path, 'r');
        const summary = await readOnnxSummary(handle).finally(() => handle.close());
        // Every model is loaded in onnxruntime before it is signed; sample inputs run in the same session.
        const computed = await context.modelCheck.check(await readFile(staged.path), fields.sampleInputs ?? [], summary.outputs);
        const vectors = [...(fields.goldenVectors ?? []), ...computed];
        // An evaluation dataset is checked against the model now: a wrong file refuses the upload, not a job later.
        if (evaluation && !fields.evaluationTask) {
          throw new EdgefleetError(
            'EF_SCHEMA_INVALID',
            'an "evaluation" dataset needs its "evaluationTask", e.g. {"kind":"classification"}',
          );
        }
        if (fields.evaluationTask && !evaluation)
          throw new EdgefleetError('EF_SCHEMA_INVALID', '"evaluationTask" needs an "evaluation" dataset file');
        if (evaluation && fields.evaluationTask) {
          await checkDataset(evaluation.staged.path, evaluation.format, fields.evaluationTask, summary, config.maxEvaluationBytes);
        }
        checkGoldenVectors({ model: summary }, vectors, `${name}@${version}`);
        const referenceTolerance = fields.tolerance ?? { absolute: 1e-4, relative: 1e-3 };
        if (fields.quantize === 'int8') {
          if (variantFiles.has('int8')) {
            throw new EdgefleetError(
              'EF_VARIANT_INVALID',
              'a "variant.int8" file and "quantize": "int8" both name variant "int8": send one',
            );
          }
          const produced = await quantizeStaged(context, staged);
          variantFiles.set('int8', {
            staged: produced.staged,
            source: 'quantized',
            quantized: { layers: produced.layers, weights: produced.weights, skipped: produced.skipped },
          });
        }
        for (const settingsOf of Object.keys(fields.variants ?? {})) {
          if (!variantFiles.has(settingsOf)) {
            throw new EdgefleetError(
              'EF_VARIANT_INVALID',
              `"variants" has settings for "${settingsOf}" but no part "variant.${settingsOf}" came${settingsOf === 'int8' ? ' (nor "quantize": "int8")' : ''}`,
            );
          }
        }
        const variantEntries: ManifestVariant[] = [];
        const variantReports: VariantReport[] = [];
        for (const [variantName, file] of variantFiles) {
          const checked = await checkVariant(context, {
            name: variantName,
            staged: file.staged,
            source: file.source,
            ...(file.quantized ? { quantized: file.quantized } : {}),
            settings: fields.variants?.[variantName],
            reference: { summary, size: staged.size, tolerance: referenceTolerance },
            vectors,
          });
          variantEntries.push(checked.entry);
          variantReports.push(checked.report);
        }
        // Golden vectors travel as a file the manifest lists by hash, never inline: one realistic
        // sample image is hundreds of kilobytes, and manifests ride in every desired-state document.
        if (vectors.length > 0) goldenFile = await artifacts.stage(Readable.from([encodeGoldenVectors(vectors)]), Number.MAX_SAFE_INTEGER);
        const now = Date.now();
        const payload = createManifest({
          name,
          version,
          now,
          ttlMs: config.manifestTtlDays * 24 * 3600 * 1000,
          artifact: { sha256: staged.sha256, size: staged.size, mediaType: 'application/x-onnx' },
          files: goldenFile ? [goldenVectorsEntry(goldenFile.sha256, goldenFile.size)] : [],
          ...(variantEntries.length > 0 ? { variants: variantEntries } : {}),
          model: {
            format: 'onnx',
            irVersion: summary.irVersion,
            opsets: summary.opsets.slice(0, 32),
            inputs: summary.inputs,
            outputs: summary.outputs,
            operators: summary.operators.filter((op) => op.length <= 128).slice(0, 1024),
            quantization: summary.quantization,
          },
          runtime: {
            executionProviders: fields.executionProviders ?? ['webgpu', 'wasm', 'cpu'],
            ...(fields.deviceClasses ? { deviceClasses: fields.deviceClasses } : {}),
          },
          ...(goldenFile
            ? {
                acceptance: {
                  tolerance: referenceTolerance,
                  vectors: [],
                  vectorsFile: GOLDEN_VECTORS_FILE.name,
                },
              }
            : {}),
          ...(fields.telemetry ? { telemetry: fields.telemetry } : {}),
          ...(fields.metadata ? { metadata: fields.metadata } : {}),
        });
        const manifest = signManifest(payload, [keys.signing]);
        // What cannot travel to a device is refused now, not discovered by a stuck rollout.
        checkDeliverable(manifest);

        // The bytes go under their hash first, the row last: a crash in between leaves an
        // unreferenced file (collected on start), never a version without its bytes.
        await artifacts.commit(staged);
        staged = undefined;
        if (goldenFile) await artifacts.commit(goldenFile);
        goldenFile = undefined;
        for (const [variantName, file] of variantFiles) {
          await artifacts.commit(file.staged);
          variantFiles.delete(variantName);
        }
        const dataset = evaluation ? { ...evaluation, sha256: evaluation.staged.sha256, size: evaluation.staged.size } : undefined;
        if (evaluation) await artifacts.commit(evaluation.staged);
        evaluation = undefined;
        const actor = request.principal?.id ?? 'unknown';
        await db.transaction().execute(async (trx) => {
          await trx
            .insertInto('models')
            .values({ name, created_at: new Date(now).toISOString() })
            .onConflict((oc) => oc.column('name').doNothing())
            .execute();
          const clash = await trx
            .selectFrom('model_versions')
            .select('version')
            .where('name', '=', name)
            .where('version', '=', version)
            .executeTakeFirst();
          if (clash) throw new EdgefleetError('EF_MODEL_VERSION_EXISTS', `${name}@${version} already exists`);
          const tombstone = await trx
            .selectFrom('deleted_versions')
            .select(['sha256', 'deleted_at'])
            .where('name', '=', name)
            .where('version', '=', version)
            .executeTakeFirst();
          if (tombstone && tombstone.sha256 !== payload.artifact.sha256) {
            throw new EdgefleetError(
              'EF_MODEL_VERSION_DELETED',
              `${name}@${version} was deleted at ${tombstone.deleted_at}; it named the model with sha256 ${tombstone.sha256.slice(0, 12)}…, not these bytes (${payload.artifact.sha256.slice(0, 12)}…)`,
            );
          }
          await trx
            .insertInto('model_versions')
            .values({
              name,
              version,
              sha256: payload.artifact.sha256,
              size: payload.artifact.size,
              manifest: JSON.stringify(manifest),
              metadata: JSON.stringify(fields.metadata ?? {}),
              variants: variantReports.length > 0 ? JSON.stringify(variantReports) : null,
              created_at: new Date(now).toISOString(),
              created_by: actor,
            })
            .execute();
          await trx
            .insertInto('version_artifacts')
            .values([
              { name, version, sha256: payload.artifact.sha256, role: 'model' },
              ...payload.files
                .filter((f) => f.sha256 !== payload.artifact.sha256)
                .map((f) => ({ name, version, sha256: f.sha256, role: f.role })),
              // Devices download the variant they choose by hash, as they do the model.
              ...(payload.variants ?? [])
                .filter((v) => v.sha256 !== payload.artifact.sha256 && !payload.files.some((f) => f.sha256 === v.sha256))
                .map((v) => ({ name, version, sha256: v.sha256, role: 'variant' })),
            ])
            .execute();
          await audit(trx, {
            actor,
            action: 'model.version.create',
            target: `model:${name}@${version}`,
            after: {
              sha256: payload.artifact.sha256,
              size: payload.artifact.size,
              ...(variantReports.length > 0 ? { variants: variantReports.map((v) => v.name) } : {}),
            },
          });
          if (reference) {
            await storeReference(trx, {
              model: name,
              version,
              source: `dataset ${reference.fileName} (${reference.rows} rows)`,
              windows: 0,
              runs: reference.rows,
              features: reference.features,
              actor,
            });
          }
        });
        const evaluated =
          dataset && fields.evaluationTask
            ? await requestEvaluation(context, {
                model: name,
                version,
                dataset: { sha256: dataset.sha256, size: dataset.size, format: dataset.format, name: dataset.name },
                task: fields.evaluationTask,
                actor,
              })
            : undefined;
        return reply
          .status(201)
          .header('location', `/v1/models/${name}/versions/${version}`)
          .send({
            name,
            version,
            sha256: payload.artifact.sha256,
            size: payload.artifact.size,
            manifest,
            ...(reference ? { reference: { rows: reference.rows, features: reference.features.map((f) => f.name) } } : {}),
            ...(evaluated ? { evaluation: { id: evaluated.row.id, status: evaluated.row.status } } : {}),
            ...(variantReports.length > 0 ? { variants: variantReports } : {}),
          });
      } finally {
        if (staged) await artifacts.discard(staged);
        for (const file of variantFiles.values()) await artifacts.discard(file.staged);
        if (goldenFile) await artifacts.discard(goldenFile);
        if (evaluation) await artifacts.discard(evaluation.staged);
      }
    },
  );
}

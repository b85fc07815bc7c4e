/** fleetctl models: push a version (with progress), list, show its signed manifest, move aliases, delete. */
import { openAsBlob } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { ok, type Schema } from '@edgefleet/client';
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import { CliError, EXIT } from '../exit.ts';
import { bytes, collect, fields, table } from '../output.ts';
import { addTaskOptions, type TaskOptions, taskOf } from './quality.ts';
import type { Run } from './run.ts';

type Manifest = Schema<'SignedManifest'>;

/** `name@version` or `name@alias`: the version (an alias resolved by the server), or undefined. */
export function splitRef(ref: string): { name: string; version: string | undefined } {
  const at = ref.indexOf('@');
  return at < 0 ? { name: ref, version: undefined } : { name: ref.slice(0, at), version: ref.slice(at + 1) || undefined };
}

async function readJson(path: string, flag: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new CliError(EXIT.usage, `${flag} ${path}: ${(error as Error).message}`);
  }
}

export function manifestSummary(name: string, version: string, sha256: string, size: number, manifest: Manifest): string {
  const payload = manifest.payload;
  const tensors = (list: readonly { name: string; dtype: string; shape: readonly (string | number)[] }[]) =>
    list.map((t) => `${t.name} ${t.dtype}[${t.shape.join(',')}]`).join(', ');
  const golden = payload.files.find((f) => f.role === 'golden-vectors');
  return fields([
    ['version', `${name}@${version}`],
    ['sha256', sha256],
    ['size', bytes(size)],
    ['inputs', tensors(payload.model.inputs)],
    ['outputs', tensors(payload.model.outputs)],
    ['opsets', payload.model.opsets.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ')],
    [
      'operators',
      `${payload.model.operators.length} (${payload.model.operators.slice(0, 8).join(', ')}${payload.model.operators.length > 8 ? ', ...' : ''})`,
    ],
    ['quantization', payload.model.quantization.quantized ? payload.model.quantization.formats.join(', ') : 'none (float)'],
    ['providers', payload.runtime.executionProviders.join(', ')],
    ['golden vectors', golden ? `${golden.name} (${bytes(golden.size)})` : 'none'],
    ['telemetry', payload.telemetry ? payload.telemetry.features.map((f) => f.name).join(', ') : 'none'],
    ['signed by', manifest.signatures.map((s) => s.keyId).join(', ')],
    ['expires', payload.expiresAt],
  ]);
}

export function registerModels(program: Command, run: Run): void {
  const models = program.command('models').description('The model registry: versions, signed manifests, aliases');

  addTaskOptions(models.command('push <file>'))
    .description('Upload an ONNX model as a new version: loaded, checked and signed by the server')
    .requiredOption('--name <name>', 'the model name, e.g. vad')
    .requiredOption('--version <version>', 'a semantic version, e.g. 1.4.0 (versions are immutable)')
    .option('--reference <file>', 'a reference dataset for drift (CSV with a header row, or JSON lines)')
    .option('--evaluation <file>', 'labelled held-out data the version is evaluated on at once (CSV, JSON lines or .npz), with --task')
    .option('--samples <file>', 'sample inputs (JSON: a list of inputs, each a list of tensors); their outputs become golden vectors')
    .option('--golden <file>', 'golden vectors (JSON: a list of {inputs, outputs})')
    .option('--telemetry <file>', 'the features devices profile for drift (JSON)')
    .option('--metadata <key=value...>', 'metadata kept in the signed manifest')
    .option('--providers <list>', 'execution providers, in order of preference (webgpu,wasm,cpu)')
    .option('--variant <name=file...>', 'another build of the same model (float16, int8...) that devices may serve instead')
    .option('--variant-providers <name=list...>', "a variant's execution providers (default: int8 wasm,cpu; others webgpu,wasm,cpu)")
    .option('--quantize <precision>', 'have the server add a variant quantized from the model: int8 (dynamic: MatMul and Gemm weights)')
    .option('--idempotency-key <key>', 'the key of this upload (a retry with the same key registers it once)')
    .addHelpText(
      'after',
      '\nThe tensor format of --samples and --golden: docs/fleet-server.md#golden-vectors-and-sample-inputs.\nVariants: docs/quality.md#variants.\n\nExamples:\n  fleetctl models push vad.onnx --name vad --version 5.1.0 --samples samples.json --metadata team=audio\n  fleetctl models push ocr.onnx --name ocr --version 2.0.0 --samples samples.json --quantize int8 --variant fp16=ocr.fp16.onnx',
    )
    .action(
      (
        file: string,
        options: TaskOptions & {
          name: string;
          version: string;
          reference?: string;
          evaluation?: string;
          samples?: string;
          golden?: string;
          telemetry?: string;
          metadata?: string[];
          providers?: string;
          variant?: string[];
          variantProviders?: string[];
          quantize?: string;
          idempotencyKey?: string;
        },
        command: Command,
      ) =>
        run(command, async (ctx) => {
          const pairs = (flag: string, list: string[] | undefined) =>
            (list ?? []).map((pair) => {
              const eq = pair.indexOf('=');
              if (eq < 1) throw new CliError(EXIT.usage, `${flag} ${pair}: write name=value`);
              return [pair.slice(0, eq), pair.slice(eq + 1)] as const;
            });
          const variantFiles = pairs('--variant', options.variant);
          for (const [, path] of variantFiles) {
            await stat(path).catch(() => {
              throw new CliError(EXIT.usage, `--variant ${path}: no such file`);
            });
          }
          if (options.quantize !== undefined && options.quantize !== 'int8') {
            throw new CliError(
              EXIT.usage,
              `--quantize ${options.quantize}: the server quantizes to int8 only; upload other builds with --variant`,
            );
          }
          const variantSettings = Object.fromEntries(
            pairs('--variant-providers', options.variantProviders).map(([name, list]) => [
              name,
              { executionProviders: list.split(',').map((p) => p.trim()) as never },
            ]),
          );
          const size = (
            await stat(file).catch(() => {
              throw new CliError(EXIT.usage, `${file}: no such file`);
            })
          ).size;
          const metadata = Object.fromEntries(
            (options.metadata ?? []).map((pair) => {
              const eq = pair.indexOf('=');
              if (eq < 1) throw new CliError(EXIT.usage, `--metadata ${pair}: write key=value`);
              return [pair.slice(0, eq), pair.slice(eq + 1)];
            }),
          );
          const fieldsToSend = {
            ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
            ...(options.samples ? { sampleInputs: (await readJson(options.samples, '--samples')) as never } : {}),
            ...(options.golden ? { goldenVectors: (await readJson(options.golden, '--golden')) as never } : {}),
            ...(options.telemetry ? { telemetry: (await readJson(options.telemetry, '--telemetry')) as never } : {}),
            ...(options.providers ? { executionProviders: options.providers.split(',').map((p) => p.trim()) as never } : {}),
            ...(options.quantize ? { quantize: 'int8' as const } : {}),
            ...(Object.keys(variantSettings).length > 0 ? { variants: variantSettings } : {}),
            ...(options.task
              ? {
                  evaluationTask: taskOf({ ...options, task: options.task }),
                }
              : {}),
          };
          if (Boolean(options.evaluation) !== Boolean(options.task)) {
            throw new CliError(EXIT.usage, '--evaluation and --task go together: the dataset, and how outputs become predictions');
          }
          const client = await ctx.client();
          const bar = ctx.out.interactive
            ? new SingleBar(
                {
                  format: `uploading ${basename(file)} [{bar}] {percentage}% {sent}/{size}`,
                  stream: ctx.io.stderr as NodeJS.WriteStream,
                  hideCursor: true,
                },
                Presets.shades_classic,
              )
            : undefined;
          bar?.start(size, 0, { sent: bytes(0), size: bytes(size) });
          let created: Awaited<ReturnType<typeof client.uploadModelVersion>>;
          try {
            created = await client.uploadModelVersion({
              name: options.name,
              version: options.version,
              model: await openAsBlob(file),
              fileName: basename(file),
              fields: fieldsToSend,
              ...(variantFiles.length > 0
                ? {
                    variants: Object.fromEntries(
                      await Promise.all(variantFiles.map(async ([name, path]) => [name, await openAsBlob(path)])),
                    ),
                  }
                : {}),
              ...(options.reference
                ? { reference: { data: await openAsBlob(options.reference), fileName: basename(options.reference) } }
                : {}),
              ...(options.evaluation
                ? { evaluation: { data: await openAsBlob(options.evaluation), fileName: basename(options.evaluation) } }
                : {}),
              ...(options.idempotencyKey ? { idempotencyKey: options.idempotencyKey } : {}),
              ...(bar
                ? {
                    onProgress: ({ sent, total }) =>
                      bar.update(Math.min(sent, total), { sent: bytes(Math.min(sent, total)), size: bytes(total) }),
                  }
                : {}),
            });
          } finally {
            bar?.stop();
          }
          ctx.out.print(created, () => {
            const summary = manifestSummary(created.name, created.version, created.sha256, created.size, created.manifest);
            const reference = created.reference
              ? `\nreference:      ${created.reference.rows} rows (${created.reference.features.join(', ')})`
              : '';
            const evaluation = created.evaluation
              ? `\nevaluation:     ${created.evaluation.id} ${created.evaluation.status} (fleetctl evaluations wait ${created.evaluation.id})`
              : '';
            const variants = (created.variants ?? [])
              .map(
                (v) =>
                  `\nvariant:        ${v.name} ${v.precision} ${bytes(v.size)} (${Math.round(v.sizeRatio * 100)}% of the model)${v.maxAbsoluteError !== undefined ? `, differs by up to ${Number(v.maxAbsoluteError.toPrecision(3))} on the golden inputs` : ''}${v.source === 'quantized' ? `, quantized here (${v.quantized?.layers} layers)` : ''}`,
              )
              .join('');
            return `${ctx.out.colors.green('✓')} registered and signed ${created.name}@${created.version}\n${summary}${variants}${reference}${evaluation}`;
          });
        }),
    );

  models
    .command('ls [name]')
    .description('List the models, or the versions and aliases of one')
    .action((name: string | undefined, _options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        if (!name) {
          const all = await collect(client.items('/v1/models'));
          ctx.out.print(all, () =>
            table(
              ['NAME', 'VERSIONS', 'CREATED'],
              all.map((m) => [m.name, m.versions, m.createdAt]),
            ),
          );
          return;
        }
        const versions = await collect(client.items('/v1/models/{name}/versions', { params: { path: { name } } }));
        const aliases = await collect(client.items('/v1/models/{name}/aliases', { params: { path: { name } } }));
        ctx.out.print({ name, versions, aliases }, () => {
          const byVersion = new Map<string, string[]>();
          for (const a of aliases) byVersion.set(a.version, [...(byVersion.get(a.version) ?? []), a.alias]);
          return table(
            ['VERSION', 'ALIASES', 'SHA256', 'SIZE', 'CREATED', 'BY'],
            versions.map((v) => [
              v.version,
              (byVersion.get(v.version) ?? []).join(',') || '-',
              v.sha256.slice(0, 12),
              bytes(v.size),
              v.createdAt,
              v.createdBy,
            ]),
          );
        });
      }),
    );

  models
    .command('show <name[@version]>')
    .description('A version and its signed manifest (the version, an alias such as name@production, or the newest)')
    .action((ref: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const { name, version: given } = splitRef(ref);
        let version = given;
        if (version && !/^\d/.test(version)) {
          version = (await ok(client.api.GET('/v1/models/{name}/aliases/{alias}', { params: { path: { name, alias: version } } }))).version;
        }
        if (!version) {
          let newest: string | undefined;
          for await (const v of client.items('/v1/models/{name}/versions', { params: { path: { name } } })) newest = v.version;
          if (!newest) throw new CliError(EXIT.notFound, `${name} has no versions`);
          version = newest;
        }
        const detail = await ok(client.api.GET('/v1/models/{name}/versions/{version}', { params: { path: { name, version } } }));
        ctx.out.print(detail, () => {
          const variants = detail.variants
            .map((v) => {
              const delta = v.evaluation
                ? Object.entries(v.evaluation.delta)
                    .map(([metric, d]) => `${metric} ${d >= 0 ? '+' : ''}${Number(d.toPrecision(3))}`)
                    .join(', ')
                : '';
              return `\nvariant:        ${v.name} ${v.precision} ${bytes(v.size)} (${Math.round(v.sizeRatio * 100)}%) on ${v.executionProviders.join(',')}, tolerance ${v.tolerance.absolute}${v.maxAbsoluteError !== null ? `, measured ${Number(v.maxAbsoluteError.toPrecision(3))}` : ''}${delta ? `, against the reference: ${delta}` : ''}`;
            })
            .join('');
          const summary = `${manifestSummary(detail.name, detail.version, detail.sha256, detail.size, detail.manifest)}${variants}`;
          const e = detail.evaluation;
          if (!e) return `${summary}\nevaluation:     none (fleetctl models evaluate ${detail.name}@${detail.version} DATASET --task …)`;
          const headline = (['accuracy', 'macroF1', 'auc', 'mae', 'rmse'] as const)
            .filter((m) => typeof e.metrics[m] === 'number')
            .map((m) => `${m} ${Number((e.metrics[m] as number).toPrecision(4))}`)
            .join(', ');
          return `${summary}\nevaluation:     ${e.id} on ${e.dataset} (${e.task}): ${headline}`;
        });
      }),
    );

  models
    .command('alias <name> <alias> <version>')
    .description('Point an alias (production, canary...) at a version')
    .action((name: string, alias: string, version: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const client = await ctx.client();
        const set = await ok(client.api.PUT('/v1/models/{name}/aliases/{alias}', { params: { path: { name, alias } }, body: { version } }));
        ctx.out.print(set, () => `${set.name}#${set.alias} → ${set.version}`);
      }),
    );

  models
    .command('rm <name@version>')
    .description('Delete a version nothing uses (its number stays bound to its bytes)')
    .action((ref: string, _options, command: Command) =>
      run(command, async (ctx) => {
        const { name, version } = splitRef(ref);
        if (!version) throw new CliError(EXIT.usage, `${ref}: name the version to delete, e.g. ${name}@1.0.0`);
        await ctx.confirm(`delete ${name}@${version}?`);
        const client = await ctx.client();
        await client.api.DELETE('/v1/models/{name}/versions/{version}', { params: { path: { name, version } } });
        ctx.out.print({ deleted: `${name}@${version}` }, () => `deleted ${name}@${version}`);
      }),
    );
}

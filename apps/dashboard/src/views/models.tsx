/**
 * The model registry: models, their versions and aliases, each version's signed manifest (inputs,
 * outputs, operators, quantization, size), where it runs, its reference profile and drift status;
 * admins upload a version here with a progress bar.
 */
import { type ItemOf, isApiError, multipartBody, ok, problemOf } from '@edgefleet/client';
import { useState } from 'preact/hooks';
import { usePaged, useResource } from '../data.ts';
import { ago, bytes, number, shortHash, when } from '../format.ts';
import { navigate, path } from '../router.ts';
import { client, describeError, isAdmin, session } from '../session.ts';
import { Badge, Empty, ErrorBox, Loading, Section } from '../ui/bits.tsx';

type Model = ItemOf<'/v1/models'>;

export function ModelsView() {
  const list = usePaged<Model>(async (cursor, signal) => {
    const page = await ok(client().api.GET('/v1/models', { params: { query: { limit: '100', ...(cursor ? { cursor } : {}) } }, signal }));
    return { items: page.models, next: page.next };
  }, []);
  return (
    <main id="main">
      <h1>Models</h1>
      {list.error ? <ErrorBox error={list.error} /> : null}
      {list.items.length === 0 && !list.loading ? <Empty>No model registered yet.</Empty> : null}
      {list.items.length > 0 ? (
        <table data-testid="models">
          <thead>
            <tr>
              <th scope="col">Model</th>
              <th scope="col">Versions</th>
              <th scope="col">Registered</th>
            </tr>
          </thead>
          <tbody>
            {list.items.map((m) => (
              <tr key={m.name}>
                <td>
                  <a href={path('/models', m.name)}>{m.name}</a>
                </td>
                <td>{m.versions}</td>
                <td title={when(m.createdAt)}>{ago(m.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {!list.done && !list.loading ? (
        <button type="button" onClick={list.more}>
          More models
        </button>
      ) : null}
      {isAdmin.value ? <Upload /> : null}
    </main>
  );
}

/**
 * Uploads with XMLHttpRequest: browsers report the progress of a request body only through it
 * (fetch cannot stream one over HTTP/1.1). The body is the client's multipart body, sent with an
 * Idempotency-Key so a retry never registers twice.
 */
function send(name: string, body: Blob, contentType: string, onProgress: (sent: number, total: number) => void): Promise<unknown> {
  const token = session.value?.token ?? '';
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/v1/models/${encodeURIComponent(name)}/versions`);
    xhr.setRequestHeader('authorization', `Bearer ${token}`);
    xhr.setRequestHeader('content-type', contentType);
    xhr.setRequestHeader('idempotency-key', crypto.randomUUID());
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.total || body.size);
    xhr.onerror = () => reject(new Error('the upload did not reach the server'));
    xhr.onload = async () => {
      const response = new Response(xhr.responseText, {
        status: xhr.status,
        headers: { 'content-type': xhr.getResponseHeader('content-type') ?? '' },
      });
      if (xhr.status >= 200 && xhr.status < 300) resolve(JSON.parse(xhr.responseText));
      else reject(await problemOf(response));
    };
    xhr.send(body);
  });
}

function Upload({ model }: { model?: string }) {
  const [progress, setProgress] = useState<{ sent: number; total: number } | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);
  const [done, setDone] = useState<string | undefined>(undefined);
  return (
    <Section title={model ? `Upload a version of ${model}` : 'Upload a model version'}>
      <form
        class="upload"
        onSubmit={async (event) => {
          event.preventDefault();
          const form = new FormData(event.currentTarget as HTMLFormElement);
          const name = String(form.get('name') ?? model ?? '').trim();
          const version = String(form.get('version') ?? '').trim();
          const file = form.get('model') as File | null;
          const reference = form.get('reference') as File | null;
          const metadata = String(form.get('metadata') ?? '').trim();
          setError(undefined);
          setDone(undefined);
          if (!file || file.size === 0) return setError('Choose the .onnx file of the version.');
          let fields: Record<string, unknown> = {};
          try {
            fields = metadata ? { metadata: JSON.parse(metadata) } : {};
          } catch {
            return setError('Metadata must be a JSON object of string labels, e.g. {"owner": "vision-team"}.');
          }
          if (form.get('quantize') === 'on') fields = { ...fields, quantize: 'int8' };
          const { body, contentType } = multipartBody({
            name,
            version,
            model: file,
            fileName: file.name,
            fields,
            ...(reference && reference.size > 0 ? { reference: { data: reference, fileName: reference.name } } : {}),
          });
          setProgress({ sent: 0, total: body.size });
          try {
            await send(name, body, contentType, (sent, total) => setProgress({ sent, total }));
            setDone(`${name}@${version} registered and signed.`);
            navigate(path('/models', name, 'versions', version));
          } catch (e) {
            setError(isApiError(e) ? e.message : describeError(e));
          } finally {
            setProgress(undefined);
          }
        }}
      >
        {model ? null : (
          <label>
            Model name
            <input name="name" required pattern="[a-z0-9][a-z0-9._\-]{0,63}" placeholder="detector" />
          </label>
        )}
        <label>
          Version
          <input name="version" required placeholder="1.2.0" />
        </label>
        <label>
          ONNX model
          <input name="model" type="file" accept=".onnx" required />
        </label>
        <label>
          Reference dataset (optional, CSV or JSON lines)
          <input name="reference" type="file" accept=".csv,.jsonl,.ndjson" />
        </label>
        <label>
          Metadata (optional JSON)
          <input name="metadata" placeholder='{"owner": "vision-team"}' />
        </label>
        <label class="check">
          <input name="quantize" type="checkbox" /> Add an int8 variant (quantized by the server, for CPUs)
        </label>
        <button type="submit" class="primary" disabled={progress !== undefined}>
          Upload
        </button>
        {progress ? (
          <label class="progress">
            Uploading {bytes(progress.sent)} of {bytes(progress.total)}
            <progress max={progress.total} value={progress.sent} />
          </label>
        ) : null}
      </form>
      {error ? <ErrorBox error={error} /> : null}
      {done ? <p role="status">{done}</p> : null}
    </Section>
  );
}

export function ModelView({ name }: { name: string }) {
  const versions = usePaged<ItemOf<'/v1/models/{name}/versions'>>(
    async (cursor, signal) => {
      const page = await ok(
        client().api.GET('/v1/models/{name}/versions', {
          params: { path: { name }, query: { limit: '50', ...(cursor ? { cursor } : {}) } },
          signal,
        }),
      );
      return { items: page.versions, next: page.next };
    },
    [name],
  );
  const aliases = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/aliases', { params: { path: { name }, query: { limit: '100' } }, signal })),
    [name],
  );
  const summary = useResource((signal) => ok(client().api.GET('/v1/fleet/summary', { signal })), []);
  const compliance = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/compliance', { params: { path: { name } }, signal })),
    [name],
  );
  const running = summary.data?.models.find((m) => m.name === name);
  return (
    <main id="main">
      <h1>{name}</h1>
      {compliance.data ? (
        <p data-testid="compliance">
          Against <strong>{compliance.data.target}</strong>
          {compliance.data.targetAlias ? ` (${compliance.data.targetAlias})` : ''}: {compliance.data.upToDate} of {compliance.data.devices}{' '}
          devices up to date, {compliance.data.inProgress} in progress, {compliance.data.behind} behind, {compliance.data.failed} failed.
        </p>
      ) : null}
      <Section title="Versions">
        {versions.error ? <ErrorBox error={versions.error} /> : null}
        <table data-testid="versions">
          <thead>
            <tr>
              <th scope="col">Version</th>
              <th scope="col">Aliases</th>
              <th scope="col">Size</th>
              <th scope="col">Runs on</th>
              <th scope="col">Registered</th>
              <th scope="col">SHA-256</th>
            </tr>
          </thead>
          <tbody>
            {versions.items.map((v) => {
              const where = running?.versions.find((r) => r.version === v.version);
              return (
                <tr key={v.version}>
                  <td>
                    <a href={path('/models', name, 'versions', v.version)}>{v.version}</a>
                  </td>
                  <td>
                    {(aliases.data?.aliases ?? [])
                      .filter((a) => a.version === v.version)
                      .map((a) => (
                        <span key={a.alias} class="chip">
                          {a.alias}
                        </span>
                      ))}
                  </td>
                  <td>{bytes(v.size)}</td>
                  <td>{where ? `${where.devices} devices (${where.online} online)` : '—'}</td>
                  <td title={when(v.createdAt)}>
                    {ago(v.createdAt)} by {v.createdBy}
                  </td>
                  <td>
                    <code>{shortHash(v.sha256)}</code>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
        {!versions.done && !versions.loading ? (
          <button type="button" onClick={versions.more}>
            More versions
          </button>
        ) : null}
      </Section>
      {isAdmin.value ? <Upload model={name} /> : null}
    </main>
  );
}

type Manifest = NonNullable<Awaited<ReturnType<typeof loadVersion>>>['manifest'];
const loadVersion = (name: string, version: string, signal: AbortSignal) =>
  ok(client().api.GET('/v1/models/{name}/versions/{version}', { params: { path: { name, version } }, signal }));

function Tensors({ title, tensors }: { title: string; tensors: Manifest['payload']['model']['inputs'] }) {
  return (
    <table>
      <caption>{title}</caption>
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Type</th>
          <th scope="col">Shape</th>
        </tr>
      </thead>
      <tbody>
        {tensors.map((t) => (
          <tr key={t.name}>
            <td>
              <code>{t.name}</code>
            </td>
            <td>{t.dtype}</td>
            <td>[{t.shape.map(String).join(', ')}]</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

type Evaluation = ItemOf<'/v1/models/{name}/versions/{version}/evaluations'>;

/** A metric with its 95% interval. */
function withInterval(value: number | undefined, interval: { low: number; high: number } | undefined): string {
  if (value === undefined) return '–';
  return interval ? `${number(value)} [${number(interval.low)}, ${number(interval.high)}]` : number(value);
}

/** An admin evaluates the version on a labelled dataset here; the list shows the job until it has finished. */
function Evaluate({ name, version, onStarted }: { name: string; version: string; onStarted: () => void }) {
  const [error, setError] = useState<string | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="upload"
      aria-label="Evaluate on a labelled dataset"
      onSubmit={async (event) => {
        event.preventDefault();
        const form = new FormData(event.currentTarget as HTMLFormElement);
        const dataset = form.get('dataset') as File | null;
        const kind = String(form.get('kind') ?? 'classification') as 'classification' | 'binary' | 'regression';
        const labels = String(form.get('labels') ?? '')
          .split(',')
          .map((l) => l.trim())
          .filter(Boolean);
        setError(undefined);
        if (!dataset || dataset.size === 0) return setError('Choose the labelled dataset: CSV, JSON lines or .npz.');
        setBusy(true);
        try {
          const started = await client().evaluateVersion({
            name,
            version,
            dataset: { data: dataset, fileName: dataset.name },
            task: { kind, ...(kind === 'classification' && labels.length >= 2 ? { labels } : {}) },
          });
          onStarted();
          // Until it has finished, the list follows it.
          for (let e = started; e.status === 'queued' || e.status === 'running'; ) {
            await new Promise((resolve) => setTimeout(resolve, 500));
            e = await ok(client().api.GET('/v1/evaluations/{id}', { params: { path: { id: started.id } } }));
            onStarted();
          }
        } catch (e) {
          setError(isApiError(e) ? e.message : describeError(e));
        } finally {
          setBusy(false);
        }
      }}
    >
      <label>
        Labelled dataset (CSV, JSON lines or .npz)
        <input name="dataset" type="file" accept=".csv,.jsonl,.ndjson,.npz" required />
      </label>
      <label>
        Task
        <select name="kind">
          <option value="classification">classification (argmax)</option>
          <option value="binary">binary (score ≥ 0.5)</option>
          <option value="regression">regression</option>
        </select>
      </label>
      <label>
        Class names (optional, by output index)
        <input name="labels" placeholder="cat,dog,bird" />
      </label>
      <button type="submit" class="primary" disabled={busy}>
        Evaluate
      </button>
      {error ? <ErrorBox error={error} /> : null}
    </form>
  );
}

/** The version's evaluations (task metrics on labelled data) and how it fares against the model's promotion policy. */
function Quality({
  evaluations,
  verdict,
  verdictError,
  name,
}: {
  evaluations: Evaluation[] | undefined;
  verdict:
    | { passes: boolean; champion: { version: string } | null; failures: { metric: string; kind: string; message: string }[] }
    | undefined;
  verdictError: string | undefined;
  name: string;
}) {
  const pending = verdictError?.includes('EF_EVALUATION_PENDING') === true;
  return (
    <>
      <p data-testid="verdict">
        Promotion policy:{' '}
        {verdict ? (
          verdict.passes ? (
            <Badge value="passes" />
          ) : (
            <Badge value="fails" />
          )
        ) : pending ? (
          <Badge value="pending" />
        ) : verdictError ? (
          verdictError
        ) : (
          '…'
        )}
        {verdict?.champion ? <span class="muted"> against {`${name}@${verdict.champion.version}`}, the version the fleet runs</span> : null}
      </p>
      {verdict && !verdict.passes ? (
        <ul class="plain" data-testid="verdict-failures">
          {verdict.failures.map((f) => (
            <li key={`${f.metric}-${f.kind}`}>{f.message}</li>
          ))}
        </ul>
      ) : null}
      {evaluations === undefined ? null : evaluations.length === 0 ? (
        <Empty>Not evaluated: fleetctl models evaluate {name}@… DATASET --task … (docs/quality.md).</Empty>
      ) : (
        <table data-testid="evaluations">
          <thead>
            <tr>
              <th scope="col">Dataset</th>
              <th scope="col">Variant</th>
              <th scope="col">Task</th>
              <th scope="col">Status</th>
              <th scope="col">Samples</th>
              <th scope="col">Accuracy [95%]</th>
              <th scope="col">Macro F1 [95%]</th>
              <th scope="col">AUC / MAE / RMSE</th>
            </tr>
          </thead>
          <tbody>
            {evaluations.map((e) => (
              <tr key={e.id}>
                <td title={e.dataset.sha256}>{e.dataset.name}</td>
                <td>{e.variant}</td>
                <td>{e.task.kind}</td>
                <td>
                  <Badge value={e.status} />
                  {e.status === 'running' ? ` ${Math.round(e.progress.fraction * 100)}%` : null}
                  {e.error ? <span class="muted small"> {e.error.code}</span> : null}
                </td>
                <td>{e.progress.samples.toLocaleString()}</td>
                <td>{withInterval(e.metrics?.accuracy, e.metrics?.accuracyInterval)}</td>
                <td>{withInterval(e.metrics?.macroF1, e.metrics?.macroF1Interval)}</td>
                <td>
                  {e.metrics?.auc !== undefined
                    ? `AUC ${withInterval(e.metrics.auc, e.metrics.aucInterval)}`
                    : e.metrics?.mae !== undefined
                      ? `MAE ${number(e.metrics.mae)} · RMSE ${number(e.metrics.rmse ?? 0)}`
                      : '–'}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}

type VersionRecord = Awaited<ReturnType<typeof loadVersion>>;

/** The other builds the manifest lists: what registration measured of each, its accuracy against the reference's, where it serves. */
function Variants({
  variants,
  serving,
}: {
  variants: VersionRecord['variants'];
  serving: readonly { variant: string; devices: number }[] | undefined;
}) {
  const devicesOn = (variant: string) => serving?.find((s) => s.variant === variant)?.devices ?? 0;
  if (variants.length === 0) {
    return (
      <Empty>
        One build: the model itself{serving ? ` (on ${devicesOn('reference')} devices)` : ''}. Add an int8 one with fleetctl models push …
        --quantize int8 (docs/quality.md#variants).
      </Empty>
    );
  }
  return (
    <table data-testid="variants">
      <thead>
        <tr>
          <th scope="col">Variant</th>
          <th scope="col">Precision</th>
          <th scope="col">Size</th>
          <th scope="col">Providers</th>
          <th scope="col">Max difference / tolerance</th>
          <th scope="col">Accuracy vs reference</th>
          <th scope="col">Devices</th>
        </tr>
      </thead>
      <tbody>
        <tr>
          <td>reference</td>
          <td>the model</td>
          <td>100%</td>
          <td>–</td>
          <td>–</td>
          <td>–</td>
          <td>{devicesOn('reference')}</td>
        </tr>
        {variants.map((v) => (
          <tr key={v.name}>
            <td>
              {v.name}
              {v.source === 'quantized' ? <span class="muted small"> quantized by the server</span> : null}
            </td>
            <td>{v.precision}</td>
            <td title={`${v.size} bytes`}>
              {bytes(v.size)} ({Math.round(v.sizeRatio * 100)}%)
            </td>
            <td>{v.executionProviders.join(', ')}</td>
            <td>
              {v.maxAbsoluteError === null ? '–' : number(v.maxAbsoluteError)} / {number(v.tolerance.absolute)}
            </td>
            <td>
              {v.evaluation
                ? Object.entries(v.evaluation.delta)
                    .map(([metric, d]) => `${metric} ${d >= 0 ? '+' : ''}${number(d)}`)
                    .join(', ') || 'evaluated (no reference evaluation yet)'
                : 'not evaluated'}
            </td>
            <td>{devicesOn(v.name)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function VersionView({ name, version }: { name: string; version: string }) {
  const record = useResource((signal) => loadVersion(name, version, signal), [name, version]);
  const drift = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/versions/{version}/drift', { params: { path: { name, version } }, signal })),
    [name, version],
  );
  // The drift status says whether there is a reference profile: read it only then.
  const hasReference = drift.data ? drift.data.reference !== null : undefined;
  const reference = useResource(
    async (signal) =>
      hasReference
        ? await ok(client().api.GET('/v1/models/{name}/versions/{version}/reference', { params: { path: { name, version } }, signal }))
        : hasReference === false
          ? null
          : undefined,
    [name, version, hasReference],
  );
  const summary = useResource((signal) => ok(client().api.GET('/v1/fleet/summary', { signal })), []);
  const evaluations = useResource(
    (signal) =>
      ok(
        client().api.GET('/v1/models/{name}/versions/{version}/evaluations', {
          params: { path: { name, version }, query: { limit: '20' } },
          signal,
        }),
      ),
    [name, version],
  );
  const verdict = useResource(
    (signal) => ok(client().api.GET('/v1/models/{name}/versions/{version}/verdict', { params: { path: { name, version } }, signal })),
    [name, version],
  );
  if (record.error)
    return (
      <main id="main">
        <h1>
          {name}@{version}
        </h1>
        <ErrorBox error={record.error} />
      </main>
    );
  if (!record.data)
    return (
      <main id="main">
        <Loading what="the version" />
      </main>
    );
  const { manifest } = record.data;
  const m = manifest.payload.model;
  const where = summary.data?.models.find((x) => x.name === name)?.versions.find((v) => v.version === version);
  return (
    <main id="main">
      <h1>
        <a href={path('/models', name)}>{name}</a>@{version}
      </h1>
      <p class="muted">
        {bytes(record.data.size)} · <code>{record.data.sha256}</code> · registered {when(record.data.createdAt)} by {record.data.createdBy}{' '}
        · runs on {where ? `${where.devices} devices (${where.online} online)` : 'no device'}
      </p>
      <div class="grid two">
        <Section title="Signed manifest">
          <dl class="facts" data-testid="manifest">
            <dt>Format</dt>
            <dd>
              ONNX IR {m.irVersion}, opsets {m.opsets.map((o) => `${o.domain || 'ai.onnx'} ${o.version}`).join(', ')}
            </dd>
            <dt>Quantization</dt>
            <dd>{m.quantization.quantized ? m.quantization.formats.join(', ') : 'none (float weights)'}</dd>
            <dt>Operators</dt>
            <dd>{m.operators.join(', ')}</dd>
            <dt>Execution providers</dt>
            <dd>{manifest.payload.runtime.executionProviders.join(', ')}</dd>
            <dt>Acceptance</dt>
            <dd>{manifest.payload.acceptance ? `${manifest.payload.acceptance.vectors.length} golden vectors` : 'none'}</dd>
            <dt>Files</dt>
            <dd>
              {manifest.payload.files.length === 0
                ? 'none'
                : manifest.payload.files.map((f) => `${f.name} (${f.role}, ${bytes(f.size)})`).join(', ')}
            </dd>
            <dt>Signed</dt>
            <dd>
              {manifest.signatures.map((s) => s.keyId).join(', ')} · expires {when(manifest.payload.expiresAt)}
            </dd>
          </dl>
          <Tensors title="Inputs" tensors={m.inputs} />
          <Tensors title="Outputs" tensors={m.outputs} />
        </Section>
        <Section title="Variants">
          <Variants variants={record.data.variants} serving={where?.variants} />
        </Section>
        <Section title="Quality">
          <Quality evaluations={evaluations.data?.evaluations} verdict={verdict.data} verdictError={verdict.error} name={name} />
          {isAdmin.value ? (
            <Evaluate
              name={name}
              version={version}
              onStarted={() => {
                evaluations.reload();
                verdict.reload();
              }}
            />
          ) : null}
        </Section>
        <Section title="Drift">
          {drift.data ? (
            <>
              <p>
                Status: <Badge value={drift.data.status} />{' '}
                {drift.data.status !== 'no-reference' ? <a href={path('/drift', name, version)}>Drift charts</a> : null}
              </p>
              <ul class="plain">
                {drift.data.groups.map((g) => (
                  <li key={g.group}>
                    <a href={`${path('/drift', name, version)}?group=${encodeURIComponent(g.group)}`}>
                      {g.group === '*' ? 'all devices' : g.group}
                    </a>{' '}
                    <Badge value={g.status} /> score {number(g.latest.score)}
                  </li>
                ))}
              </ul>
            </>
          ) : null}
          <h3>Reference profile</h3>
          {reference.data === null ? (
            <Empty>No reference profile: drift is not watched for this version.</Empty>
          ) : reference.data ? (
            <>
              <p class="muted small">
                {reference.data.source} · {reference.data.runs.toLocaleString()} runs · {ago(reference.data.createdAt)}
              </p>
              <table data-testid="reference">
                <thead>
                  <tr>
                    <th scope="col">Feature</th>
                    <th scope="col">Kind</th>
                    <th scope="col">Summary</th>
                  </tr>
                </thead>
                <tbody>
                  {reference.data.features.map((f) => (
                    <tr key={f.name}>
                      <td>
                        <a href={`${path('/drift', name, version)}?feature=${encodeURIComponent(f.name)}`}>{f.name}</a>
                      </td>
                      <td>{f.kind}</td>
                      <td>
                        {f.kind === 'numeric'
                          ? `mean ${number(f.mean)} · sd ${number(f.std)} · quartiles ${f.quartiles.map((q) => number(q)).join(' / ')}`
                          : `${Object.keys(f.categories).length} categories`}
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : null}
        </Section>
      </div>
    </main>
  );
}

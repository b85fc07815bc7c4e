/**
 * The dashboard as admins use it: real Chromium (playwright-core, Debian's package) on the page
 * the fleet server serves under its CSP, a real server, simulated devices sending real telemetry
 * over MQTT, fleetctl in a child process. A rollout started from fleetctl moves on the page without
 * a reload and is paused, resumed and promoted there (fleetctl sees each); a drifted group shows its
 * alert and its chart crossing the threshold as the passes run; a read-only token sees no control
 * and its forged request is refused; the device list stays a few dozen rows for a thousand
 * devices; a version is uploaded with a progress bar. axe-core runs on every view; screenshots go
 * to test/artifacts/dashboard/. (The fleet page at 10,000 devices is timed in bench/dashboard.bench.ts.)
 */
import { enrollDevices, type Simulation, startSimulation } from '@edgefleet/device-agent';
import { createTopicScheme, encodeMessage, type ReportedState, type TelemetrySpec } from '@edgefleet/protocol';
import { mlpModel, seededValues } from '@edgefleet/test-utils';
import mqtt from 'mqtt';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from './helpers/chromium.ts';
import { type DashboardPage, openDashboard } from './helpers/dashboard.ts';
import { ADMIN_TOKEN, type Fleet, rollOutAndWait, startFleet, until } from './helpers/fleet.ts';
import { fleetctl as runFleetctl } from './helpers/fleetctl.ts';
import { referenceCsv, TABULAR_FEATURES } from './helpers/telemetry.ts';

const TABULAR: TelemetrySpec = { features: [...TABULAR_FEATURES] };
const SHIFTED = 'group=b';

const fleetctl = (fleet: Fleet, args: readonly string[]) =>
  runFleetctl(args, { env: { HOME: '/nonexistent', EDGEFLEET_SERVER: fleet.server.url, EDGEFLEET_TOKEN: ADMIN_TOKEN } });

describe('the dashboard', () => {
  let fleet: Fleet;
  let simulation: Simulation;
  let browser: Browser;
  let shiftOn = false;
  const pages: DashboardPage[] = [];
  const open = async (path: string, token = ADMIN_TOKEN) => {
    const page = await openDashboard(browser, fleet.server.url, token, path);
    pages.push(page);
    return page;
  };
  const evaluate = () => fleet.api('POST', '/v1/drift/evaluate');

  async function upload(version: string, seed: number) {
    const form = new FormData();
    form.append('version', version);
    form.append('telemetry', JSON.stringify(TABULAR));
    form.append('model', new Blob([mlpModel(seed).bytes.slice()]), 'model.onnx');
    form.append('reference', new Blob([referenceCsv(4000, { seed: 7 })], { type: 'text/csv' }), 'reference.csv');
    const response = await fleet.server.app.inject({
      method: 'POST',
      url: '/v1/models/churn/versions',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      payload: form,
    });
    expect(response.statusCode, response.body).toBe(201);
  }

  beforeAll(async () => {
    [fleet, browser] = await Promise.all([
      startFleet({ rateLimitPerMinute: 100_000, driftBucketSeconds: 1, driftEvaluateMs: 3_600_000, driftAlertWindows: 2 }),
      launchChromium(),
    ]);
    await upload('1.0.0', 5);
    await upload('1.1.0', 6);
    const devices: { id: string; secret: string }[] = [];
    for (const group of ['a', 'b']) {
      const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['fleet=dash', `group=${group}`], uses: 3 });
      devices.push(...(await enrollDevices(fleet.server.url, token, 3, `dash-${group}`)).devices);
    }
    simulation = await startSimulation({
      serverUrl: fleet.server.url,
      mqttUrl: fleet.server.broker.urls.tcp,
      keySet: fleet.keySet,
      devices,
      telemetry: { windowMs: 100, runs: 20, shiftColumn: 1, shift: (id) => (shiftOn && id.startsWith('dash-b') ? 1.5 : 0) },
    });
    await rollOutAndWait(fleet, { model: 'churn', version: '1.0.0', selector: { tags: ['fleet=dash'] }, stages: [{ percent: 100 }] });
  }, 60_000);

  afterAll(async () => {
    for (const page of pages) await page.close().catch(() => undefined);
    await browser?.close();
    await simulation?.stop();
    await fleet?.close();
  });

  it('shows a drifted group’s alert and its chart crossing the threshold as the drift passes run, without a reload', async () => {
    const view = await open(`/drift/churn/1.0.0?group=${encodeURIComponent(SHIFTED)}&range=15m&feature=income`);
    const { page } = view;
    // Scores before the shift: the page charts them as passes store them (drift events).
    await until(async () => {
      await evaluate();
      return (await page.locator('[data-feature=income]').count()) > 0;
    }, 'the first scores charted');
    await view.markNoReload();
    expect(await page.getByTestId('alerts').count()).toBe(0);

    shiftOn = true;
    await until(
      async () => {
        await evaluate();
        return (await page.locator(`[data-alert-group="${SHIFTED}"]`).count()) > 0;
      },
      'the alert of the shifted group on the page',
      30_000,
    );
    await view.expectNotReloaded();
    await expect.poll(() => page.getByTestId('group-status').innerText()).toContain('drifting');
    expect(await page.getByTestId('drift-status').innerText()).toContain('drifting');
    // The income chart: buckets above its threshold, said in its text alternative.
    const incomeChart = page.locator('[data-feature=income] [role=img]');
    const summary = (await incomeChart.getAttribute('aria-label')) ?? '';
    const drifted = Number(/(\d+) of \d+ buckets drifted on income/.exec(summary)?.[1]);
    expect(drifted, summary).toBeGreaterThanOrEqual(2);
    expect(await page.locator('[data-feature=income] canvas').count()).toBeGreaterThan(0);
    // Reference against live: the live median moved up by about the shift.
    const distribution = page.getByTestId('distribution');
    await page
      .getByTestId('distribution')
      .waitFor({ timeout: 10_000 })
      .catch(async () => {
        throw new Error(`no distribution: ${await page.locator('main').innerText()}`);
      });
    const quantiles = distribution.getByTestId('quantiles');
    await expect.poll(async () => (await quantiles.locator('tbody tr').count()) === 2).toBe(true);
    // "Live" is the range until the page knows the alert, then since the alert's first bucket: the
    // table is redrawn when it does, so the medians are read until they say so (or 10 s pass).
    const medians = () =>
      quantiles.locator('tbody tr').evaluateAll((rows) => rows.map((row) => Number((row.children[4] as HTMLElement).innerText)));
    await expect
      .poll(
        async () => {
          const [reference = 0, live = 0] = await medians();
          return live - reference;
        },
        { timeout: 10_000 },
      )
      .toBeGreaterThan(0.5);
    // Its webhook-free alert is listed with its features.
    expect(await page.locator(`[data-alert-group="${SHIFTED}"]`).first().innerText()).toContain('income');
    await view.screenshot('drift');
    await view.accessibility('the drift view');
    expect(view.problems).toEqual([]);
    shiftOn = false;
  }, 90_000);

  it('follows a rollout started from fleetctl live, and pauses, resumes and promotes it with confirmation (fleetctl sees each)', async () => {
    const view = await open('/rollouts');
    const { page } = view;
    await page.getByRole('heading', { name: 'Rollouts' }).waitFor();
    await view.markNoReload();
    // Live means one event stream for the whole visit, and the rollout read once, not polled.
    const requests: string[] = [];
    page.on('request', (request) => requests.push(new URL(request.url()).pathname));
    const created = await fleetctl(fleet, [
      'rollouts',
      'create',
      'churn',
      '1.1.0',
      '--tag',
      'fleet=dash',
      '--stages',
      '2,100%',
      '--soak',
      '1h',
      '--json',
    ]);
    expect(created.code, created.stderr).toBe(0);
    const id = JSON.parse(created.stdout).id as string;
    // The new rollout appears in the list by itself; its page opens without a reload.
    await page.locator(`a[href="/rollouts/${id}"]`).click();
    await page.waitForURL(`**/rollouts/${id}`);
    await expect.poll(() => page.getByTestId('stage-0-counts').innerText(), { timeout: 20_000 }).toContain('2 of 2 active');
    const failureRate = page.locator('[data-gate=failure_rate]');
    await expect.poll(() => failureRate.innerText()).toMatch(/^Failure rate\s+0\s+≤\s*[\d.]+\s+passes$/);

    const confirm = async (action: string) => {
      await page.getByRole('button', { name: action, exact: true }).click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      await dialog.getByRole('button', { name: action, exact: true }).click();
      await dialog.waitFor({ state: 'hidden' });
    };
    const state = async () => JSON.parse((await fleetctl(fleet, ['rollouts', 'show', id, '--json'])).stdout).state as string;

    // By keyboard: Enter opens the confirmation, Escape closes it; Cancel does nothing either (the
    // witness: fleetctl still reports it running afterwards).
    await page.getByRole('button', { name: 'Pause', exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('dialog').waitFor();
    await page.keyboard.press('Escape');
    await page.getByRole('dialog').waitFor({ state: 'hidden' });
    await page.getByRole('button', { name: 'Pause', exact: true }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
    expect(await state()).toBe('running');

    await confirm('Pause');
    expect(await state()).toBe('paused');
    await expect.poll(() => page.getByTestId('rollout-state').innerText()).toBe('paused');
    expect(await page.getByRole('button', { name: 'Promote' }).count()).toBe(0);

    await confirm('Resume');
    expect(await state()).toBe('running');
    // Promote: the second stage opens and fills, live; promoted again, it completes.
    await confirm('Promote');
    await expect.poll(() => page.getByTestId('stage-1-counts').innerText(), { timeout: 20_000 }).toContain('6 of 6 active');
    await expect.poll(async () => (await page.locator('[data-stage="1"][aria-current="step"]').count()) === 1).toBe(true);
    await confirm('Promote');
    await expect.poll(() => page.getByTestId('rollout-state').innerText(), { timeout: 20_000 }).toBe('completed');
    expect(await state()).toBe('completed');
    await view.expectNotReloaded();
    await view.screenshot('rollout');
    await view.accessibility('the rollout view');
    expect(requests.filter((p) => p === '/v1/events').length).toBeLessThanOrEqual(1);
    expect(requests.filter((p) => p === `/v1/rollouts/${id}`).length).toBe(1);
    // Completed is final: rolling back makes a new rollout of the version the devices ran before.
    await confirm('Roll back to 1.0.0');
    await page.waitForURL((url) => /^\/rollouts\/ro-[0-9a-f]{8}$/.test(url.pathname) && !url.pathname.endsWith(id));
    await expect.poll(() => page.getByTestId('rollout-state').innerText(), { timeout: 20_000 }).toBe('completed');
    const back = JSON.parse((await fleetctl(fleet, ['rollouts', 'show', page.url().split('/').pop() as string, '--json'])).stdout);
    expect(back).toMatchObject({ version: '1.0.0', spec: { rollback: true } });
    expect(back.devices).toHaveLength(6);
    // The list shows it completed too.
    await page.getByRole('link', { name: 'Rollouts' }).click();
    await expect.poll(() => page.getByTestId('rollouts').innerText()).toContain('completed');
    await view.screenshot('rollouts');
    await view.accessibility('the rollout list');
    expect(view.problems).toEqual([]);
  }, 90_000);

  it('shows a read-only token everything and no control, and the server refuses a request forged from its session', async () => {
    const { token } = await fleet.api('POST', '/v1/admin-tokens', { name: 'viewer', scope: 'read' });
    const running = await fleet.api('POST', '/v1/rollouts', {
      model: 'churn',
      version: '1.1.0',
      selector: { devices: ['dash-a-00000'] },
      stages: [{ percent: 100, soakSeconds: 3600 }],
    });
    const view = await open(`/rollouts/${running.id}`, token);
    const { page } = view;
    await page.getByTestId('stages').waitFor();
    expect(await page.locator('header.top').innerText()).toContain('read-only');
    expect(await page.getByRole('button', { name: /^(Pause|Resume|Promote|Abort|Roll back)$/ }).count()).toBe(0);
    await page.getByRole('link', { name: 'Models' }).click();
    await page.getByTestId('models').waitFor();
    expect(await page.getByRole('button', { name: 'Upload' }).count()).toBe(0);
    await view.accessibility('the models view, read-only');
    await view.screenshot('read-only');
    expect(view.problems).toEqual([]);
    // What a script in that session could try: the server refuses it, and nothing changes.
    const forged = await page.evaluate(async (id) => {
      const stored = sessionStorage.getItem('edgefleet.token');
      const response = await fetch(`/v1/rollouts/${id}/pause`, { method: 'POST', headers: { authorization: `Bearer ${stored}` } });
      return { status: response.status, body: await response.json() };
    }, running.id as string);
    expect(forged).toMatchObject({ status: 403, body: { code: 'EF_FORBIDDEN' } });
    expect((await fleet.api('GET', `/v1/rollouts/${running.id}`)).state).toBe('running');
    await fleet.api('POST', `/v1/rollouts/${running.id}/abort`);
  }, 60_000);

  it('lists a thousand more devices in a few dozen rows, loading pages as the list scrolls, and filters them by tag', async () => {
    const { token } = await fleet.api('POST', '/v1/enrollment-tokens', { tags: ['fleet=scale'], uses: 1000 });
    await enrollDevices(fleet.server.url, token, 1000, 'scale', 16);
    const view = await open('/');
    const { page } = view;
    await expect.poll(() => page.getByTestId('fleet-stats').innerText()).toContain('1,006');
    const rows = page.locator('section.virtual tbody tr:not(.spacer)');
    const scroller = page.locator('section.virtual');
    // Scroll to the end until every page is loaded: the count stops at 1,006 with no "+".
    await until(async () => {
      await scroller.evaluate((el) => {
        el.scrollTop = el.scrollHeight;
      });
      return (await page.getByTestId('device-count').innerText()).startsWith('1,006 devices');
    }, 'every page of devices loaded');
    expect(await rows.count()).toBeLessThanOrEqual(60);
    await expect.poll(() => page.locator('section.virtual tbody').innerText()).toContain('scale-00999');
    // The recent events and the compliance of churn are on the same page.
    expect(await page.getByTestId('recent-events').innerText()).toMatch(/activated/);
    await view.screenshot('fleet');
    await view.accessibility('the fleet view');
    // Filtered by tag: only the thousand, still a few dozen rows.
    await page.getByLabel('Tag').fill('group=a');
    await page.getByLabel('Tag').press('Enter');
    await expect.poll(() => page.getByTestId('device-count').innerText()).toMatch(/^3 devices/);
    expect(await rows.count()).toBe(3);
    expect(view.problems).toEqual([]);
  }, 90_000);

  it('shows what a device reports as text: markup in its error message neither runs nor breaks the page', async () => {
    const { secret } = await fleet.api('POST', '/v1/devices', { id: 'evil-1', tags: ['fleet=evil'] });
    const hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>"><b>bold</b>';
    const report: ReportedState = {
      type: 'edgefleet.reported-state/v1',
      deviceId: 'evil-1',
      bootId: '00000000-evil-0001',
      reportedAt: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      appliedSequence: 0,
      agent: { version: '0.1.0', platform: 'node' },
      capabilities: { executionProviders: ['wasm'] },
      models: [{ name: 'churn', state: 'failed', lastError: { code: 'EF_ACCEPTANCE_FAILED', message: hostile } }],
    };
    const device = await mqtt.connectAsync(fleet.server.broker.urls.tcp, {
      clientId: 'evil-1',
      username: 'evil-1',
      password: secret,
      reconnectPeriod: 0,
    });
    await device.publishAsync(createTopicScheme().build('reported', 'evil-1'), Buffer.from(encodeMessage('reported', report)), {
      qos: 1,
      retain: true,
    });
    await until(async () => (await fleet.api('GET', '/v1/devices/evil-1')).failing === true, 'evil-1 failing');
    const view = await open('/devices/evil-1');
    const { page } = view;
    const alert = page.getByRole('alert');
    await expect.poll(() => alert.innerText()).toContain('<img src=x onerror=');
    expect(await alert.innerText()).toContain('<script>');
    expect(await page.locator('main img, main script, main b').count()).toBe(0);
    await page.goto(`${fleet.server.url}/?state=failing`);
    await expect.poll(() => page.getByTestId('failing').innerText()).toContain('evil-1');
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(view.problems).toEqual([]);
    await device.endAsync();
    await fleet.api('POST', '/v1/devices/evil-1/revoke');
  }, 60_000);

  it('uploads a version with a progress bar and shows its manifest, and a device with its models and latency', async () => {
    const view = await open('/models/churn');
    const { page } = view;
    await page.getByTestId('versions').waitFor();
    expect(await page.getByTestId('versions').innerText()).toMatch(/1\.0\.0[\s\S]*1\.1\.0/);
    await page.getByRole('textbox', { name: 'Version' }).fill('2.0.0');
    await page
      .getByLabel('ONNX model')
      .setInputFiles({ name: 'churn.onnx', mimeType: 'application/octet-stream', buffer: Buffer.from(mlpModel(9).bytes) });
    await page.getByLabel('Add an int8 variant (quantized by the server, for CPUs)').check();
    // What the progress bar showed, as the page drew it (a loopback upload is over in milliseconds).
    await page.evaluate(() => {
      const seen: { value: number; max: number }[] = [];
      (window as unknown as { __progress: typeof seen }).__progress = seen;
      new MutationObserver(() => {
        const bar = document.querySelector('progress');
        if (bar) seen.push({ value: bar.value, max: bar.max });
      }).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ['value', 'max'] });
    });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.waitForURL('**/models/churn/versions/2.0.0');
    const progress = await page.evaluate(() => (window as unknown as { __progress: { value: number; max: number }[] }).__progress);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.every((p) => p.max > 279 && p.value <= p.max)).toBe(true); // the multipart body: the model and its fields
    const manifest = page.getByTestId('manifest');
    await expect.poll(() => manifest.innerText()).toContain('MatMul');
    expect(await page.locator('main').innerText()).toContain('features');
    // The int8 variant the server made: its precision, size against the model's, target providers.
    await expect
      .poll(() => page.getByTestId('variants').innerText())
      .toMatch(/int8 quantized by the server\s+int8\s+[\d.]+ \w?B \(\d+%\)\s+wasm, cpu/);
    // Its quality: evaluated on labelled data from the page, then judged by the model's promotion policy.
    const rows = Array.from({ length: 60 }, (_, i) => seededValues(4, 900 + i, 2));
    const csv = `a,b,c,d,label\n${rows.map((x, i) => `${[...x].join(',')},${i % 3}`).join('\n')}\n`;
    await page
      .getByLabel('Labelled dataset (CSV, JSON lines or .npz)')
      .setInputFiles({ name: 'held-out.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
    await page.getByRole('button', { name: 'Evaluate' }).click();
    await expect
      .poll(() => page.getByTestId('evaluations').innerText(), { timeout: 20_000 })
      .toMatch(/held-out\.csv\s+reference\s+classification\s+succeeded\s+60\s+0\.\d+ \[/);
    // The variant was evaluated beside it, on the same data (its own job): its accuracy against the reference's.
    await until(async () => {
      const list = await fleet.api<{ evaluations: { variant: string; status: string }[] }>(
        'GET',
        '/v1/models/churn/versions/2.0.0/evaluations',
      );
      return list.evaluations.some((e) => e.variant === 'int8' && e.status === 'succeeded');
    }, 'the int8 variant’s evaluation');
    await page.reload();
    await expect.poll(() => page.getByTestId('evaluations').innerText()).toMatch(/held-out\.csv\s+int8\s+classification\s+succeeded/);
    await expect.poll(() => page.getByTestId('variants').innerText()).toMatch(/accuracy [+-]?[\d.e-]+/);
    await fleet.api('PUT', '/v1/models/churn/policy', { minimums: { accuracy: 0.99 } });
    await page.reload();
    await expect
      .poll(() => page.getByTestId('evaluations').innerText())
      .toMatch(/held-out\.csv\s+reference\s+classification\s+succeeded\s+60\s+0\.\d+ \[/);
    await expect.poll(() => page.getByTestId('verdict').innerText()).toContain('fails');
    expect(await page.getByTestId('verdict-failures').innerText()).toMatch(/accuracy 0\.\d+ < minimum 0\.99/);
    await fleet.api('DELETE', '/v1/models/churn/policy');
    await view.screenshot('version');
    await view.accessibility('the version view');
    // The same version again: the server's refusal, with its code.
    await page.goto(`${fleet.server.url}/models/churn`);
    await page.getByRole('textbox', { name: 'Version' }).fill('2.0.0');
    await page
      .getByLabel('ONNX model')
      .setInputFiles({ name: 'churn.onnx', mimeType: 'application/octet-stream', buffer: Buffer.from(mlpModel(9).bytes) });
    await page.getByRole('button', { name: 'Upload' }).click();
    await expect.poll(() => page.getByRole('alert').innerText()).toContain('EF_MODEL_VERSION_EXISTS');

    await page.goto(`${fleet.server.url}/devices/dash-a-00001`);
    await page.getByTestId('device-models').waitFor();
    expect(await page.getByTestId('device-models').innerText()).toMatch(/churn\s+active\s+1\.0\.0\s+reference on wasm/);
    await expect.poll(async () => (await page.locator('figure.chart canvas').count()) > 0).toBe(true);
    await expect.poll(() => page.getByTestId('history').innerText()).toContain('activated');
    await view.screenshot('device');
    await view.accessibility('the device view');
    expect(view.problems.filter((p) => !p.includes('409'))).toEqual([]);
  }, 60_000);

  it('shows a shadow stage: the candidate running beside the live version on a real device, and how their answers compare', async () => {
    const device = await fleet.startDevice('dash-shadow', { tags: ['fleet=dash-shadow'] });
    await fleet.api('PUT', '/v1/devices/dash-shadow/desired/churn', { version: '1.0.0' });
    await until(() => device.activeVersion('churn') === '1.0.0', 'churn@1.0.0 on the real device');
    // Many inputs asked before the gates decide: the stage stays open while the page is read.
    const rollout = await fleet.api('POST', '/v1/rollouts', {
      model: 'churn',
      version: '1.1.0',
      selector: { tags: ['fleet=dash-shadow'] },
      stages: [{ count: 1, shadow: true, shadowRate: 1 }, { percent: 100 }],
      gates: { minShadowRuns: 1_000_000, minShadowAgreement: 0.5 },
    });
    await until(() => device.runtime.models()[0]?.shadow?.version === '1.1.0', 'the candidate in shadow on the device');
    let input = 0;
    await until(async () => {
      for (let i = 0; i < 5; i++) {
        await device.runtime.run('churn', { features: { dtype: 'float32', shape: [1, 4], data: seededValues(4, 500 + input++, 2) } });
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      device.runtime.flushTelemetry();
      return ((await fleet.api('GET', `/v1/rollouts/${rollout.id}`)).gates?.shadow?.runs ?? 0) >= 5;
    }, 'comparisons at the server');
    const view = await open(`/rollouts/${rollout.id}`);
    const { page } = view;
    await expect.poll(() => page.getByTestId('stage-0-counts').innerText()).toContain('1 of 1 running it in shadow');
    expect(await page.getByTestId('stages').innerText()).toContain('1 devices, in shadow on 100% of inputs');
    await expect.poll(() => page.getByTestId('shadow-readings').innerText()).toMatch(/Compared\s+\d+ inputs on 1 devices/);
    expect(await page.getByTestId('shadow-readings').innerText()).toMatch(/Same class as live\s+[\d.]+% of \d+ rows/);
    expect(await page.locator('[data-gate=shadow_agreement]').innerText()).toMatch(
      /^Agreement with the live version\s+[\d.]+\s+≥\s*0\.5\s+(passes|fails)$/,
    );
    expect(await page.locator('[data-gate=shadow_runs]').innerText()).toMatch(/fails$/);
    await view.screenshot('rollout-shadow');
    await view.accessibility('a shadow stage');
    await fleet.api('POST', `/v1/rollouts/${rollout.id}/abort`);
    await until(() => device.runtime.models()[0]?.shadow === undefined, 'the shadow ended by the abort');
    expect(device.activeVersion('churn')).toBe('1.0.0');
    expect(view.problems).toEqual([]);
  }, 60_000);
});

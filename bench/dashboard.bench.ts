import { cpus } from 'node:os';
import { chromium } from 'playwright-core';
import { writeBenchmarkSection } from './benchmarks-doc.ts';
import { DASHBOARD_BUDGET, dashboardFirstLoad } from './dashboard-size.ts';
import { startBenchFleet, startDeviceProcesses, BENCH_TOKEN as TOKEN } from './device-processes.ts';

const RUNS = 5;
const trace = (text: string) => process.env.BENCH_TRACE && process.stderr.write(`${text}\n`);

interface PageTimes {
  stats: number;
  rows: number;
  firstPage: number;
  domRows: number;
  jsTransferKiB: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
};

async function fleetServer(n: number) {
  trace(`${n}: enrolling`);
  const { url, mqttUrl, api, server, keySet, devices } = await startBenchFleet('dashboard', n);
  trace(`${n}: connecting`);
  const simulation = await startDeviceProcesses(
    { serverUrl: url, mqttUrl, keySet },
    devices,
    Math.min(n, Number(process.env.BENCH_DEVICE_PROCESSES ?? cpus().length)),
  );
  trace(`${n}: rolling out`);
  await api('POST', '/v1/rollouts', { model: 'mlp', version: '1.0.0', selector: { tags: ['bench'] }, stages: [{ percent: 100 }] });
  const started = Date.now();
  while (simulation.countActive() < n) {
    if (Date.now() - started > 10 * 60_000) throw new Error(`only ${simulation.countActive()} of ${n} active`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    async close() {
      await simulation.stop();
      server.kill('SIGTERM');
      await new Promise((resolve) => server.once('exit', resolve));
    },
  };
}

/** Median time of an API call the fleet page makes, from Node (keep-alive, warm). */
async function apiTime(url: string, path: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < RUNS + 1; i++) {
    const started = performance.now();
    const response = await fetch(`${url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await response.arrayBuffer();
    if (!response.ok) throw new Error(`${path}: ${response.status}`);
    if (i > 0) times.push(performance.now() - started);
  }
  return median(times);
}

async function openFleetPage(url: string, n: number): Promise<PageTimes> {
  const browser = await chromium.launch({
    executablePath: process.env.EDGEFLEET_CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking'],
  });
  const runs: PageTimes[] = [];
  try {
    for (let i = 0; i < RUNS + 1; i++) {
      // A fresh context each time: nothing cached, as a first visit (the token set as the sign-in page would).
      const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
      await context.addInitScript((token) => sessionStorage.setItem('edgefleet.token', token), TOKEN);
      const page = await context.newPage();
      await page.goto(`${url}/`);
      const expected = n.toLocaleString('en-US');
      await page.waitForFunction((text) => document.querySelector('[data-testid=fleet-stats]')?.textContent?.includes(text), expected);
      const stats = await page.evaluate(() => performance.now());
      await page.waitForSelector('section.virtual tbody tr:not(.spacer)');
      const rows = await page.evaluate(() => performance.now());
      await page.waitForFunction(() => !/loading/.test(document.querySelector('[data-testid=device-count]')?.textContent ?? 'loading'));
      const firstPage = await page.evaluate(() => performance.now());
      const domRows = await page.locator('section.virtual tbody tr:not(.spacer)').count();
      const jsTransferKiB = await page.evaluate(
        () =>
          (performance.getEntriesByType('resource') as PerformanceResourceTiming[])
            .filter((e) => e.name.endsWith('.js'))
            .reduce((sum, e) => sum + e.transferSize, 0) / 1024,
      );
      await context.close();
      if (i > 0) runs.push({ stats, rows, firstPage, domRows, jsTransferKiB }); // the first warms the server's caches
    }
  } finally {
    await browser.close();
  }
  return {
    stats: median(runs.map((r) => r.stats)),
    rows: median(runs.map((r) => r.rows)),
    firstPage: median(runs.map((r) => r.firstPage)),
    domRows: Math.max(...runs.map((r) => r.domRows)),
    jsTransferKiB: median(runs.map((r) => r.jsTransferKiB)),
  };
}

async function measure(n: number) {
  const fleet = await fleetServer(n);
  try {
    trace(`${n}: measuring`);
    const page = await openFleetPage(fleet.url, n);
    const summary = await apiTime(fleet.url, '/v1/fleet/summary');
    const devices = await apiTime(fleet.url, '/v1/devices?limit=200');
    return { n, page, summary, devices };
  } finally {
    await fleet.close();
  }
}

const n = Number(process.argv[2] ?? 10_000);
const startedAt = Date.now();
const size = await dashboardFirstLoad();
const baseline = await measure(10);
const large = await measure(n);
const ms = (x: number) => `${x.toFixed(0)} ms`;
const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
const rows = [baseline, large].map(
  (r) =>
    `| ${r.n.toLocaleString('en-US')} | ${ms(r.page.stats)} | ${ms(r.page.rows)} | ${ms(r.page.firstPage)} | ${r.page.domRows} | ${ms(r.summary)} | ${ms(r.devices)} | ${r.page.jsTransferKiB.toFixed(1)} KiB |`,
);
const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
const section = [
  '<!-- bench:dashboard:start -->',
  '## Dashboard: the fleet page at fleet scale',
  '',
  `Command: \`pnpm build && pnpm bench:dashboard ${n}\` (bench/dashboard.bench.ts). Machine: ${cpu}, ${cpus().length} cores, Node ${process.version}; ${new Date().toISOString().slice(0, 10)}; took ${Math.round((Date.now() - startedAt) / 1000)} s.`,
  '',
  `The fleet server in its own process; ${n.toLocaleString('en-US')} enrolled devices connected as simulated agents (one process per core) and running a model after a 100% rollout; headless Chromium (Debian's) opening \`/\` signed in, a fresh context each time (nothing cached), median of ${RUNS} after one warm-up. Times from navigation start: the counts shown (GET /v1/fleet/summary), the first rows of the device list, its first page of 200 loaded. Baseline in the same run: the same page on a server with 10 devices. API times: median from Node, warm.`,
  '',
  '| devices | counts shown | first rows | first page of devices | rows in the DOM | GET /v1/fleet/summary | GET /v1/devices?limit=200 | JavaScript transferred |',
  '| ------- | ------------ | ---------- | --------------------- | --------------- | --------------------- | ------------------------- | ---------------------- |',
  ...rows,
  '',
  `At ${n.toLocaleString('en-US')} devices against 10: counts ${ratio(large.page.stats, baseline.page.stats)}, first rows ${ratio(large.page.rows, baseline.page.rows)}, fleet summary ${ratio(large.summary, baseline.summary)}. Budget: the fleet page shows its counts and first rows within 2 s at 10,000 devices on this machine; the DOM holds a few dozen rows whatever the fleet.`,
  '',
  `First load of the dashboard (index.html's scripts, gzip level 9): ${(size.jsGzip / 1024).toFixed(1)} KB of JavaScript (budget ${(DASHBOARD_BUDGET / 1024).toFixed(0)} KB), ${(size.cssGzip / 1024).toFixed(1)} KB of CSS; minified ${(size.jsMin / 1024).toFixed(1)} KB.`,
  '<!-- bench:dashboard:end -->',
].join('\n');
console.log(section);
await writeBenchmarkSection('dashboard', section);
if (size.jsGzip > DASHBOARD_BUDGET || large.page.rows > 2000) {
  console.error(`over budget: ${(size.jsGzip / 1024).toFixed(1)} KB of JavaScript, first rows after ${ms(large.page.rows)}`);
  process.exit(1);
}

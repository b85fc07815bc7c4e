/**
 * Driving the dashboard as its users do: real Chromium, the page served by the fleet server under
 * its CSP, signed in through the login form. Every page records console errors and CSP refusals
 * (a test ends by asserting there were none), runs axe-core on demand, and saves screenshots under
 * test/artifacts/dashboard/ (CI keeps them).
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { expect } from 'vitest';

export const ARTIFACTS = fileURLToPath(new URL('../artifacts/dashboard/', import.meta.url));
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

export interface DashboardPage {
  readonly page: Page;
  /** Console errors and CSP violations seen so far. */
  readonly problems: string[];
  /** A value set in the page's JavaScript: still there later proves the page never reloaded. */
  markNoReload(): Promise<void>;
  expectNotReloaded(): Promise<void>;
  accessibility(what: string): Promise<void>;
  screenshot(name: string): Promise<string>;
  close(): Promise<void>;
}

/** Opens `path` in a fresh context, signs in through the form with `token`, and lands on `path`. */
export async function openDashboard(browser: Browser, baseUrl: string, token: string, path = '/'): Promise<DashboardPage> {
  const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('console', (message) => {
    if (message.type() === 'error' || /Content Security Policy|Refused to/.test(message.text())) problems.push(message.text());
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.goto(`${baseUrl}${path}`);
  await page.waitForURL(/\/login\?next=/);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((url) => url.pathname + url.search === path || (path === '/' && url.pathname === '/'));
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    page,
    problems,
    async markNoReload() {
      await page.evaluate(() => {
        (window as unknown as { __edgefleetMark: number }).__edgefleetMark = 42;
      });
    },
    async expectNotReloaded() {
      expect(await page.evaluate(() => (window as unknown as { __edgefleetMark?: number }).__edgefleetMark)).toBe(42);
    },
    async accessibility(what) {
      // Evaluated through the DevTools protocol: the page's CSP (no inline scripts) stays in force.
      await page.evaluate(axeSource);
      const violations = await page.evaluate(async () => {
        const axe = (window as unknown as { axe: { run(context: Document, options: object): Promise<{ violations: unknown[] }> } }).axe;
        const result = await axe.run(document, { resultTypes: ['violations'] });
        return (result.violations as { id: string; impact: string; help: string; nodes: { target: string[] }[] }[]).map((v) => ({
          id: v.id,
          impact: v.impact,
          help: v.help,
          targets: v.nodes.slice(0, 3).map((n) => n.target.join(' ')),
        }));
      });
      const serious = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      expect(serious, `axe-core on ${what}`).toEqual([]);
    },
    async screenshot(name) {
      const file = join(ARTIFACTS, `${name}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
    async close() {
      await context.close();
    },
  };
}

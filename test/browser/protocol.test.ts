/**
 * The protocol package in a real browser: bundled for the browser platform (which fails on any
 * Node-only import), loaded into headless Chromium, and made to verify documents signed in Node
 * and sign documents that Node verifies.
 */
import { fileURLToPath } from 'node:url';
import { createTrust, type ManifestPayload, type SignedDocument, verifyManifest } from '@edgefleet/protocol';
import { createTestKeys, sampleSignedManifest, TEST_NOW } from '@edgefleet/test-utils/protocol';
import { build } from 'esbuild';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.ts';
import { type StaticServer, serveFiles } from '../helpers/static-server.ts';

const entry = fileURLToPath(new URL('../../packages/protocol/src/index.ts', import.meta.url));
const keys = createTestKeys();
const now = TEST_NOW + 1000;

let browser: Browser;
let server: StaticServer;
let page: Page;

beforeAll(async () => {
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    conditions: ['@edgefleet/source'],
    target: 'chrome120',
    write: false,
  });
  const code = bundle.outputFiles[0]?.text ?? '';
  server = await serveFiles({
    '/': { type: 'text/html', body: '<!doctype html><title>protocol</title>' },
    '/protocol.js': { type: 'text/javascript', body: code },
  });
  browser = await launchChromium();
  page = await browser.newPage();
  await page.goto(server.url);
  // A string, not a function: vitest rewrites dynamic import() inside functions for Node.
  await page.evaluate(`import('${server.url}/protocol.js').then((module) => { globalThis.ef = module; })`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** Runs protocol code in the page: `ef` is the bundled @edgefleet/protocol module. */
function inPage<A, R>(fn: (ef: typeof import('@edgefleet/protocol'), arg: A) => R, arg: A): Promise<R> {
  return page.evaluate(
    ([source, argument]) => {
      const ef = (globalThis as unknown as { ef: unknown }).ef;
      return new Function('ef', 'arg', `return (${source})(ef, arg);`)(ef, argument);
    },
    [fn.toString(), arg] as const,
  ) as Promise<R>;
}

describe('@edgefleet/protocol in headless Chromium', () => {
  it('verifies a manifest signed in Node', async () => {
    const signed = sampleSignedManifest(keys);
    const result = await inPage((ef, { signed, keySet, now }) => ef.verifyManifest(signed, ef.createTrust(keySet), { now }).version, {
      signed,
      keySet: keys.trust.keySet,
      now,
    });
    expect(result).toBe('5.0.0');
  });

  it('refuses a tampered manifest with the same code as Node', async () => {
    const signed = sampleSignedManifest(keys);
    const tampered = { ...signed, payload: { ...signed.payload, version: '6.0.0' } };
    const code = await inPage(
      (ef, { tampered, keySet, now }) => {
        try {
          ef.verifyManifest(tampered, ef.createTrust(keySet), { now });
          return 'accepted';
        } catch (error) {
          return (error as { code: string }).code;
        }
      },
      { tampered, keySet: keys.trust.keySet, now },
    );
    expect(code).toBe('EF_SIGNATURE_INVALID');
  });

  it('signs a manifest in the browser that Node verifies', async () => {
    const { signed, keySet } = await inPage(
      (ef, { manifest, now }) => {
        const key = ef.generateSigningKey();
        const keySet = ef.createKeySet({
          version: 1,
          now,
          roles: { root: { keys: [key] }, manifest: { keys: [key] }, 'desired-state': { keys: [key] } },
        });
        return { signed: ef.signManifest(manifest, [key]), keySet };
      },
      { manifest: sampleSignedManifest(keys).payload, now: TEST_NOW },
    );
    const verified = verifyManifest(signed as SignedDocument<ManifestPayload>, createTrust(keySet), { now });
    expect(verified.name).toBe('silero-vad');
  });
});

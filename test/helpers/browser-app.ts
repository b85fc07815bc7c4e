/**
 * Serves a browser app for the Chromium tests: one TypeScript entry bundled for the browser
 * (esbuild), a page whose import map points onnxruntime-web at its own dist/ (so it finds its
 * .wasm files beside it), and that dist/ folder.
 */
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { type StaticServer, serveFiles } from './static-server.ts';

const ortDist = dirname(fileURLToPath(import.meta.resolve('onnxruntime-web')));

/** Bundles `entry` and serves it at `scriptPath`, with the page at `/`. */
export async function serveBrowserApp(entry: string, scriptPath: string): Promise<StaticServer> {
  const bundle = await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    conditions: ['@edgefleet/source'],
    target: 'chrome120',
    write: false,
    external: ['onnxruntime-web/webgpu'],
  });
  return serveFiles(
    {
      '/': {
        type: 'text/html',
        body: '<!doctype html><title>edgefleet</title><script type="importmap">{"imports":{"onnxruntime-web/webgpu":"/ort/ort.webgpu.min.mjs"}}</script>',
      },
      [scriptPath]: { type: 'text/javascript', body: bundle.outputFiles[0]?.text ?? '' },
    },
    { '/ort/': ortDist },
  );
}

/**
 * The dashboard's production build: one small ES module graph (Preact, signals, uPlot and the
 * typed client, tree-shaken), hashed file names, written into the fleet server's package, which
 * serves it at /. `pnpm --filter @edgefleet/dashboard dev` serves it with hot reload and sends
 * /v1 to a running server (EDGEFLEET_URL, default http://127.0.0.1:8080).
 */
import { fileURLToPath } from 'node:url';
import { defaultClientConditions, defineConfig } from 'vite';

const server = process.env.EDGEFLEET_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  // Inside the workspace the client resolves from source, like everywhere else.
  resolve: { conditions: ['@edgefleet/source', ...defaultClientConditions] },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../fleet-server/dashboard/', import.meta.url)),
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: false,
    // No data: URIs and no inline scripts: everything loads from the server's origin (its CSP).
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  server: { proxy: { '/v1': { target: server, changeOrigin: true } } },
});

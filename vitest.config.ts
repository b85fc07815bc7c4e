import { defaultClientConditions, defaultServerConditions } from 'vite';
import { defineConfig } from 'vitest/config';

// Inside the workspace, packages resolve each other from source: every public package's `exports`
// has an `@edgefleet/source` condition pointing at src/*.ts, ahead of the built dist/ that is
// published (and tested from packed tarballs in test/consumer). So no build step comes before a
// unit test; the tests that start the CLIs or pack the packages build first (scripts/build.mjs).
const source = '@edgefleet/source';

export default defineConfig({
  resolve: { conditions: [source, ...defaultClientConditions] },
  ssr: { resolve: { conditions: [source, ...defaultServerConditions], externalConditions: [source, 'node'] } },
  test: {
    // A private PostgreSQL for the tests that run on it (EDGEFLEET_TEST_DATABASE_URL): the server
    // database contract, and the fleet server's whole suite a second time (below).
    globalSetup: ['test/setup/postgres.ts'],
    projects: [
      {
        extends: true,
        test: { name: 'edgefleet', include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'test/**/*.test.ts'] },
      },
      {
        // Every fleet server test again with the server on PostgreSQL (a database of its own per
        // test server): the same API on both stores, in every run (about 75 s).
        extends: true,
        test: {
          name: 'fleet-server-postgres',
          include: ['apps/fleet-server/src/**/*.test.ts'],
          // The database contract already runs on both stores; the rest never touch a database.
          exclude: [
            'apps/fleet-server/src/store/db.test.ts',
            'apps/fleet-server/src/broker/dynsec.test.ts',
            'apps/fleet-server/src/broker/packet-guard.test.ts',
            'apps/fleet-server/src/broker/retained-index.test.ts',
            'apps/fleet-server/src/config/index.test.ts',
            'apps/fleet-server/src/drift/webhook.test.ts',
            'apps/fleet-server/src/evaluation/dataset.test.ts',
            'apps/fleet-server/src/evaluation/metrics.test.ts',
            'apps/fleet-server/src/http/etag.test.ts',
            'apps/fleet-server/src/registry/model-check.test.ts',
            'apps/fleet-server/src/registry/onnx.test.ts',
            'apps/fleet-server/src/rollouts/decide.test.ts',
          ],
          env: { EDGEFLEET_TEST_SERVER_DATABASE: 'postgres' },
        },
      },
    ],
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
    // Two test files at a time: most of a file's time is waiting (child processes, brokers, a browser,
    // PostgreSQL), and vitest's default on 2 cores is one worker, which ran the suite file after file.
    maxWorkers: 2,
    testTimeout: 30_000,
  },
});

import { defineConfig } from 'vitest/config';

// One run for the whole workspace: unit tests beside the code in every package and app,
// cross-package end-to-end tests in test/. Packages resolve each other from source (their
// package.json `exports` point at src/*.ts), so no build step comes before a test.
export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    reporters: ['default', ['json', { outputFile: '.vitest/results.json' }]],
    testTimeout: 30_000,
  },
});

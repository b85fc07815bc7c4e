/** The client's types are generated from the server's OpenAPI document: CI fails when they are stale. */
import { describe, expect, it } from 'vitest';
import { generate, stale } from '../scripts/generate.ts';

describe('the generated contract', () => {
  it('matches the server’s OpenAPI document (else: pnpm --filter @edgefleet/client generate)', async () => {
    const generated = await generate();
    expect(await stale(generated), 'run `pnpm --filter @edgefleet/client generate` and commit the result').toEqual([]);
    // Generation is deterministic: the same server gives the same files.
    expect((await generate())['openapi.json']).toBe(generated['openapi.json']);
  }, 60_000);
});

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EdgefleetError, ERRORS, type ErrorCode, isEdgefleetError, renderErrorDocs } from './index.ts';

describe('error registry', () => {
  it('is documented: docs/errors.md equals the registry (run `pnpm docs:errors` after changing it)', () => {
    const docs = readFileSync(new URL('../../../../docs/errors.md', import.meta.url), 'utf8');
    expect(docs).toBe(renderErrorDocs());
  });

  it('gives every code an HTTP error status, a title and a fix that tells the reader what to do', () => {
    for (const [code, definition] of Object.entries(ERRORS)) {
      expect(code).toMatch(/^EF_[A-Z0-9_]+$/);
      expect(definition.status).toBeGreaterThanOrEqual(400);
      expect(definition.status).toBeLessThan(600);
      expect(definition.title.length).toBeGreaterThan(10);
      expect(definition.fix.length).toBeGreaterThan(20);
    }
  });

  it('carries the code, the status and the fix on the error', () => {
    const error = new EdgefleetError('EF_DOCUMENT_EXPIRED', 'manifest vad@1.0.0 expired at 2026-01-01T00:00:00Z', {
      details: { model: 'vad' },
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('EF_DOCUMENT_EXPIRED');
    expect(error.status).toBe(422);
    expect(error.message).toBe(
      `EF_DOCUMENT_EXPIRED: manifest vad@1.0.0 expired at 2026-01-01T00:00:00Z. ${ERRORS.EF_DOCUMENT_EXPIRED.fix}`,
    );
    expect(JSON.parse(JSON.stringify(error))).toEqual({ code: 'EF_DOCUMENT_EXPIRED', message: error.message, details: { model: 'vad' } });
    expect(isEdgefleetError(error, 'EF_DOCUMENT_EXPIRED' satisfies ErrorCode)).toBe(true);
    expect(isEdgefleetError(error, 'EF_SIGNATURE_INVALID')).toBe(false);
    expect(isEdgefleetError(new Error('x'))).toBe(false);
  });
});

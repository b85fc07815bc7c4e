import type { FastifyRequest } from 'fastify';
import { describe, expect, it } from 'vitest';
import { checkIfMatch, etagOf } from './etag.ts';

const request = (ifMatch?: string) => ({ headers: ifMatch === undefined ? {} : { 'if-match': ifMatch } }) as unknown as FastifyRequest;

describe('If-Match', () => {
  const current = etagOf({ tags: ['a'], status: 'active' });

  it('gives the same tag for the same state in any key order, another for another state', () => {
    expect(etagOf({ status: 'active', tags: ['a'] })).toBe(current);
    expect(etagOf({ tags: ['a', 'b'], status: 'active' })).not.toBe(current);
  });

  it('passes without the header, with *, with the tag alone or in a list', () => {
    expect(() => checkIfMatch(request(), current, 'x')).not.toThrow();
    expect(() => checkIfMatch(request('*'), current, 'x')).not.toThrow();
    expect(() => checkIfMatch(request(current), current, 'x')).not.toThrow();
    expect(() => checkIfMatch(request(`"other", ${current}`), current, 'x')).not.toThrow();
  });

  it('refuses another tag, and a weak one (strong comparison), with the current tag in the error', () => {
    expect(() => checkIfMatch(request('"other"'), current, 'device "d"')).toThrow(
      expect.objectContaining({ code: 'EF_PRECONDITION_FAILED', details: { etag: current } }),
    );
    expect(() => checkIfMatch(request(`W/${current}`), current, 'x')).toThrow(expect.objectContaining({ code: 'EF_PRECONDITION_FAILED' }));
  });
});

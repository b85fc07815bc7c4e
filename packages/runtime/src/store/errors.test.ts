import { describe, expect, it } from 'vitest';
import { storeError } from './errors.ts';

describe('storage errors', () => {
  it('reports a browser quota error as EF_STORE_FULL, naming the operation', () => {
    const quota = new DOMException('The quota has been exceeded.', 'QuotaExceededError');
    const error = storeError('commit an artifact', quota);
    expect(error).toMatchObject({ code: 'EF_STORE_FULL', details: { operation: 'commit an artifact' } });
    expect(error.message).toContain('commit an artifact: The quota has been exceeded.');
  });

  it('reports ENOSPC and EDQUOT as EF_STORE_FULL, anything else as EF_STORE_UNAVAILABLE', () => {
    expect(storeError('write', Object.assign(new Error('no space'), { code: 'ENOSPC' })).code).toBe('EF_STORE_FULL');
    expect(storeError('write', Object.assign(new Error('quota'), { code: 'EDQUOT' })).code).toBe('EF_STORE_FULL');
    expect(storeError('read', Object.assign(new Error('denied'), { code: 'EACCES' })).code).toBe('EF_STORE_UNAVAILABLE');
    expect(storeError('open', new DOMException('blocked', 'InvalidStateError')).code).toBe('EF_STORE_UNAVAILABLE');
  });
});

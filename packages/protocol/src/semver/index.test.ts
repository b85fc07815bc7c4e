import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareSemver, isSemver, parseSemver } from './index.ts';

describe('semver', () => {
  it('orders versions as semver.org §11 example does', () => {
    const ordered = [
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
      '2.0.0',
      '2.1.0',
      '2.1.1',
    ];
    for (let i = 0; i + 1 < ordered.length; i++) {
      expect(compareSemver(ordered[i] as string, ordered[i + 1] as string)).toBe(-1);
      expect(compareSemver(ordered[i + 1] as string, ordered[i] as string)).toBe(1);
    }
  });

  it('ignores build metadata for precedence', () => {
    expect(compareSemver('1.2.3+build.7', '1.2.3')).toBe(0);
  });

  it.each(['v1.0.0', '1.0', '01.0.0', '1.0.0-', '1.0.0-01', '', '1.0.0 ', '99999999999999999999.0.0'])('refuses %j', (text) => {
    expect(isSemver(text)).toBe(false);
    expect(() => parseSemver(text)).toThrow(expect.objectContaining({ code: 'EF_VERSION_INVALID' }));
  });

  it('is a total order consistent with its inverse', () => {
    const version = fc
      .tuple(fc.nat(20), fc.nat(20), fc.nat(20), fc.option(fc.constantFrom('alpha', 'beta.1', 'rc.2', '1')))
      .map(([a, b, c, pre]) => `${a}.${b}.${c}${pre ? `-${pre}` : ''}`);
    fc.assert(
      fc.property(version, version, (a, b) => {
        expect(compareSemver(a, b) + compareSemver(b, a)).toBe(0);
      }),
    );
  });
});

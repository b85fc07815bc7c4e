import { describe, expect, it } from 'vitest';
import { splitmix } from './random.ts';

describe('splitmix', () => {
  it('repeats a stream for a seed, in [0, 1), and gives nearby seeds unrelated streams', () => {
    const a = Array.from({ length: 1000 }, splitmix(7));
    expect(Array.from({ length: 1000 }, splitmix(7))).toEqual(a);
    expect(a.every((x) => x >= 0 && x < 1)).toBe(true);
    const b = Array.from({ length: 1000 }, splitmix(8));
    expect(a.filter((x, i) => x === b[i])).toHaveLength(0);
    // Roughly uniform: each tenth holds about a tenth.
    for (let bin = 0; bin < 10; bin++) {
      const share = a.filter((x) => Math.floor(x * 10) === bin).length / a.length;
      expect(share).toBeGreaterThan(0.06);
      expect(share).toBeLessThan(0.14);
    }
  });
});

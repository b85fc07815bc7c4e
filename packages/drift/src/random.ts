/**
 * splitmix32: a small, well-mixed, deterministic stream of numbers in [0, 1). Nearby seeds give
 * unrelated streams. For reproducible samples and simulations (the fleet simulator's telemetry,
 * the tests' data), never for anything secret.
 */
export function splitmix(seed: number): () => number {
  let state = seed | 0;
  return () => {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 2 ** 32;
  };
}

/**
 * Semantic Versioning 2.0.0 parsing and precedence (semver.org §9-§11). Model versions are
 * semver so that "older than what runs" (the rollback check) has one meaning everywhere.
 */
import { EdgefleetError } from '../errors/index.ts';

/** The grammar from semver.org, anchored; numeric identifiers without leading zeros. */
export const SEMVER_PATTERN =
  '^(0|[1-9]\\d*)\\.(0|[1-9]\\d*)\\.(0|[1-9]\\d*)(?:-((?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\\.(?:0|[1-9]\\d*|\\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\\+([0-9a-zA-Z-]+(?:\\.[0-9a-zA-Z-]+)*))?$';
const SEMVER = new RegExp(SEMVER_PATTERN);
/** Longest accepted version string; keeps the numbers within safe integers and topics short. */
export const SEMVER_MAX_LENGTH = 64;

export interface SemVer {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  readonly prerelease: readonly (string | number)[];
  readonly build: readonly string[];
}

export function parseSemver(text: string): SemVer {
  const match = text.length <= SEMVER_MAX_LENGTH ? SEMVER.exec(text) : null;
  if (!match) throw new EdgefleetError('EF_VERSION_INVALID', `"${text.slice(0, SEMVER_MAX_LENGTH)}" is not a semantic version`);
  const [major, minor, patch] = [match[1], match[2], match[3]].map(Number) as [number, number, number];
  if (![major, minor, patch].every(Number.isSafeInteger)) {
    throw new EdgefleetError('EF_VERSION_INVALID', `"${text}" has a number too large to compare exactly`);
  }
  const prerelease = match[4] ? match[4].split('.').map((id) => (/^\d+$/.test(id) ? Number(id) : id)) : [];
  return { major, minor, patch, prerelease, build: match[5] ? match[5].split('.') : [] };
}

export function isSemver(text: string): boolean {
  try {
    parseSemver(text);
    return true;
  } catch {
    return false;
  }
}

/** Precedence per semver.org §11: negative when a < b, 0 when equal (build metadata ignored). */
export function compareSemver(a: string, b: string): number {
  const x = parseSemver(a);
  const y = parseSemver(b);
  for (const key of ['major', 'minor', 'patch'] as const) {
    if (x[key] !== y[key]) return x[key] < y[key] ? -1 : 1;
  }
  // A version without pre-release fields has higher precedence than one with them.
  if (x.prerelease.length === 0 && y.prerelease.length === 0) return 0;
  if (x.prerelease.length === 0) return 1;
  if (y.prerelease.length === 0) return -1;
  const length = Math.max(x.prerelease.length, y.prerelease.length);
  for (let i = 0; i < length; i++) {
    const p = x.prerelease[i];
    const q = y.prerelease[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    // Numeric identifiers have lower precedence than alphanumeric ones.
    if (typeof p === 'number' && typeof q === 'number') return p < q ? -1 : 1;
    if (typeof p === 'number') return -1;
    if (typeof q === 'number') return 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

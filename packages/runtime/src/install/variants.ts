/**
 * Variants: several artifacts of one version (the reference, i.e. the manifest's own artifact, and
 * e.g. a float16 build for WebGPU, an int8 one for CPUs), all listed in the signed manifest.
 *
 * - A variant is a candidate when one of the execution providers it is built for is available here
 *   and it fits the device's size budget (`variants.maxBytes`); the reference always is.
 * - Candidates are tried best first: the one whose best provider stands earliest in the device's
 *   order (a real GPU before a CPU before a software adapter), then in the manifest's order (the
 *   publisher's preference), the reference after the variants it ties with.
 * - Each is checked like a version (loaded, acceptance-tested against the reference's golden
 *   outputs within the variant's own tolerance, providers measured); the first that passes serves,
 *   and a failure moves on to the next.
 */
import { type ManifestPayload, REFERENCE_VARIANT } from '@edgefleet/protocol';
import type { ProviderSelector } from '../engine/select.ts';

export interface VariantCandidate {
  /** The variant's name, REFERENCE_VARIANT for the manifest's own artifact. */
  readonly name: string;
  readonly sha256: string;
  readonly size: number;
  /** The manifest as this variant runs: its execution providers, and its tolerance in the acceptance test. */
  readonly manifest: ManifestPayload;
}

export interface VariantPlan {
  readonly candidates: readonly VariantCandidate[];
  /** Variants never tried, and why. */
  readonly skipped: readonly { readonly name: string; readonly reason: string }[];
}

/** The manifest as variant `name` runs (the manifest itself for the reference, or a name it does not list). */
export function variantManifest(manifest: ManifestPayload, name: string | undefined): ManifestPayload {
  const variant = name === undefined ? undefined : manifest.variants?.find((v) => v.name === name);
  if (!variant) return manifest;
  return {
    ...manifest,
    runtime: { ...manifest.runtime, executionProviders: variant.executionProviders },
    ...(manifest.acceptance ? { acceptance: { ...manifest.acceptance, tolerance: variant.tolerance } } : {}),
  };
}

export function planVariants(
  manifest: ManifestPayload,
  providers: Pick<ProviderSelector, 'rank'>,
  options: { readonly maxBytes?: number } = {},
): VariantPlan {
  const skipped: { name: string; reason: string }[] = [];
  const ranked: { candidate: VariantCandidate; rank: number }[] = [];
  for (const variant of manifest.variants ?? []) {
    const rank = providers.rank(variant.executionProviders);
    if (rank === Number.POSITIVE_INFINITY) {
      skipped.push({ name: variant.name, reason: `none of ${variant.executionProviders.join(', ')} is available here` });
    } else if (options.maxBytes !== undefined && variant.size > options.maxBytes) {
      skipped.push({ name: variant.name, reason: `${variant.size} bytes, over this device's budget of ${options.maxBytes}` });
    } else {
      ranked.push({
        candidate: { name: variant.name, sha256: variant.sha256, size: variant.size, manifest: variantManifest(manifest, variant.name) },
        rank,
      });
    }
  }
  ranked.push({
    candidate: { name: REFERENCE_VARIANT, sha256: manifest.artifact.sha256, size: manifest.artifact.size, manifest },
    rank: providers.rank(manifest.runtime.executionProviders),
  });
  // Stable: among equals, the manifest's order, the reference last.
  ranked.sort((a, b) => (a.rank === b.rank ? 0 : a.rank < b.rank ? -1 : 1));
  return { candidates: ranked.map((r) => r.candidate), skipped };
}

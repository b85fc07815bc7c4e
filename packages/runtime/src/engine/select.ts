/**
 * Execution-provider choice (the runtime's `resolveBackend`): which engine and provider a version
 * serves on.
 *
 * - Candidates are the providers the manifest allows, in the device's order (engines as given,
 *   each engine's providers most preferred first), a software adapter (WebGPU's
 *   `isFallbackAdapter`: SwiftShader) ranked after every real one.
 * - Each candidate is loaded and acceptance-tested; one that is unavailable, fails to load or fails
 *   the test is passed over with its reason.
 * - When more than one passes, they are measured on the golden inputs (interleaved rounds, p50)
 *   and the fastest serves, but a later one only when it beats the first that passed by the margin
 *   (at the median and at its best run: a burst of load at install must not decide).
 *   Without golden inputs nothing can be measured: the first that passes serves.
 * - Each candidate's verdict and p50 are returned (the `activated` event and reported state carry
 *   them), with a fingerprint of what the device offered: a restore re-decides only when that
 *   fingerprint changed, and otherwise goes straight to the provider that was chosen, untested.
 */
import {
  EdgefleetError,
  type ExecutionProvider,
  type GoldenVector,
  type ManifestPayload,
  type ProviderMeasurement,
} from '@edgefleet/protocol';
import { runAcceptance } from '../acceptance/index.ts';
import { p50, vectorFeeds } from '../acceptance/latency.ts';
import type { ProviderChoicePolicy } from '../defaults.ts';
import type { Emitter } from '../events/index.ts';
import { LiveSession } from '../runtime/live-session.ts';
import type { RuntimeEvents } from '../runtime/types.ts';
import type { Engine, EngineSession, Feeds, ProviderAvailability } from './types.ts';

export interface Provider {
  readonly engine: Engine;
  readonly availability: ProviderAvailability;
}

export interface ChosenProvider {
  readonly live: LiveSession;
  readonly executionProvider: ExecutionProvider;
  /** Every candidate's verdict, in the device's order (what `activated` reports). */
  readonly providers: readonly ProviderMeasurement[];
  /** What the device offered for this manifest when the choice was made. */
  readonly fingerprint: string;
  /** False when a restore went straight to the provider chosen before (nothing re-tested). */
  readonly decided: boolean;
}

export interface ChooseOptions {
  /** The golden vectors, loaded only when an acceptance test or a measurement needs them. */
  readonly loadVectors: () => Promise<readonly GoldenVector[]>;
  /**
   * Restore and rollback: the provider this version passed on before, with its recorded verdicts.
   * Tried first and not tested again, so a cold start costs no extra inference; when it cannot be
   * loaded any more the choice is made afresh.
   */
  readonly previous?: { readonly executionProvider: ExecutionProvider; readonly providers?: readonly ProviderMeasurement[] };
  /** The variant being chosen for (see install/variants.ts): named in the acceptance events. */
  readonly variant?: string;
}

export interface ProviderSelector {
  /** What the device offers for these providers: engines, availability, adapters. */
  fingerprint(allowed: readonly ExecutionProvider[]): string;
  /**
   * Where the best provider available here among `allowed` stands in the device's order (real
   * adapters before a software one): 0 is the device's first choice; Infinity when none is available.
   */
  rank(allowed: readonly ExecutionProvider[]): number;
  choose(manifest: ManifestPayload, bytes: Uint8Array, options: ChooseOptions): Promise<ChosenProvider>;
}

interface Passed {
  readonly provider: Provider;
  readonly session: EngineSession;
  readonly measurement: { -readonly [K in keyof ProviderMeasurement]: ProviderMeasurement[K] };
  /** Its fastest measured run, in ms. */
  best?: number;
}

export function createProviderSelector(
  providers: readonly Provider[],
  policy: ProviderChoicePolicy,
  events: Pick<Emitter<RuntimeEvents>, 'emit'>,
  clock: () => number = () => performance.now(),
): ProviderSelector {
  // Session creation one at a time across models: onnxruntime-web initializes its backends lazily
  // and a second creation racing the first can fail.
  let creating: Promise<unknown> = Promise.resolve();
  function createSessionExclusively(engine: Engine, bytes: Uint8Array, ep: ExecutionProvider): Promise<EngineSession> {
    const next = creating.catch(() => undefined).then(() => engine.createSession(bytes, ep));
    creating = next;
    return next;
  }

  function candidatesFor(allowed: readonly ExecutionProvider[]): Provider[] {
    return providers.filter((p) => allowed.includes(p.availability.executionProvider));
  }

  function fingerprint(allowed: readonly ExecutionProvider[]): string {
    return candidatesFor(allowed)
      .map(({ engine, availability: a }) =>
        [
          engine.name,
          a.executionProvider,
          a.available ? 'available' : 'unavailable',
          a.fallbackAdapter ? 'fallback-adapter' : '',
          a.description ?? '',
        ]
          .filter(Boolean)
          .join(':'),
      )
      .join(',');
  }

  /** The device's order: engines as given, each engine's providers most preferred first, software adapters last. */
  const ordered = [...providers].sort(
    (a, b) => Number(a.availability.fallbackAdapter ?? false) - Number(b.availability.fallbackAdapter ?? false),
  );

  function rank(allowed: readonly ExecutionProvider[]): number {
    const at = ordered.findIndex((p) => p.availability.available && allowed.includes(p.availability.executionProvider));
    return at < 0 ? Number.POSITIVE_INFINITY : at;
  }

  /**
   * The model must have the inputs its manifest declares, whatever provider loaded it: a mismatch
   * is the release's fault, so it fails the choice outright instead of trying another provider.
   */
  async function checkInputs(manifest: ManifestPayload, session: EngineSession): Promise<void> {
    const missing = manifest.model.inputs.map((t) => t.name).filter((n) => !session.inputNames.includes(n));
    if (missing.length === 0) return;
    await session.release();
    throw new EdgefleetError(
      'EF_MODEL_INVALID',
      `${manifest.name}@${manifest.version}: the model has no input(s) ${missing.join(', ')} that the manifest declares`,
    );
  }

  /**
   * p50 of each session on the golden inputs: rounds of one run each, the order rotating so none
   * always runs on a warmer cache. Rounds stop at `runs`, or past the budget after three; a
   * provider ten times slower than the best after three rounds is not run further (a software
   * adapter at 500 ms a run would otherwise take the whole budget). The acceptance test ran every
   * input on every session just before: they are warm.
   */
  async function measure(passed: readonly Passed[], feeds: readonly Feeds[]): Promise<void> {
    const times = passed.map((): number[] => []);
    const started = clock();
    for (let round = 0; round < policy.runs; round++) {
      const best = Math.min(...times.map((t) => (t.length > 0 ? p50(t) : Number.POSITIVE_INFINITY)));
      for (let k = 0; k < passed.length; k++) {
        const i = (k + round) % passed.length;
        const own = times[i] as number[];
        if (round >= 3 && p50(own) > 10 * best) continue;
        const input = feeds[round % feeds.length] as Feeds;
        const at = clock();
        await (passed[i] as Passed).session.run(input);
        own.push(clock() - at);
      }
      if (round >= 2 && clock() - started > policy.budgetMs) break;
    }
    passed.forEach((p, i) => {
      const own = times[i] as number[];
      p.measurement.p50Ms = Math.round(p50(own) * 1000) / 1000;
      p.best = Math.min(...own);
    });
  }

  /**
   * The first that passed serves unless a later one beats it by the margin, at the median and at
   * its best run alike (then the fastest such): an install measured while the device is busy (a
   * native engine's threads competing with the app for two cores) must not move a model off the
   * provider the device prefers on a passing burst of load.
   */
  function pick(passed: readonly Passed[]): Passed {
    const first = passed[0] as Passed;
    const p50Of = (p: Passed) => p.measurement.p50Ms ?? Number.POSITIVE_INFINITY;
    const bestOf = (p: Passed) => p.best ?? Number.POSITIVE_INFINITY;
    const better = passed.filter((p) => p50Of(p) * policy.margin < p50Of(first) && bestOf(p) * policy.margin < bestOf(first));
    return better.reduce((a, b) => (p50Of(b) < p50Of(a) ? b : a), first);
  }

  async function choose(manifest: ManifestPayload, bytes: Uint8Array, options: ChooseOptions): Promise<ChosenProvider> {
    const model = { name: manifest.name, version: manifest.version };
    const variantOf = options.variant !== undefined ? { variant: options.variant } : {};
    const allowed = manifest.runtime.executionProviders;
    const candidates = candidatesFor(allowed);
    const print = fingerprint(allowed);
    const reasons: string[] = [];
    const verdicts = new Map<Provider, ProviderMeasurement>();
    let loadError: EdgefleetError | undefined;
    const loadFailed = (provider: Provider, error: unknown) => {
      const ep = provider.availability.executionProvider;
      loadError ??= error instanceof EdgefleetError ? error : new EdgefleetError('EF_MODEL_INVALID', String(error), { cause: error });
      reasons.push(`${ep}: ${(error as Error).message}`);
      verdicts.set(provider, verdict(provider, false, (error as Error).message));
    };

    const previous = options.previous;
    const again =
      previous && candidates.find((p) => p.availability.executionProvider === previous.executionProvider && p.availability.available);
    if (previous && again) {
      let session: EngineSession | undefined;
      try {
        session = await createSessionExclusively(again.engine, bytes, previous.executionProvider);
      } catch (error) {
        loadFailed(again, error); // it served here before: choose afresh among the others
      }
      if (session) {
        await checkInputs(manifest, session);
        return {
          live: new LiveSession(session, again.engine.name),
          executionProvider: previous.executionProvider,
          providers: previous.providers ?? [verdict(again, true)],
          fingerprint: print,
          decided: false,
        };
      }
    }

    const ranked = [...candidates].sort(
      (a, b) => Number(a.availability.fallbackAdapter ?? false) - Number(b.availability.fallbackAdapter ?? false),
    );
    let vectors: readonly GoldenVector[] | undefined;
    const passed: Passed[] = [];
    let acceptanceFailures = 0;
    try {
      for (const provider of ranked) {
        if (verdicts.has(provider)) continue;
        const ep = provider.availability.executionProvider;
        if (!provider.availability.available) {
          const reason = provider.availability.reason ?? 'unavailable';
          reasons.push(`${ep}: ${reason}`);
          verdicts.set(provider, verdict(provider, false, reason));
          continue;
        }
        let session: EngineSession;
        try {
          session = await createSessionExclusively(provider.engine, bytes, ep);
        } catch (error) {
          loadFailed(provider, error);
          continue;
        }
        await checkInputs(manifest, session);
        if (manifest.acceptance) {
          try {
            vectors ??= await options.loadVectors();
          } catch (error) {
            await session.release();
            throw error;
          }
          const result = await runAcceptance(session, vectors, manifest.acceptance.tolerance);
          if (!result.passed) {
            acceptanceFailures++;
            const reason = result.reason ?? 'outputs differ';
            events.emit('acceptance-failed', { model, executionProvider: ep, reason, ...variantOf });
            reasons.push(`${ep}: acceptance test failed: ${reason}`);
            verdicts.set(provider, verdict(provider, false, `acceptance test failed: ${reason}`));
            await session.release();
            continue;
          }
          events.emit('acceptance-passed', {
            model,
            executionProvider: ep,
            maxAbsoluteError: result.maxAbsoluteError,
            ...variantOf,
          });
        }
        const measurement = { ...verdict(provider, true) };
        verdicts.set(provider, measurement);
        passed.push({ provider, session, measurement });
        // Nothing to measure with (no golden inputs, or measuring turned off): the first that passes serves.
        if (!vectors || vectors.length === 0 || policy.runs <= 0) break;
      }
      if (passed.length > 1) await measure(passed, vectorFeeds(vectors ?? []));
    } catch (error) {
      await Promise.all(passed.map((p) => p.session.release()));
      throw error;
    }

    if (passed.length === 0) {
      const detail = `${model.name}@${model.version}: ${reasons.join('; ') || `none of ${allowed.join(', ')} is offered by this device's engines`}`;
      if (acceptanceFailures > 0) throw new EdgefleetError('EF_ACCEPTANCE_FAILED', detail, { details: { reasons } });
      if (loadError) throw new EdgefleetError('EF_MODEL_INVALID', detail, { cause: loadError, details: { reasons } });
      throw new EdgefleetError('EF_ENGINE_UNAVAILABLE', detail, { details: { reasons, allowed } });
    }
    const chosen = pick(passed);
    await Promise.all(passed.filter((p) => p !== chosen).map((p) => p.session.release()));
    for (const p of passed) {
      if (p !== chosen && p.measurement.p50Ms !== undefined) {
        const ep = p.provider.availability.executionProvider;
        const why = `${ep}${p.provider.availability.fallbackAdapter ? ' (software adapter)' : ''}: measured p50 ${p.measurement.p50Ms} ms against ${chosen.measurement.p50Ms} ms on ${chosen.provider.availability.executionProvider}`;
        p.measurement.reason = why.slice(0, 300);
        reasons.push(why);
      }
    }
    const ep = chosen.provider.availability.executionProvider;
    const first = candidates[0]?.availability.executionProvider;
    if (first !== undefined && first !== ep) {
      events.emit('execution-provider-fallback', { model, from: first, to: ep, reason: reasons.join('; ') });
    }
    return {
      live: new LiveSession(chosen.session, chosen.provider.engine.name),
      executionProvider: ep,
      providers: candidates.flatMap((p) => verdicts.get(p) ?? []),
      fingerprint: print,
      decided: true,
    };
  }

  return { fingerprint, rank, choose };
}

function verdict({ engine, availability }: Provider, passed: boolean, reason?: string): ProviderMeasurement {
  return {
    executionProvider: availability.executionProvider,
    engine: engine.name.slice(0, 100),
    passed,
    ...(availability.fallbackAdapter ? { fallbackAdapter: true } : {}),
    ...(reason !== undefined ? { reason: reason.slice(0, 300) } : {}),
  };
}

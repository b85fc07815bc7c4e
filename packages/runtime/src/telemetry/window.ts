/**
 * The telemetry window of one model version: every run folds in, nothing of the inputs is kept.
 *
 * - latency: a numeric profile over fixed millisecond edges (the same on every device, so windows
 *   merge and histograms compare), plus its sketch for percentiles;
 * - errors: counts by code;
 * - inputs: per input tensor, summary features of each run's values: `<name>.mean`, `<name>.std`,
 *   `<name>.energy` (mean of squares), over at most 4,096 evenly strided values; string tensors:
 *   their values as categories (`<name>`);
 * - outputs: per output tensor, a class distribution when it looks like class scores (last
 *   dimension 2-64: `<name>.class`, the argmax of each row, and `<name>.top`, its score), else the
 *   same summary features as inputs.
 *
 * Those are the defaults. A manifest with a `telemetry` section names its features instead
 * (tabular columns by index, summaries, classes with labels, top scores: see the protocol's
 * TelemetryFeature), and keeps the defaults for tensors no feature reads only when it says
 * `defaults: true`.
 */
import { categoricalProfile, type FeatureProfile, numericProfile, observe, toWire, type WireProfile } from '@edgefleet/drift';
import type { ErrorCode, TelemetryFeature, TelemetrySpec } from '@edgefleet/protocol';
import type { Feeds, Outputs, RuntimeTensor } from '../engine/types.ts';
import type { Comparison } from '../shadow/compare.ts';

/** Latency bin edges in ms: 0.1 ms to 10 s, about three per decade. */
export const LATENCY_EDGES_MS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000] as const;

/** Sketch size for per-run features: a window holds few enough runs that k = 100 keeps it small. */
const FEATURE_K = 100;

export interface ClosedWindow {
  readonly model: { readonly name: string; readonly version: string };
  /** ISO timestamps: [start, end). */
  readonly start: string;
  readonly end: string;
  readonly runs: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly latencyMs: WireProfile;
  /** As the protocol's telemetry message carries them (the agent adds device, boot and sequence). */
  readonly features: readonly { readonly name: string; readonly profile: WireProfile }[];
  /** A candidate run in shadow beside this version, when one ran or was sampled. */
  readonly shadow?: ShadowWindow;
}

/** The shadow summary of a window (the protocol's ShadowSummary). */
export interface ShadowWindow {
  readonly version: string;
  readonly runs: number;
  readonly skipped: number;
  readonly errors: number;
  readonly rows: number;
  readonly agreed: number;
  readonly overlap: number;
  readonly elements: number;
  readonly maxAbsDiff: number;
  readonly absDiffSum: number;
  readonly latencyRatio: WireProfile;
}

/** Latency ratio bin edges (candidate over active): the same on every device, so windows merge. */
export const LATENCY_RATIO_EDGES = [0.25, 0.5, 0.8, 0.9, 1, 1.1, 1.25, 1.5, 2, 3, 5, 10] as const;

/** Values read per tensor for its summary: a large tensor is read at an even stride. */
export const SUMMARY_SAMPLE = 4096;

/**
 * Mean and mean of squares of a numeric tensor's finite values, over at most SUMMARY_SAMPLE of
 * them (every k-th for a larger tensor: a 160×160×3 image costs what 4,096 values cost).
 */
function summary(data: Exclude<RuntimeTensor['data'], readonly string[]>): { mean: number; squares: number; counted: number } {
  const stride = Math.max(1, Math.ceil(data.length / SUMMARY_SAMPLE));
  let sum = 0;
  let sumSquares = 0;
  let counted = 0;
  if (data instanceof BigInt64Array || data instanceof BigUint64Array) {
    for (let i = 0; i < data.length; i += stride) {
      const x = Number(data[i]);
      sum += x;
      sumSquares += x * x;
      counted++;
    }
  } else {
    const values = data as ArrayLike<number>;
    for (let i = 0; i < values.length; i += stride) {
      const x = values[i] as number;
      // x - x is NaN for NaN and ±Infinity: one comparison keeps only finite values.
      if (x - x !== 0) continue;
      sum += x;
      sumSquares += x * x;
      counted++;
    }
  }
  return counted === 0 ? { mean: 0, squares: 0, counted } : { mean: sum / counted, squares: sumSquares / counted, counted };
}

type NumericData = Exclude<RuntimeTensor['data'], readonly string[]>;

function numberAt(data: NumericData, i: number): number {
  return Number(data[i]);
}

/** Rows of a tensor whose last dimension is `width`, at most SUMMARY_SAMPLE of them (evenly strided). */
function rowsOf(tensor: RuntimeTensor): { width: number; rows: number; stride: number } {
  const width = Math.max(1, tensor.shape.length === 0 ? 1 : (tensor.shape.at(-1) as number));
  const rows = Math.floor(tensor.data.length / width);
  return { width, rows, stride: Math.max(1, Math.ceil(rows / SUMMARY_SAMPLE)) };
}

/** Class indexes as category names, made once (not a new string per row). */
const CLASS_NAMES = Array.from({ length: 64 }, (_, i) => String(i));

export class WindowProfile {
  private runs = 0;
  private readonly errors: Record<string, number> = Object.create(null) as Record<string, number>;
  private readonly latency = numericProfile({ k: FEATURE_K, edges: LATENCY_EDGES_MS });
  private readonly features = new Map<string, FeatureProfile>();
  /** Per tensor name, its summary profiles (created as first needed). */
  private readonly summaries = new Map<string, { mean: FeatureProfile; std?: FeatureProfile; energy?: FeatureProfile }>();
  /** Per output name, its class and top-score profiles. */
  private readonly classes = new Map<string, { labels: FeatureProfile; top: FeatureProfile }>();
  /**
   * Observations not yet folded into their profiles, as (profile, value) pairs: a run only pushes
   * here, and `drain()` (scheduled by the runtime off the run's path, and run by `close()`) does
   * the sketch updates, so they never add to a run's latency.
   */
  private numericProfiles: FeatureProfile[] = [];
  /** Numbers only, so the array stays unboxed doubles (no allocation per value). */
  private numericValues: number[] = [];
  private labelProfiles: FeatureProfile[] = [];
  private labelValues: string[] = [];

  /** Declared features, and the tensors they read (`input:name`, `output:name`). */
  private readonly declared: readonly TelemetryFeature[] | undefined;
  private readonly read = new Set<string>();
  private readonly defaults: boolean;
  private isClosed = false;
  private shadow:
    | {
        version: string;
        runs: number;
        skipped: number;
        errors: number;
        rows: number;
        agreed: number;
        overlap: number;
        elements: number;
        maxAbsDiff: number;
        absDiffSum: number;
        latencyRatio: FeatureProfile;
      }
    | undefined;

  constructor(
    readonly model: { readonly name: string; readonly version: string },
    readonly start: number,
    spec?: TelemetrySpec,
  ) {
    this.declared = spec?.features;
    this.defaults = !spec || spec.defaults === true;
    for (const feature of spec?.features ?? []) this.read.add(`${feature.source}:${feature.tensor}`);
  }

  /** A run that answered: its inputs and outputs. */
  recordRun(feeds: Feeds, outputs: Outputs, latencyMs: number): void {
    this.recordInputs(feeds);
    this.recordOutputs(outputs, latencyMs);
  }

  /**
   * A run's inputs, folded in as the run starts (as the model sees them: an app may reuse its
   * buffers once the run answers). The run itself is counted by `recordOutputs` or `recordError`.
   */
  recordInputs(feeds: Feeds): void {
    if (this.declared) {
      for (const feature of this.declared) {
        if (feature.source !== 'input') continue;
        const tensor = feeds[feature.tensor];
        if (tensor && tensor.data.length > 0) this.recordFeature(feature, tensor);
      }
      if (!this.defaults) return;
    }
    for (const name in feeds) if (!this.read.has(`input:${name}`)) this.summarize(name, feeds[name] as RuntimeTensor);
  }

  /** What a run answered, and how long it took. */
  recordOutputs(outputs: Outputs, latencyMs: number): void {
    this.runs++;
    this.num(this.latency, latencyMs);
    if (this.declared) {
      for (const feature of this.declared) {
        if (feature.source !== 'output') continue;
        const tensor = outputs[feature.tensor];
        if (tensor && tensor.data.length > 0) this.recordFeature(feature, tensor);
      }
      if (!this.defaults) return;
    }
    for (const name in outputs) {
      if (this.read.has(`output:${name}`)) continue;
      const tensor = outputs[name] as RuntimeTensor;
      const classes = tensor.shape.at(-1) ?? 0;
      if (typeof tensor.data[0] === 'number' && classes >= 2 && classes <= 64 && tensor.data.length % classes === 0) {
        this.recordClasses(name, tensor.data as ArrayLike<number>, classes);
      } else {
        this.summarize(name, tensor);
      }
    }
  }

  /** A run that answered, whose features are not profiled (time sampling of a fast model). */
  recordLatency(latencyMs: number): void {
    this.runs++;
    this.num(this.latency, latencyMs);
  }

  /** A run that failed, by its error code. */
  recordError(code: ErrorCode, latencyMs: number): void {
    this.runs++;
    this.errors[code] = (this.errors[code] ?? 0) + 1;
    this.num(this.latency, latencyMs);
  }

  /** Observations waiting to be folded in. */
  get pendingCount(): number {
    return this.numericProfiles.length + this.labelProfiles.length;
  }

  private num(profile: FeatureProfile, value: number): void {
    this.numericProfiles.push(profile);
    this.numericValues.push(value);
  }

  private label(profile: FeatureProfile, value: string): void {
    this.labelProfiles.push(profile);
    this.labelValues.push(value);
  }

  /** Folds the waiting observations into their profiles. */
  drain(): void {
    const [profiles, values, labelProfiles, labels] = [this.numericProfiles, this.numericValues, this.labelProfiles, this.labelValues];
    this.numericProfiles = [];
    this.numericValues = [];
    this.labelProfiles = [];
    this.labelValues = [];
    for (let i = 0; i < profiles.length; i++) observe(profiles[i] as FeatureProfile, values[i] as number);
    for (let i = 0; i < labelProfiles.length; i++) observe(labelProfiles[i] as FeatureProfile, labels[i] as string);
  }

  /** Nothing to send: no run, and no shadow sample (a shadow run may land after its live run's window closed). */
  get empty(): boolean {
    return this.runs === 0 && this.shadow === undefined;
  }

  /** True once closed: a run that started in it and answers later goes to the next window. */
  get closed(): boolean {
    return this.isClosed;
  }

  private shadowOf(version: string) {
    if (this.shadow?.version !== version) {
      this.shadow = {
        version,
        runs: 0,
        skipped: 0,
        errors: 0,
        rows: 0,
        agreed: 0,
        overlap: 0,
        elements: 0,
        maxAbsDiff: 0,
        absDiffSum: 0,
        latencyRatio: numericProfile({ k: FEATURE_K, edges: LATENCY_RATIO_EDGES }),
      };
    }
    return this.shadow;
  }

  /** A shadow run of candidate `version` on an input this version answered: how it compared, and its latency over ours. */
  recordShadow(
    version: string,
    outcome: { readonly compared: Comparison; readonly latencyRatio: number } | { readonly failed: true } | { readonly skipped: true },
  ): void {
    const shadow = this.shadowOf(version);
    if ('skipped' in outcome) {
      shadow.skipped++;
      return;
    }
    if ('failed' in outcome) {
      shadow.errors++;
      return;
    }
    const { compared } = outcome;
    shadow.runs++;
    shadow.rows += compared.rows;
    shadow.agreed += compared.agreed;
    shadow.overlap += compared.overlap;
    shadow.elements += compared.elements;
    shadow.maxAbsDiff = Math.min(Number.MAX_VALUE, Math.max(shadow.maxAbsDiff, compared.maxAbsDiff));
    shadow.absDiffSum = Math.min(Number.MAX_VALUE, shadow.absDiffSum + compared.absDiffSum);
    observe(shadow.latencyRatio, outcome.latencyRatio);
  }

  close(end: number): ClosedWindow {
    this.isClosed = true;
    this.drain();
    const shadow = this.shadow;
    return {
      ...(shadow ? { shadow: { ...shadow, latencyRatio: toWire(shadow.latencyRatio) } } : {}),
      model: this.model,
      start: new Date(this.start).toISOString(),
      end: new Date(end).toISOString(),
      runs: this.runs,
      errors: { ...this.errors },
      latencyMs: toWire(this.latency),
      features: [...this.features].map(([name, profile]) => ({ name, profile: toWire(profile) })),
    };
  }

  private feature(name: string, kind: 'numeric' | 'categorical'): FeatureProfile {
    let profile = this.features.get(name);
    if (!profile) {
      profile = kind === 'numeric' ? numericProfile({ k: FEATURE_K }) : categoricalProfile();
      this.features.set(name, profile);
    }
    return profile;
  }

  private summarize(name: string, tensor: RuntimeTensor): void {
    const data = tensor.data;
    if (data.length === 0) return;
    if (typeof data[0] === 'string') {
      const labels = this.feature(name, 'categorical');
      for (const value of data as readonly string[]) this.label(labels, value);
      return;
    }
    const { mean, squares, counted } = summary(data as Exclude<RuntimeTensor['data'], readonly string[]>);
    // The tensor's profiles are looked up once per window, not by a name built on every run.
    let profiles = this.summaries.get(name);
    if (!profiles) {
      profiles = { mean: this.feature(`${name}.mean`, 'numeric') };
      this.summaries.set(name, profiles);
    }
    if (counted === 0) {
      this.num(profiles.mean, Number.NaN);
      return;
    }
    profiles.std ??= this.feature(`${name}.std`, 'numeric');
    profiles.energy ??= this.feature(`${name}.energy`, 'numeric');
    this.num(profiles.mean, mean);
    this.num(profiles.std, Math.sqrt(Math.max(0, squares - mean * mean)));
    this.num(profiles.energy, squares);
  }

  /** One declared feature's values from one run. */
  private recordFeature(feature: TelemetryFeature, tensor: RuntimeTensor): void {
    const data = tensor.data;
    const strings = typeof data[0] === 'string';
    if (feature.kind === 'summary') {
      if (strings) return;
      const { mean, squares, counted } = summary(data as NumericData);
      const value =
        counted === 0
          ? Number.NaN
          : feature.stat === 'mean'
            ? mean
            : feature.stat === 'energy'
              ? squares
              : Math.sqrt(Math.max(0, squares - mean * mean));
      this.num(this.feature(feature.name, 'numeric'), value);
      return;
    }
    const { width, rows, stride } = rowsOf(tensor);
    if (feature.kind === 'column') {
      const index = feature.index ?? 0;
      if (index >= width) return;
      const categorical = feature.type === 'categorical' || strings;
      const profile = this.feature(feature.name, categorical ? 'categorical' : 'numeric');
      for (let row = 0; row < rows; row += stride) {
        const at = row * width + index;
        if (strings) {
          this.label(profile, (data as readonly string[])[at] as string);
        } else if (categorical) {
          const code = numberAt(data as NumericData, at);
          this.label(profile, feature.labels?.[code] ?? String(code));
        } else {
          this.num(profile, numberAt(data as NumericData, at));
        }
      }
      return;
    }
    if (strings) return;
    const profile = this.feature(feature.name, feature.kind === 'class' ? 'categorical' : 'numeric');
    for (let row = 0; row < rows; row += stride) {
      const base = row * width;
      let best = 0;
      let top = numberAt(data as NumericData, base);
      for (let c = 1; c < width; c++) {
        const score = numberAt(data as NumericData, base + c);
        if (score > top) {
          top = score;
          best = c;
        }
      }
      if (feature.kind === 'top') this.num(profile, top);
      else this.label(profile, feature.labels?.[best] ?? String(best));
    }
  }

  private recordClasses(name: string, scores: ArrayLike<number>, classes: number): void {
    let profiles = this.classes.get(name);
    if (!profiles) {
      profiles = { labels: this.feature(`${name}.class`, 'categorical'), top: this.feature(`${name}.top`, 'numeric') };
      this.classes.set(name, profiles);
    }
    const { labels, top } = profiles;
    for (let row = 0; row + classes <= scores.length; row += classes) {
      let best = 0;
      for (let c = 1; c < classes; c++) if ((scores[row + c] as number) > (scores[row + best] as number)) best = c;
      this.label(labels, CLASS_NAMES[best] ?? String(best));
      this.num(top, scores[row + best] as number);
    }
  }
}

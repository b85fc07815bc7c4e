/**
 * Dynamic int8 quantization of an ONNX model, in TypeScript over the protobuf (no Python on the
 * server), as onnxruntime's quantize_dynamic does it for MatMul and Gemm with constant weights:
 *
 *   y = MatMul(x, W)   becomes   x_q, x_scale, x_zero = DynamicQuantizeLinear(x)
 *                                acc = MatMulInteger(x_q, W_q, x_zero, 0)
 *                                y   = Cast(acc, float) · (x_scale · W_scale)
 *
 * W_q is int8, symmetric (zero point 0), with one scale per output column (per channel: a column
 * of small weights keeps its precision beside a column of large ones). A Gemm (transA = 0) becomes
 * the same with B transposed when transB says so, alpha folded into the scales and beta · C added.
 * Activations are quantized at run time from their own range (uint8, DynamicQuantizeLinear), so no
 * calibration data is needed. The rest of the file (other nodes, initializers, metadata, opsets,
 * fields this code does not know) is copied byte for byte.
 *
 * Field numbers are those of onnx/onnx.proto.
 */
import { EdgefleetError } from '@edgefleet/protocol';

export interface QuantizeResult {
  readonly bytes: Uint8Array;
  /** The MatMul and Gemm nodes rewritten. */
  readonly quantized: number;
  /** Nodes of those types left in float, and why (weights computed at run time, a transposed A...). */
  readonly skipped: readonly { readonly node: string; readonly reason: string }[];
  /** Float weights replaced, in elements. */
  readonly weights: number;
}

const FLOAT = 1;
const INT8 = 3;
const INT64 = 7;

/** The oldest default opset this code moves to 11 (DynamicQuantizeLinear's). */
const MIN_UPGRADABLE_OPSET = 7;
/** Operators whose definition changed in opset 10 or 11 in a way a rename of the opset cannot carry (Clip and Slice are rewritten). */
const CHANGED_BY_10 = new Set(['TopK', 'Upsample', 'Resize']);
const CHANGED_BY_11 = new Set(['Pad', 'Resize', 'Upsample', 'Scatter', 'DynamicQuantizeLinear']);

/** One field of a protobuf message: its bytes in the message, and its payload. */
interface Field {
  readonly number: number;
  readonly wire: number;
  /** The whole field (tag included) within the message. */
  readonly start: number;
  readonly end: number;
  /** Length-delimited payload bounds; a varint's value. */
  readonly payloadStart: number;
  readonly payloadEnd: number;
  readonly value: bigint;
}

function invalid(message: string): never {
  throw new EdgefleetError('EF_ONNX_INVALID', message);
}

function readVarint(bytes: Uint8Array, at: number): { value: bigint; next: number } {
  let value = 0n;
  let shift = 0n;
  let pos = at;
  for (;;) {
    if (pos >= bytes.length || shift > 63n) invalid('a varint runs past its message');
    const byte = bytes[pos++] as number;
    value |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value, next: pos };
    shift += 7n;
  }
}

function fields(bytes: Uint8Array, start = 0, end = bytes.length): Field[] {
  const out: Field[] = [];
  let pos = start;
  while (pos < end) {
    const fieldStart = pos;
    const tag = readVarint(bytes, pos);
    pos = tag.next;
    const number = Number(tag.value >> 3n);
    const wire = Number(tag.value & 7n);
    let payloadStart = pos;
    let payloadEnd = pos;
    let value = 0n;
    if (wire === 0) {
      const v = readVarint(bytes, pos);
      value = v.value;
      pos = v.next;
      payloadEnd = pos;
    } else if (wire === 1) {
      pos += 8;
      payloadEnd = pos;
    } else if (wire === 5) {
      pos += 4;
      payloadEnd = pos;
    } else if (wire === 2) {
      const length = readVarint(bytes, pos);
      payloadStart = length.next;
      payloadEnd = payloadStart + Number(length.value);
      pos = payloadEnd;
    } else {
      invalid(`unsupported protobuf wire type ${wire}`);
    }
    if (pos > end) invalid('a field runs past its message');
    out.push({ number, wire, start: fieldStart, end: pos, payloadStart, payloadEnd, value });
  }
  return out;
}

const text = new TextDecoder();
const utf8 = new TextEncoder();
const stringOf = (bytes: Uint8Array, f: Field) => text.decode(bytes.subarray(f.payloadStart, f.payloadEnd));

// --- writing ---

function varint(value: number | bigint): number[] {
  let v = BigInt.asUintN(64, BigInt(value));
  const out: number[] = [];
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return out;
}

/** A message under construction: a list of chunks joined once. */
class Writer {
  private readonly chunks: Uint8Array[] = [];
  varint(number: number, value: number | bigint): this {
    this.chunks.push(Uint8Array.from([...varint(number << 3), ...varint(value)]));
    return this;
  }
  bytes(number: number, payload: Uint8Array): this {
    this.chunks.push(Uint8Array.from([...varint((number << 3) | 2), ...varint(payload.length)]), payload);
    return this;
  }
  string(number: number, value: string): this {
    return this.bytes(number, utf8.encode(value));
  }
  float(number: number, value: number): this {
    const chunk = new Uint8Array([...varint((number << 3) | 5), 0, 0, 0, 0]);
    new DataView(chunk.buffer).setFloat32(chunk.length - 4, value, true);
    this.chunks.push(chunk);
    return this;
  }
  raw(chunk: Uint8Array): this {
    this.chunks.push(chunk);
    return this;
  }
  finish(): Uint8Array {
    const length = this.chunks.reduce((sum, c) => sum + c.length, 0);
    const out = new Uint8Array(length);
    let at = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, at);
      at += chunk.length;
    }
    return out;
  }
}

function node(op: string, inputs: readonly string[], outputs: readonly string[], name: string, attributes: Uint8Array[] = []): Uint8Array {
  const w = new Writer();
  for (const input of inputs) w.string(1, input);
  for (const output of outputs) w.string(2, output);
  w.string(3, name).string(4, op);
  for (const attribute of attributes) w.bytes(5, attribute);
  return w.finish();
}

/** AttributeProto of type INT (2). */
const intAttribute = (name: string, value: number) => new Writer().string(1, name).varint(20, 2).varint(3, value).finish();

function tensor(name: string, dataType: number, dims: readonly number[], raw: Uint8Array): Uint8Array {
  const w = new Writer();
  for (const dim of dims) w.varint(1, dim);
  return w.varint(2, dataType).string(8, name).bytes(9, raw).finish();
}

// --- reading the graph ---

interface FloatInitializer {
  readonly field: Field;
  readonly dims: number[];
  readonly values: Float32Array;
}

/** A float32 initializer held in the file (raw_data or float_data), or undefined for anything else. */
function floatInitializer(bytes: Uint8Array, field: Field): { name: string; initializer?: FloatInitializer } {
  let name = '';
  let dataType = 0;
  const dims: number[] = [];
  let raw: Field | undefined;
  const floats: number[] = [];
  let external = false;
  for (const f of fields(bytes, field.payloadStart, field.payloadEnd)) {
    if (f.number === 8 && f.wire === 2) name = stringOf(bytes, f);
    else if (f.number === 2 && f.wire === 0) dataType = Number(f.value);
    else if (f.number === 1 && f.wire === 0) dims.push(Number(f.value));
    else if (f.number === 1 && f.wire === 2) {
      let pos = f.payloadStart;
      while (pos < f.payloadEnd) {
        const v = readVarint(bytes, pos);
        dims.push(Number(v.value));
        pos = v.next;
      }
    } else if (f.number === 9 && f.wire === 2) raw = f;
    else if (f.number === 4 && f.wire === 2) {
      const view = new DataView(bytes.buffer, bytes.byteOffset + f.payloadStart, f.payloadEnd - f.payloadStart);
      for (let i = 0; i + 4 <= view.byteLength; i += 4) floats.push(view.getFloat32(i, true));
    } else if (f.number === 4 && f.wire === 5) {
      floats.push(new DataView(bytes.buffer, bytes.byteOffset + f.payloadStart, 4).getFloat32(0, true));
    } else if (f.number === 14 && f.wire === 0 && f.value === 1n) external = true;
  }
  if (dataType !== FLOAT || external) return { name };
  const count = dims.reduce((a, b) => a * b, 1);
  let values: Float32Array;
  if (raw) {
    if (raw.payloadEnd - raw.payloadStart !== count * 4)
      invalid(`initializer "${name}" holds ${raw.payloadEnd - raw.payloadStart} bytes for ${count} floats`);
    values = new Float32Array(count);
    const view = new DataView(bytes.buffer, bytes.byteOffset + raw.payloadStart, count * 4);
    for (let i = 0; i < count; i++) values[i] = view.getFloat32(i * 4, true);
  } else {
    if (floats.length !== count) invalid(`initializer "${name}" holds ${floats.length} floats for ${count}`);
    values = Float32Array.from(floats);
  }
  return { name, initializer: { field, dims, values } };
}

interface NodeInfo {
  readonly field: Field;
  readonly op: string;
  readonly domain: string;
  readonly name: string;
  readonly inputs: string[];
  readonly outputs: string[];
  readonly ints: Map<string, number>;
  readonly floats: Map<string, number>;
  /** Every attribute: its field, its int list (ints) and whether it holds a graph (If, Loop, Scan). */
  readonly attributes: {
    readonly name: string;
    readonly field: Field;
    readonly list: number[];
    readonly graph: boolean;
    /** A tensor attribute's TensorProto (Constant's value). */
    readonly tensor?: Field;
  }[];
}

function readNode(bytes: Uint8Array, field: Field): NodeInfo {
  const info: NodeInfo = {
    field,
    op: '',
    domain: '',
    name: '',
    inputs: [],
    outputs: [],
    ints: new Map(),
    floats: new Map(),
    attributes: [],
  };
  let op = '';
  let domain = '';
  let name = '';
  for (const f of fields(bytes, field.payloadStart, field.payloadEnd)) {
    if (f.wire !== 2) continue;
    if (f.number === 1) info.inputs.push(stringOf(bytes, f));
    else if (f.number === 2) info.outputs.push(stringOf(bytes, f));
    else if (f.number === 3) name = stringOf(bytes, f);
    else if (f.number === 4) op = stringOf(bytes, f);
    else if (f.number === 7) domain = stringOf(bytes, f);
    else if (f.number === 5) {
      let attribute = '';
      let i: number | undefined;
      let fl: number | undefined;
      const list: number[] = [];
      let graph = false;
      let tensorField: Field | undefined;
      for (const a of fields(bytes, f.payloadStart, f.payloadEnd)) {
        if (a.number === 1 && a.wire === 2) attribute = stringOf(bytes, a);
        else if (a.number === 3 && a.wire === 0) i = Number(BigInt.asIntN(64, a.value));
        else if (a.number === 2 && a.wire === 5) fl = new DataView(bytes.buffer, bytes.byteOffset + a.payloadStart, 4).getFloat32(0, true);
        else if (a.number === 8 && a.wire === 0) list.push(Number(BigInt.asIntN(64, a.value)));
        else if (a.number === 8 && a.wire === 2) {
          let pos = a.payloadStart;
          while (pos < a.payloadEnd) {
            const v = readVarint(bytes, pos);
            list.push(Number(BigInt.asIntN(64, v.value)));
            pos = v.next;
          }
        } else if ((a.number === 6 || a.number === 11) && a.wire === 2) graph = true;
        else if (a.number === 5 && a.wire === 2) tensorField = a;
      }
      if (i !== undefined) info.ints.set(attribute, i);
      if (fl !== undefined) info.floats.set(attribute, fl);
      info.attributes.push({ name: attribute, field: f, list, graph, ...(tensorField ? { tensor: tensorField } : {}) });
    }
  }
  return { ...info, op, domain, name };
}

/** A node again with other inputs and without the named attributes; every other field as it was. */
function rewriteNode(bytes: Uint8Array, n: NodeInfo, inputs: readonly string[], drop: ReadonlySet<string>): Uint8Array {
  const w = new Writer();
  for (const input of inputs) w.string(1, input);
  const dropped = new Set(n.attributes.filter((a) => drop.has(a.name)).map((a) => a.field.start));
  for (const f of fields(bytes, n.field.payloadStart, n.field.payloadEnd)) {
    if ((f.number === 1 && f.wire === 2) || dropped.has(f.start)) continue;
    w.raw(bytes.subarray(f.start, f.end));
  }
  return w.finish();
}

/**
 * Weights take 7 bits (-63..63), as onnxruntime's quantizer does with reduce_range: on x86 CPUs
 * without VNNI (AVX2 and AVX-512F alone: Intel before Cascade Lake, AMD before Zen 4) its
 * MatMulInteger multiplies uint8 activations by int8 weights in pairs summed into 16 bits, which
 * saturate at full range (255 × 127 × 2 > 32,767): onnxruntime-node answered 0.45 off on such a
 * CPU where the int8 arithmetic says 0.01. At 63 a pair stays within 16 bits everywhere.
 */
export const WEIGHT_LEVELS = 63;

/** Symmetric int8 per column of W [K, N] (7 bits of it): the quantized weights and one scale per column. */
export function quantizeWeights(values: Float32Array, k: number, n: number): { q: Int8Array; scales: Float32Array } {
  const scales = new Float32Array(n);
  for (let c = 0; c < n; c++) {
    let max = 0;
    for (let r = 0; r < k; r++) max = Math.max(max, Math.abs(values[r * n + c] as number));
    scales[c] = max > 0 ? max / WEIGHT_LEVELS : 1;
  }
  const q = new Int8Array(k * n);
  for (let r = 0; r < k; r++) {
    for (let c = 0; c < n; c++) {
      q[r * n + c] = Math.max(-WEIGHT_LEVELS, Math.min(WEIGHT_LEVELS, Math.round((values[r * n + c] as number) / (scales[c] as number))));
    }
  }
  return { q, scales };
}

const floatBytes = (values: Float32Array) => {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (const [i, v] of values.entries()) view.setFloat32(i * 4, v, true);
  return out;
};

/** The int8 variant of an ONNX model (see the top of this file). */
export function quantizeDynamicInt8(model: Uint8Array): QuantizeResult {
  const top = fields(model);
  const graphFields = top.filter((f) => f.number === 7 && f.wire === 2);
  if (graphFields.length !== 1) invalid('the model has no graph');
  const graphField = graphFields[0] as Field;
  let opset = 0;
  let opsetField: Field | undefined;
  for (const f of top.filter((t) => t.number === 8 && t.wire === 2)) {
    let domain = '';
    let version = 0;
    for (const o of fields(model, f.payloadStart, f.payloadEnd)) {
      if (o.number === 1 && o.wire === 2) domain = stringOf(model, o);
      if (o.number === 2 && o.wire === 0) version = Number(o.value);
    }
    if (domain === '' || domain === 'ai.onnx') {
      opset = version;
      opsetField = f;
    }
  }
  if (!opsetField || opset < MIN_UPGRADABLE_OPSET) {
    throw new EdgefleetError(
      'EF_VARIANT_INVALID',
      `int8 quantization needs the model's default operator set at ${MIN_UPGRADABLE_OPSET} or above; it declares ${opset || 'none'}: export it with a newer opset`,
    );
  }

  const graph = fields(model, graphField.payloadStart, graphField.payloadEnd);
  const nodes = graph.filter((f) => f.number === 1 && f.wire === 2).map((f) => readNode(model, f));
  const initializers = new Map<string, FloatInitializer>();
  const names = new Set<string>();
  for (const f of graph.filter((g) => g.number === 5 && g.wire === 2)) {
    const { name, initializer } = floatInitializer(model, f);
    names.add(name);
    if (initializer) initializers.set(name, initializer);
  }
  // Constant nodes holding float weights count as initializers (exporters such as paddle2onnx write them so).
  const constants = new Map<string, NodeInfo>();
  for (const n of nodes) {
    const value = n.op === 'Constant' && n.domain === '' ? n.attributes.find((a) => a.name === 'value')?.tensor : undefined;
    const output = n.outputs[0];
    if (!value || output === undefined || initializers.has(output)) continue;
    const { initializer } = floatInitializer(model, value);
    if (initializer) {
      initializers.set(output, initializer);
      constants.set(output, n);
    }
  }
  const uses = new Map<string, number>();
  for (const n of nodes) {
    for (const input of n.inputs) uses.set(input, (uses.get(input) ?? 0) + 1);
    for (const output of n.outputs) names.add(output);
    for (const input of n.inputs) names.add(input);
  }
  const graphOutputs = new Set<string>();
  for (const f of graph.filter((g) => g.number === 12 && g.wire === 2)) {
    for (const v of fields(model, f.payloadStart, f.payloadEnd)) if (v.number === 1 && v.wire === 2) graphOutputs.add(stringOf(model, v));
  }
  const fresh = (base: string) => {
    let candidate = base;
    for (let i = 1; names.has(candidate); i++) candidate = `${base}_${i}`;
    names.add(candidate);
    return candidate;
  };

  const replacements = new Map<Field, Uint8Array[]>();
  const added: Uint8Array[] = [];
  // DynamicQuantizeLinear is in opset 11: an older model moves to 11, its nodes whose definition
  // changed on the way rewritten as the ONNX version converter does (Clip's and Slice's attributes
  // become constant inputs), or refused when this code does not know how.
  const upgrade = opset < 11;
  if (upgrade) {
    for (const n of nodes) {
      if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
      const label = n.name || n.outputs[0] || n.op;
      const refuse = (why: string): never => {
        throw new EdgefleetError(
          'EF_VARIANT_INVALID',
          `int8 quantization needs operator set 11; the model declares ${opset} and ${why} (node "${label.slice(0, 64)}"): export it with opset 11 or above`,
        );
      };
      if (n.attributes.some((a) => a.graph)) refuse(`its ${n.op} holds a subgraph, which this converter does not rewrite`);
      if (CHANGED_BY_11.has(n.op) || (opset < 10 && CHANGED_BY_10.has(n.op))) refuse(`uses ${n.op}, whose definition changed by opset 11`);
      if (n.op === 'Clip') {
        const min = n.floats.get('min') ?? -3.4028234663852886e38;
        const max = n.floats.get('max') ?? 3.4028234663852886e38;
        const minName = fresh(`${label}_min`);
        const maxName = fresh(`${label}_max`);
        added.push(
          tensor(minName, FLOAT, [], floatBytes(Float32Array.from([min]))),
          tensor(maxName, FLOAT, [], floatBytes(Float32Array.from([max]))),
        );
        replacements.set(n.field, [rewriteNode(model, n, [n.inputs[0] ?? '', minName, maxName], new Set(['min', 'max']))]);
      } else if (n.op === 'Slice' && opset < 10) {
        const attribute = (name: string) => n.attributes.find((a) => a.name === name)?.list;
        const starts = attribute('starts') ?? refuse('a Slice has no starts');
        const ends = attribute('ends') ?? refuse('a Slice has no ends');
        const axes = attribute('axes') ?? starts.map((_, i) => i);
        const constant = (what: string, values: number[]) => {
          const name = fresh(`${label}_${what}`);
          const raw = new Uint8Array(values.length * 8);
          const view = new DataView(raw.buffer);
          for (const [i, v] of values.entries()) view.setBigInt64(i * 8, BigInt(v), true);
          added.push(tensor(name, INT64, [values.length], raw));
          return name;
        };
        const inputs = [n.inputs[0] ?? '', constant('starts', starts), constant('ends', ends), constant('axes', axes)];
        replacements.set(n.field, [rewriteNode(model, n, inputs, new Set(['starts', 'ends', 'axes']))]);
      }
    }
  }
  const quantizedInputs = new Map<string, { q: string; scale: string; zero: string }>();
  const skipped: { node: string; reason: string }[] = [];
  let weights = 0;
  let quantizedCount = 0;
  const quantizedNodes = new Set<NodeInfo>();
  for (const n of nodes) {
    if (n.domain !== '' && n.domain !== 'ai.onnx') continue;
    if (n.op !== 'MatMul' && n.op !== 'Gemm') continue;
    const label = n.name || n.outputs[0] || n.op;
    const [a, b, c] = n.inputs;
    const initializer = b === undefined ? undefined : initializers.get(b);
    if (!a || !b || !initializer) {
      skipped.push({ node: label, reason: 'its weights are not a float32 constant of the model' });
      continue;
    }
    if (initializer.dims.length !== 2) {
      skipped.push({ node: label, reason: `its weights have ${initializer.dims.length} dimensions, not 2` });
      continue;
    }
    const gemm = n.op === 'Gemm';
    if (gemm && (n.ints.get('transA') ?? 0) !== 0) {
      skipped.push({ node: label, reason: 'a Gemm with transA is left in float' });
      continue;
    }
    const transB = gemm && (n.ints.get('transB') ?? 0) !== 0;
    const [rows, cols] = initializer.dims as [number, number];
    const [k, width] = transB ? [cols, rows] : [rows, cols];
    const w = transB ? new Float32Array(k * width) : initializer.values;
    if (transB)
      for (let r = 0; r < rows; r++) for (let col = 0; col < cols; col++) w[col * width + r] = initializer.values[r * cols + col] as number;
    const { q, scales } = quantizeWeights(w, k, width);
    const alpha = gemm ? (n.floats.get('alpha') ?? 1) : 1;
    const beta = gemm ? (n.floats.get('beta') ?? 1) : 1;
    if (alpha !== 1) for (let i = 0; i < scales.length; i++) scales[i] = (scales[i] as number) * alpha;
    weights += initializer.values.length;

    const base = b.replace(/[^A-Za-z0-9_.-]/g, '_');
    const wq = fresh(`${base}_quantized`);
    const wScale = fresh(`${base}_scale`);
    const wZero = fresh(`${base}_zero_point`);
    added.push(
      tensor(wq, INT8, [k, width], new Uint8Array(q.buffer)),
      tensor(wScale, FLOAT, [width], floatBytes(scales)),
      tensor(wZero, INT8, [], new Uint8Array(1)),
    );
    const prefix = fresh(`${label}_int8`);
    const out: Uint8Array[] = [];
    let quantized = quantizedInputs.get(a);
    if (!quantized) {
      const stem = a.replace(/[^A-Za-z0-9_.-]/g, '_');
      quantized = { q: fresh(`${stem}_quantized`), scale: fresh(`${stem}_scale`), zero: fresh(`${stem}_zero_point`) };
      quantizedInputs.set(a, quantized);
      out.push(node('DynamicQuantizeLinear', [a], [quantized.q, quantized.scale, quantized.zero], fresh(`${stem}_QuantizeLinear`)));
    }
    const acc = fresh(`${prefix}_acc`);
    const accFloat = fresh(`${prefix}_acc_float`);
    const scale = fresh(`${prefix}_scale`);
    const target = n.outputs[0] as string;
    const product = gemm && c ? fresh(`${prefix}_product`) : target;
    out.push(
      node('MatMulInteger', [quantized.q, wq, quantized.zero, wZero], [acc], fresh(`${prefix}_MatMulInteger`)),
      node('Cast', [acc], [accFloat], fresh(`${prefix}_Cast`), [intAttribute('to', FLOAT)]),
      node('Mul', [quantized.scale, wScale], [scale], fresh(`${prefix}_scale_Mul`)),
      node('Mul', [accFloat, scale], [product], fresh(`${prefix}_Mul`)),
    );
    if (gemm && c) {
      let bias = c;
      if (beta !== 1) {
        const betaName = fresh(`${prefix}_beta`);
        added.push(tensor(betaName, FLOAT, [], floatBytes(Float32Array.from([beta]))));
        bias = fresh(`${prefix}_bias`);
        out.push(node('Mul', [c, betaName], [bias], fresh(`${prefix}_beta_Mul`)));
      }
      out.push(node('Add', [product, bias], [target], fresh(`${prefix}_Add`)));
    }
    replacements.set(n.field, out);
    quantizedCount++;
    quantizedNodes.add(n);
    uses.set(b, (uses.get(b) ?? 1) - 1);
  }
  if (quantizedCount === 0) {
    throw new EdgefleetError(
      'EF_VARIANT_INVALID',
      `found no MatMul or Gemm with constant float32 weights to quantize${
        skipped.length > 0
          ? ` (${skipped
              .map((s) => `${s.node}: ${s.reason}`)
              .join('; ')
              .slice(0, 300)})`
          : ''
      }; upload an int8 build of the model as a variant instead`,
    );
  }
  // Float weights nothing reads any more go (and their entries as graph inputs, as old exporters list them).
  const dropped = new Set<string>();
  for (const n of nodes) {
    const weight = n.inputs[1];
    if (quantizedNodes.has(n) && weight !== undefined && (uses.get(weight) ?? 0) <= 0 && !graphOutputs.has(weight)) {
      const constant = constants.get(weight);
      if (constant) replacements.set(constant.field, []);
      else dropped.add(weight);
    }
  }

  const out = new Writer();
  for (const f of graph) {
    const replacement = replacements.get(f);
    if (replacement) {
      for (const chunk of replacement) out.bytes(1, chunk);
      continue;
    }
    if (f.number === 5 && f.wire === 2) {
      const { name } = floatInitializer(model, f);
      if (dropped.has(name)) continue;
    }
    if (f.number === 11 && f.wire === 2) {
      const inputName = fields(model, f.payloadStart, f.payloadEnd).find((v) => v.number === 1 && v.wire === 2);
      if (inputName && dropped.has(stringOf(model, inputName))) continue;
    }
    out.raw(model.subarray(f.start, f.end));
  }
  for (const chunk of added) out.bytes(5, chunk);
  const newGraph = out.finish();

  const result = new Writer();
  for (const f of top) {
    if (f === graphField) result.bytes(7, newGraph);
    else if (f === opsetField && upgrade) result.bytes(8, new Writer().string(1, '').varint(2, 11).finish());
    else result.raw(model.subarray(f.start, f.end));
  }
  return { bytes: result.finish(), quantized: quantizedCount, skipped, weights };
}

/**
 * Reads what a registry needs from an ONNX file without loading its weights: the protobuf is
 * walked from the file with positional reads, tensor payloads (raw_data and the typed data fields)
 * are skipped by offset, so a 2 GB model costs a few kilobytes of memory. Anything that is not a
 * well-formed ModelProto with a graph is EF_ONNX_INVALID; a tensor stored in an external file is
 * EF_ONNX_EXTERNAL_DATA (external files are never read: TUF-style "no file outside the artifact").
 *
 * Field numbers are those of onnx/onnx.proto.
 */
import type { FileHandle } from 'node:fs/promises';
import { type Dimension, EdgefleetError, QUANTIZATION_FORMATS, type TensorSpec } from '@edgefleet/protocol';

export interface OnnxSummary {
  readonly irVersion: number;
  readonly producer: string;
  readonly opsets: { domain: string; version: number }[];
  readonly inputs: TensorSpec[];
  readonly outputs: TensorSpec[];
  /** Operator types, domain-qualified outside the default domain ("com.microsoft.QGemm"). */
  readonly operators: string[];
  readonly quantization: { quantized: boolean; formats: (typeof QUANTIZATION_FORMATS)[number][] };
  readonly nodeCount: number;
  readonly initializerCount: number;
}

const ELEMENT_TYPES: Record<number, TensorSpec['dtype']> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
};
const ELEMENT_NAMES: Record<number, string> = {
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
  17: 'float8e4m3fn',
  21: 'uint4',
  22: 'int4',
};

const MAX_DEPTH = 16;
const MAX_NODES = 1_000_000;
const SMALL_MESSAGE = 16 * 1024 * 1024; // node/value-info messages are read whole up to this size

function invalid(message: string): never {
  throw new EdgefleetError('EF_ONNX_INVALID', message);
}

/** Random access over the file with a read-ahead window: headers are tiny, payloads are skipped. */
class Source {
  private window = new Uint8Array(0);
  private windowStart = 0;

  constructor(
    private readonly handle: FileHandle,
    readonly length: number,
  ) {}

  async bytes(offset: number, length: number): Promise<Uint8Array> {
    if (offset < 0 || length < 0 || offset + length > this.length)
      invalid(`a field runs past the end of the file (offset ${offset}, length ${length})`);
    if (offset >= this.windowStart && offset + length <= this.windowStart + this.window.length) {
      return this.window.subarray(offset - this.windowStart, offset - this.windowStart + length);
    }
    const size = Math.min(this.length - offset, Math.max(length, 64 * 1024));
    const buffer = new Uint8Array(size);
    let read = 0;
    while (read < size) {
      const { bytesRead } = await this.handle.read(buffer, read, size - read, offset + read);
      if (bytesRead === 0) break;
      read += bytesRead;
    }
    this.window = buffer.subarray(0, read);
    this.windowStart = offset;
    if (read < length) invalid('the file ended in the middle of a field');
    return this.window.subarray(0, length);
  }
}

interface Field {
  readonly number: number;
  readonly wireType: number;
  /** Varint / fixed value (wire types 0, 1, 5). */
  readonly value: bigint;
  /** Length-delimited payload position (wire type 2). */
  readonly start: number;
  readonly length: number;
}

/** Synchronous protobuf reader over bytes in memory. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  varint(): bigint {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) invalid('a varint runs past the end of its message');
      const byte = this.buf[this.pos++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
    }
    return invalid('a varint is longer than 10 bytes');
  }

  field(): Field {
    const key = this.varint();
    const number = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (number === 0) invalid('field number 0 is not valid protobuf');
    switch (wireType) {
      case 0:
        return { number, wireType, value: this.varint(), start: 0, length: 0 };
      case 1:
        this.skip(8);
        return { number, wireType, value: 0n, start: 0, length: 0 };
      case 5:
        this.skip(4);
        return { number, wireType, value: 0n, start: 0, length: 0 };
      case 2: {
        const length = Number(this.varint());
        const start = this.pos;
        this.skip(length);
        return { number, wireType, value: 0n, start, length };
      }
      default:
        return invalid(`wire type ${wireType} (field ${number}) is not used by ONNX`);
    }
  }

  skip(n: number): void {
    if (n < 0 || this.pos + n > this.end) invalid('a field runs past the end of its message');
    this.pos += n;
  }

  *fields(): Generator<Field> {
    while (this.pos < this.end) yield this.field();
  }

  string(f: Field): string {
    return new TextDecoder('utf-8', { fatal: false }).decode(this.buf.subarray(f.start, f.start + f.length));
  }

  sub(f: Field): Reader {
    return new Reader(this.buf, f.start, f.start + f.length);
  }
}

interface GraphFacts {
  operators: Set<string>;
  formats: Set<(typeof QUANTIZATION_FORMATS)[number]>;
  nodes: number;
  initializers: number;
}

/** Reads a field header from the file at `pos`; returns the field and the position after its header. */
async function fileField(source: Source, pos: number, end: number): Promise<{ field: Field; next: number; payload: number }> {
  const head = await source.bytes(pos, Math.min(20, end - pos));
  const reader = new Reader(head);
  const key = reader.varint();
  const number = Number(key >> 3n);
  const wireType = Number(key & 7n);
  if (number === 0) invalid('field number 0 is not valid protobuf');
  if (wireType === 0) {
    const value = reader.varint();
    return { field: { number, wireType, value, start: 0, length: 0 }, next: pos + reader.pos, payload: pos + reader.pos };
  }
  if (wireType === 1 || wireType === 5) {
    const size = wireType === 1 ? 8 : 4;
    return { field: { number, wireType, value: 0n, start: 0, length: 0 }, next: pos + reader.pos + size, payload: pos + reader.pos };
  }
  if (wireType === 2) {
    const length = Number(reader.varint());
    const payload = pos + reader.pos;
    if (payload + length > end) invalid(`field ${number} claims ${length} bytes, past the end of its message`);
    return { field: { number, wireType, value: 0n, start: payload, length }, next: payload + length, payload };
  }
  return invalid(`wire type ${wireType} (field ${number}) is not used by ONNX`);
}

/** Walks the fields of a message stored in the file between `start` and `end`. */
async function* fileFields(source: Source, start: number, end: number): AsyncGenerator<Field> {
  let pos = start;
  while (pos < end) {
    const { field, next } = await fileField(source, pos, end);
    if (next > end) invalid('a field runs past the end of its message');
    yield field;
    pos = next;
  }
}

function checkTensorStorage(reader: Reader, where: string): void {
  // TensorProto: 13 external_data, 14 data_location (1 = EXTERNAL).
  for (const f of reader.fields()) {
    if (f.number === 13 || (f.number === 14 && f.value === 1n)) {
      throw new EdgefleetError('EF_ONNX_EXTERNAL_DATA', `${where} stores its data in an external file`);
    }
  }
}

/** Reads an initializer's header from the file, skipping its payload; refuses external data. */
async function checkInitializer(source: Source, start: number, end: number, facts: GraphFacts): Promise<string> {
  facts.initializers++;
  let name = '';
  for await (const f of fileFields(source, start, end)) {
    if (f.number === 8 && f.wireType === 2 && f.length < 4096) name = new TextDecoder().decode(await source.bytes(f.start, f.length));
    if (f.number === 2 && f.value === 10n) facts.formats.add('float16');
    if (f.number === 13 || (f.number === 14 && f.value === 1n)) {
      throw new EdgefleetError('EF_ONNX_EXTERNAL_DATA', `initializer "${name || '(unnamed)'}" stores its data in an external file`);
    }
  }
  return name;
}

function readNode(reader: Reader, facts: GraphFacts, depth: number): void {
  let op = '';
  let domain = '';
  const attributes: Reader[] = [];
  for (const f of reader.fields()) {
    if (f.number === 4 && f.wireType === 2) op = reader.string(f);
    else if (f.number === 7 && f.wireType === 2) domain = reader.string(f);
    else if (f.number === 5 && f.wireType === 2) attributes.push(reader.sub(f));
  }
  if (!op) invalid('a node has no op_type');
  facts.nodes++;
  if (facts.nodes > MAX_NODES) invalid(`more than ${MAX_NODES} nodes`);
  const qualified = domain && domain !== 'ai.onnx' ? `${domain}.${op}` : op;
  facts.operators.add(qualified);
  if (op === 'QuantizeLinear' || op === 'DequantizeLinear') facts.formats.add('qdq');
  if (op.startsWith('QLinear') || op === 'QGemm') facts.formats.add('qlinear');
  if (op === 'MatMulInteger' || op === 'ConvInteger' || op === 'MatMulIntegerToFloat') facts.formats.add('integer-ops');
  if (op === 'DynamicQuantizeLinear' || op === 'DynamicQuantizeMatMul' || op === 'DynamicQuantizeLSTM') facts.formats.add('dynamic');
  // AttributeProto: 5 t (tensor), 6 g (graph), 10 tensors, 11 graphs.
  for (const attribute of attributes) {
    for (const f of attribute.fields()) {
      if (f.wireType !== 2) continue;
      if (f.number === 5 || f.number === 10) checkTensorStorage(attribute.sub(f), `a tensor attribute of ${qualified}`);
      if (f.number === 6 || f.number === 11) readSubgraph(attribute.sub(f), facts, depth + 1);
    }
  }
}

function readSubgraph(reader: Reader, facts: GraphFacts, depth: number): void {
  if (depth > MAX_DEPTH) invalid(`subgraphs nested deeper than ${MAX_DEPTH}`);
  for (const f of reader.fields()) {
    if (f.wireType !== 2) continue;
    if (f.number === 1) readNode(reader.sub(f), facts, depth);
    else if (f.number === 5) {
      facts.initializers++;
      checkTensorStorage(reader.sub(f), 'a subgraph initializer');
    }
  }
}

function readValueInfo(reader: Reader, role: string): TensorSpec {
  let name = '';
  let type: Reader | undefined;
  for (const f of reader.fields()) {
    if (f.number === 1 && f.wireType === 2) name = reader.string(f);
    if (f.number === 2 && f.wireType === 2) type = reader.sub(f);
  }
  if (!name) invalid(`a graph ${role} has no name`);
  let tensor: Reader | undefined;
  for (const f of type?.fields() ?? []) if (f.number === 1 && f.wireType === 2) tensor = type?.sub(f);
  if (!tensor) invalid(`${role} "${name}" is not a tensor (sequences and maps are not supported)`);
  let elem = 0;
  let shape: Reader | undefined;
  for (const f of tensor.fields()) {
    if (f.number === 1 && f.wireType === 0) elem = Number(f.value);
    if (f.number === 2 && f.wireType === 2) shape = tensor.sub(f);
  }
  const dtype = ELEMENT_TYPES[elem];
  if (!dtype) invalid(`${role} "${name}" has element type ${ELEMENT_NAMES[elem] ?? elem}, which onnxruntime-web cannot feed or fetch`);
  if (!shape) invalid(`${role} "${name}" has no shape; export the model with the ${role} shapes declared`);
  const dims: Dimension[] = [];
  for (const f of shape.fields()) {
    if (f.number !== 1 || f.wireType !== 2) continue;
    let dim: Dimension = '?';
    const d = shape.sub(f);
    for (const g of d.fields()) {
      if (g.number === 1 && g.wireType === 0) {
        const value = g.value;
        // Exporters write -1 (or leave it unset) for dynamic sizes.
        dim = value >= 0n && value < 2n ** 31n ? Number(value) : '?';
      }
      if (g.number === 2 && g.wireType === 2) {
        const param = d.string(g);
        dim = /^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$/.test(param) ? param : '?';
      }
    }
    dims.push(dim);
  }
  if (dims.length > 16) invalid(`${role} "${name}" has ${dims.length} dimensions; at most 16 are supported`);
  return { name, dtype, shape: dims };
}

/** Parses the ONNX model in an open file. */
export async function readOnnxSummary(handle: FileHandle): Promise<OnnxSummary> {
  const { size } = await handle.stat();
  if (size === 0) invalid('the file is empty');
  const source = new Source(handle, size);
  let irVersion = 0;
  let producer = '';
  const opsets: { domain: string; version: number }[] = [];
  let graph: { start: number; end: number } | undefined;
  for await (const f of fileFields(source, 0, size)) {
    if (f.number === 1 && f.wireType === 0) irVersion = Number(f.value);
    else if (f.number === 2 && f.wireType === 2 && f.length < 4096)
      producer = new TextDecoder().decode(await source.bytes(f.start, f.length));
    else if (f.number === 8 && f.wireType === 2) {
      const reader = new Reader(await source.bytes(f.start, f.length));
      let domain = '';
      let version = 0;
      for (const g of reader.fields()) {
        if (g.number === 1 && g.wireType === 2) domain = reader.string(g);
        if (g.number === 2 && g.wireType === 0) version = Number(g.value);
      }
      opsets.push({ domain: domain === 'ai.onnx' ? '' : domain, version });
    } else if (f.number === 7 && f.wireType === 2) graph = { start: f.start, end: f.start + f.length };
    else if (f.wireType !== 0 && f.wireType !== 2 && f.wireType !== 1 && f.wireType !== 5) invalid(`unexpected field ${f.number}`);
  }
  if (!graph) invalid('there is no graph (not an ONNX ModelProto)');
  if (irVersion < 3 || irVersion > 100) invalid(`ir_version ${irVersion} is not one onnxruntime reads (3 or later)`);
  if (opsets.length === 0 || opsets.some((o) => o.version < 1 || o.version > 10000)) invalid('opset_import is missing or invalid');

  const facts: GraphFacts = { operators: new Set(), formats: new Set(), nodes: 0, initializers: 0 };
  const initializerNames = new Set<string>();
  const declaredInputs: TensorSpec[] = [];
  const outputs: TensorSpec[] = [];
  for await (const f of fileFields(source, graph.start, graph.end)) {
    if (f.wireType !== 2) continue;
    if (f.number === 5) {
      // Names tell real inputs from initializers that older exporters also list as inputs.
      initializerNames.add(await checkInitializer(source, f.start, f.start + f.length, facts));
    } else if (f.number === 1 || f.number === 11 || f.number === 12) {
      if (f.length > SMALL_MESSAGE) invalid(`a graph entry of ${f.length} bytes is too large`);
      const reader = new Reader(await source.bytes(f.start, f.length));
      if (f.number === 1) readNode(reader, facts, 0);
      else if (f.number === 11) declaredInputs.push(readValueInfo(reader, 'input'));
      else outputs.push(readValueInfo(reader, 'output'));
    }
  }
  const inputs = declaredInputs.filter((input) => !initializerNames.has(input.name));
  if (inputs.length === 0) invalid('the graph has no inputs');
  if (outputs.length === 0) invalid('the graph has no outputs');
  if (facts.nodes === 0) invalid('the graph has no nodes');
  for (const spec of [...inputs, ...outputs]) if (spec.dtype === 'float16') facts.formats.add('float16');
  const formats = QUANTIZATION_FORMATS.filter((f) => facts.formats.has(f));
  return {
    irVersion,
    producer,
    opsets,
    inputs,
    outputs,
    operators: [...facts.operators].sort(),
    quantization: { quantized: formats.some((f) => f !== 'float16'), formats },
    nodeCount: facts.nodes,
    initializerCount: facts.initializers,
  };
}

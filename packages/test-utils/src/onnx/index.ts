/**
 * Builds small, real ONNX models in memory for tests: a minimal protobuf writer for the parts of
 * onnx.proto (IR version 8) that graphs of a few nodes need. The bytes are what onnxruntime loads;
 * field numbers are those of onnx/onnx.proto.
 */

/** ONNX TensorProto.DataType values. */
export const ONNX_DTYPES = {
  float32: 1,
  uint8: 2,
  int8: 3,
  uint16: 4,
  int16: 5,
  int32: 6,
  int64: 7,
  string: 8,
  bool: 9,
  float16: 10,
  float64: 11,
  uint32: 12,
  uint64: 13,
} as const;
export type OnnxDtype = keyof typeof ONNX_DTYPES;

export interface OnnxValueInfo {
  readonly name: string;
  readonly dtype: OnnxDtype;
  /** Fixed sizes, or strings for symbolic (dynamic) dimensions. */
  readonly shape: readonly (number | string)[];
}

export type OnnxAttribute = number | bigint | string | readonly number[] | readonly bigint[] | { readonly float: number };

export interface OnnxNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  readonly domain?: string;
  readonly attributes?: Readonly<Record<string, OnnxAttribute>>;
}

export interface OnnxInitializer {
  readonly name: string;
  readonly dtype: Exclude<OnnxDtype, 'string'>;
  readonly dims: readonly number[];
  readonly data: ArrayBufferView;
}

export interface OnnxModelSpec {
  readonly inputs: readonly OnnxValueInfo[];
  readonly outputs: readonly OnnxValueInfo[];
  readonly nodes: readonly OnnxNode[];
  readonly initializers?: readonly OnnxInitializer[];
  /** Default-domain opset version; default 17. */
  readonly opset?: number;
  /** Extra opset imports, e.g. { 'com.microsoft': 1 }. */
  readonly extraOpsets?: Readonly<Record<string, number>>;
  readonly irVersion?: number;
  readonly graphName?: string;
  readonly producer?: string;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Initializers stored as external data (TensorProto.data_location = EXTERNAL) at these paths. */
  readonly externalData?: Readonly<Record<string, string>>;
}

class Writer {
  private readonly chunks: Uint8Array[] = [];
  private static readonly encoder = new TextEncoder();

  private push(bytes: Uint8Array | number[]): void {
    this.chunks.push(bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes));
  }

  private varint(value: bigint | number): void {
    // Negative int64 values are written as their two's complement: 10 bytes.
    let v = BigInt.asUintN(64, BigInt(value));
    const out: number[] = [];
    do {
      let byte = Number(v & 0x7fn);
      v >>= 7n;
      if (v !== 0n) byte |= 0x80;
      out.push(byte);
    } while (v !== 0n);
    this.push(out);
  }

  private tag(field: number, wireType: 0 | 1 | 2 | 5): void {
    this.varint((field << 3) | wireType);
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, 0);
    this.varint(value);
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, 5);
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setFloat32(0, value, true);
    this.push(bytes);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, 2);
    this.varint(value.length);
    this.push(value);
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, Writer.encoder.encode(value));
  }

  message(field: number, build: (writer: Writer) => void): this {
    const inner = new Writer();
    build(inner);
    return this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    const length = this.chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    const out = new Uint8Array(length);
    let offset = 0;
    for (const chunk of this.chunks) {
      out.set(chunk, offset);
      offset += chunk.length;
    }
    return out;
  }
}

// AttributeProto.AttributeType
const ATTRIBUTE_TYPES = { FLOAT: 1, INT: 2, STRING: 3, FLOATS: 6, INTS: 7 } as const;

function writeValueInfo(w: Writer, info: OnnxValueInfo): void {
  w.string(1, info.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_DTYPES[info.dtype]);
      tensor.message(2, (shape) => {
        for (const dim of info.shape) {
          shape.message(1, (d) => (typeof dim === 'number' ? d.int(1, dim) : d.string(2, dim)));
        }
      });
    }),
  );
}

function writeAttribute(w: Writer, name: string, value: OnnxAttribute): void {
  w.string(1, name);
  if (typeof value === 'string') w.string(4, value).int(20, ATTRIBUTE_TYPES.STRING);
  else if (typeof value === 'bigint' || typeof value === 'number') w.int(3, value).int(20, ATTRIBUTE_TYPES.INT);
  else if ('float' in value) w.float(2, value.float).int(20, ATTRIBUTE_TYPES.FLOAT);
  else if (value.length > 0 && typeof value[0] === 'bigint') {
    for (const v of value) w.int(8, v);
    w.int(20, ATTRIBUTE_TYPES.INTS);
  } else {
    for (const v of value as readonly number[]) {
      if (Number.isInteger(v)) w.int(8, v);
      else w.float(7, v);
    }
    w.int(20, (value as readonly number[]).every(Number.isInteger) ? ATTRIBUTE_TYPES.INTS : ATTRIBUTE_TYPES.FLOATS);
  }
}

/**
 * Encodes a model as ONNX protobuf bytes.
 *
 * @example
 * const bytes = buildOnnxModel({
 *   inputs: [{ name: 'x', dtype: 'float32', shape: ['batch', 4] }],
 *   outputs: [{ name: 'y', dtype: 'float32', shape: ['batch', 4] }],
 *   nodes: [{ op: 'Relu', inputs: ['x'], outputs: ['y'] }],
 * });
 */
export function buildOnnxModel(spec: OnnxModelSpec): Uint8Array {
  const w = new Writer();
  w.int(1, spec.irVersion ?? 8);
  w.string(2, spec.producer ?? 'edgefleet-test-utils');
  w.message(7, (graph) => {
    spec.nodes.forEach((node, index) => {
      graph.message(1, (n) => {
        for (const input of node.inputs) n.string(1, input);
        for (const output of node.outputs) n.string(2, output);
        n.string(3, node.name ?? `${node.op.toLowerCase()}_${index}`);
        n.string(4, node.op);
        for (const [name, value] of Object.entries(node.attributes ?? {})) n.message(5, (a) => writeAttribute(a, name, value));
        if (node.domain) n.string(7, node.domain);
      });
    });
    graph.string(2, spec.graphName ?? 'main');
    for (const init of spec.initializers ?? []) {
      graph.message(5, (t) => {
        for (const dim of init.dims) t.int(1, dim);
        t.int(2, ONNX_DTYPES[init.dtype]);
        t.string(8, init.name);
        const location = spec.externalData?.[init.name];
        if (location !== undefined) {
          t.message(13, (entry) => entry.string(1, 'location').string(2, location));
          t.int(14, 1); // data_location = EXTERNAL
        } else {
          t.bytes(9, new Uint8Array(init.data.buffer, init.data.byteOffset, init.data.byteLength));
        }
      });
    }
    for (const input of spec.inputs) graph.message(11, (v) => writeValueInfo(v, input));
    for (const output of spec.outputs) graph.message(12, (v) => writeValueInfo(v, output));
  });
  w.message(8, (opset) => opset.string(1, '').int(2, spec.opset ?? 17));
  for (const [domain, version] of Object.entries(spec.extraOpsets ?? {})) {
    w.message(8, (opset) => opset.string(1, domain).int(2, version));
  }
  for (const [key, value] of Object.entries(spec.metadata ?? {})) {
    w.message(14, (entry) => entry.string(1, key).string(2, value));
  }
  return w.finish();
}

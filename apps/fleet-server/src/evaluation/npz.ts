/**
 * NumPy's files, read without NumPy: `.npy` (one array: a header, then its elements in C order)
 * and `.npz` (a zip of `.npy` files, as `np.savez` and `np.savez_compressed` write them). Arrays
 * are read row by row (a row is everything under one index of the first axis), so memory stays a
 * batch of rows whatever the file's size. Stored entries are read in place; deflated ones are
 * inflated once into a temporary file next to the dataset and read from there.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import { EdgefleetError } from '@edgefleet/protocol';

export type NpyDtype =
  | 'float16'
  | 'float32'
  | 'float64'
  | 'int8'
  | 'uint8'
  | 'int16'
  | 'uint16'
  | 'int32'
  | 'uint32'
  | 'int64'
  | 'uint64'
  | 'bool';

const DESCRS: Record<string, { dtype: NpyDtype; bytes: number }> = {
  f2: { dtype: 'float16', bytes: 2 },
  f4: { dtype: 'float32', bytes: 4 },
  f8: { dtype: 'float64', bytes: 8 },
  i1: { dtype: 'int8', bytes: 1 },
  u1: { dtype: 'uint8', bytes: 1 },
  i2: { dtype: 'int16', bytes: 2 },
  u2: { dtype: 'uint16', bytes: 2 },
  i4: { dtype: 'int32', bytes: 4 },
  u4: { dtype: 'uint32', bytes: 4 },
  i8: { dtype: 'int64', bytes: 8 },
  u8: { dtype: 'uint64', bytes: 8 },
  b1: { dtype: 'bool', bytes: 1 },
};

export interface NpyArray {
  readonly name: string;
  readonly dtype: NpyDtype;
  /** The full shape; shape[0] is the number of rows (samples). */
  readonly shape: readonly number[];
  /** Reads rows [from, from + count) as plain numbers (int64 beyond 2^53 loses precision). */
  rows(from: number, count: number): Promise<number[]>;
  /** Elements per row. */
  readonly rowSize: number;
}

export interface NpzFile {
  readonly arrays: ReadonlyMap<string, NpyArray>;
  close(): Promise<void>;
}

function invalid(message: string): EdgefleetError {
  return new EdgefleetError('EF_DATASET_INVALID', message);
}

async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buffer, 0, length, position);
  if (bytesRead !== length) throw invalid(`the file ends early: wanted ${length} bytes at ${position}, found ${bytesRead}`);
  return buffer;
}

/** Parses an .npy header at `offset`; the array's element type, shape and where its data starts. */
async function readNpyHeader(handle: FileHandle, offset: number, name: string) {
  const lead = await readAt(handle, offset, 10);
  if (lead.subarray(0, 6).toString('latin1') !== '\x93NUMPY') throw invalid(`"${name}" is not a .npy array (no \\x93NUMPY magic)`);
  const major = lead[6] as number;
  if (major < 1 || major > 3) throw invalid(`"${name}" is .npy format version ${major}; versions 1-3 are read`);
  const headerStart = major === 1 ? 10 : 12;
  const headerLength = major === 1 ? lead.readUInt16LE(8) : (await readAt(handle, offset + 8, 4)).readUInt32LE(0);
  if (headerLength > 65_536) throw invalid(`"${name}" has a ${headerLength}-byte .npy header; at most 65,536`);
  const header = (await readAt(handle, offset + headerStart, headerLength)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([<>|=])([a-z]\d+)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeText)
    throw invalid(`"${name}" has a .npy header this reader does not understand: ${header.trim().slice(0, 120)}`);
  const type = DESCRS[descr[2] as string];
  if (!type) {
    throw invalid(`"${name}" holds ${descr[1]}${descr[2]} elements; supported: ${Object.keys(DESCRS).join(', ')} (no objects or strings)`);
  }
  if (descr[1] === '>' && type.bytes > 1) throw invalid(`"${name}" is big-endian; save it little-endian (arr.astype('<${descr[2]}'))`);
  if (fortran[1] === 'True') throw invalid(`"${name}" is in Fortran order; save np.ascontiguousarray(arr) instead`);
  const shape = (shapeText[1] as string)
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
    .map(Number);
  if (shape.length === 0 || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
    throw invalid(`"${name}" must have at least one axis (its samples); shape is (${shapeText[1]})`);
  }
  return { ...type, shape, dataOffset: offset + headerStart + headerLength };
}

function arrayOf(handle: FileHandle, name: string, header: Awaited<ReturnType<typeof readNpyHeader>>, available: number): NpyArray {
  const rowSize = header.shape.slice(1).reduce((a, b) => a * b, 1);
  const rowBytes = rowSize * header.bytes;
  const count = header.shape[0] as number;
  if (header.dataOffset + count * rowBytes > available) {
    throw invalid(`"${name}" is cut short: its shape (${header.shape.join(', ')}) needs ${count * rowBytes} bytes of data`);
  }
  return {
    name,
    dtype: header.dtype,
    shape: header.shape,
    rowSize,
    async rows(from, n) {
      const take = Math.max(0, Math.min(n, count - from));
      const bytes = await readAt(handle, header.dataOffset + from * rowBytes, take * rowBytes);
      const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const out = new Array<number>(take * rowSize);
      for (let i = 0; i < out.length; i++) out[i] = element(view, i, header.dtype, header.bytes);
      return out;
    },
  };
}

function element(view: DataView, i: number, dtype: NpyDtype, bytes: number): number {
  const at = i * bytes;
  switch (dtype) {
    case 'float16':
      return half(view.getUint16(at, true));
    case 'float32':
      return view.getFloat32(at, true);
    case 'float64':
      return view.getFloat64(at, true);
    case 'int8':
      return view.getInt8(at);
    case 'uint8':
    case 'bool':
      return view.getUint8(at);
    case 'int16':
      return view.getInt16(at, true);
    case 'uint16':
      return view.getUint16(at, true);
    case 'int32':
      return view.getInt32(at, true);
    case 'uint32':
      return view.getUint32(at, true);
    case 'int64':
      return Number(view.getBigInt64(at, true));
    case 'uint64':
      return Number(view.getBigUint64(at, true));
  }
}

interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeader: number;
}

/** The zip's central directory (zip64 included, as NumPy writes it). */
async function zipEntries(handle: FileHandle, size: number): Promise<ZipEntry[]> {
  const tailLength = Math.min(size, 22 + 65_535);
  const tail = await readAt(handle, size - tailLength, tailLength);
  let end = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === 0x06054b50) {
      end = i;
      break;
    }
  }
  if (end < 0) throw invalid('not an .npz file: no zip end-of-directory record (save it with np.savez or np.savez_compressed)');
  let count = tail.readUInt16LE(end + 10);
  let directorySize = tail.readUInt32LE(end + 12);
  let directoryOffset = tail.readUInt32LE(end + 16);
  if (directoryOffset === 0xffffffff || count === 0xffff) {
    // zip64: the locator sits just before the end record and points at the zip64 end record.
    const locator = end - 20;
    if (locator < 0 || tail.readUInt32LE(locator) !== 0x07064b50) throw invalid('the .npz file is zip64 without a zip64 locator');
    const record = await readAt(handle, Number(tail.readBigUInt64LE(locator + 8)), 56);
    if (record.readUInt32LE(0) !== 0x06064b50) throw invalid('the .npz file has a broken zip64 end record');
    count = Number(record.readBigUInt64LE(32));
    directorySize = Number(record.readBigUInt64LE(40));
    directoryOffset = Number(record.readBigUInt64LE(48));
  }
  if (count > 4096) throw invalid(`the .npz file holds ${count} arrays; at most 4,096`);
  if (directoryOffset + directorySize > size) throw invalid('the .npz file is cut short (its directory lies past its end)');
  const directory = await readAt(handle, directoryOffset, directorySize);
  const entries: ZipEntry[] = [];
  for (let at = 0, i = 0; i < count; i++) {
    if (at + 46 > directory.length || directory.readUInt32LE(at) !== 0x02014b50) throw invalid('the .npz file has a broken zip directory');
    const method = directory.readUInt16LE(at + 10);
    let compressedSize = directory.readUInt32LE(at + 20);
    let uncompressed = directory.readUInt32LE(at + 24);
    const nameLength = directory.readUInt16LE(at + 28);
    const extraLength = directory.readUInt16LE(at + 30);
    const commentLength = directory.readUInt16LE(at + 32);
    let localHeader = directory.readUInt32LE(at + 42);
    const name = directory.subarray(at + 46, at + 46 + nameLength).toString('utf8');
    // zip64 extra field (id 1): the 8-byte values of whichever 32-bit fields are 0xFFFFFFFF, in order.
    for (let x = at + 46 + nameLength; x + 4 <= at + 46 + nameLength + extraLength; ) {
      const id = directory.readUInt16LE(x);
      const length = directory.readUInt16LE(x + 2);
      if (id === 1) {
        let field = x + 4;
        if (uncompressed === 0xffffffff) {
          uncompressed = Number(directory.readBigUInt64LE(field));
          field += 8;
        }
        if (compressedSize === 0xffffffff) {
          compressedSize = Number(directory.readBigUInt64LE(field));
          field += 8;
        }
        if (localHeader === 0xffffffff) localHeader = Number(directory.readBigUInt64LE(field));
      }
      x += 4 + length;
    }
    entries.push({ name, method, compressedSize, size: uncompressed, localHeader });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** Fails a stream that carries more than `limit` bytes: a deflated entry never inflates past what its directory says. */
function atMost(limit: number, name: string): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      seen += chunk.length;
      callback(seen > limit ? invalid(`the .npz entry "${name}" inflates past the ${limit} bytes its directory says`) : null, chunk);
    },
  });
}

/**
 * An `.npz` file: every `<name>.npy` entry becomes the array `<name>`. Deflated entries are
 * inflated to `scratch` (a path prefix; removed on close).
 */
export async function openNpz(path: string, scratch: string, maxInflatedBytes = 8 * 1024 ** 3): Promise<NpzFile> {
  const handle = await open(path, 'r');
  const opened: FileHandle[] = [handle];
  const temporary: string[] = [];
  const close = async () => {
    await Promise.all(opened.map((h) => h.close().catch(() => undefined)));
    await Promise.all(temporary.map((p) => rm(p, { force: true })));
  };
  try {
    const { size } = await handle.stat();
    const arrays = new Map<string, NpyArray>();
    for (const entry of await zipEntries(handle, size)) {
      if (!entry.name.endsWith('.npy')) continue;
      const name = entry.name.slice(0, -4);
      const local = await readAt(handle, entry.localHeader, 30);
      if (local.readUInt32LE(0) !== 0x04034b50) throw invalid(`the .npz entry "${entry.name}" has a broken local header`);
      const dataStart = entry.localHeader + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
      if (dataStart + entry.compressedSize > size) throw invalid(`the .npz entry "${entry.name}" is cut short`);
      if (entry.method === 0) {
        arrays.set(name, arrayOf(handle, name, await readNpyHeader(handle, dataStart, name), dataStart + entry.size));
      } else if (entry.method === 8) {
        if (entry.size > maxInflatedBytes) {
          throw invalid(
            `the .npz entry "${entry.name}" inflates to ${entry.size} bytes; at most ${maxInflatedBytes} (EDGEFLEET_EVALUATION_MAX_BYTES)`,
          );
        }
        const file = `${scratch}-${temporary.length}.npy`;
        temporary.push(file);
        await pipeline(
          createReadStream(path, { start: dataStart, end: dataStart + entry.compressedSize - 1 }),
          createInflateRaw(),
          atMost(entry.size, entry.name),
          createWriteStream(file),
        ).catch((cause: unknown) => {
          throw new EdgefleetError('EF_DATASET_INVALID', `the .npz entry "${entry.name}" does not inflate: ${(cause as Error).message}`, {
            cause,
          });
        });
        const inflated = await open(file, 'r');
        opened.push(inflated);
        const { size: inflatedSize } = await inflated.stat();
        if (inflatedSize !== entry.size)
          throw invalid(`the .npz entry "${entry.name}" inflates to ${inflatedSize} bytes, not ${entry.size}`);
        arrays.set(name, arrayOf(inflated, name, await readNpyHeader(inflated, 0, name), inflatedSize));
      } else {
        throw invalid(
          `the .npz entry "${entry.name}" uses zip compression method ${entry.method}; np.savez (stored) and np.savez_compressed (deflate) are read`,
        );
      }
    }
    return { arrays, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** An IEEE 754 half-precision value from its 16 bits. */
function half(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

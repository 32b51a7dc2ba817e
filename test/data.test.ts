/**
 * Sample data for calibration and evaluation (lib/optimize/data.ts): .npy files written
 * byte by byte here (NumPy's format: magic, version, header length, a Python dict literal,
 * C-order little-endian data), .raw files, folders of samples, JavaScript sample modules,
 * the conversions to the model's input types, and the errors for malformed files.
 *
 * A comment marked "Regression" tells what a test caught when it was written (since fixed).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { KilnErrorCode } from '../lib/errors';
import { float16Bits, float16Value } from '../lib/optimize/fp16';
import { loadSamples, randomFeeds, readNpy, writeNpy, type SampleOptions } from '../lib/optimize/data';
import type { ValueInfo } from '../lib/session';
import { ARRAY_TYPE, Tensor, type TensorType } from '../lib/tensor';
import { assertKilnError, thrown } from './helpers/assert-error';

// --- writing .npy bytes by hand --------------------------------------------------------------

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59];

interface NpyParts {
  /** The header dict as written, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }". */
  header: string;
  version?: 1 | 2 | 3 | 4;
  /** Pad the header with spaces so that the data starts at a multiple of 64 (NumPy does). */
  align?: boolean;
}

/** A .npy file's bytes: magic, version, header length (2 bytes in 1.0, 4 in 2.0 and 3.0), header, data. */
function npyBytes({ header, version = 1, align = true }: NpyParts, data: ArrayBufferView | Uint8Array = new Uint8Array(0)): Buffer {
  const prefix = version === 1 ? 10 : 12;
  let text = header;
  const encoded = (s: string): Buffer => Buffer.from(s, version === 3 ? 'utf8' : 'latin1');
  if (align) text += ' '.repeat((64 - ((prefix + encoded(text).length + 1) % 64)) % 64);
  const head = encoded(text + '\n');
  const start = Buffer.alloc(prefix);
  Buffer.from([...MAGIC, version, 0]).copy(start);
  if (version === 1) start.writeUInt16LE(head.length, 8);
  else start.writeUInt32LE(head.length, 8);
  return Buffer.concat([start, head, Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

const dict = (descr: string, shape: string, fortran = 'False'): string => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

let tmp: string;
let counter = 0;

/** Writes `bytes` to a fresh file in the temporary folder; returns its path. */
function file(bytes: Uint8Array | string, name = `f${counter++}.npy`): string {
  const p = path.join(tmp, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, bytes);
  return p;
}

/** A fresh folder in the temporary folder. */
function folder(name = `d${counter++}`): string {
  const p = path.join(tmp, name);
  fs.mkdirSync(p, { recursive: true });
  return p;
}

const input = (name: string, type: ValueInfo['type'], shape: (number | string)[]): ValueInfo => ({ name, type, shape });

/** Asserts `p` rejects with a KilnError of `code` whose message holds every fragment. */
function rejectsWith(p: Promise<unknown>, code: KilnErrorCode, ...fragments: string[]): Promise<void> {
  return assert.rejects(p, (e) => assertKilnError(e, code, ...fragments) !== undefined);
}

function assertTensor(t: Tensor, type: TensorType, dims: number[], values: readonly unknown[]): void {
  assert.equal(t.type, type);
  assert.deepEqual(t.dims, dims);
  if (type !== 'string') assert.ok(t.data instanceof ARRAY_TYPE[type], `data is a ${ARRAY_TYPE[type].name}`);
  assert.deepEqual(Array.from(t.data as ArrayLike<unknown>), values);
}

// --- tests -------------------------------------------------------------------------------------

describe('sample data', () => {
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-data-test-'));
  });
  after(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe('.npy', () => {
    const CASES: [string, TensorType, ArrayBufferView, (number | bigint)[]][] = [
      ['<f2', 'float16', Uint16Array.of(0x3c00, 0xc000, 0x7bff), [0x3c00, 0xc000, 0x7bff]],
      ['<f4', 'float32', Float32Array.of(1.5, -2, 3.25), [1.5, -2, 3.25]],
      ['<f8', 'float64', Float64Array.of(0.1, -1e300, 5), [0.1, -1e300, 5]],
      ['|i1', 'int8', Int8Array.of(-128, 0, 127), [-128, 0, 127]],
      ['<i2', 'int16', Int16Array.of(-32768, 1, 32767), [-32768, 1, 32767]],
      ['<i4', 'int32', Int32Array.of(-(2 ** 31), 7, 2 ** 31 - 1), [-(2 ** 31), 7, 2 ** 31 - 1]],
      ['<i8', 'int64', BigInt64Array.of(-(2n ** 63n), 9n, 2n ** 63n - 1n), [-(2n ** 63n), 9n, 2n ** 63n - 1n]],
      ['|u1', 'uint8', Uint8Array.of(0, 128, 255), [0, 128, 255]],
      ['<u2', 'uint16', Uint16Array.of(0, 1, 65535), [0, 1, 65535]],
      ['<u4', 'uint32', Uint32Array.of(0, 1, 2 ** 32 - 1), [0, 1, 2 ** 32 - 1]],
      ['<u8', 'uint64', BigUint64Array.of(0n, 1n, 2n ** 64n - 1n), [0n, 1n, 2n ** 64n - 1n]],
      ['|b1', 'bool', Uint8Array.of(1, 0, 1), [1, 0, 1]],
    ];

    it('reads every supported dtype (little-endian, C order) into the typed array of its Kiln type', () => {
      for (const [descr, type, data, values] of CASES) {
        assertTensor(readNpy(file(npyBytes({ header: dict(descr, '(3,)') }, data))), type, [3], values);
      }
    });

    it('reads data at any offset (an unpadded header) into an aligned copy', () => {
      // 10 + 60 bytes of header: float64 data at offset 70, not a multiple of 8.
      const header = dict('<f8', '(2,)').padEnd(59, ' ');
      const bytes = npyBytes({ header, align: false }, Float64Array.of(1.25, -3));
      assert.equal(bytes.length - 16, 70);
      const t = readNpy(file(bytes));
      assertTensor(t, 'float64', [2], [1.25, -3]);
      assert.equal((t.data as Float64Array).byteOffset % 8, 0);
    });

    it('format versions 2.0 and 3.0 (4-byte header length; 3.0 in UTF-8)', () => {
      for (const version of [2, 3] as const) {
        const t = readNpy(file(npyBytes({ header: dict('<i4', '(2, 2)'), version }, Int32Array.of(1, 2, 3, 4))));
        assertTensor(t, 'int32', [2, 2], [1, 2, 3, 4]);
      }
    });

    it('shapes: a scalar (), an empty array (0, 3), 3-D, and Python 2 longs (2L, 1L)', () => {
      assertTensor(readNpy(file(npyBytes({ header: dict('<f4', '()') }, Float32Array.of(7)))), 'float32', [], [7]);
      assertTensor(readNpy(file(npyBytes({ header: dict('<f4', '(0, 3)') }))), 'float32', [0, 3], []);
      assertTensor(readNpy(file(npyBytes({ header: dict('|u1', '(2, 1, 2)') }, Uint8Array.of(1, 2, 3, 4)))), 'uint8', [2, 1, 2], [1, 2, 3, 4]);
      assertTensor(readNpy(file(npyBytes({ header: dict('<i2', '(2L, 1L)') }, Int16Array.of(5, 6)))), 'int16', [2, 1], [5, 6]);
    });

    it('headers as other writers lay them out: keys in any order, double quotes, no trailing comma', () => {
      const header = `{"shape": (2,), "fortran_order": False, "descr": "<u2"}`;
      assertTensor(readNpy(file(npyBytes({ header }, Uint16Array.of(3, 4)))), 'uint16', [2], [3, 4]);
    });

    it("byte order '=' (native) reads as little-endian; '>' is fine for single bytes", () => {
      assertTensor(readNpy(file(npyBytes({ header: dict('=f4', '(1,)') }, Float32Array.of(2.5)))), 'float32', [1], [2.5]);
      assertTensor(readNpy(file(npyBytes({ header: dict('>i1', '(2,)') }, Int8Array.of(-1, 1)))), 'int8', [2], [-1, 1]);
    });

    describe('malformed files: E_INVALID_ARGUMENT naming the file and what is wrong', () => {
      const CASES: [string, () => Buffer, KilnErrorCode, ...string[]][] = [
        ['not a .npy file', () => Buffer.from('x,y\n1,2\n'), 'E_INVALID_ARGUMENT', 'is not a .npy file', 'magic'],
        ['an empty file', () => Buffer.alloc(0), 'E_INVALID_ARGUMENT', 'is not a .npy file'],
        ['the magic and nothing else', () => Buffer.from(MAGIC), 'E_INVALID_ARGUMENT', 'truncated .npy header'],
        ['a header length beyond the file', () => npyBytes({ header: dict('<f4', '(1,)') }).subarray(0, 40), 'E_INVALID_ARGUMENT', 'truncated .npy header'],
        ['a version 2.0 file cut inside its header length', () => npyBytes({ header: dict('<f4', '(1,)'), version: 2 }).subarray(0, 11), 'E_INVALID_ARGUMENT', 'truncated .npy header'],
        ['format version 4.0', () => npyBytes({ header: dict('<f4', '(1,)'), version: 4 }, Float32Array.of(1)), 'E_INVALID_ARGUMENT', 'version 4.0 is not supported'],
        ['Fortran order', () => npyBytes({ header: dict('<f4', '(2, 2)', 'True') }, new Float32Array(4)), 'E_INVALID_ARGUMENT', 'Fortran-order arrays are not supported', 'np.ascontiguousarray'],
        ['big-endian float32', () => npyBytes({ header: dict('>f4', '(1,)') }, Float32Array.of(1)), 'E_INVALID_ARGUMENT', "big-endian data ('>f4') is not supported", "newbyteorder('<')"],
        ['complex64', () => npyBytes({ header: dict('<c8', '(1,)') }, new Float32Array(2)), 'E_INVALID_ARGUMENT', "NumPy dtype '<c8' is not supported"],
        ['unicode strings', () => npyBytes({ header: dict('<U3', '(1,)') }, new Uint32Array(3)), 'E_INVALID_ARGUMENT', "NumPy dtype '<U3' is not supported"],
        ['Python objects', () => npyBytes({ header: dict('|O', '(1,)') }, new Uint8Array(8)), 'E_INVALID_ARGUMENT', "NumPy dtype '|O' is not supported"],
        ['a structured dtype', () => npyBytes({ header: `{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }` }, new Uint8Array(8)), 'E_INVALID_ARGUMENT', 'structured NumPy dtypes are not supported'],
        ['truncated data', () => npyBytes({ header: dict('<f4', '(2, 3)') }, new Float32Array(5)), 'E_INVALID_ARGUMENT', 'shape [2,3] of \'<f4\' needs 24 bytes of data, the file has 20'],
        ['data beyond the shape', () => npyBytes({ header: dict('<f4', '(2, 3)') }, new Float32Array(7)), 'E_INVALID_ARGUMENT', 'needs 24 bytes of data, the file has 28'],
        ['a header claiming a million elements', () => npyBytes({ header: dict('<f4', '(1000000,)') }, new Float32Array(1)), 'E_INVALID_ARGUMENT', 'needs 4000000 bytes of data, the file has 4'],
        ['a shape beyond any size', () => npyBytes({ header: dict('<f8', '(4294967296, 4294967296)') }), 'E_INVALID_ARGUMENT', 'overflow'],
        ['a negative dim', () => npyBytes({ header: dict('<f4', '(-1, 2)') }), 'E_INVALID_ARGUMENT', 'the .npy shape [-1,2] is not a tuple of sizes'],
        ['a shape that is not a tuple', () => npyBytes({ header: dict('<f4', "'2'") }), 'E_INVALID_ARGUMENT', 'is not a tuple of sizes'],
        ['a fractional dim', () => npyBytes({ header: dict('<f4', '(1.5,)') }), 'E_INVALID_ARGUMENT', 'cannot read the .npy header'],
        ['a header that is not a dict', () => npyBytes({ header: '[1, 2]' }), 'E_INVALID_ARGUMENT', 'the .npy header is not a dict'],
        ['a header that is not Python', () => npyBytes({ header: "{'descr': '<f4' 'shape': (1,)}" }), 'E_INVALID_ARGUMENT', 'cannot read the .npy header', 'expected ","'],
        ['an unterminated string', () => npyBytes({ header: "{'descr: '<f4'}" }), 'E_INVALID_ARGUMENT', 'cannot read the .npy header'],
        ['a header without fortran_order', () => npyBytes({ header: "{'descr': '<f4', 'shape': (1,), }" }, Float32Array.of(1)), 'E_INVALID_ARGUMENT', "the .npy header has no 'fortran_order'"],
        ['a header without descr', () => npyBytes({ header: "{'fortran_order': False, 'shape': (1,), }" }, Float32Array.of(1)), 'E_INVALID_ARGUMENT', "the .npy header has no 'descr'"],
        ['a header without shape', () => npyBytes({ header: "{'descr': '<f4', 'fortran_order': False, }" }, Float32Array.of(1)), 'E_INVALID_ARGUMENT', "the .npy header has no 'shape'"],
        ['a bool that is not 0 or 1', () => npyBytes({ header: dict('|b1', '(3,)') }, Uint8Array.of(1, 2, 0)), 'E_INVALID_ARGUMENT', 'bool element 1 is 2'],
      ];
      for (const [what, bytes, code, ...fragments] of CASES) {
        it(what, () => {
          const f = file(bytes());
          assertKilnError(thrown(() => readNpy(f)), code, f, ...fragments);
        });
      }

      it('a missing file: E_NOT_FOUND naming it', () => {
        const f = path.join(tmp, 'no-such.npy');
        assertKilnError(thrown(() => readNpy(f)), 'E_NOT_FOUND', f);
      });
    });

    it('writeNpy writes what readNpy (and NumPy) reads: every type, scalars, empty arrays, 64-byte aligned data', () => {
      for (const [descr, type, data, values] of CASES) {
        for (const dims of [[3], [1, 3]]) {
          const f = path.join(tmp, `w-${type}.npy`);
          writeNpy(f, { type, data: data as unknown as ArrayLike<unknown>, dims });
          const bytes = fs.readFileSync(f);
          const headerLength = bytes.readUInt16LE(8);
          assert.equal((10 + headerLength) % 64, 0, 'data aligned');
          const shape = dims.length === 1 ? '(3,)' : '(1, 3)';
          assert.equal(bytes.subarray(10, 10 + headerLength).toString('latin1').trimEnd(), dict(descr, shape));
          assertTensor(readNpy(f), type, dims, values);
        }
      }
      const scalar = path.join(tmp, 'w-scalar.npy');
      writeNpy(scalar, new Tensor('float64', Float64Array.of(2.5), []));
      assertTensor(readNpy(scalar), 'float64', [], [2.5]);
      const empty = path.join(tmp, 'w-empty.npy');
      writeNpy(empty, new Tensor('int32', new Int32Array(0), [2, 0]));
      assertTensor(readNpy(empty), 'int32', [2, 0], []);
    });

    it('writeNpy refuses types NumPy has no code for here (bfloat16, string)', () => {
      assertKilnError(thrown(() => writeNpy(path.join(tmp, 'bf.npy'), new Tensor('bfloat16', new Uint16Array(1), [1]))), 'E_INVALID_ARGUMENT', 'cannot write bfloat16');
      assertKilnError(thrown(() => writeNpy(path.join(tmp, 's.npy'), new Tensor('string', ['a'], [1]))), 'E_INVALID_ARGUMENT', 'cannot write string');
    });
  });

  describe('.raw', () => {
    const raw = (data: ArrayBufferView, name = `r${counter++}.raw`): string => file(Buffer.from(data.buffer, data.byteOffset, data.byteLength), name);

    it("takes the input's type and dims, the first dim from the file's size", async () => {
      const f = raw(Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      const [sample] = await loadSamples(f, [input('x', 'float32', ['N', 4])]);
      assertTensor(sample.x as Tensor, 'float32', [2, 4], [1, 2, 3, 4, 5, 6, 7, 8]);
      const ids = raw(BigInt64Array.of(3n, 1n, 4n));
      assertTensor((await loadSamples(ids, [input('ids', 'int64', ['batch', 3])]))[0].ids as Tensor, 'int64', [1, 3], [3n, 1n, 4n]);
    });

    it('a fixed first dim must match exactly; named dims come from options.dims', async () => {
      const f = raw(new Float32Array(12));
      const [a] = await loadSamples(f, [input('x', 'float32', [3, 4])]);
      assert.deepEqual((a.x as Tensor).dims, [3, 4]);
      const options: SampleOptions = { dims: { seq: 3 } };
      const [b] = await loadSamples(f, [input('x', 'float32', ['N', 'seq', 2])], options);
      assert.deepEqual((b.x as Tensor).dims, [2, 3, 2]);
      await rejectsWith(loadSamples(f, [input('x', 'float32', [2, 4])]), 'E_INVALID_ARGUMENT', f, '12 float32 values do not fill input "x" of shape [2,4]', 'exactly 8');
    });

    it('a scalar input takes a file of exactly one value', async () => {
      const one = raw(Int32Array.of(42));
      assertTensor((await loadSamples(one, [input('k', 'int32', [])]))[0].k as Tensor, 'int32', [], [42]);
      const two = raw(Int32Array.of(4, 2));
      await rejectsWith(loadSamples(two, [input('k', 'int32', [])]), 'E_INVALID_ARGUMENT', two, 'input "k" is a scalar, the file holds 2 int32 values');
    });

    describe('files that do not fit the input: E_INVALID_ARGUMENT naming the file', () => {
      const CASES: [string, ArrayBufferView, ValueInfo, ...string[]][] = [
        ['not a whole number of values', new Uint8Array(10), input('x', 'float32', ['N', 2]), '10 bytes is not a whole number of float32 values'],
        ['not a whole number of rows', new Float32Array(7), input('x', 'float32', ['N', 2]), '7 float32 values do not fill input "x" of shape [N,2] (a multiple of 2 values)'],
        ['an input of zero-size rows', new Float32Array(2), input('x', 'float32', ['N', 0]), 'do not fill input "x"'],
        ['a named dim without a size', new Float32Array(4), input('x', 'float32', ['N', 'seq']), "give the size of 'seq' (--dim seq=N) or use .npy files"],
        ['an unnamed dynamic dim', new Float32Array(4), input('x', 'float32', ['N', '?']), 'dims[1] has no name to size: use .npy files'],
        ['a string input', new Uint8Array(4), input('s', 'string', ['N']), 'input "s" is string; .raw files hold numeric tensors only'],
      ];
      for (const [what, data, info, ...fragments] of CASES) {
        it(what, async () => {
          const f = raw(data);
          await rejectsWith(loadSamples(f, [info]), 'E_INVALID_ARGUMENT', f, ...fragments);
        });
      }
    });
  });

  describe('loadSamples: folders, conversions, modules', () => {
    const X = input('x', 'float32', ['N', 2]);

    it('a folder of files for a single-input model: one sample per file, in natural name order; other files ignored', async () => {
      const dir = folder();
      for (const i of [10, 2, 1]) writeNpy(path.join(dir, `${i}.npy`), new Tensor('float32', Float32Array.of(i, -i), [1, 2]));
      fs.writeFileSync(path.join(dir, '3.raw'), Buffer.from(Float32Array.of(3, -3, 3.5, -3.5).buffer));
      fs.writeFileSync(path.join(dir, 'README.txt'), 'not a sample');
      const samples = await loadSamples(dir, [X]);
      assert.deepEqual(samples.map((s) => Array.from((s.x as Tensor).data as Float32Array)), [[1, -1], [2, -2], [3, -3, 3.5, -3.5], [10, -10]]);
    });

    it('a folder of sub-folders for a multi-input model: <input>.npy or <input>.raw in each, hidden folders skipped', async () => {
      const dir = folder();
      const inputs = [input('ids', 'int64', [1, 'seq']), input('mask/attention', 'int64', [1, 'seq'])];
      for (const [k, name] of ['a', 'b'].entries()) {
        fs.mkdirSync(path.join(dir, name));
        writeNpy(path.join(dir, name, 'ids.npy'), new Tensor('int64', BigInt64Array.of(BigInt(k), 7n), [1, 2]));
        // A name a file cannot hold: '/' is written '_'.
        fs.writeFileSync(path.join(dir, name, 'mask_attention.raw'), Buffer.from(BigInt64Array.of(1n, 1n).buffer));
      }
      fs.mkdirSync(path.join(dir, '.cache'));
      const samples = await loadSamples(dir, inputs, { dims: { seq: 2 } });
      assert.equal(samples.length, 2);
      assertTensor(samples[1].ids as Tensor, 'int64', [1, 2], [1n, 7n]);
      assertTensor(samples[1]['mask/attention'] as Tensor, 'int64', [1, 2], [1n, 1n]);
      // A sample folder missing an input's file.
      fs.mkdirSync(path.join(dir, 'c'));
      writeNpy(path.join(dir, 'c', 'ids.npy'), new Tensor('int64', BigInt64Array.of(0n, 0n), [1, 2]));
      await rejectsWith(loadSamples(dir, inputs, { dims: { seq: 2 } }), 'E_NOT_FOUND', path.join(dir, 'c'), 'no mask/attention.npy or mask/attention.raw for input "mask/attention"');
    });

    it('converts where it is safe: float64 and float16 to float32, float32 to float16, integers to int64 and int32', async () => {
      const cases: [Tensor, ValueInfo, TensorType, (number | bigint)[]][] = [
        [new Tensor('float64', Float64Array.of(0.1, 2), [1, 2]), X, 'float32', [Math.fround(0.1), 2]],
        [new Tensor('float16', Uint16Array.of(float16Bits(0.5), float16Bits(-3)), [1, 2]), X, 'float32', [0.5, -3]],
        [new Tensor('float32', Float32Array.of(0.5, 65504), [1, 2]), input('x', 'float16', ['N', 2]), 'float16', [float16Bits(0.5), 0x7bff]],
        [new Tensor('int32', Int32Array.of(-5, 6), [1, 2]), input('x', 'int64', ['N', 2]), 'int64', [-5n, 6n]],
        [new Tensor('uint8', Uint8Array.of(255, 0), [1, 2]), input('x', 'int32', ['N', 2]), 'int32', [255, 0]],
        [new Tensor('bool', Uint8Array.of(1, 0), [1, 2]), input('x', 'int64', ['N', 2]), 'int64', [1n, 0n]],
        // Regression: int64 (NumPy's default) for an int32 input threw a TypeError (BigInt to number).
        [new Tensor('int64', BigInt64Array.of(-7n, 2n ** 31n - 1n), [1, 2]), input('x', 'int32', ['N', 2]), 'int32', [-7, 2 ** 31 - 1]],
        [new Tensor('uint64', BigUint64Array.of(3n, 2n ** 63n - 1n), [1, 2]), input('x', 'int64', ['N', 2]), 'int64', [3n, 2n ** 63n - 1n]],
        [new Tensor('uint32', Uint32Array.of(2 ** 31 - 1, 0), [1, 2]), input('x', 'int32', ['N', 2]), 'int32', [2 ** 31 - 1, 0]],
      ];
      for (const [t, info, type, values] of cases) {
        const f = path.join(tmp, `conv-${counter++}.npy`);
        writeNpy(f, t);
        const [sample] = await loadSamples(f, [info]);
        assertTensor(sample.x as Tensor, type, [1, 2], values);
      }
    });

    it('refuses data of another kind, integers beyond the input type, and wrong shapes, naming the file', async () => {
      const cases: [Tensor, ValueInfo, KilnErrorCode, string][] = [
        [new Tensor('float32', Float32Array.of(1, 2), [1, 2]), input('x', 'int64', ['N', 2]), 'E_DTYPE_MISMATCH', "the data is float32, the model's input is int64"],
        [new Tensor('int64', BigInt64Array.of(1n, 2n), [1, 2]), X, 'E_DTYPE_MISMATCH', "the data is int64, the model's input is float32"],
        [new Tensor('int64', BigInt64Array.of(1n, 2n ** 31n), [1, 2]), input('x', 'int32', ['N', 2]), 'E_DTYPE_MISMATCH', 'element 1 is 2147483648, beyond int32'],
        [new Tensor('uint64', BigUint64Array.of(2n ** 63n, 0n), [1, 2]), input('x', 'int64', ['N', 2]), 'E_DTYPE_MISMATCH', 'element 0 is 9223372036854775808, beyond int64'],
        [new Tensor('uint32', Uint32Array.of(0, 2 ** 31), [1, 2]), input('x', 'int32', ['N', 2]), 'E_DTYPE_MISMATCH', 'element 1 is 2147483648, beyond int32'],
        [new Tensor('float32', Float32Array.of(1, 2), [2]), X, 'E_SHAPE_MISMATCH', 'dims [2] do not match input "x" of shape [N,2] (rank 1, expected 2)'],
        [new Tensor('float32', Float32Array.of(1, 2, 3), [1, 3]), X, 'E_SHAPE_MISMATCH', 'dims [1,3] do not match input "x" of shape [N,2] (dims[1] must be 2)'],
      ];
      for (const [t, info, code, message] of cases) {
        const f = path.join(tmp, `bad-${counter++}.npy`);
        writeNpy(f, t);
        await rejectsWith(loadSamples(f, [info]), code, f, message);
      }
    });

    it('what it cannot load: E_NOT_FOUND or E_INVALID_ARGUMENT with the path', async () => {
      const two = [X, input('y', 'float32', ['N', 2])];
      const npy = path.join(tmp, 'one.npy');
      writeNpy(npy, new Tensor('float32', Float32Array.of(1, 2), [1, 2]));
      const missing = path.join(tmp, 'nothing-here');
      await rejectsWith(loadSamples(missing, [X]), 'E_NOT_FOUND', `no such file or folder ${missing}`);
      await rejectsWith(loadSamples(npy, []), 'E_INVALID_ARGUMENT', 'the model has no inputs');
      await rejectsWith(loadSamples(npy, two), 'E_INVALID_ARGUMENT', npy, 'a single file feeds a single-input model; this one has 2 inputs');
      const csv = file('1,2\n', 'data.csv');
      await rejectsWith(loadSamples(csv, [X]), 'E_INVALID_ARGUMENT', csv, 'neither a folder, a .npy/.raw file nor a .js/.cjs/.mjs module');
      const empty = folder();
      await rejectsWith(loadSamples(empty, [X]), 'E_NOT_FOUND', empty, 'holds no .npy or .raw files');
      const flat = folder();
      writeNpy(path.join(flat, 'x.npy'), new Tensor('float32', Float32Array.of(1, 2), [1, 2]));
      await rejectsWith(loadSamples(flat, two), 'E_NOT_FOUND', flat, 'holds no sub-folders', 'each sample is a sub-folder holding <input>.npy or <input>.raw');
    });

    describe('JavaScript sample modules', () => {
      const module = (name: string, source: string): string => file(source, name);

      it('a CommonJS array of feeds, plain arrays typed by the input (int64 as BigInt)', async () => {
        const f = module('samples.cjs', `exports.samples = [
          { x: { data: [1, 2], dims: [1, 2] }, ids: { type: 'int64', data: [3, 4], dims: [1, 2] } },
          { x: { type: 'float32', data: new Float32Array([5, 6]), dims: [1, 2] }, ids: { data: [7, 8], dims: [1, 2] } },
        ];`);
        const samples = await loadSamples(f, [X, input('ids', 'int64', [1, 2])]);
        assert.equal(samples.length, 2);
        assertTensor(samples[0].x as Tensor, 'float32', [1, 2], [1, 2]);
        assertTensor(samples[1].ids as Tensor, 'int64', [1, 2], [7n, 8n]);
      });

      it('an ES module whose default export is an async function of the inputs, returning an async generator', async () => {
        const f = module('samples.mjs', `export default async function (inputs) {
          return (async function* () {
            for (let i = 0; i < 3; i++) yield { [inputs[0].name]: { data: [i, i + 0.5], dims: [1, 2] } };
          })();
        }`);
        const samples = await loadSamples(f, [X]);
        assert.deepEqual(samples.map((s) => Array.from((s.x as Tensor).data as Float32Array)), [[0, 0.5], [1, 1.5], [2, 2.5]]);
      });

      it('modules that do not give feeds: E_INVALID_ARGUMENT naming the module and the sample', async () => {
        const cases: [string, string, string][] = [
          ['broken.cjs', 'exports.samples = [', 'cannot load the samples module'],
          ['number.cjs', 'exports.samples = 3;', 'export `samples` (or a default export): an array, an iterable or a function returning one'],
          ['empty.cjs', 'exports.samples = [];', 'gave no samples'],
          ['null.cjs', 'exports.samples = [null];', 'sample 0: expected a feeds object'],
          ['extra.cjs', "exports.samples = [{ x: { data: [1, 2], dims: [1, 2] }, z: { data: [1], dims: [1] } }];", 'sample 0: the model has no input "z" (its inputs: x)'],
          ['missing.cjs', 'exports.samples = [{}];', 'sample 0, input "x": missing'],
          ['nodims.cjs', 'exports.samples = [{ x: { data: [1, 2] } }];', 'input "x": dims must be an array of sizes'],
          ['count.cjs', 'exports.samples = [{ x: { data: [1, 2, 3], dims: [1, 2] } }];', 'input "x": tensor with dims [1,2] needs 2 elements, received 3'],
          ['type.cjs', "exports.samples = [{ x: { type: 'complex', data: [1, 2], dims: [1, 2] } }];", 'input "x": type complex is not a tensor type'],
        ];
        for (const [name, source, message] of cases) {
          const f = module(name, source);
          await rejectsWith(loadSamples(f, [X]), 'E_INVALID_ARGUMENT', f, message);
        }
      });
    });
  });

  describe('randomFeeds', () => {
    const inputs = [input('x', 'float32', ['N', 3]), input('h', 'float16', [2]), input('ids', 'int64', ['N', 'seq']), input('s', 'string', [2])];

    it('seeded values: symbolic dims 1 unless sized, floats around 0, integers 0, strings "kiln"', () => {
      const a = randomFeeds(inputs, { dims: { seq: 4 } });
      assert.deepEqual(Object.keys(a), ['x', 'h', 'ids', 's']);
      assert.deepEqual(a.x.dims, [1, 3]);
      assert.deepEqual(a.ids.dims, [1, 4]);
      assertTensor(a.ids, 'int64', [1, 4], [0n, 0n, 0n, 0n]);
      assertTensor(a.s, 'string', [2], ['kiln', 'kiln']);
      for (const v of Array.from(a.h.data as Uint16Array, float16Value)) assert.ok(Number.isFinite(v) && Math.abs(v) < 4, `${v}`);
      for (const v of a.x.data as Float32Array) assert.ok(Math.abs(v) < 4, `${v}`);
      assert.deepEqual(randomFeeds(inputs, { dims: { seq: 4 } }).x.data, a.x.data, 'same seed, same values');
      assert.notDeepEqual(randomFeeds(inputs, { seed: 2 }).x.data, a.x.data);
      assert.deepEqual(randomFeeds(inputs, { dims: { N: 5 } }).x.dims, [5, 3]);
    });

    it('an input that is not a tensor: E_INVALID_ARGUMENT', () => {
      assertKilnError(thrown(() => randomFeeds([input('seq', 'sequence', [])])), 'E_INVALID_ARGUMENT', 'input "seq" is a sequence');
    });
  });
});

// kiln bench's inputs: random data from metadata and --shape, .npy files of several dtypes
// and versions written here, raw files, perf_analyzer's --input-data JSON, folders, and the
// errors each refuses with.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadInputs, parseInputData, parseShapeFlag, randomInputs, type InputSpec } from '../lib/bench/inputs';
import { KilnError } from '../lib/errors';
import { float16Bits } from '../lib/optimize/fp16';
import type { TensorType } from '../lib/tensor';

/** An .npy file: magic, version, header length, the dict padded with spaces to a multiple of 64, data. */
function npy(descr: string, shape: number[], data: ArrayBufferView, o: { version?: 1 | 2 | 3; fortran?: boolean } = {}): Buffer {
  const version = o.version ?? 1;
  const dict = `{'descr': '${descr}', 'fortran_order': ${o.fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const prefix = version === 1 ? 10 : 12;
  const padded = dict.padEnd(Math.ceil((prefix + dict.length + 1) / 64) * 64 - prefix - 1, ' ') + '\n';
  const head = Buffer.alloc(prefix);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]).copy(head);
  if (version === 1) head.writeUInt16LE(padded.length, 8);
  else head.writeUInt32LE(padded.length, 8);
  return Buffer.concat([head, Buffer.from(padded, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

const refusedWith = (code: string, message: string | RegExp) => (e: unknown): boolean => {
  assert.ok(e instanceof KilnError, `not a KilnError: ${String(e)}`);
  assert.equal(e.code, code);
  if (typeof message === 'string') assert.equal(e.message, message);
  else assert.match(e.message, message);
  return true;
};

const X: InputSpec = { name: 'x', type: 'float32', shape: ['N', 3] };
const IDS: InputSpec = { name: 'ids', type: 'int64', shape: [1, 'T'] };

describe('kiln bench inputs', () => {
  let dir: string;
  before(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-inputs-'))));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('random inputs: shaped by metadata and --shape, seeded, in each type\'s range', () => {
    const specs: InputSpec[] = [X, IDS, { name: 'mask', type: 'bool', shape: [2] }, { name: 'h', type: 'float16', shape: [4] }, { name: 's', type: 'string', shape: [2] }];
    const sets = randomInputs(specs, { x: [2, 3], ids: [1, 5] }, 3, 9);
    assert.equal(sets.length, 3);
    assert.deepEqual(sets[0].x.dims, [2, 3]);
    assert.deepEqual(sets[0].ids.dims, [1, 5]);
    assert.ok(sets[0].x.data instanceof Float32Array && (sets[0].x.data as Float32Array).every((v) => v >= -0.5 && v < 0.5));
    assert.ok(sets[0].ids.data instanceof BigInt64Array && [...(sets[0].ids.data as BigInt64Array)].every((v) => v >= 0n && v < 16n));
    assert.ok([...(sets[0].mask.data as Uint8Array)].every((v) => v === 0 || v === 1));
    assert.ok(sets[0].h.data instanceof Uint16Array);
    assert.equal((sets[0].s.data as string[]).length, 2);
    assert.notDeepEqual([...(sets[0].x.data as Float32Array)], [...(sets[1].x.data as Float32Array)], 'the sets differ');
    assert.deepEqual([...(randomInputs(specs, { x: [2, 3], ids: [1, 5] }, 3, 9)[2].x.data as Float32Array)], [...(sets[2].x.data as Float32Array)], 'the same for the same seed');
  });

  it('random inputs refuse symbolic dims without --shape (listing them) and a --shape that does not fit', () => {
    assert.throws(() => randomInputs([X, IDS], {}, 1),
      refusedWith('E_INVALID_ARGUMENT', 'input "x" [N,3], input "ids" [1,T] have symbolic dims: give their shapes with --shape NAME:d1,d2,... (e.g. --shape x:1,3)'));
    assert.throws(() => randomInputs([X], { x: [2, 4] }, 1), refusedWith('E_INVALID_ARGUMENT', '--shape x:2,4 does not fit input "x" of shape [N,3]'));
    assert.throws(() => randomInputs([X], { x: [2, 3], y: [1] }, 1), refusedWith('E_INVALID_ARGUMENT', '--shape names "y", not one of the model\'s inputs (x)'));
    assert.deepEqual(parseShapeFlag('in:put:1,3,48,320'), ['in:put', [1, 3, 48, 320]]);
    assert.throws(() => parseShapeFlag('x=1,2'), refusedWith('E_INVALID_ARGUMENT', /^--shape takes NAME:d1,d2,\.\.\. .*received x=1,2$/));
    assert.throws(() => parseShapeFlag('x:1,-2'), refusedWith('E_INVALID_ARGUMENT', /received x:1,-2$/));
  });

  it('.npy files: versions 1 to 3, every supported dtype, values and shapes kept', () => {
    const cases: [string, ArrayBufferView, TensorType, number[]][] = [
      ['<f4', new Float32Array([1.5, -2, 3.25, 0, 7, 8]), 'float32', [2, 3]],
      ['<f8', new Float64Array([1e-300, 2]), 'float64', [2]],
      ['<f2', new Uint16Array([float16Bits(1.5), float16Bits(-0.25)]), 'float16', [2, 1]],
      ['|i1', new Int8Array([-128, 127]), 'int8', [2]],
      ['<i2', new Int16Array([-300, 300]), 'int16', [1, 2]],
      ['<i4', new Int32Array([-70000, 1, 2]), 'int32', [3]],
      ['<i8', new BigInt64Array([-(2n ** 40n), 5n]), 'int64', [2]],
      ['|u1', new Uint8Array([0, 255, 7]), 'uint8', [3, 1]],
      ['<u2', new Uint16Array([65535]), 'uint16', [1]],
      ['<u4', new Uint32Array([4e9]), 'uint32', [1]],
      ['<u8', new BigUint64Array([2n ** 63n]), 'uint64', [1]],
      ['|b1', new Uint8Array([1, 0, 1]), 'bool', [3]],
    ];
    cases.forEach(([descr, data, type, shape], i) => {
      const version = ((i % 3) + 1) as 1 | 2 | 3;
      const file = path.join(dir, `case${i}.npy`);
      fs.writeFileSync(file, npy(descr, shape, data, { version }));
      // The model's first dim symbolic: the file's shape gives it.
      const [set] = loadInputs(file, [{ name: 'v', type, shape: ['N', ...shape.slice(1)] }], {});
      assert.equal(set.v.type, type, descr);
      assert.deepEqual(set.v.dims, shape, descr);
      assert.deepEqual([...(set.v.data as ArrayLike<number | bigint> & Iterable<number | bigint>)], [...(data as unknown as Iterable<number | bigint>)], descr);
    });
  });

  it('.npy files that cannot be read are refused with the file and the reason', () => {
    const f4 = new Float32Array([1, 2]);
    const file = path.join(dir, 'in.npy');
    const refused = (bytes: Buffer, message: string, spec: InputSpec = { name: 'x', type: 'float32', shape: ['N'] }): void => {
      fs.writeFileSync(file, bytes);
      assert.throws(() => loadInputs(file, [spec], {}), refusedWith('E_INVALID_ARGUMENT', message));
    };
    refused(npy('>f4', [2], f4), `${file}: big-endian data ('>f4') is not supported; save with a.astype(a.dtype.newbyteorder('<'))`);
    refused(npy('<f4', [2], f4, { fortran: true }), `${file}: Fortran-order arrays are not supported; save with np.ascontiguousarray(a)`);
    refused(npy('<c8', [1], f4), `${file}: NumPy dtype '<c8' is not supported (float16/32/64, int8..64, uint8..64 and bool are)`);
    refused(npy('<f4', [3], f4), `${file}: shape [3] of '<f4' needs 12 bytes of data, the file has 8`);
    refused(Buffer.from('PK\u0003\u0004 not numpy'), `${file} is not a .npy file (no \\x93NUMPY magic)`);
    const v4 = npy('<f4', [2], f4);
    v4[6] = 4;
    refused(v4, `${file}: .npy format version 4.0 is not supported (1.0 to 3.0 are)`);
    refused(npy('<f4', [2], f4).subarray(0, 40), `${file}: truncated .npy header`);
    refused(npy('<f4', [2, 1], f4), `${file}: input "x" has shape [N], the data has [2,1]`);
    refused(npy('<f8', [2], new Float64Array([1, 2])), `${file}: input "x" is float32, the data is float64`);
  });

  it('raw files: the model\'s type, dims from metadata or --shape, the byte count checked', () => {
    const file = path.join(dir, 'x.raw');
    fs.writeFileSync(file, Buffer.from(new Float32Array([1, 2, 3, 4, 5, 6]).buffer));
    const [set] = loadInputs(file, [X], {});
    assert.deepEqual(set.x.dims, [2, 3], 'the one symbolic dim sized to fit');
    assert.deepEqual([...(set.x.data as Float32Array)], [1, 2, 3, 4, 5, 6]);
    assert.throws(() => loadInputs(file, [X], { x: [1, 3] }), refusedWith('E_INVALID_ARGUMENT', `${file}: input "x" of shape [1,3] needs 3 elements, the data holds 6`));
    fs.writeFileSync(file, Buffer.alloc(10));
    assert.throws(() => loadInputs(file, [X], {}), refusedWith('E_INVALID_ARGUMENT', `${file}: input "x" is float32 (4 bytes each), the file holds 10 bytes`));
    assert.throws(() => loadInputs(file, [X, IDS], {}), refusedWith('E_INVALID_ARGUMENT', /one data file feeds a model with one input; this one has 2 \(x, ids\)/));
    assert.throws(() => loadInputs(path.join(dir, 'none.raw'), [X], {}), refusedWith('E_NOT_FOUND', `--input-data: no such file or folder: ${path.join(dir, 'none.raw')} (or give random or zero)`));
  });

  it('a folder holds a file per input: NAME.npy or NAME (raw)', () => {
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder);
    fs.writeFileSync(path.join(folder, 'x.npy'), npy('<f4', [1, 3], new Float32Array([1, 2, 3])));
    fs.writeFileSync(path.join(folder, 'ids'), Buffer.from(new BigInt64Array([7n, 8n]).buffer));
    const [set] = loadInputs(folder, [X, IDS], {});
    assert.deepEqual(set.x.dims, [1, 3]);
    assert.deepEqual([...(set.ids.data as BigInt64Array)], [7n, 8n]);
    assert.deepEqual(set.ids.dims, [1, 2]);
    fs.writeFileSync(path.join(folder, 'x.npy'), npy('<f8', [1, 3], new Float64Array([1, 2, 3])));
    assert.throws(() => loadInputs(folder, [X, IDS], {}), refusedWith('E_INVALID_ARGUMENT', `${path.join(folder, 'x.npy')}: input "x" is float32, the data is float64`));
    fs.rmSync(path.join(folder, 'x.npy'));
    fs.writeFileSync(path.join(folder, 'x'), Buffer.from(new Float32Array([4, 5, 6]).buffer));
    assert.deepEqual([...(loadInputs(folder, [X, IDS], {})[0].x.data as Float32Array)], [4, 5, 6], 'raw when there is no .npy');
    fs.rmSync(path.join(folder, 'ids'));
    assert.throws(() => loadInputs(folder, [X, IDS], {}), refusedWith('E_INVALID_ARGUMENT', `${folder}: no file for input "ids" (ids.npy or ids, raw)`));
  });

  it('perf_analyzer\'s --input-data JSON: flat arrays, content with shape, b64, several sets', () => {
    const b64 = Buffer.from(new Float32Array([9, 8, 7]).buffer).toString('base64');
    const text = JSON.stringify({
      data: [
        { x: [1, 2, 3, 4, 5, 6], ids: [1, 2, 3] },
        { x: { content: [[1, 1, 1]], shape: [1, 3] }, ids: { content: ['12345678901234567'], shape: [1, 1] } },
        { x: { b64 }, ids: [4, 5, 6] },
      ],
    });
    const sets = parseInputData(text, 'in.json', [X, IDS], { ids: [1, 3] });
    assert.equal(sets.length, 3);
    assert.deepEqual(sets[0].x.dims, [2, 3]);
    assert.deepEqual([...(sets[0].ids.data as BigInt64Array)], [1n, 2n, 3n]);
    assert.deepEqual(sets[1].x.dims, [1, 3]);
    assert.deepEqual([...(sets[1].ids.data as BigInt64Array)], [12345678901234567n], 'an int64 beyond 2^53 as a string');
    assert.deepEqual([...(sets[2].x.data as Float32Array)], [9, 8, 7]);
    assert.deepEqual(sets[2].x.dims, [1, 3]);
    const file = path.join(dir, 'in.json');
    fs.writeFileSync(file, text);
    assert.equal(loadInputs(file, [X, IDS], { ids: [1, 3] }).length, 3, 'loadInputs reads .json files');
  });

  it('--input-data JSON errors name the file, the entry and the reason', () => {
    const refused = (doc: unknown, message: string | RegExp): void => assert.throws(() => parseInputData(typeof doc === 'string' ? doc : JSON.stringify(doc), 'in.json', [X, IDS], { ids: [1, 2] }), refusedWith('E_INVALID_ARGUMENT', message));
    refused('{"data": [', /^in\.json: not valid JSON: /);
    refused({ nodata: [] }, 'in.json: expected {"data": [{"INPUT": [...]}, ...]} with at least one entry');
    refused({ data: [{ x: [1, 2, 3] }] }, 'in.json: data[0] lacks input "ids"');
    refused({ data: [{ x: [1, 2, 3], ids: [1, 2], y: [] }] }, 'in.json: data[0] names "y", not among the model\'s inputs (x, ids)');
    refused({ data: [{ x: [1, 2, 3], ids: [1, 2] }, { x: [1, 2], ids: [1, 2] }] }, 'in.json: data[1]: input "x" [N,3] holds 2 elements; give its shape with --shape x:d1,d2,...');
    refused({ data: [{ x: [1, 2, 3], ids: [1, 2, 3] }] }, 'in.json: data[0]: input "ids" of shape [1,2] needs 2 elements, the data holds 3');
    refused({ data: [{ x: { content: [1, 2, 3], shape: [3, 1] }, ids: [1, 2] }] }, 'in.json: data[0]: input "x" has shape [N,3], the data has [3,1]');
    refused({ data: [{ x: [1, 'a', 3], ids: [1, 2] }] }, 'in.json: data[0]: input "x" element 1 is "a", expected a number');
    refused({ data: [{ x: [1, 2, 3], ids: [1.5, 2] }] }, 'in.json: data[0]: input "ids" element 0 is 1.5, expected an integer');
    refused({ data: [[{ x: [1, 2, 3], ids: [1, 2] }]] }, 'in.json: data[0] is a list: sequence streams are not supported, give one object per request');
    refused({ data: [{ x: { b64: Buffer.alloc(5).toString('base64') }, ids: [1, 2] }] }, 'in.json: data[0]: input "x" is float32 (4 bytes each), the b64 data holds 5 bytes');
  });
});

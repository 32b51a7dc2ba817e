import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as ort from 'onnxruntime-node';
import { GraphBuilder, attr, irVersionFor } from '../lib/onnx/builder';
import { decodeModel, encodeModel } from '../lib/onnx/proto';
import { tensorFromProto } from '../lib/onnx/tensor-proto';
import { AttributeType, DataLocation, type AttributeProto, type ModelProto, type TensorProto } from '../lib/onnx/types';
import { KilnError } from '../lib/errors';
import { ONNX_TYPE, type TensorData, type TensorType } from '../lib/tensor';
import {
  ALL_TYPES, BIG_OUTPUT_DIMS, IDENTITY_COMPUTE, addModel, bigOutputModel, convModel,
  convReference, identityModel, mlpModel, mlpReference, multiIOModel, prng, slowModel, slowReference,
  symbolicDimsModel,
} from './fixtures/models';
import { OCR_MODELS } from '../support/ppocr';
import { VAD_MODELS } from './helpers/vad';

// onnxruntime-node is the reference runtime: these tests check the writer, not Kiln's runtime.

function ortTensor(type: TensorType, data: TensorData, dims: readonly number[]): ort.Tensor {
  // ort.Tensor's overloads want a literal type; the loops here hold a union.
  const ctor = ort.Tensor as unknown as new (t: string, d: unknown, dims: readonly number[]) => ort.Tensor;
  return new ctor(type, data, dims);
}

async function run(model: Uint8Array, feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
  const session = await ort.InferenceSession.create(model);
  try {
    return (await session.run(feeds)) as Record<string, ort.Tensor>;
  } finally {
    await session.release();
  }
}

function randomFloats(n: number, seed: number): Float32Array {
  const rand = prng(seed);
  return Float32Array.from({ length: n }, rand);
}

/** Largest |a - b| / max(1, |b|): relative error, absolute near zero. */
function maxRelError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  assert.equal(actual.length, expected.length);
  let worst = 0;
  for (let i = 0; i < expected.length; i++) {
    worst = Math.max(worst, Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i])));
  }
  return worst;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

function expectKilnError(fn: () => unknown, code: string, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof KilnError && e.code === code && pattern.test(e.message));
}

/** Sample data per type, 6 elements; `doubled` is x + x (or !x for bool) where defined. */
const SAMPLES: Record<TensorType, { data: TensorData; doubled?: TensorData }> = {
  float32: { data: new Float32Array([1.5, -2, 0, 3.25, -0.125, 1000]) },
  float64: { data: new Float64Array([1.5, -2, 0, 1e300, -0.125, Math.PI]) },
  // float16 bits: 1, -2, 0.5, 0, 3, 0.25 -> 2, -4, 1, 0, 6, 0.5
  float16: { data: new Uint16Array([0x3c00, 0xc000, 0x3800, 0, 0x4200, 0x3400]), doubled: new Uint16Array([0x4000, 0xc400, 0x3c00, 0, 0x4600, 0x3800]) },
  bfloat16: { data: new Uint16Array([0x3f80, 0xc000, 0x3f00, 0, 0x4040, 0x3e80]) },
  int8: { data: new Int8Array([1, -2, 0, 63, -64, 5]) },
  int16: { data: new Int16Array([1, -2, 0, 16383, -16384, 7]) },
  int32: { data: new Int32Array([1, -2, 0, 1e9, -1e9, 7]) },
  int64: { data: new BigInt64Array([1n, -2n, 0n, 2n ** 62n - 1n, -(2n ** 62n), 7n]) },
  uint8: { data: new Uint8Array([1, 2, 0, 127, 100, 5]) },
  uint16: { data: new Uint16Array([1, 2, 0, 32767, 1000, 5]) },
  uint32: { data: new Uint32Array([1, 2, 0, 2 ** 31 - 1, 1e9, 5]) },
  uint64: { data: new BigUint64Array([1n, 2n, 0n, 2n ** 63n - 1n, 10n ** 18n, 5n]) },
  bool: { data: new Uint8Array([1, 0, 1, 1, 0, 0]), doubled: new Uint8Array([0, 1, 0, 0, 1, 1]) },
  string: { data: ['', 'a', 'héllo', '日本語', 'two words', 'z'] },
};

function expectedZ(type: TensorType): unknown[] {
  const { data, doubled } = SAMPLES[type];
  if (doubled) return Array.from(doubled as ArrayLike<unknown>);
  return Array.from(data as ArrayLike<number | bigint>, (v) => (typeof v === 'bigint' ? v + v : v + v));
}

const FIXTURES: Record<string, () => Uint8Array> = {
  addModel, mlpModel, convModel, bigOutputModel, slowModel, multiIOModel, symbolicDimsModel,
  ...Object.fromEntries(ALL_TYPES.map((t) => [`identityModel(${t})`, () => identityModel(t)])),
};

describe('onnx writer', function () {
  this.timeout(60_000);

  describe('fixtures run in onnxruntime-node', () => {
    it('addModel: y = a + b exactly', async () => {
      const a = randomFloats(8, 1);
      const b = randomFloats(8, 2);
      const { y } = await run(addModel(), { a: ortTensor('float32', a, [2, 4]), b: ortTensor('float32', b, [2, 4]) });
      assert.deepEqual(y.dims, [2, 4]);
      assert.deepEqual(Array.from(y.data as Float32Array), Array.from(a, (v, i) => Math.fround(v + b[i])));
    });

    for (const type of ALL_TYPES) {
      const op = IDENTITY_COMPUTE[type];
      if (type === 'bfloat16') {
        // onnxruntime-node's JS binding rejects bfloat16 values ("Unsupported data type: 16"),
        // so this model can only be checked structurally here.
        it('identityModel(bfloat16): declares bfloat16 input and output', () => {
          const g = decodeModel(identityModel(type)).graph;
          assert.deepEqual([g?.input?.[0].type?.tensorType?.elemType, g?.output?.[0].type?.tensorType?.elemType], [16, 16]);
          assert.equal(g?.output?.length, 1);
        });
        continue;
      }
      it(`identityModel(${type}): y = x exactly${op ? `, z = ${op}` : ''}`, async () => {
        const { data } = SAMPLES[type];
        const out = await run(identityModel(type), { x: ortTensor(type, data, [2, 3]) });
        assert.deepEqual(Object.keys(out).sort(), op ? ['y', 'z'] : ['y']);
        assert.equal(out.y.type, type);
        assert.deepEqual(out.y.dims, [2, 3]);
        assert.deepEqual(Array.from(out.y.data as ArrayLike<unknown>), Array.from(data as ArrayLike<unknown>));
        if (op) {
          assert.equal(out.z.type, type);
          assert.deepEqual(Array.from(out.z.data as ArrayLike<unknown>), expectedZ(type));
        }
      });
    }

    it('identityModel accepts any rank, including scalars and empty tensors', async () => {
      const model = identityModel('float32');
      for (const dims of [[], [0], [1, 2, 1, 2]]) {
        const n = dims.reduce((a, b) => a * b, 1);
        const { y } = await run(model, { x: ortTensor('float32', new Float32Array(n).fill(7), dims) });
        assert.deepEqual(y.dims, dims);
      }
    });

    it('mlpModel equals mlpReference within 1e-4 relative', async () => {
      const n = 3;
      const x = randomFloats(n * 512, 3);
      const { y } = await run(mlpModel(), { x: ortTensor('float32', x, [n, 512]) });
      assert.deepEqual(y.dims, [n, 10]);
      const expected = mlpReference(x, n);
      assert.ok(expected.some((v) => Math.abs(v) > 0.05), 'reference output is not degenerate');
      assert.ok(maxRelError(y.data as Float32Array, expected) < 1e-4);
    });

    it('convModel equals convReference within 1e-4 relative', async () => {
      const n = 2;
      const x = randomFloats(n * 3 * 32 * 32, 4);
      const { y } = await run(convModel(), { x: ortTensor('float32', x, [n, 3, 32, 32]) });
      assert.deepEqual(y.dims, [n, 10]);
      const expected = convReference(x, n);
      assert.ok(expected.some((v) => Math.abs(v) > 0.01), 'reference output is not degenerate');
      assert.ok(maxRelError(y.data as Float32Array, expected) < 1e-4);
    });

    it('bigOutputModel: 16 MiB of y[i] = i + x', async () => {
      const { y } = await run(bigOutputModel(), { x: ortTensor('float32', new Float32Array([3]), [1]) });
      assert.deepEqual(y.dims, [...BIG_OUTPUT_DIMS]);
      const data = y.data as Float32Array;
      assert.equal(data.byteLength, 16 * 1024 * 1024);
      for (let i = 0; i < data.length; i++) {
        if (data[i] !== i + 3) assert.fail(`y[${i}] = ${data[i]}, expected ${i + 3}`);
      }
    });

    it('slowModel: y = tanh^iterations(x), time grows with iterations', async () => {
      const session = await ort.InferenceSession.create(slowModel());
      try {
        const timed = async (iterations: number): Promise<[number, number]> => {
          const t0 = performance.now();
          const { y } = await session.run({
            iterations: ortTensor('int64', new BigInt64Array([BigInt(iterations)]), []),
            x: ortTensor('float32', new Float32Array([0.75]), [1]),
          });
          assert.deepEqual(y.dims, []);
          return [(y.data as Float32Array)[0], performance.now() - t0];
        };
        // ORT's Tanh is a fast approximation (relative error ~2e-4); tanh itself contracts errors.
        await timed(1); // warm-up: the first run allocates
        const [y3, ms3] = await timed(3);
        assert.ok(Math.abs(y3 / slowReference(0.75, 3) - 1) < 1e-3, `y = ${y3}`);
        const [y200, ms200] = await timed(200);
        assert.ok(Math.abs(y200 / slowReference(0.75, 200) - 1) < 1e-3, `y = ${y200}`);
        assert.ok(ms200 > 4 * ms3, `200 steps took ${ms200.toFixed(1)} ms, 3 steps ${ms3.toFixed(1)} ms`);
      } finally {
        await session.release();
      }
    });

    it('multiIOModel: row sums of x and 2 * idx', async () => {
      const out = await run(multiIOModel(), {
        x: ortTensor('float32', new Float32Array([1, 2, 3, -1, -2, 0.5]), [2, 3]),
        idx: ortTensor('int64', new BigInt64Array([5n, -(2n ** 40n)]), [2]),
      });
      assert.deepEqual(Array.from(out.sum.data as Float32Array), [6, -2.5]);
      assert.equal(out.doubled.type, 'int64');
      assert.deepEqual(Array.from(out.doubled.data as BigInt64Array), [10n, -(2n ** 41n)]);
    });

    it('symbolicDimsModel: named, fixed and unknown dims', async () => {
      const session = await ort.InferenceSession.create(symbolicDimsModel());
      try {
        const shapes = session.inputMetadata.map((m) => (m.isTensor ? [m.name, m.shape] : [m.name]));
        assert.deepEqual(shapes[0], ['x', ['batch', 'seq', 8]]);
        assert.equal(shapes[1][0], 'u');
        const out = await session.run({
          x: ortTensor('float32', new Float32Array(2 * 5 * 8).fill(-1), [2, 5, 8]),
          u: ortTensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]),
        });
        assert.deepEqual(out.y.dims, [2, 5, 8]);
        assert.deepEqual(Array.from(out.v.data as Float32Array), [-1, -2, -3, -4]);
      } finally {
        await session.release();
      }
      const [, u] = decodeModel(symbolicDimsModel()).graph?.input ?? [];
      assert.deepEqual(u.type?.tensorType?.shape?.dim, [{}, { dimValue: 4n }]);
    });
  });

  describe('decode(encode(m)) round trip', () => {
    for (const [name, make] of Object.entries(FIXTURES)) {
      it(`${name} re-encodes bit-identically`, () => {
        const bytes = make();
        assert.ok(sameBytes(make(), bytes), 'the fixture is deterministic');
        const model = decodeModel(bytes);
        assert.equal(model.irVersion, 8n);
        assert.deepEqual(model.opsetImport, [{ domain: '', version: 17n }]);
        assert.ok(sameBytes(encodeModel(model), bytes));
      });
    }

    it('keeps every message kind and field, including int64/uint64 extremes', () => {
      const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
      const tensor: TensorProto = {
        dims: [2n], dataType: ONNX_TYPE.int64, int64Data: [2n ** 63n - 1n, -(2n ** 63n)], name: 't',
        segment: { begin: 0n, end: 2n }, docString: 'd', metadataProps: [{ key: 'k', value: 'v' }],
      };
      const external: TensorProto = {
        dims: [1000n], dataType: ONNX_TYPE.float32, name: 'ext', dataLocation: DataLocation.EXTERNAL,
        externalData: [{ key: 'location', value: 'w.bin' }, { key: 'offset', value: '4096' }],
      };
      const typed: TensorProto[] = [
        { dataType: ONNX_TYPE.float32, floatData: [0.5, -1] },
        { dataType: ONNX_TYPE.float64, doubleData: [0.1, -1e300] },
        { dataType: ONNX_TYPE.int32, int32Data: [-(2 ** 31), 2 ** 31 - 1] },
        { dataType: ONNX_TYPE.uint64, uint64Data: [2n ** 64n - 1n, 0n] },
        { dataType: ONNX_TYPE.string, stringData: [utf8('a'), utf8('')] },
        { dataType: ONNX_TYPE.uint8, rawData: new Uint8Array([0, 255]) },
      ];
      const seqType = { sequenceType: { elemType: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'n', denotation: 'BATCH' }, {}] } } } } };
      const attrs: AttributeProto[] = [
        { name: 'f', type: AttributeType.FLOAT, f: 0.25 },
        { name: 'i', type: AttributeType.INT, i: -(2n ** 63n) },
        { name: 's', type: AttributeType.STRING, s: utf8('text'), docString: 'doc' },
        { name: 't', type: AttributeType.TENSOR, t: tensor },
        { name: 'g', type: AttributeType.GRAPH, g: { name: 'sub', node: [{ opType: 'Identity', input: ['a'], output: ['b'] }] } },
        { name: 'st', type: AttributeType.SPARSE_TENSOR, sparseTensor: { values: typed[0], indices: { dataType: 7, int64Data: [0n, 3n] }, dims: [5n] } },
        { name: 'tp', type: AttributeType.TYPE_PROTO, tp: seqType },
        { name: 'fs', type: AttributeType.FLOATS, floats: [1, -0.5] },
        { name: 'is', type: AttributeType.INTS, ints: [1n, 2n ** 62n] },
        { name: 'ss', type: AttributeType.STRINGS, strings: [utf8('x'), utf8('y')] },
        { name: 'ts', type: AttributeType.TENSORS, tensors: typed },
        { name: 'gs', type: AttributeType.GRAPHS, graphs: [{ name: 'a' }, { name: 'b' }] },
        { name: 'sts', type: AttributeType.SPARSE_TENSORS, sparseTensors: [{ dims: [1n] }] },
        { name: 'tps', type: AttributeType.TYPE_PROTOS, typeProtos: [{ mapType: { keyType: 7, valueType: { optionalType: { elemType: { sparseTensorType: { elemType: 1 } } } } } }] },
        { name: 'ref', refAttrName: 'alpha', type: AttributeType.FLOAT },
      ];
      const model: ModelProto = {
        irVersion: 10n,
        opsetImport: [{ domain: '', version: 21n }, { domain: 'com.example', version: 1n }],
        producerName: 'p', producerVersion: '1', domain: 'd', modelVersion: 2n ** 53n + 1n, docString: 'doc',
        graph: {
          name: 'main', docString: 'g',
          node: [{ opType: 'Op', domain: 'com.example', overload: 'o', name: 'n', input: ['x', ''], output: ['y'], attribute: attrs, docString: 'nd', metadataProps: [{ key: 'a', value: 'b' }] }],
          initializer: [tensor, external],
          sparseInitializer: [{ values: { name: 'sv', dataType: 1, floatData: [1] }, indices: { dataType: 7, int64Data: [2n] }, dims: [4n] }],
          input: [{ name: 'x', type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 0n }, { dimParam: 'n' }] } }, denotation: 'TENSOR' }, docString: 'in' }],
          output: [{ name: 'y', type: seqType, metadataProps: [{ key: 'm', value: '' }] }],
          valueInfo: [{ name: 'v' }],
          quantizationAnnotation: [{ tensorName: 'x', quantParameterTensorNames: [{ key: 'SCALE_TENSOR', value: 's' }] }],
          metadataProps: [{ key: 'gk', value: 'gv' }],
        },
        metadataProps: [{ key: 'author', value: 'kiln' }],
        trainingInfo: [{ initialization: { name: 'init' }, algorithm: { name: 'algo' }, initializationBinding: [{ key: 'a', value: 'b' }], updateBinding: [{ key: 'c', value: 'd' }] }],
        functions: [{
          name: 'F', domain: 'com.example', overload: 'o', input: ['a'], output: ['b'], attribute: ['alpha'],
          attributeProto: [{ name: 'beta', type: AttributeType.INT, i: 3n }], node: [{ opType: 'Identity', input: ['a'], output: ['b'] }],
          docString: 'fd', opsetImport: [{ domain: '', version: 21n }], valueInfo: [{ name: 'a' }], metadataProps: [{ key: 'x', value: 'y' }],
        }],
      };
      const bytes = encodeModel(model);
      const decoded = decodeModel(bytes);
      assert.deepStrictEqual(decoded, model);
      assert.ok(sameBytes(encodeModel(decoded), bytes));
    });

    for (const file of [...Object.values(VAD_MODELS), OCR_MODELS.det, OCR_MODELS.rec, OCR_MODELS.cls]) {
      it(`${path.basename(file)} (a real model) re-encodes bit-identically and reloads`, async () => {
        const bytes = new Uint8Array(fs.readFileSync(file));
        const model = decodeModel(bytes);
        for (const init of model.graph?.initializer ?? []) tensorFromProto(init);
        const again = encodeModel(model);
        assert.ok(sameBytes(again, bytes));
        await (await ort.InferenceSession.create(again)).release();
      });
    }

    it('decoded bytes fields are views into the input buffer', () => {
      const g = new GraphBuilder('views');
      g.initializer('w', 'float32', [2], new Float32Array([1, 2]));
      const bytes = g.build();
      const raw = decodeModel(bytes).graph?.initializer?.[0].rawData;
      assert.ok(raw instanceof Uint8Array && raw.buffer === bytes.buffer);
    });

    it('encodes into a plain Uint8Array that owns its buffer', () => {
      const bytes = addModel();
      assert.equal(Object.getPrototypeOf(bytes), Uint8Array.prototype);
      assert.deepEqual([bytes.byteOffset, bytes.buffer.byteLength], [0, bytes.byteLength]);
    });

    it('rejects bytes that are not a ModelProto', () => {
      expectKilnError(() => decodeModel(new Uint8Array([0x0a, 0xff, 0xff])), 'E_MODEL_LOAD', /not a valid ONNX model/);
    });
  });

  describe('GraphBuilder', () => {
    it('infers attribute types and honours explicit ones', () => {
      const g = new GraphBuilder('attrs');
      const x = g.input('x', 'float32', [1]);
      const body = g.subgraph('body');
      body.output(body.node('Identity', [x]), 'float32', [1]);
      g.node('Custom', [x], {
        domain: 'com.example',
        attrs: {
          int: 3, big: 2n ** 63n - 1n, float: 0.5, str: 'héllo', ints: [1, -2], bigs: [1n, 2n], floats: [0.5, 2],
          strs: ['a', 'b'], fl: attr.float(1), fls: attr.floats([1, 2]), i: attr.int(2 ** 40),
          t: attr.tensor('int32', [2], new Int32Array([7, 8])), body,
        },
      });
      const node = decodeModel(g.build({ domains: { 'com.example': 1 } })).graph?.node?.[0];
      const byName = new Map((node?.attribute ?? []).map((a) => [a.name, a]));
      const text = (b?: Uint8Array): string => new TextDecoder().decode(b);
      assert.deepEqual(byName.get('int'), { name: 'int', type: AttributeType.INT, i: 3n });
      assert.equal(byName.get('big')?.i, 2n ** 63n - 1n);
      assert.deepEqual(byName.get('float'), { name: 'float', type: AttributeType.FLOAT, f: 0.5 });
      assert.equal(text(byName.get('str')?.s), 'héllo');
      assert.deepEqual(byName.get('ints')?.ints, [1n, -2n]);
      assert.deepEqual(byName.get('bigs')?.ints, [1n, 2n]);
      assert.deepEqual(byName.get('floats'), { name: 'floats', type: AttributeType.FLOATS, floats: [0.5, 2] });
      assert.deepEqual(byName.get('strs')?.strings?.map(text), ['a', 'b']);
      assert.deepEqual(byName.get('fl'), { name: 'fl', type: AttributeType.FLOAT, f: 1 });
      assert.deepEqual(byName.get('fls')?.floats, [1, 2]);
      assert.equal(byName.get('i')?.i, 2n ** 40n);
      const t = byName.get('t')?.t;
      assert.ok(t);
      assert.deepEqual(Array.from(tensorFromProto(t).data as Int32Array), [7, 8]);
      assert.equal(byName.get('body')?.type, AttributeType.GRAPH);
      assert.equal(byName.get('body')?.g?.node?.[0].opType, 'Identity');
    });

    it('a tensor attribute loads in onnxruntime-node (Constant)', async () => {
      const g = new GraphBuilder('constant');
      const x = g.input('x', 'float32', [3]);
      const c = g.node('Constant', [], { attrs: { value: attr.tensor('float32', [3], new Float32Array([1, 2, 3])) } });
      g.output(g.node('Mul', [x, c], { outputs: 'y' }), 'float32', [3]);
      const { y } = await run(g.build(), { x: ortTensor('float32', new Float32Array([2, 2, 2]), [3]) });
      assert.deepEqual(Array.from(y.data as Float32Array), [2, 4, 6]);
    });

    it('stores initializers of all 14 types exactly', () => {
      const g = new GraphBuilder('init');
      for (const type of ALL_TYPES) g.initializer(`w_${type}`, type, [3, 2], SAMPLES[type].data);
      g.initializer('scalar', 'float32', [], new Float32Array([42]));
      const inits = decodeModel(g.build()).graph?.initializer ?? [];
      assert.equal(inits.length, ALL_TYPES.length + 1);
      for (const [i, type] of ALL_TYPES.entries()) {
        const t = tensorFromProto(inits[i]);
        assert.equal(t.type, type);
        assert.deepEqual(t.dims, [3, 2]);
        assert.deepEqual(Array.from(t.data as ArrayLike<unknown>), Array.from(SAMPLES[type].data as ArrayLike<unknown>));
      }
      const scalar = tensorFromProto(inits[ALL_TYPES.length]);
      assert.deepEqual([scalar.dims, Array.from(scalar.data as Float32Array)], [[], [42]]);
    });

    it('reads tensors stored in the typed *_data fields', () => {
      const cases: [TensorProto, unknown[]][] = [
        [{ dataType: ONNX_TYPE.float32, dims: [2n], floatData: [0.5, -1] }, [0.5, -1]],
        [{ dataType: ONNX_TYPE.float64, dims: [1n], doubleData: [0.1] }, [0.1]],
        [{ dataType: ONNX_TYPE.int8, dims: [2n], int32Data: [-128, 127] }, [-128, 127]],
        [{ dataType: ONNX_TYPE.float16, dims: [1n], int32Data: [0xc000] }, [0xc000]],
        [{ dataType: ONNX_TYPE.bool, dims: [2n], int32Data: [1, 0] }, [1, 0]],
        [{ dataType: ONNX_TYPE.int64, dims: [1n], int64Data: [-(2n ** 63n)] }, [-(2n ** 63n)]],
        [{ dataType: ONNX_TYPE.uint32, dims: [1n], uint64Data: [2n ** 32n - 1n] }, [2 ** 32 - 1]],
        [{ dataType: ONNX_TYPE.uint64, dims: [1n], uint64Data: [2n ** 64n - 1n] }, [2n ** 64n - 1n]],
      ];
      for (const [proto, expected] of cases) {
        assert.deepEqual(Array.from(tensorFromProto(proto).data as ArrayLike<unknown>), expected);
      }
      expectKilnError(() => tensorFromProto({ dataType: ONNX_TYPE.float32, dims: [3n], floatData: [1] }), 'E_INVALID_ARGUMENT', /has 1 elements/);
      expectKilnError(() => tensorFromProto({ dataType: ONNX_TYPE.float32, dims: [2n], rawData: new Uint8Array(4) }), 'E_INVALID_ARGUMENT', /raw_data has 4 bytes/);
      expectKilnError(() => tensorFromProto({ dataType: 1, dataLocation: DataLocation.EXTERNAL }), 'E_INVALID_ARGUMENT', /stored externally/);
      expectKilnError(() => tensorFromProto({ dataType: 17 }), 'E_DTYPE_MISMATCH', /type 17/);
    });

    it('writes shapes: fixed, symbolic, unknown dims and unknown rank', () => {
      const g = new GraphBuilder('shapes');
      g.input('a', 'float32', [2, 'n', null]);
      g.input('b', 'int64');
      g.input('c', 'bool', []);
      const [a, b, c] = decodeModel(g.build()).graph?.input ?? [];
      assert.deepEqual(a.type, { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 2n }, { dimParam: 'n' }, {}] } } });
      assert.deepEqual(b.type, { tensorType: { elemType: 7 } });
      assert.deepEqual(c.type, { tensorType: { elemType: 9, shape: {} } });
    });

    it('names outputs: generated, named, counted and listed', () => {
      const g = new GraphBuilder('names');
      const x = g.input('x', 'float32', [4]);
      assert.equal(g.node('Relu', [x]), 'Relu_0');
      assert.equal(g.node('Relu', [x], { name: 'act' }), 'act');
      assert.equal(g.node('Relu', [x], { outputs: 'r' }), 'r');
      assert.deepEqual(g.node('Split', [x], { outputs: 2, attrs: { num_outputs: 2 } }), ['Split_0_out0', 'Split_0_out1']);
      assert.deepEqual(g.node('TopK', [x, ''], { outputs: ['vals', ''] }), ['vals', '']);
      expectKilnError(() => g.node('TopK', [x], { outputs: ['o', 'o'] }), 'E_INVALID_ARGUMENT', /listed twice/);
    });

    it('sets ir_version from the opset, or as given', () => {
      assert.deepEqual([1, 8, 9, 10, 11, 12, 14, 15, 17, 18, 19, 20, 21, 22, 23].map(irVersionFor), [3, 3, 4, 5, 6, 7, 7, 8, 8, 8, 9, 9, 10, 10, 11]);
      expectKilnError(() => irVersionFor(99), 'E_INVALID_ARGUMENT', /pass irVersion/);
      const g = new GraphBuilder('ir');
      g.output(g.input('x', 'float32', [1]), 'float32', [1]);
      const m = decodeModel(g.build({ opset: 13, irVersion: 9, metadata: { k: 'v' }, docString: 'doc' }));
      assert.deepEqual([m.irVersion, m.opsetImport?.[0].version, m.metadataProps, m.docString], [9n, 13n, [{ key: 'k', value: 'v' }], 'doc']);
    });

    it('rejects mistakes where they are made', () => {
      const g = new GraphBuilder('errors');
      const x = g.input('x', 'float32', [2]);
      expectKilnError(() => g.node('Relu', ['nope']), 'E_INVALID_ARGUMENT', /Relu input 'nope' is not defined/);
      expectKilnError(() => g.output('nope', 'float32'), 'E_INVALID_ARGUMENT', /output 'nope' is not defined/);
      expectKilnError(() => g.input('x', 'float32'), 'E_INVALID_ARGUMENT', /already used/);
      expectKilnError(() => g.node('Relu', [x], { outputs: 'x' }), 'E_INVALID_ARGUMENT', /already used/);
      expectKilnError(() => g.initializer('w', 'float32', [3], new Float32Array(2)), 'E_INVALID_ARGUMENT', /needs 3 elements/);
      expectKilnError(() => g.initializer('w', 'float32', [2], new Float64Array(2) as unknown as Float32Array), 'E_DTYPE_MISMATCH', /Float32Array/);
      expectKilnError(() => g.initializer('b', 'bool', [1], new Uint8Array([2])), 'E_INVALID_ARGUMENT', /must be 0 or 1/);
      expectKilnError(() => g.node('Relu', [x], { attrs: { a: [] } }), 'E_INVALID_ARGUMENT', /Relu\.a.*attr\.ints/);
      expectKilnError(() => attr.int(0.5), 'E_INVALID_ARGUMENT', /not an exact integer/);
      expectKilnError(() => attr.int(2n ** 63n), 'E_INVALID_ARGUMENT', /does not fit in int64/);
      expectKilnError(() => g.input('y', 'float32', [-1]), 'E_INVALID_ARGUMENT', /dimension -1/);
      expectKilnError(() => g.input('y', 'complex64' as TensorType), 'E_INVALID_ARGUMENT', /unknown element type complex64/);
      g.node('Custom', [x], { domain: 'com.example' });
      expectKilnError(() => g.build(), 'E_INVALID_ARGUMENT', /domain 'com\.example'.*not imported/);
    });
  });
});

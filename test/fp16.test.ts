/**
 * FP16 conversion (lib/optimize/fp16.ts) on models built with the ONNX writer: what the
 * converted graph holds (float16 initializers, Casts at the float32 boundaries, blocked
 * nodes), that it loads and runs in Kiln and in onnxruntime-node within float16's error of
 * the float32 model, the options, and the float16 rounding itself.
 *
 * A comment marked "Regression" tells what a test caught when it was written (since fixed).
 */
import { strict as assert } from 'assert';
import ortNode = require('onnxruntime-node');
import { Session } from '../lib';
import { attr, DataLocation, decodeModel, encodeModel, GraphBuilder, tensorFromProto, type ModelProto, type NodeProto, type TensorProto } from '../lib/onnx';
import { addValueTypes, convertFloat16, float16Bits, float16Value, FLOAT16_BLOCKED_OPS, toFloat16Array, type Float16Options, type Float16Report } from '../lib/optimize/fp16';
import { readModel } from '../lib/optimize/io';
import { ONNX_TYPE, type TensorLike, type TensorType } from '../lib/tensor';
import { convModel, convReference, mlpModel, mlpReference, prng, slowModel, slowReference } from './fixtures/models';
import { assertKilnError, thrown } from './helpers/assert-error';

const FLOAT = ONNX_TYPE.float32;
const FLOAT16 = ONNX_TYPE.float16;

// --- helpers -----------------------------------------------------------------------------------

interface Converted {
  /** The converted model as written and read back. */
  model: ModelProto;
  bytes: Uint8Array;
  report: Float16Report;
}

function convert(source: Uint8Array, options?: Float16Options): Converted {
  const model = readModel(source);
  const report = convertFloat16(model, options);
  const bytes = encodeModel(model);
  return { model: decodeModel(bytes), bytes, report };
}

const nodesOf = (m: ModelProto, op: string): NodeProto[] => (m.graph?.node ?? []).filter((n) => n.opType === op);
const nodeNamed = (m: ModelProto, name: string): NodeProto => {
  const n = (m.graph?.node ?? []).find((x) => x.name === name);
  assert.ok(n, `node ${name}`);
  return n;
};
const producerOf = (m: ModelProto, value: string): NodeProto | undefined => (m.graph?.node ?? []).find((n) => n.output?.includes(value));
const initializer = (m: ModelProto, name: string): TensorProto | undefined => (m.graph?.initializer ?? []).find((t) => t.name === name);
const ioType = (m: ModelProto, name: string): number | undefined =>
  [...(m.graph?.input ?? []), ...(m.graph?.output ?? [])].find((v) => v.name === name)?.type?.tensorType?.elemType;
const castTo = (n: NodeProto | undefined): number | undefined =>
  n?.opType === 'Cast' ? Number(n.attribute?.find((a) => a.name === 'to')?.i) : undefined;

/** The element type `value` has in the converted graph: declared, an initializer's, or a Cast's `to`. */
function typeIn(m: ModelProto, value: string): number | undefined {
  return initializer(m, value)?.dataType ?? ioType(m, value) ?? castTo(producerOf(m, value));
}

/** Asserts node `name` reads its input `index` in `type` (through a Cast or directly). */
function assertReads(m: ModelProto, name: string, index: number, type: number): void {
  const value = nodeNamed(m, name).input?.[index] as string;
  assert.equal(typeIn(m, value), type, `${name} input ${index} (${value})`);
}

function float32(rand: () => number, dims: number[], scale = 1): TensorLike {
  const n = dims.reduce((a, b) => a * b, 1);
  return { type: 'float32', data: Float32Array.from({ length: n }, () => rand() * scale), dims };
}

function asFloat16(t: TensorLike): TensorLike {
  return { type: 'float16', data: Uint16Array.from(t.data as Float32Array, float16Bits), dims: t.dims };
}

/** A tensor's values as numbers (float16 decoded). */
function numbers(t: { type: string; data: unknown }): number[] {
  const data = Array.from(t.data as ArrayLike<number | bigint>, Number);
  return t.type === 'float16' ? data.map(float16Value) : data;
}

type Outputs = Record<string, { type: string; data: unknown; dims: readonly number[] }>;

async function runKiln(model: Uint8Array, feeds: Record<string, TensorLike>): Promise<Outputs> {
  const session = await Session.create(model);
  try {
    return await session.run(feeds);
  } finally {
    await session.dispose();
  }
}

async function runOrt(model: Uint8Array, feeds: Record<string, TensorLike>): Promise<Outputs> {
  const session = await ortNode.InferenceSession.create(model);
  try {
    const ortFeeds: Record<string, ortNode.Tensor> = {};
    for (const [k, t] of Object.entries(feeds)) ortFeeds[k] = new ortNode.Tensor(t.type as ortNode.Tensor.Type, t.data as ortNode.Tensor.DataType, t.dims);
    return (await session.run(ortFeeds)) as unknown as Outputs;
  } finally {
    await session.release();
  }
}

/** Largest |a - b| over the largest |b| (at least 1). */
function relativeError(a: readonly number[], b: readonly number[]): number {
  assert.equal(a.length, b.length, 'length');
  let err = 0;
  let mag = 1;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Number.isNaN(a[i]) ? Infinity : Math.abs(a[i] - b[i]));
    mag = Math.max(mag, Math.abs(b[i]));
  }
  return err / mag;
}

/**
 * Runs `fp32` in onnxruntime-node (the reference) and `fp16` in Kiln and in onnxruntime-node
 * on `feeds` (converted to float16 for the float16 inputs), and checks every output of the
 * reference within `tolerance` (relative error, see relativeError), and of the same type
 * where `sameTypes`. Returns Kiln's outputs.
 */
async function assertCloseToFp32(fp32: Uint8Array, fp16: Converted, feeds: Record<string, TensorLike>, tolerance: number): Promise<Outputs> {
  const half: Record<string, TensorLike> = {};
  for (const [k, t] of Object.entries(feeds)) half[k] = ioType(fp16.model, k) === FLOAT16 && t.type === 'float32' ? asFloat16(t) : t;
  const reference = await runOrt(fp32, feeds);
  const [kiln, ort] = [await runKiln(fp16.bytes, half), await runOrt(fp16.bytes, half)];
  for (const [name, ref] of Object.entries(reference)) {
    for (const [runtime, out] of [['kiln', kiln], ['onnxruntime-node', ort]] as const) {
      assert.ok(out[name], `${runtime}: output ${name}`);
      assert.deepEqual([...out[name].dims], [...ref.dims], `${runtime}: dims of ${name}`);
      const err = relativeError(numbers(out[name]), numbers(ref));
      assert.ok(err <= tolerance, `${runtime}: output ${name} off by ${err} (tolerance ${tolerance})`);
    }
  }
  return kiln;
}

// --- models ------------------------------------------------------------------------------------

/** x [N,8] -> MatMul 'mm' -> h; ArgMax, TopK and Softmax of h as outputs. */
function selectionModel(): Uint8Array {
  const rand = prng(3);
  const g = new GraphBuilder('selection');
  const x = g.input('x', 'float32', ['N', 8]);
  const w = g.initializer('w', 'float32', [8, 16], float32(rand, [8, 16]).data as Float32Array);
  const h = g.node('MatMul', [x, w], { name: 'mm', outputs: 'h' });
  g.output(g.node('ArgMax', [h], { name: 'argmax', attrs: { axis: 1, keepdims: 0 }, outputs: 'best' }), 'int64', ['N']);
  const k = g.initializer('k', 'int64', [1], BigInt64Array.of(3n));
  const [values, indices] = g.node('TopK', [h, k], { name: 'topk', outputs: ['top_values', 'top_indices'] });
  g.output(values, 'float32', ['N', 3]);
  g.output(indices, 'int64', ['N', 3]);
  g.output(g.node('Softmax', [h], { name: 'softmax', attrs: { axis: 1 }, outputs: 'p' }), 'float32', ['N', 16]);
  return g.build();
}

/**
 * x [2,4] -> MatMul(w) 'mm' and CumSum(w) 'cumsum' share the initializer w; Mul 'scale' and
 * CumSum 'cumsum_c' share the Constant c; Add 'shift' alone reads the Constant d; 'mm2'
 * also reads w. y = (x·w + x·w) * c + d, z = cumsum(w) + cumsum(c).
 */
function sharedWeightsModel(): Uint8Array {
  const rand = prng(17);
  const g = new GraphBuilder('shared');
  const x = g.input('x', 'float32', [2, 4]);
  const w = g.initializer('w', 'float32', [4, 4], float32(rand, [4, 4]).data as Float32Array);
  const axis = g.initializer('axis', 'int64', [], BigInt64Array.of(0n));
  const c = g.node('Constant', [], { name: 'const_c', outputs: 'c', attrs: { value: attr.tensor('float32', [4], Float32Array.of(0.5, -1, 2, 0.25)) } });
  const d = g.node('Constant', [], { name: 'const_d', outputs: 'd', attrs: { value_floats: attr.floats([0.1, 0.2, 0.3, 0.4]) } });
  const e = g.node('Constant', [], { name: 'const_e', outputs: 'e', attrs: { value_float: attr.float(1.5) } });
  const a = g.node('Add', [g.node('MatMul', [x, w], { name: 'mm' }), g.node('MatMul', [x, w], { name: 'mm2' })], { name: 'sum' });
  const scaled = g.node('Mul', [g.node('Mul', [a, c], { name: 'scale' }), e], { name: 'scale_e' });
  g.output(g.node('Add', [scaled, d], { name: 'shift', outputs: 'y' }), 'float32', [2, 4]);
  const cw = g.node('CumSum', [w, axis], { name: 'cumsum' });
  const cc = g.node('CumSum', [c, axis], { name: 'cumsum_c' });
  g.output(g.node('Add', [cw, cc], { name: 'z_add', outputs: 'z' }), 'float32', [4, 4]);
  return g.build();
}

// --- tests -------------------------------------------------------------------------------------

describe('fp16 conversion', function () {
  this.timeout(60_000);

  describe('float16 bits', () => {
    it('every float16 value survives float16Value -> float16Bits (NaNs stay NaN, -0 stays -0)', () => {
      for (let h = 0; h < 0x10000; h++) {
        const v = float16Value(h);
        const back = float16Bits(v);
        if (Number.isNaN(v)) assert.ok((back & 0x7c00) === 0x7c00 && (back & 0x3ff) !== 0, `NaN 0x${h.toString(16)} -> 0x${back.toString(16)}`);
        else assert.equal(back, h, `0x${h.toString(16)} (${v})`);
      }
      assert.ok(Object.is(float16Value(0x8000), -0));
      assert.equal(float16Value(0x7bff), 65504);
      assert.equal(float16Value(0x0001), 2 ** -24);
    });

    it('rounds to nearest, ties to even, exactly as ONNX Runtime casts float32 to float16', async () => {
      // Midpoints between neighbours (ties), a little either side of them, every exponent's
      // edges, overflow, underflow, and random float32 bit patterns.
      const values: number[] = [0, -0, 65504, 65519, 65520, 65536, 1e9, -1e9, Infinity, -Infinity, 2 ** -25, 2 ** -26, 3 * 2 ** -26, 2 ** -24 * 1.5, 2 ** -14, 2 ** -14 * (1 - 2 ** -11)];
      for (let h = 0; h < 0x7bff; h += 7) {
        const mid = (float16Value(h) + float16Value(h + 1)) / 2;
        values.push(mid, -mid, Math.fround(mid * (1 + 2 ** -20)), Math.fround(mid * (1 - 2 ** -20)));
      }
      const rand = prng(7);
      const bits = new Uint32Array(4096).map(() => Math.floor((rand() + 1) * 2 ** 31));
      for (const v of new Float32Array(bits.buffer)) if (!Number.isNaN(v)) values.push(v);
      const input = Float32Array.from(values);
      const g = new GraphBuilder('cast');
      g.output(g.node('Cast', [g.input('x', 'float32', [input.length])], { attrs: { to: FLOAT16 }, outputs: 'y' }), 'float16', [input.length]);
      const out = await runOrt(g.build(), { x: { type: 'float32', data: input, dims: [input.length] } });
      const ort = out.y.data as Uint16Array;
      input.forEach((v, i) => assert.equal(float16Bits(v), ort[i], `${v}: 0x${float16Bits(v).toString(16)}, ONNX Runtime 0x${ort[i].toString(16)}`));
      // Ties to even: 1 + 2^-11 lies midway between 1 (even) and 1 + 2^-10 (odd).
      assert.equal(float16Bits(1 + 2 ** -11), 0x3c00);
      assert.equal(float16Bits(1 + 3 * 2 ** -11), 0x3c02);
    });

    it('toFloat16Array clamps finite values beyond ±65504 and counts them; infinities and NaN are kept', () => {
      const { data, clamped, underflowed } = toFloat16Array([1e9, -1e9, -3.4e38, 65504, 65519, Infinity, -Infinity, NaN, 1.5]);
      assert.deepEqual([...data.slice(0, 5)], [0x7bff, 0xfbff, 0xfbff, 0x7bff, 0x7bff]);
      assert.deepEqual([...data.slice(5, 7)], [0x7c00, 0xfc00]);
      assert.ok(Number.isNaN(float16Value(data[7])));
      assert.equal(float16Value(data[8]), 1.5);
      assert.equal(clamped, 4, '1e9, -1e9, -3.4e38 and 65519 (which rounds to 65504 anyway)');
      assert.equal(underflowed, 0);
    });

    it('toFloat16Array keeps non-zero values below float16\'s smallest subnormal as ±2^-24, not 0', () => {
      // Regression: 2^-25, exactly halfway between 0 and 2^-24, rounded (to even) to 0.
      const { data, underflowed } = toFloat16Array([1e-9, -1e-9, 2 ** -25, -(2 ** -25), 1e-40, 2 ** -24, 0.75 * 2 ** -24, 0, -0]);
      assert.deepEqual([...data], [0x0001, 0x8001, 0x0001, 0x8001, 0x0001, 0x0001, 0x0001, 0x0000, 0x8000]);
      assert.equal(underflowed, 5, 'the five that plain rounding makes 0');
    });
  });

  describe('MLP (Gemm) and Conv models', () => {
    const rand = prng(11);
    const x = float32(rand, [4, 512], 2);

    it('MLP: every weight becomes float16, x and y stay float32 behind one Cast each, outputs within 1% of FP32', async () => {
      const c = convert(mlpModel());
      assert.deepEqual(c.report, { converted: 5, blocked: [], initializers: 6, clamped: 0, underflowed: c.report.underflowed, casts: 2, warnings: [] });
      for (const t of c.model.graph?.initializer ?? []) assert.equal(t.dataType, FLOAT16, `initializer ${t.name}`);
      assert.equal(ioType(c.model, 'x'), FLOAT);
      assert.equal(ioType(c.model, 'y'), FLOAT);
      const casts = nodesOf(c.model, 'Cast');
      assert.deepEqual(casts.map((n) => [n.input?.[0], castTo(n), n.output?.[0]]), [['x', FLOAT16, 'x_to_fp16'], ['y_fp16', FLOAT, 'y']]);
      assert.equal(nodesOf(c.model, 'Gemm')[0].input?.[0], 'x_to_fp16');
      // Half the bytes: the weights are nearly all of the model.
      assert.ok(c.bytes.byteLength < 0.51 * mlpModel().byteLength, `${c.bytes.byteLength} bytes`);
      const kiln = await assertCloseToFp32(mlpModel(), c, { x }, 0.01);
      assert.ok(relativeError(numbers(kiln.y), [...mlpReference(x.data as Float32Array, 4)]) < 0.01, 'against the JS reference');
      const session = await Session.create(c.bytes);
      assert.deepEqual(session.inputs.map((v) => v.type), ['float32']);
      await session.dispose();
    });

    it('MLP with keepIoTypes: false: x and y are float16, no Casts', async () => {
      const c = convert(mlpModel(), { keepIoTypes: false });
      assert.equal(c.report.casts, 0);
      assert.equal(nodesOf(c.model, 'Cast').length, 0);
      assert.equal(ioType(c.model, 'x'), FLOAT16);
      assert.equal(ioType(c.model, 'y'), FLOAT16);
      const session = await Session.create(c.bytes);
      assert.deepEqual([session.inputs[0].type, session.outputs[0].type], ['float16', 'float16']);
      await session.dispose();
      const kiln = await assertCloseToFp32(mlpModel(), c, { x }, 0.01);
      assert.equal(kiln.y.type, 'float16');
    });

    it('Conv net: Conv and Gemm weights float16, outputs within 1% of FP32', async () => {
      const c = convert(convModel());
      assert.equal(c.report.converted, 8);
      assert.equal(c.report.casts, 2);
      for (const name of ['conv1.weight', 'conv1.bias', 'conv2.weight', 'conv2.bias', 'fc.weight', 'fc.bias']) {
        assert.equal(initializer(c.model, name)?.dataType, FLOAT16, name);
      }
      const images = float32(prng(12), [2, 3, 32, 32]);
      const kiln = await assertCloseToFp32(convModel(), c, { x: images }, 0.01);
      assert.ok(relativeError(numbers(kiln.y), [...convReference(images.data as Float32Array, 2)]) < 0.01);
    });

    it('the stored float16 weights are the float32 ones rounded', () => {
      const fp32 = readModel(mlpModel());
      const c = convert(mlpModel());
      for (const t of fp32.graph?.initializer ?? []) {
        const want = toFloat16Array(tensorFromProto(t).data as Float32Array).data;
        const got = tensorFromProto(initializer(c.model, t.name as string) as TensorProto);
        assert.deepEqual(got.dims, (t.dims ?? []).map(Number));
        assert.ok(Buffer.from((got.data as Uint16Array).buffer).equals(Buffer.from(want.buffer)), `${t.name}`);
      }
    });
  });

  describe('nodes kept in float32', () => {
    const feeds = { x: float32(prng(21), [6, 8], 2) };

    it('ArgMax and TopK (FLOAT16_BLOCKED_OPS) and ops listed in blockOps read one shared Cast back to float32', async () => {
      const c = convert(selectionModel(), { blockOps: ['Softmax'] });
      assert.deepEqual(c.report.blocked, [
        { node: 'argmax', opType: 'ArgMax', reason: FLOAT16_BLOCKED_OPS.ArgMax },
        { node: 'topk', opType: 'TopK', reason: FLOAT16_BLOCKED_OPS.TopK },
        { node: 'softmax', opType: 'Softmax', reason: 'listed in blockOps' },
      ]);
      assertReads(c.model, 'mm', 1, FLOAT16);
      for (const name of ['argmax', 'topk', 'softmax']) assertReads(c.model, name, 0, FLOAT);
      // One Cast of h to float32 serves the three readers; x gets one to float16.
      assert.deepEqual(nodesOf(c.model, 'Cast').map((n) => n.input?.[0]), ['x', 'h']);
      // The blocked nodes write float32 outputs: no Casts after them.
      assert.equal(producerOf(c.model, 'p')?.name, 'softmax');
      assert.equal(producerOf(c.model, 'top_values')?.name, 'topk');
      const out = await assertCloseToFp32(selectionModel(), c, feeds, 0.01);
      const reference = await runOrt(selectionModel(), feeds);
      assert.deepEqual(numbers(out.best), numbers(reference.best), 'the same argmax');
    });

    it('blockNodes by node name keeps that node and its weight in float32', async () => {
      const c = convert(selectionModel(), { blockNodes: ['mm'] });
      assert.deepEqual(c.report.blocked[0], { node: 'mm', opType: 'MatMul', reason: 'named in blockNodes' });
      assert.equal(initializer(c.model, 'w')?.dataType, FLOAT);
      assertReads(c.model, 'mm', 0, FLOAT);
      // Nothing is left to convert: ArgMax, TopK read h as it is, Softmax alone is float16.
      assert.equal(c.report.converted, 1);
      assert.equal(c.report.initializers, 0);
      await assertCloseToFp32(selectionModel(), c, feeds, 0.01);
    });

    it('blockNodes by the label of an unnamed node (nodeName: "Op(first output)")', () => {
      const m = readModel(selectionModel());
      for (const n of m.graph?.node ?? []) delete n.name;
      const report = convertFloat16(m, { blockNodes: ['Softmax(p)'] });
      assert.ok(report.blocked.some((b) => b.node === 'Softmax(p)' && b.reason === 'named in blockNodes'), JSON.stringify(report.blocked));
      assert.ok(!report.blocked.some((b) => b.opType === 'MatMul'));
    });

    it('an op of another domain (com.microsoft) stays float32', async () => {
      const g = new GraphBuilder('custom_domain');
      const x = g.input('x', 'float32', ['N', 8]);
      const w = g.initializer('w', 'float32', [8, 8], float32(prng(22), [8, 8]).data as Float32Array);
      const h = g.node('Gelu', [g.node('MatMul', [x, w], { name: 'mm' })], { name: 'gelu', domain: 'com.microsoft' });
      const b = g.initializer('b', 'float32', [8], Float32Array.of(1, 2, 3, 4, 5, 6, 7, 8));
      g.output(g.node('Add', [h, b], { name: 'add', outputs: 'y' }), 'float32', ['N', 8]);
      const fp32 = g.build({ domains: { 'com.microsoft': 1 } });
      const c = convert(fp32);
      assert.deepEqual(c.report.blocked, [{ node: 'gelu', opType: 'com.microsoft:Gelu', reason: "an op of domain 'com.microsoft', whose float16 support is not known" }]);
      assertReads(c.model, 'gelu', 0, FLOAT);
      assertReads(c.model, 'add', 0, FLOAT16);
      await assertCloseToFp32(fp32, c, feeds, 0.01);
    });

    it('BatchNormalization with a variance beyond ±65504 stays float32 with its statistics; a tame one converts', async () => {
      const g = new GraphBuilder('batchnorm');
      const x = g.input('x', 'float32', ['N', 2, 3, 3]);
      const params = (prefix: string, variance: number): string[] => [
        g.initializer(`${prefix}.scale`, 'float32', [2], Float32Array.of(1, 0.5)),
        g.initializer(`${prefix}.bias`, 'float32', [2], Float32Array.of(0.1, -0.2)),
        g.initializer(`${prefix}.mean`, 'float32', [2], Float32Array.of(0.3, 1000)),
        g.initializer(`${prefix}.var`, 'float32', [2], Float32Array.of(2, variance)),
      ];
      const wild = g.node('BatchNormalization', [x, ...params('wild', 1e8)], { name: 'bn_wild' });
      g.output(g.node('BatchNormalization', [wild, ...params('tame', 4)], { name: 'bn_tame', outputs: 'y' }), 'float32', ['N', 2, 3, 3]);
      const fp32 = g.build();
      const c = convert(fp32);
      assert.equal(c.report.blocked.length, 1);
      assert.equal(c.report.blocked[0].node, 'bn_wild');
      assert.match(c.report.blocked[0].reason, /variance reaches 1\.00e\+8/);
      for (const p of ['scale', 'bias', 'mean', 'var']) {
        assert.equal(initializer(c.model, `wild.${p}`)?.dataType, FLOAT, `wild.${p}`);
        assert.equal(initializer(c.model, `tame.${p}`)?.dataType, FLOAT16, `tame.${p}`);
      }
      assertReads(c.model, 'bn_wild', 0, FLOAT);
      assertReads(c.model, 'bn_tame', 0, FLOAT16);
      await assertCloseToFp32(fp32, c, { x: float32(prng(23), [2, 2, 3, 3], 1e4) }, 0.01);
    });

    it('integers cast to float and the arithmetic on them alone stay float32, so a size of 8001 + 1 is exactly 8002', async () => {
      const g = new GraphBuilder('shape_math');
      const x = g.input('x', 'float32', [1, 8001]);
      const index = g.initializer('index', 'int64', [], BigInt64Array.of(1n));
      const size = g.node('Cast', [g.node('Gather', [g.node('Shape', [x]), index])], { name: 'to_float', attrs: { to: FLOAT } });
      const one = g.initializer('one', 'float32', [], Float32Array.of(1));
      const plus = g.node('Add', [size, one], { name: 'plus_one', outputs: 'n' });
      g.output(plus, 'float32', []);
      // A reader that mixes the size with an activation is converted (reads a Cast of it).
      const r = g.node('Relu', [x], { name: 'relu' });
      g.output(g.node('Div', [r, plus], { name: 'normalise', outputs: 'y' }), 'float32', [1, 8001]);
      const fp32 = g.build();
      const c = convert(fp32);
      assert.deepEqual(c.report.blocked.map((b) => [b.node, b.reason]), [
        ['to_float', 'casts integers (often a size) to float: float16 holds integers exactly only up to 2048'],
        ['plus_one', 'arithmetic on integers cast to float: kept exact in float32'],
      ]);
      assert.equal(initializer(c.model, 'one')?.dataType, FLOAT);
      assertReads(c.model, 'normalise', 1, FLOAT16);
      const out = await assertCloseToFp32(fp32, c, { x: float32(prng(24), [1, 8001], 100) }, 0.01);
      assert.deepEqual(numbers(out.n), [8002]);
      assert.equal(float16Value(float16Bits(8002)), 8000, 'what float16 would have made of it');
    });
  });

  describe('weights and constants', () => {
    const feeds = { x: float32(prng(31), [2, 4]) };

    it('a weight read by float16 and float32 nodes stays float32 and gains a float16 copy; one read twice is converted once', async () => {
      const c = convert(sharedWeightsModel());
      // w: read by mm, mm2 (float16) and cumsum (blocked); c: by scale (float16) and cumsum_c (blocked).
      assert.equal(initializer(c.model, 'w')?.dataType, FLOAT);
      assert.equal(initializer(c.model, 'w_fp16')?.dataType, FLOAT16);
      assert.equal(nodeNamed(c.model, 'mm').input?.[1], 'w_fp16');
      assert.equal(nodeNamed(c.model, 'mm2').input?.[1], 'w_fp16');
      assert.equal(nodeNamed(c.model, 'cumsum').input?.[0], 'w');
      assert.equal(initializer(c.model, 'c_fp16')?.dataType, FLOAT16);
      assert.equal(nodeNamed(c.model, 'scale').input?.[1], 'c_fp16');
      assert.equal(nodeNamed(c.model, 'const_c').attribute?.[0].t?.dataType, FLOAT, 'the Constant keeps its float32 value');
      assert.equal(nodeNamed(c.model, 'cumsum_c').input?.[0], 'c');
      // d (value_floats) and e (value_float), read only in float16: converted in place.
      for (const name of ['const_d', 'const_e']) {
        const a = nodeNamed(c.model, name).attribute ?? [];
        assert.deepEqual(a.map((x) => [x.name, x.t?.dataType]), [['value', FLOAT16]], name);
      }
      assert.deepEqual(tensorFromProto(nodeNamed(c.model, 'const_d').attribute?.[0].t as TensorProto).dims, [4]);
      assert.deepEqual(tensorFromProto(nodeNamed(c.model, 'const_e').attribute?.[0].t as TensorProto).dims, []);
      assert.equal(c.report.initializers, 4, 'w_fp16, c_fp16, d, e');
      // x in; the CumSums' outputs to float16 for z_add (which reads nothing else); y and z out.
      assert.equal(nodesOf(c.model, 'Cast').length, 5);
      await assertCloseToFp32(sharedWeightsModel(), c, feeds, 0.01);
    });

    it('weights beyond ±65504 (masks of -1e9) are clamped and counted; -Infinity is kept; tiny ones stay non-zero', async () => {
      const g = new GraphBuilder('mask');
      const x = g.input('x', 'float32', [1, 6]);
      const mask = g.initializer('mask', 'float32', [1, 6], Float32Array.of(0, -1e9, 0, -Infinity, -3.4e38, 0));
      const scores = g.node('Add', [x, mask], { name: 'masked' });
      g.output(g.node('Softmax', [scores], { attrs: { axis: 1 }, outputs: 'p' }), 'float32', [1, 6]);
      const eps = g.initializer('eps', 'float32', [], Float32Array.of(1e-9));
      g.output(g.node('Add', [g.node('Abs', [x]), eps], { outputs: 'pos' }), 'float32', [1, 6]);
      const fp32 = g.build();
      const c = convert(fp32);
      assert.equal(c.report.clamped, 2);
      assert.equal(c.report.underflowed, 1);
      assert.deepEqual([...(tensorFromProto(initializer(c.model, 'mask') as TensorProto).data as Uint16Array)], [0, 0xfbff, 0, 0xfc00, 0xfbff, 0]);
      assert.deepEqual([...(tensorFromProto(initializer(c.model, 'eps') as TensorProto).data as Uint16Array)], [0x0001]);
      const out = await assertCloseToFp32(fp32, c, { x: { type: 'float32', data: Float32Array.of(1, 5, 2, 9, 7, 0), dims: [1, 6] } }, 0.01);
      const p = numbers(out.p);
      assert.deepEqual([p[1], p[3], p[4]], [0, 0, 0], 'the masked positions');
      assert.ok(numbers(out.pos).every((v) => v > 0), 'x + eps stays positive where x is 0');
    });

    it('Cast to float and ConstantOfShape write float16 instead; EyeLike (no float16 kernel in ONNX Runtime) stays float32', async () => {
      const g = new GraphBuilder('rewritten');
      const x = g.input('x', 'float64', [3, 3]);
      const xf = g.node('Cast', [x], { name: 'cast_in', attrs: { to: FLOAT } });
      const shape = g.initializer('shape', 'int64', [2], BigInt64Array.of(3n, 3n));
      const half = g.node('ConstantOfShape', [shape], { name: 'halves', attrs: { value: attr.tensor('float32', [1], Float32Array.of(0.5)) } });
      const zeros = g.initializer('zeros', 'int32', [3, 3], new Int32Array(9));
      const eye = g.node('EyeLike', [zeros], { name: 'eye', attrs: { dtype: FLOAT }, outputs: 'eye' });
      g.output(g.node('Add', [g.node('Mul', [xf, half], { name: 'mul' }), eye], { name: 'add', outputs: 'y' }), 'float32', [3, 3]);
      const fp32 = g.build();
      const c = convert(fp32);
      assert.equal(castTo(nodeNamed(c.model, 'cast_in')), FLOAT16);
      const value = nodeNamed(c.model, 'halves').attribute?.find((a) => a.name === 'value')?.t as TensorProto;
      assert.equal(value.dataType, FLOAT16);
      assert.equal(float16Value((tensorFromProto(value).data as Uint16Array)[0]), 0.5);
      // Regression: EyeLike's dtype became float16, which ONNX Runtime cannot load ("Could
      // not find an implementation for EyeLike(9)"); its CUDA kernel lacks float16 too.
      assert.deepEqual(c.report.blocked, [{ node: 'eye', opType: 'EyeLike', reason: FLOAT16_BLOCKED_OPS.EyeLike }]);
      assert.equal(Number(nodeNamed(c.model, 'eye').attribute?.find((a) => a.name === 'dtype')?.i), FLOAT);
      assertReads(c.model, 'add', 1, FLOAT16);
      assert.deepEqual(nodesOf(c.model, 'Cast').map((n) => n.input?.[0]), ['x', 'eye', 'y_fp16'], 'cast_in itself, the eye to float16, y out');
      const data = Float64Array.of(1, 2, 3, 4, 5, 6, 7, 8, 9);
      const out = await assertCloseToFp32(fp32, c, { x: { type: 'float64', data, dims: [3, 3] } }, 0.001);
      assert.deepEqual(numbers(out.y), [1.5, 1, 1.5, 2, 3.5, 3, 3.5, 4, 5.5]);
    });

    it('a graph output that other nodes read: the producer writes a float16 value they read, a Cast writes the output', async () => {
      const g = new GraphBuilder('output_read');
      const x = g.input('x', 'float32', [2, 4]);
      const w = g.initializer('w', 'float32', [4, 4], float32(prng(32), [4, 4]).data as Float32Array);
      const h = g.node('MatMul', [x, w], { name: 'mm', outputs: 'h' });
      g.output(h, 'float32', [2, 4]);
      g.output(g.node('Relu', [h], { name: 'relu', outputs: 'y' }), 'float32', [2, 4]);
      g.output(w, 'float32', [4, 4]);
      const fp32 = g.build();
      const c = convert(fp32);
      assert.deepEqual(nodeNamed(c.model, 'mm').output, ['h_fp16']);
      assert.deepEqual(nodeNamed(c.model, 'relu').input, ['h_fp16']);
      assert.equal(castTo(producerOf(c.model, 'h')), FLOAT);
      // w is an output as well as a weight: the output keeps it float32, mm reads a copy.
      assert.equal(ioType(c.model, 'w'), FLOAT);
      assert.equal(initializer(c.model, 'w')?.dataType, FLOAT);
      await assertCloseToFp32(fp32, c, { x: float32(prng(33), [2, 4]) }, 0.01);
      const free = convert(fp32, { keepIoTypes: false });
      assert.equal(ioType(free.model, 'w'), FLOAT16);
      assert.equal(initializer(free.model, 'w')?.dataType, FLOAT16);
      assert.equal(nodesOf(free.model, 'Cast').length, 0);
      await assertCloseToFp32(fp32, free, { x: float32(prng(33), [2, 4]) }, 0.01);
    });
  });

  describe('subgraphs', () => {
    it('a Loop stays float32 and its body keeps the initializer it reads from the outer graph', async () => {
      // Regression: Graph.prune counted only the outer graph's readers and dropped the body's
      // weight w, so neither Kiln nor ONNX Runtime could load the converted model.
      const c = convert(slowModel());
      assert.deepEqual(c.report.blocked.map((b) => [b.node, b.reason]), [['Loop_0', 'has subgraphs, which are not converted']]);
      assert.equal(initializer(c.model, 'w')?.dataType, FLOAT);
      const feeds = { iterations: { type: 'int64' as TensorType, data: BigInt64Array.of(3n), dims: [] }, x: { type: 'float32' as TensorType, data: Float32Array.of(0.5), dims: [1] } };
      const out = await assertCloseToFp32(slowModel(), c, feeds as Record<string, TensorLike>, 0.002);
      assert.ok(Math.abs(numbers(out.y)[0] - slowReference(0.5, 3)) < 0.002);
    });

    it('without addValueTypes a Loop output\'s type is unknown and reported; with it, no warnings', async () => {
      assert.deepEqual(convert(slowModel()).report.warnings, ['the element type of "Loop_0" (Loop_0) is unknown; it is left as it is']);
      const m = readModel(slowModel());
      assert.equal(await addValueTypes(m), 2, 'the outputs of Expand and Loop');
      assert.deepEqual(convertFloat16(m).warnings, []);
      const feeds = { iterations: { type: 'int64', data: BigInt64Array.of(2n), dims: [] }, x: { type: 'float32', data: Float32Array.of(-0.25), dims: [1] } } as Record<string, TensorLike>;
      const out = await runKiln(encodeModel(m), feeds);
      assert.ok(Math.abs(numbers(out.y)[0] - slowReference(-0.25, 2)) < 0.002);
    });

    it('an outer float16 value a body reads is cast back for it; new names do not shadow the body\'s', async () => {
      const g = new GraphBuilder('outer_reference');
      const x = g.input('x', 'float32', [1]);
      const iterations = g.input('n', 'int64', []);
      const w = g.initializer('w', 'float32', [1], Float32Array.of(3));
      const body = g.subgraph('body');
      body.input('i', 'int64', []);
      body.output(body.node('Identity', [body.input('cond_in', 'bool', [])], { outputs: 'cond_out' }), 'bool', []);
      // The body defines the name the converter would give x's Cast to float16.
      const t = body.node('Identity', [body.input('s_in', 'float32', [1])], { outputs: 'x_to_fp16' });
      body.output(body.node('Add', [t, w], { outputs: 's_out' }), 'float32', [1]);
      g.output(g.node('Loop', [iterations, '', x], { attrs: { body }, name: 'loop', outputs: 'sum' }), 'float32', [1]);
      g.output(g.node('Mul', [x, w], { name: 'mul', outputs: 'y' }), 'float32', [1]);
      const fp32 = g.build();
      const c = convert(fp32);
      // w is float16 for mul; the body reads a Cast of it to float32.
      assert.equal(initializer(c.model, 'w')?.dataType, FLOAT16);
      const loop = nodeNamed(c.model, 'loop');
      const bodyAdd = loop.attribute?.[0].g?.node?.find((n) => n.opType === 'Add') as NodeProto;
      assert.equal(castTo(producerOf(c.model, bodyAdd.input?.[1] as string)), FLOAT);
      // Regression: the outer Cast of x was named x_to_fp16 too, which ONNX Runtime refuses (SSA).
      assert.notEqual(nodeNamed(c.model, 'mul').input?.[0], 'x_to_fp16');
      const feeds = { x: { type: 'float32', data: Float32Array.of(1), dims: [1] }, n: { type: 'int64', data: BigInt64Array.of(2n), dims: [] } } as Record<string, TensorLike>;
      const out = await assertCloseToFp32(fp32, c, feeds, 0.001);
      assert.deepEqual([numbers(out.sum), numbers(out.y)], [[7], [3]]);
    });
  });

  describe('bad input', () => {
    it('a model without a graph: E_MODEL_LOAD', () => {
      assertKilnError(thrown(() => convertFloat16({ irVersion: 8n })), 'E_MODEL_LOAD', 'no graph');
    });

    it('options of the wrong type or unknown: E_INVALID_ARGUMENT naming the option; the model is left as it was', () => {
      const cases: [unknown, string][] = [
        [{ keepIoTypes: 'no' }, 'option "keepIoTypes": expected a boolean'],
        [{ blockOps: 'Softmax' }, 'option "blockOps": expected an array of op types'],
        [{ blockNodes: ['mm', 3] }, 'option "blockNodes": expected an array of node names'],
        [{ blockNode: ['mm'] }, 'option "blockNode" is not known'],
        [{ blockNodes: ['mm', 'sofmax'] }, 'option "blockNodes": no node is named "sofmax"'],
      ];
      for (const [options, message] of cases) {
        const m = readModel(selectionModel());
        const before = encodeModel(m);
        assertKilnError(thrown(() => convertFloat16(m, options as Float16Options)), 'E_INVALID_ARGUMENT', message);
        assert.ok(Buffer.from(encodeModel(m)).equals(Buffer.from(before)), `${JSON.stringify(options)}: the model changed`);
      }
    });

    it('an initializer whose data is still in an external file: E_INVALID_ARGUMENT naming it; the model is left as it was', () => {
      const m = readModel(mlpModel());
      const t = m.graph?.initializer?.find((x) => x.name === 'fc2.weight') as TensorProto;
      delete t.rawData;
      t.dataLocation = DataLocation.EXTERNAL;
      t.externalData = [{ key: 'location', value: 'weights.bin' }];
      const before = encodeModel(m);
      assertKilnError(thrown(() => convertFloat16(m)), 'E_INVALID_ARGUMENT', "initializer 'fc2.weight'", 'external', 'readModel');
      assert.ok(Buffer.from(encodeModel(m)).equals(Buffer.from(before)));
    });
  });
});

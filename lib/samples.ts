/**
 * Sample models generated in code (the repository ships no binaries): the test fixtures, the
 * models `kiln bench` runs, and the models of the benchmarks. Every function returns
 * the same bytes on every call: weights come from a seeded PRNG. All use opset 17 (IR 8).
 */
import { GraphBuilder } from './onnx/builder';
import { ONNX_TYPE, type TensorType } from './tensor';

const OPSET = { opset: 17 };

/** Deterministic uniform numbers in [-1, 1) (mulberry32), so weights are reproducible. */
export function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

/** `n` PRNG values scaled by ±1/sqrt(fanIn), the usual range that keeps activations O(1). */
function weights(rand: () => number, n: number, fanIn: number): Float32Array {
  const out = new Float32Array(n);
  const scale = 1 / Math.sqrt(fanIn);
  for (let i = 0; i < n; i++) out[i] = rand() * scale;
  return out;
}

/** a: float32 ['N',4], b: float32 ['N',4] -> y: float32 ['N',4] = a + b. */
export function addModel(): Uint8Array {
  const g = new GraphBuilder('add');
  const a = g.input('a', 'float32', ['N', 4]);
  const b = g.input('b', 'float32', ['N', 4]);
  g.output(g.node('Add', [a, b], { outputs: 'y' }), 'float32', ['N', 4]);
  return g.build(OPSET);
}

// ---------------------------------------------------------------------------------------------
// MLP

interface Dense { readonly w: Float32Array; readonly b: Float32Array; readonly in: number; readonly out: number }

const MLP_SIZES = [512, 2048, 512, 10];
let mlpLayers: Dense[] | undefined;

/** The MLP's layers; w is [in, out] row-major, as Gemm reads it with transB = 0. */
function mlpParams(): Dense[] {
  if (mlpLayers) return mlpLayers;
  const rand = prng(0x6d6c70);
  mlpLayers = MLP_SIZES.slice(1).map((out, i) => {
    const inp = MLP_SIZES[i];
    return { in: inp, out, w: weights(rand, inp * out, inp), b: weights(rand, out, inp) };
  });
  return mlpLayers;
}

/**
 * x: float32 ['N',512] -> Gemm 512->2048, Relu, Gemm 2048->512, Relu, Gemm 512->10
 * -> y: float32 ['N',10]. About 8.4 MB of weights; see mlpReference.
 */
export function mlpModel(): Uint8Array {
  const g = new GraphBuilder('mlp');
  let h = g.input('x', 'float32', ['N', 512]);
  mlpParams().forEach((layer, i, all) => {
    const w = g.initializer(`fc${i}.weight`, 'float32', [layer.in, layer.out], layer.w);
    const b = g.initializer(`fc${i}.bias`, 'float32', [layer.out], layer.b);
    const last = i === all.length - 1;
    h = g.node('Gemm', [h, w, b], last ? { outputs: 'y' } : { name: `fc${i}` });
    if (!last) h = g.node('Relu', [h]);
  });
  g.output(h, 'float32', ['N', 10]);
  return g.build(OPSET);
}

/** mlpModel computed in plain JS on `n` rows of `x` (n x 512), float32 between layers. */
export function mlpReference(x: Float32Array, n: number): Float32Array {
  let h = x;
  mlpParams().forEach((layer, i, all) => {
    h = dense(h, n, layer, i < all.length - 1);
  });
  return h;
}

function dense(x: Float32Array, n: number, { w, b, in: inp, out }: Dense, relu: boolean): Float32Array {
  const y = new Float32Array(n * out);
  const acc = new Float64Array(out);
  for (let r = 0; r < n; r++) {
    acc.set(b);
    for (let k = 0; k < inp; k++) {
      const v = x[r * inp + k];
      if (v === 0) continue;
      const row = k * out;
      for (let j = 0; j < out; j++) acc[j] += v * w[row + j];
    }
    for (let j = 0; j < out; j++) y[r * out + j] = relu && acc[j] < 0 ? 0 : acc[j];
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// Conv net

interface ConvParams { readonly w1: Float32Array; readonly b1: Float32Array; readonly w2: Float32Array; readonly b2: Float32Array; readonly fc: Dense }

let convParamsCache: ConvParams | undefined;

function convParams(): ConvParams {
  if (convParamsCache) return convParamsCache;
  const rand = prng(0xc0471);
  convParamsCache = {
    w1: weights(rand, 16 * 3 * 9, 27), b1: weights(rand, 16, 27),
    w2: weights(rand, 32 * 16 * 9, 144), b2: weights(rand, 32, 144),
    fc: { in: 32, out: 10, w: weights(rand, 32 * 10, 32), b: weights(rand, 10, 32) },
  };
  return convParamsCache;
}

/**
 * x: float32 ['N',3,32,32] -> Conv 16x3x3 pad 1, Relu, MaxPool 2x2 -> [N,16,16,16]
 * -> Conv 32x3x3, Relu -> [N,32,14,14] -> GlobalAveragePool, Flatten -> [N,32]
 * -> Gemm 32->10 -> y: float32 ['N',10]. See convReference.
 */
export function convModel(): Uint8Array {
  const p = convParams();
  const g = new GraphBuilder('conv');
  const x = g.input('x', 'float32', ['N', 3, 32, 32]);
  const w1 = g.initializer('conv1.weight', 'float32', [16, 3, 3, 3], p.w1);
  const b1 = g.initializer('conv1.bias', 'float32', [16], p.b1);
  const w2 = g.initializer('conv2.weight', 'float32', [32, 16, 3, 3], p.w2);
  const b2 = g.initializer('conv2.bias', 'float32', [32], p.b2);
  const wf = g.initializer('fc.weight', 'float32', [32, 10], p.fc.w);
  const bf = g.initializer('fc.bias', 'float32', [10], p.fc.b);
  let h = g.node('Conv', [x, w1, b1], { attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } });
  h = g.node('Relu', [h]);
  h = g.node('MaxPool', [h], { attrs: { kernel_shape: [2, 2], strides: [2, 2] } });
  h = g.node('Conv', [h, w2, b2], { attrs: { kernel_shape: [3, 3] } });
  h = g.node('Relu', [h]);
  h = g.node('GlobalAveragePool', [h]);
  h = g.node('Flatten', [h], { attrs: { axis: 1 } });
  g.output(g.node('Gemm', [h, wf, bf], { outputs: 'y' }), 'float32', ['N', 10]);
  return g.build(OPSET);
}

/** convModel computed in plain JS on `n` images of `x` (n x 3 x 32 x 32), float32 between layers. */
export function convReference(x: Float32Array, n: number): Float32Array {
  const p = convParams();
  const pooledFeatures = new Float32Array(n * 32);
  for (let i = 0; i < n; i++) {
    const img = x.subarray(i * 3 * 1024, (i + 1) * 3 * 1024);
    const c1 = conv3x3(img, 3, 32, p.w1, p.b1, 16, 1);
    const pooled = maxPool2(c1, 16, 32);
    const c2 = conv3x3(pooled, 16, 16, p.w2, p.b2, 32, 0);
    const area = 14 * 14;
    for (let c = 0; c < 32; c++) {
      let s = 0;
      for (let k = 0; k < area; k++) s += c2[c * area + k];
      pooledFeatures[i * 32 + c] = s / area;
    }
  }
  return dense(pooledFeatures, n, p.fc, false);
}

/** 3x3 convolution, stride 1, `pad` on every side, then Relu; square `size` x `size` input. */
function conv3x3(x: Float32Array, cin: number, size: number, w: Float32Array, b: Float32Array, cout: number, pad: number): Float32Array {
  const o = size + 2 * pad - 2;
  const y = new Float32Array(cout * o * o);
  for (let co = 0; co < cout; co++) {
    for (let oy = 0; oy < o; oy++) {
      for (let ox = 0; ox < o; ox++) {
        let acc = b[co];
        for (let ci = 0; ci < cin; ci++) {
          for (let ky = 0; ky < 3; ky++) {
            const iy = oy + ky - pad;
            if (iy < 0 || iy >= size) continue;
            for (let kx = 0; kx < 3; kx++) {
              const ix = ox + kx - pad;
              if (ix < 0 || ix >= size) continue;
              acc += x[(ci * size + iy) * size + ix] * w[((co * cin + ci) * 3 + ky) * 3 + kx];
            }
          }
        }
        y[(co * o + oy) * o + ox] = acc > 0 ? acc : 0;
      }
    }
  }
  return y;
}

function maxPool2(x: Float32Array, channels: number, size: number): Float32Array {
  const o = size / 2;
  const y = new Float32Array(channels * o * o);
  for (let c = 0; c < channels; c++) {
    for (let oy = 0; oy < o; oy++) {
      for (let ox = 0; ox < o; ox++) {
        const at = (dy: number, dx: number): number => x[(c * size + 2 * oy + dy) * size + 2 * ox + dx];
        y[(c * o + oy) * o + ox] = Math.max(at(0, 0), at(0, 1), at(1, 0), at(1, 1));
      }
    }
  }
  return y;
}

// ---------------------------------------------------------------------------------------------
// Models for runtime behaviour

/** Dims of bigOutputModel's output: 4 Mi float32 elements, exactly 16 MiB. */
export const BIG_OUTPUT_DIMS = [1024, 4096] as const;

/**
 * x: float32 [1] -> y: float32 [1024,4096] (16 MiB) with y[i] = i + x[0] in row-major order
 * (exact while x[0] is a small integer: every value stays below 2^24). Range + Add + Reshape.
 */
export function bigOutputModel(): Uint8Array {
  const [rows, cols] = BIG_OUTPUT_DIMS;
  const g = new GraphBuilder('big_output');
  const x = g.input('x', 'float32', [1]);
  const start = g.initializer('start', 'float32', [], new Float32Array([0]));
  const limit = g.initializer('limit', 'float32', [], new Float32Array([rows * cols]));
  const delta = g.initializer('delta', 'float32', [], new Float32Array([1]));
  const shape = g.initializer('shape', 'int64', [2], new BigInt64Array([BigInt(rows), BigInt(cols)]));
  const ramp = g.node('Range', [start, limit, delta]);
  const sum = g.node('Add', [ramp, x]);
  g.output(g.node('Reshape', [sum, shape], { outputs: 'y' }), 'float32', [rows, cols]);
  return g.build(OPSET);
}

/** Every element type Kiln names. */
export const ALL_TYPES = Object.keys(ONNX_TYPE) as readonly TensorType[];

/**
 * The op that identityModel uses for its second output `z`, per type: Add (z = x + x) or Not
 * (z = !x), where ONNX Runtime's CPU provider has that kernel (checked against
 * onnxruntime-node 1.30). No second output for string and bfloat16 (no CPU kernel).
 */
export const IDENTITY_COMPUTE: Readonly<Record<TensorType, 'Add' | 'Not' | null>> = {
  float32: 'Add', float64: 'Add', float16: 'Add', bfloat16: null,
  int8: 'Add', int16: 'Add', int32: 'Add', int64: 'Add',
  uint8: 'Add', uint16: 'Add', uint32: 'Add', uint64: 'Add',
  bool: 'Not', string: null,
};

/**
 * x: `type`, any shape (rank unknown) -> y: `type` = Identity(x), and where IDENTITY_COMPUTE
 * names an op, z: `type` = x + x (Add) or !x (Not).
 */
export function identityModel(type: TensorType): Uint8Array {
  const g = new GraphBuilder(`identity_${type}`);
  const x = g.input('x', type);
  g.output(g.node('Identity', [x], { outputs: 'y' }), type);
  const op = IDENTITY_COMPUTE[type];
  if (op !== null) g.output(g.node(op, op === 'Add' ? [x, x] : [x], { outputs: 'z' }), type);
  return g.build(OPSET);
}

/** Side of the square state that slowModel multiplies on each iteration. */
export const SLOW_MODEL_SIZE = 512;

/**
 * iterations: int64 [] and x: float32 [1] -> y: float32 [] = tanh applied `iterations` times
 * to x[0] (see slowReference). Each Loop step is a 512x512x512 MatMul (0.27 GFLOP, by the
 * identity so the value stays checkable) and a Tanh: ~0.6 ms a step on this project's 2-core
 * AVX-512 machines, more elsewhere. So the run time is chosen per run through `iterations`
 * (calibrate with a short run) rather than baked into the model.
 */
export function slowModel(): Uint8Array {
  const d = SLOW_MODEL_SIZE;
  const g = new GraphBuilder('slow');
  const iterations = g.input('iterations', 'int64', []);
  const x = g.input('x', 'float32', [1]);
  const eye = new Float32Array(d * d);
  for (let i = 0; i < d; i++) eye[i * d + i] = 1;
  const w = g.initializer('w', 'float32', [d, d], eye);
  const shape = g.initializer('state_shape', 'int64', [2], new BigInt64Array([BigInt(d), BigInt(d)]));
  const state0 = g.node('Expand', [x, shape]);

  const body = g.subgraph('body');
  body.input('i', 'int64', []);
  const condIn = body.input('cond_in', 'bool', []);
  const stateIn = body.input('state_in', 'float32', [d, d]);
  body.output(body.node('Identity', [condIn], { outputs: 'cond_out' }), 'bool', []);
  const product = body.node('MatMul', [stateIn, w]);
  body.output(body.node('Tanh', [product], { outputs: 'state_out' }), 'float32', [d, d]);

  const state = g.node('Loop', [iterations, '', state0], { attrs: { body } });
  g.output(g.node('ReduceMean', [state], { attrs: { keepdims: 0 }, outputs: 'y' }), 'float32', []);
  return g.build(OPSET);
}

/**
 * What slowModel returns for `x0` after `iterations` steps, with exact tanh: ONNX Runtime's
 * approximate Tanh puts its result within ~1e-3 relative of this.
 */
export function slowReference(x0: number, iterations: number): number {
  let v = Math.fround(x0);
  for (let i = 0; i < iterations; i++) v = Math.fround(Math.tanh(v));
  return v;
}

/**
 * x: float32 ['N',3] and idx: int64 ['N'] -> sum: float32 ['N'] = row sums of x, and
 * doubled: int64 ['N'] = 2 * idx. The outputs depend on one input each.
 */
export function multiIOModel(): Uint8Array {
  const g = new GraphBuilder('multi_io');
  const x = g.input('x', 'float32', ['N', 3]);
  const idx = g.input('idx', 'int64', ['N']);
  const axes = g.initializer('axes', 'int64', [1], new BigInt64Array([1n]));
  const two = g.initializer('two', 'int64', [], new BigInt64Array([2n]));
  g.output(g.node('ReduceSum', [x, axes], { attrs: { keepdims: 0 }, outputs: 'sum' }), 'float32', ['N']);
  g.output(g.node('Mul', [idx, two], { outputs: 'doubled' }), 'int64', ['N']);
  return g.build(OPSET);
}

/**
 * x: float32 ['batch','seq',8] -> y: float32 ['batch','seq',8] = Relu(x), and
 * u: float32 [unknown, 4] (a dim with neither size nor name) -> v: float32 [unknown, 4] = -u.
 */
export function symbolicDimsModel(): Uint8Array {
  const g = new GraphBuilder('symbolic_dims');
  const x = g.input('x', 'float32', ['batch', 'seq', 8]);
  const u = g.input('u', 'float32', [null, 4]);
  g.output(g.node('Relu', [x], { outputs: 'y' }), 'float32', ['batch', 'seq', 8]);
  g.output(g.node('Neg', [u], { outputs: 'v' }), 'float32', [null, 4]);
  return g.build(OPSET);
}

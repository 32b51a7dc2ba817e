/**
 * Models and feeds for the dynamic batching tests. The "work" model is batchable (every
 * input has a dynamic first dim) and lets each request choose how long its batch runs and
 * whether it fails in ONNX Runtime, so tests can hold an instance busy deterministically.
 */
import { GraphBuilder } from '../../lib/onnx/builder';
import { Session, type Feeds, type Results } from '../../lib';

/**
 * x: float32 ['N', cols] (cols fixed, or 'M' for a dynamic second dim), work: int64 ['N'],
 * fail: int64 ['N'] -> y: float32 ['N', cols] = 2 * x.
 *
 * The batch runs a Loop of max(work) steps, each a `side` x `side` MatMul (by the identity)
 * and a Tanh on a constant state; y adds 0 * mean(state), so the loop cannot be pruned and y
 * stays exactly 2 * x. When max(fail) > 0, x is reshaped to [-1, cols + max(fail)] before
 * being reshaped back: with fail = 1000 and fewer than 1000 rows, that Reshape fails at run
 * time (E_ORT) although every input passes Kiln's validation.
 */
export function workModel(cols: number | 'M' = 4, side = 256): Uint8Array {
  const g = new GraphBuilder('work');
  const x = g.input('x', 'float32', ['N', cols]);
  const work = g.input('work', 'int64', ['N']);
  const fail = g.input('fail', 'int64', ['N']);
  const eye = new Float32Array(side * side);
  for (let i = 0; i < side; i++) eye[i * side + i] = 1;
  const w = g.initializer('w', 'float32', [side, side], eye);
  const s0 = g.initializer('s0', 'float32', [side, side], new Float32Array(side * side).fill(0.5));
  const trips = g.node('ReduceMax', [work], { attrs: { keepdims: 0 } });

  const body = g.subgraph('body');
  body.input('i', 'int64', []);
  const condIn = body.input('cond_in', 'bool', []);
  const stateIn = body.input('state_in', 'float32', [side, side]);
  body.output(body.node('Identity', [condIn], { outputs: 'cond_out' }), 'bool', []);
  body.output(body.node('Tanh', [body.node('MatMul', [stateIn, w])], { outputs: 'state_out' }), 'float32', [side, side]);
  const state = g.node('Loop', [trips, '', s0], { attrs: { body } });
  const zero = g.initializer('zero', 'float32', [], new Float32Array([0]));
  const nothing = g.node('Mul', [g.node('ReduceMean', [state], { attrs: { keepdims: 0 } }), zero]);

  const extra = g.node('ReduceMax', [fail], { attrs: { keepdims: 1, axes: [0] } });
  const xShape = g.node('Shape', [x]);
  const one = g.initializer('one', 'int64', [1], new BigInt64Array([1n]));
  const two = g.initializer('two', 'int64', [1], new BigInt64Array([2n]));
  const minusOne = g.initializer('minus_one', 'int64', [1], new BigInt64Array([-1n]));
  const colsNow = g.node('Slice', [xShape, one, two]);
  const odd = g.node('Concat', [minusOne, g.node('Add', [colsNow, extra])], { attrs: { axis: 0 } });
  const back = g.node('Reshape', [g.node('Reshape', [x, odd]), xShape]);
  const twoF = g.initializer('two_f', 'float32', [], new Float32Array([2]));
  g.output(g.node('Add', [g.node('Mul', [back, twoF]), nothing], { outputs: 'y' }), 'float32', ['N', cols]);
  return g.build({ opset: 17 });
}

/** The fail value that makes workModel's run fail (see workModel). */
export const FAIL = 1000;

export interface WorkRequest {
  readonly feeds: Feeds;
  readonly x: Float32Array;
  readonly rows: number;
  readonly cols: number;
}

/**
 * A request of `rows` rows whose x values start at `base` (distinct per request, so that
 * rows mixed up between callers show), with `work` loop steps and the given fail flag.
 */
export function workRequest(base: number, rows = 1, options: { work?: number; fail?: number; cols?: number } = {}): WorkRequest {
  const cols = options.cols ?? 4;
  const x = Float32Array.from({ length: rows * cols }, (_, i) => base + i);
  const feeds: Feeds = {
    x: { type: 'float32', data: x, dims: [rows, cols] },
    work: { type: 'int64', data: new BigInt64Array(rows).fill(BigInt(options.work ?? 0)), dims: [rows] },
    fail: { type: 'int64', data: new BigInt64Array(rows).fill(BigInt(options.fail ?? 0)), dims: [rows] },
  };
  return { feeds, x, rows, cols };
}

/** Throws unless `r` is exactly the request's own answer: y = 2 * x, dims [rows, cols]. */
export function checkDoubled(r: Results, q: WorkRequest, what: string): void {
  const y = r.y;
  if (!y) throw new Error(`${what}: no output "y"`);
  if (y.type !== 'float32') throw new Error(`${what}: y is ${y.type}`);
  if (y.dims.length !== 2 || y.dims[0] !== q.rows || y.dims[1] !== q.cols) {
    throw new Error(`${what}: y dims [${y.dims.join(',')}], expected [${q.rows},${q.cols}]`);
  }
  const data = y.data as Float32Array;
  if (data.length !== q.x.length) throw new Error(`${what}: y has ${data.length} values, expected ${q.x.length}`);
  for (let i = 0; i < q.x.length; i++) {
    if (data[i] !== 2 * q.x[i]) throw new Error(`${what}: y[${i}] = ${data[i]}, expected ${2 * q.x[i]}`);
  }
}

/**
 * Milliseconds per Loop step of workModel(4, side) on this machine, measured (median of
 * three runs of `steps` steps) rather than assumed.
 */
export async function msPerStep(side = 256, steps = 200): Promise<number> {
  const session = await Session.create(workModel(4, side));
  try {
    await session.run(workRequest(0, 1, { work: 5 }).feeds);
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t = performance.now();
      await session.run(workRequest(0, 1, { work: steps }).feeds);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    return times[1] / steps;
  } finally {
    await session.dispose();
  }
}

/**
 * Accuracy of a transformed model against the FP32 original on held-out samples: top-1
 * agreement, cosine similarity, or (negated) max absolute error — each a score where higher
 * is better and the FP32 model scores its best (1, 1, 0).
 */
import { KilnError } from '../errors';
import { Session, type Feeds, type Results } from '../session';

export type Metric = 'top1' | 'cosine' | 'maxError';

/** A function scoring model bytes (higher is better). */
export type Evaluator = (model: Uint8Array) => Promise<number>;

/** The outputs of `model` on each sample, in a session of its own (disposed after). */
export async function outputsOf(model: string | Uint8Array, samples: readonly Feeds[]): Promise<Results[]> {
  const session = await Session.create(model);
  try {
    const out: Results[] = [];
    for (const s of samples) out.push(await session.run(s));
    return out;
  } finally {
    await session.dispose();
  }
}

/** Scores `candidate`'s outputs against `reference`'s (same samples, same output names). */
export function compareOutputs(reference: readonly Results[], candidate: readonly Results[], metric: Metric): number {
  let agree = 0;
  let rows = 0;
  let cosSum = 0;
  let maxErr = 0;
  for (let s = 0; s < reference.length; s++) {
    for (const name of Object.keys(reference[s])) {
      const a = reference[s][name];
      const b = candidate[s][name];
      if (!b) throw new KilnError('E_INVALID_ARGUMENT', `output "${name}" is missing from the transformed model`);
      if (a.type === 'string' || b.type === 'string') continue;
      const x = a.data as ArrayLike<number>;
      const y = b.data as ArrayLike<number>;
      if (x.length !== y.length) throw new KilnError('E_SHAPE_MISMATCH', `output "${name}" has ${y.length} values, FP32 has ${x.length}`);
      const width = a.dims.length ? a.dims[a.dims.length - 1] || 1 : 1;
      for (let r = 0; r + width <= x.length; r += width) {
        let ia = 0;
        let ib = 0;
        let dot = 0;
        let na = 0;
        let nb = 0;
        for (let j = 0; j < width; j++) {
          const u = Number(x[r + j]);
          const v = Number(y[r + j]);
          if (u > Number(x[r + ia])) ia = j;
          if (v > Number(y[r + ib])) ib = j;
          dot += u * v;
          na += u * u;
          nb += v * v;
          const e = Math.abs(u - v);
          if (e > maxErr || Number.isNaN(e)) maxErr = Number.isNaN(e) ? Infinity : e;
        }
        rows++;
        if (ia === ib) agree++;
        cosSum += na === 0 && nb === 0 ? 1 : na === 0 || nb === 0 ? 0 : dot / Math.sqrt(na * nb);
      }
    }
  }
  if (rows === 0) throw new KilnError('E_INVALID_ARGUMENT', 'the model has no numeric outputs to compare');
  if (metric === 'top1') return agree / rows;
  if (metric === 'cosine') return cosSum / rows;
  return -maxErr;
}

/** An evaluator comparing with `fp32`'s outputs on `samples` (computed once). */
export async function referenceEvaluator(fp32: Uint8Array, samples: readonly Feeds[], metric: Metric): Promise<Evaluator> {
  if (samples.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'evaluation needs at least one held-out sample');
  const reference = await outputsOf(fp32, samples);
  return async (model) => compareOutputs(reference, await outputsOf(model, samples), metric);
}

export interface Tolerance {
  /** The score may drop by this share of the baseline (0.01: 1%). */
  relative?: number;
  /** The score may drop by this much. */
  absolute?: number;
}

/** The lowest acceptable score for `baseline` under `tolerance`. */
export function acceptable(baseline: number, tolerance: Tolerance): number {
  if (tolerance.absolute !== undefined) return baseline - tolerance.absolute;
  if (tolerance.relative !== undefined) {
    if (baseline <= 0) throw new KilnError('E_INVALID_ARGUMENT', `a relative tolerance needs a positive baseline score (it is ${baseline}); give an absolute one`);
    return baseline * (1 - tolerance.relative);
  }
  throw new KilnError('E_INVALID_ARGUMENT', 'tolerance: give relative or absolute');
}

/** A transformed model's score against FP32 set against the least acceptable one. */
export interface FloorCheck {
  metric: Metric;
  /** In the metric's own units: top-1 agreement or cosine similarity, or max abs error (not negated). */
  value: number;
  /** The least acceptable top-1 agreement or cosine similarity, or the largest acceptable max abs error. */
  floor: number;
  passed: boolean;
}

/**
 * Checks `candidate`'s outputs against `reference`'s on `metric`. A NaN anywhere fails (a
 * model that overflows to NaN must not pass because NaN compares false).
 */
export function checkFloor(reference: readonly Results[], candidate: readonly Results[], metric: Metric, floor: number): FloorCheck {
  const score = compareOutputs(reference, candidate, metric);
  const value = metric === 'maxError' ? -score : score;
  const passed = metric === 'maxError' ? value <= floor : value >= floor;
  return { metric, value, floor, passed };
}

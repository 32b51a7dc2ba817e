/**
 * Calibration: run the model on sample inputs with chosen intermediate tensors exposed as
 * outputs, and turn what they held into quantization ranges: min-max, a percentile of the
 * magnitudes, or the threshold that minimises the KL divergence between the distribution and
 * its 8-bit quantization (entropy calibration, TensorRT's algorithm).
 */
import { KilnError } from '../errors';
import { encodeModel } from '../onnx';
import type { ModelProto } from '../onnx/types';
import { Session, type Feeds } from '../session';

export type CalibrationMethod = 'minmax' | 'percentile' | 'entropy';
export type CalibrationPass = 'ranges' | 'histograms';

export interface Range {
  min: number;
  max: number;
}

export interface CalibrationOptions {
  method?: CalibrationMethod;
  /** For 'percentile': the share of magnitudes the range keeps (default 99.999). */
  percentile?: number;
  /** Histogram bins for 'percentile' and 'entropy' (default 2048). */
  bins?: number;
  /**
   * The ranges are for symmetric int8 activations (zero point 0, 128 levels a side), as
   * TensorRT quantizes them, rather than asymmetric uint8 (256 levels over [min, max]): for
   * 'entropy', see entropyRange.
   */
  symmetric?: boolean;
  /**
   * Called after each sample with (done, total) of the current pass: 'ranges' (every
   * method), then 'histograms' ('percentile' and 'entropy').
   */
  onProgress?: (done: number, total: number, pass: CalibrationPass) => void;
}

interface Stats {
  min: number;
  max: number;
  /** Magnitudes over [0, absmax] ('percentile'). */
  abs?: Float64Array;
  /** Positive values over [0, max] and magnitudes of negative ones over [0, -min] ('entropy'). */
  pos?: Float64Array;
  neg?: Float64Array;
}

const absMax = (s: Stats): number => Math.max(Math.abs(s.min), Math.abs(s.max));

/**
 * Ranges of `tensors` (float32 values of `model`) over `samples`. The model is not modified:
 * a copy with the tensors as extra outputs runs in a Kiln session.
 */
export async function calibrate(model: ModelProto, tensors: readonly string[], samples: readonly Feeds[], options: CalibrationOptions = {}): Promise<Map<string, Range>> {
  if (samples.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'calibration needs at least one sample');
  if (tensors.length === 0) return new Map();
  const method = options.method ?? 'minmax';
  const bins = options.bins ?? 2048;
  const augmented = structuredClone(model);
  const graph = augmented.graph ?? {};
  const outputs = new Set((graph.output ?? []).map((o) => o.name));
  for (const t of tensors) {
    if (!outputs.has(t)) (graph.output ??= []).push({ name: t, type: { tensorType: { elemType: 1 } } });
  }
  const session = await Session.create(encodeModel(augmented), { graphOptimizationLevel: 'disabled' });
  const stats = new Map<string, Stats>(tensors.map((t) => [t, { min: Infinity, max: -Infinity }]));
  const passes = method === 'minmax' ? 1 : 2;
  const sided = method === 'entropy';
  try {
    for (let pass = 0; pass < passes; pass++) {
      for (let i = 0; i < samples.length; i++) {
        const out = await session.run(samples[i], { outputs: [...tensors] });
        for (const t of tensors) {
          const data = out[t].data as Float32Array;
          const s = stats.get(t) as Stats;
          if (pass === 0) observeRange(s, data);
          else if (sided) observeSides(s, data, bins);
          else observeMagnitudes(s, data, bins);
        }
        options.onProgress?.(i + 1, samples.length, pass === 0 ? 'ranges' : 'histograms');
      }
    }
  } finally {
    await session.dispose();
  }
  const ranges = new Map<string, Range>();
  for (const [t, s] of stats) {
    if (!Number.isFinite(s.min) || !Number.isFinite(s.max)) {
      ranges.set(t, { min: 0, max: 0 });
      continue;
    }
    if (sided) {
      ranges.set(t, entropyRange(s, options.symmetric === true));
      continue;
    }
    let threshold = absMax(s);
    if (method === 'percentile') threshold = percentileThreshold(s, options.percentile ?? 99.999);
    ranges.set(t, { min: Math.max(Math.min(s.min, 0), -threshold), max: Math.min(Math.max(s.max, 0), threshold) });
  }
  return ranges;
}

const total = (hist: Float64Array): number => hist.reduce((a, b) => a + b, 0);

function observeRange(s: Stats, data: Float32Array): void {
  let min = s.min;
  let max = s.max;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
  }
  s.min = min;
  s.max = max;
}

function observeMagnitudes(s: Stats, data: Float32Array, bins: number): void {
  const top = absMax(s);
  const hist = (s.abs ??= new Float64Array(bins));
  if (top === 0) {
    hist[0] += data.length;
    return;
  }
  const scale = bins / top;
  for (let i = 0; i < data.length; i++) {
    let b = Math.floor(Math.abs(data[i]) * scale);
    if (b >= bins) b = bins - 1;
    hist[b]++;
  }
}

function observeSides(s: Stats, data: Float32Array, bins: number): void {
  const pos = (s.pos ??= new Float64Array(bins));
  const neg = (s.neg ??= new Float64Array(bins));
  const up = s.max > 0 ? bins / s.max : 0;
  const down = s.min < 0 ? bins / -s.min : 0;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v > 0) {
      const b = Math.floor(v * up);
      pos[b < bins ? b : bins - 1]++;
    } else if (v < 0) {
      const b = Math.floor(-v * down);
      neg[b < bins ? b : bins - 1]++;
    } else {
      pos[0]++;
    }
  }
}

/**
 * Entropy calibration of a tensor. TensorRT searches one threshold for both signs on the
 * histogram of magnitudes, but a tensor's two sides are often nothing alike (hard-swish:
 * negatives crowded into [-0.375, 0] and a long positive tail that carries the signal; on the
 * PP-OCR recognizer the crowd decides, the tail is cut to a tenth and the model reads
 * nothing). So each side is calibrated on its own histogram: with 128 levels for symmetric
 * int8, the threshold covering the larger of the two; with 256 for asymmetric uint8 (the
 * levels a side would have with the whole range, as TensorRT calibrates an unsigned tensor:
 * more than it gets, so it clips no more than its real share would call for). A
 * one-signed tensor (ReLU) is exactly TensorRT's case.
 */
function entropyRange(s: Stats, symmetric: boolean): Range {
  const levels = symmetric ? 128 : 256;
  const side = (hist: Float64Array, top: number): number => (total(hist) < hist.length ? top : entropyThreshold(hist, top, levels));
  const max = s.max > 0 ? side(s.pos as Float64Array, s.max) : 0;
  const min = s.min < 0 ? -side(s.neg as Float64Array, -s.min) : 0;
  if (!symmetric) return { min, max };
  const t = Math.max(max, -min);
  return { min: Math.max(Math.min(s.min, 0), -t), max: Math.min(Math.max(s.max, 0), t) };
}

/** The magnitude below which `percentile` % of the values fall. */
function percentileThreshold(s: Stats, percentile: number): number {
  const hist = s.abs as Float64Array;
  const want = (total(hist) * percentile) / 100;
  let sum = 0;
  for (let b = 0; b < hist.length; b++) {
    sum += hist[b];
    if (sum >= want) return ((b + 1) / hist.length) * absMax(s);
  }
  return absMax(s);
}

/**
 * TensorRT's entropy calibration, on a histogram of magnitudes over [0, `top`]: for each
 * candidate threshold (bin 128, 129, ... all), P is the histogram cut there with the outliers
 * added to its last bin; Q is the cut histogram without them merged into 128 levels (bin j
 * into level floor(128 j / i)), each level's sum spread evenly over its non-empty bins. The
 * threshold is the candidate with the least KL(P || Q) (the largest of equal ones). As in
 * TensorRT, bin 0's count is first replaced by bin 1's: the exact and near zeros
 * of a ReLU or swish output would otherwise dominate P, and merging that spike with its
 * neighbours would make every threshold but the lowest look expensive.
 */
export function entropyThreshold(histogram: ArrayLike<number>, top: number, levels = 128): number {
  const n = histogram.length;
  if (n <= levels || !(top > 0)) return top;
  const bins = Float64Array.from(histogram);
  bins[0] = bins[1];
  // Prefix sums over bins [0, j): counts, non-empty bins, and count · log(count).
  const count = new Float64Array(n + 1);
  const nonzero = new Float64Array(n + 1);
  const xlogx = new Float64Array(n + 1);
  const plogp = (x: number): number => (x > 0 ? x * Math.log(x) : 0);
  for (let j = 0; j < n; j++) {
    count[j + 1] = count[j] + bins[j];
    nonzero[j + 1] = nonzero[j] + (bins[j] > 0 ? 1 : 0);
    xlogx[j + 1] = xlogx[j] + plogp(bins[j]);
  }
  const total = count[n];
  if (total === 0) return top;
  let best = n;
  let bestKl = Infinity;
  for (let i = levels; i <= n; i++) {
    const kept = count[i];
    const outliers = total - kept;
    if (bins[i - 1] === 0 && outliers > 0) continue; // P has mass where Q has none
    // Nor is cutting away more than is kept clipping outliers. (P, nearly all in its last bin,
    // and Q, normalised over what is kept, would then look alike: a side whose values all lie
    // far from zero would be cut at its first non-empty bin.)
    if (outliers >= kept) continue;
    // total · KL(P || Q) = Σ p log p − total · log total − Σ_levels P_l · log q_l, where p is
    // bins[0, i) with the outliers in bin i − 1, and level l (bins j with floor(levels j / i)
    // = l, i.e. j from ceil(l i / levels)) has Q's mass sum_l / kept spread over its nz_l
    // non-empty bins, and P's mass sum_l (plus the outliers for the last level).
    let sum = xlogx[i - 1] + plogp(bins[i - 1] + outliers) - total * Math.log(total);
    for (let l = 0, start = 0; l < levels; l++) {
      const end = l === levels - 1 ? i : Math.floor(((l + 1) * i + levels - 1) / levels);
      const nz = nonzero[end] - nonzero[start];
      if (nz > 0) {
        const mass = count[end] - count[start];
        sum -= (l === levels - 1 ? mass + outliers : mass) * Math.log(mass / nz / kept);
      }
      start = end;
    }
    const kl = sum / total;
    if (kl <= bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return (best / n) * top;
}

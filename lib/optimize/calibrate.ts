/**
 * Calibration: run the model on sample inputs with chosen intermediate tensors exposed as
 * outputs, and turn what they held into quantization ranges: min-max, a percentile of the
 * magnitudes, or the threshold that minimises the KL divergence between the distribution and
 * its 8-bit quantization (entropy calibration, as TensorRT does).
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
   * Called after each sample with (done, total) of the current pass: 'ranges' (every
   * method), then 'histograms' ('percentile' and 'entropy').
   */
  onProgress?: (done: number, total: number, pass: CalibrationPass) => void;
}

interface Stats {
  min: number;
  max: number;
  hist?: Float64Array; // of |x| over [0, absmax]
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
  try {
    for (let pass = 0; pass < passes; pass++) {
      for (let i = 0; i < samples.length; i++) {
        const out = await session.run(samples[i], { outputs: [...tensors] });
        for (const t of tensors) {
          const data = out[t].data as Float32Array;
          const s = stats.get(t) as Stats;
          if (pass === 0) observeRange(s, data);
          else observeHistogram(s, data, bins);
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
    let threshold = absMax(s);
    if (method === 'percentile') threshold = percentileThreshold(s, options.percentile ?? 99.999);
    else if (method === 'entropy') threshold = entropyThreshold(s);
    ranges.set(t, { min: Math.max(Math.min(s.min, 0), -threshold), max: Math.min(Math.max(s.max, 0), threshold) });
  }
  return ranges;
}

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

function observeHistogram(s: Stats, data: Float32Array, bins: number): void {
  const top = absMax(s);
  const hist = (s.hist ??= new Float64Array(bins));
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

/** The magnitude below which `percentile` % of the values fall. */
function percentileThreshold(s: Stats, percentile: number): number {
  const hist = s.hist as Float64Array;
  const total = hist.reduce((a, b) => a + b, 0);
  const want = (total * percentile) / 100;
  let sum = 0;
  for (let b = 0; b < hist.length; b++) {
    sum += hist[b];
    if (sum >= want) return ((b + 1) / hist.length) * absMax(s);
  }
  return absMax(s);
}

/**
 * TensorRT's entropy calibration: for each candidate threshold (bin 128 .. all), clip the
 * histogram there (outliers into the last kept bin), quantize it to 128 levels, and keep the
 * threshold whose quantized distribution diverges least (KL) from the clipped one.
 */
function entropyThreshold(s: Stats): number {
  const hist = s.hist as Float64Array;
  const bins = hist.length;
  const levels = 128;
  if (bins <= levels) return absMax(s);
  let best = bins;
  let bestKl = Infinity;
  for (let i = levels; i <= bins; i += 16) {
    const p = hist.slice(0, i);
    let outliers = 0;
    for (let b = i; b < bins; b++) outliers += hist[b];
    p[i - 1] += outliers;
    // Q: p merged into `levels` buckets, each spread back evenly over its non-empty bins.
    const q = new Float64Array(i);
    const per = i / levels;
    for (let l = 0; l < levels; l++) {
      const start = Math.floor(l * per);
      const end = l === levels - 1 ? i : Math.floor((l + 1) * per);
      let sum = 0;
      let nonzero = 0;
      // From the clipped histogram without the outliers: Q has no mass for them, which is
      // what makes clipping too much expensive.
      for (let b = start; b < end; b++) {
        sum += hist[b];
        if (p[b] > 0) nonzero++;
      }
      if (nonzero === 0) continue;
      for (let b = start; b < end; b++) if (p[b] > 0) q[b] = sum / nonzero;
    }
    const kl = divergence(p, q);
    if (kl < bestKl) {
      bestKl = kl;
      best = i;
    }
  }
  return (best / bins) * absMax(s);
}

function divergence(p: Float64Array, q: Float64Array): number {
  let ps = 0;
  let qs = 0;
  for (let b = 0; b < p.length; b++) {
    ps += p[b];
    qs += q[b];
  }
  if (ps === 0 || qs === 0) return Infinity;
  let kl = 0;
  for (let b = 0; b < p.length; b++) {
    if (p[b] === 0) continue;
    const pp = p[b] / ps;
    const qq = q[b] / qs;
    kl += qq > 0 ? pp * Math.log(pp / qq) : pp * 20; // an empty Q bin where P has mass: heavily penalised
  }
  return kl;
}

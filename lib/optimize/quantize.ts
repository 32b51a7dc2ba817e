/**
 * `kiln quantize` as an API: dynamic INT8 without calibration data, static INT8 (QDQ) with
 * it, and accuracy-aware tuning — quantize everything, measure, and return the most
 * sensitive nodes to FP32 (ranked by the error each one alone causes) until the tolerance
 * holds, as Intel Neural Compressor does.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KilnError } from '../errors';
import { encodeModel } from '../onnx';
import type { ModelProto } from '../onnx/types';
import { Session, type Feeds } from '../session';
import { calibrate, type CalibrationMethod, type Range } from './calibrate';
import { quantizeDynamic, type QuantizeReport } from './dynamic';
import { acceptable, referenceEvaluator, type Evaluator, type Metric, type Tolerance } from './evaluate';
import { readModel } from './io';
import { fuseAffineConv, fuseConvAffine, fuseHardSwish } from './fusions';
import { upgradeOpset } from './opset';
import { calibratedTensors, decomposeGemm, quantizeStatic, staticCandidates, type Candidate } from './static';

export interface QuantizeOptions {
  /** Default: 'static' when calibration samples are given, else 'dynamic'. */
  mode?: 'dynamic' | 'static';
  /** Calibration samples (static mode). */
  calibration?: readonly Feeds[];
  method?: CalibrationMethod;
  percentile?: number;
  opTypes?: readonly string[];
  includeNodes?: readonly string[];
  excludeNodes?: readonly string[];
  perChannel?: boolean;
  symmetricActivations?: boolean;
  /**
   * Run ONNX Runtime's basic graph optimizations first (constant folding, BatchNormalization
   * folded into Conv), so that the quantized graph is the one ORT will run. Default true.
   */
  preprocess?: boolean;
  /**
   * Fold multi-op patterns into fewer ops before quantizing (default true): hard-swish (Add,
   * Clip, Mul, Div) becomes HardSigmoid + Mul; a constant scale and shift after a Conv (or a
   * scalar one before an unpadded Conv) go into its weights and bias. See fusions.ts.
   */
  fuse?: boolean;
  /** Turns on accuracy-aware tuning. */
  tolerance?: Tolerance;
  /** Tuning's score: your function (higher is better), or a comparison with FP32 on `evaluationSamples`. */
  evaluate?: Evaluator;
  metric?: Metric;
  /** Held-out samples for the built-in comparison (default: the calibration samples). */
  evaluationSamples?: readonly Feeds[];
  /** Writes a TensorRT calibration table (static mode) for non-QDQ INT8 engine builds. */
  tensorRtCalibrationTable?: string;
  onProgress?: (stage: 'calibration: ranges' | 'calibration: histograms' | 'tuning', done: number, total: number) => void;
}

export interface TuningReport {
  baseline: number;
  /** The lowest score the tolerance accepts. */
  required: number;
  /** The final model's score. */
  score: number;
  met: boolean;
  /** Nodes returned to FP32, most sensitive first, with the score drop each caused alone. */
  fallback: { node: string; drop: number }[];
  evaluations: number;
}

export interface QuantizeResult {
  model: Uint8Array;
  mode: 'dynamic' | 'static';
  quantized: string[];
  /** Nodes left in FP32 and why (ineligible, excluded, or returned by tuning). */
  skipped: QuantizeReport['skipped'];
  tuning?: TuningReport;
  sizeBefore: number;
  sizeAfter: number;
  /** Graph rewrites made before quantizing (fusions.ts), by pattern. */
  fused: { convAffine: number; hardSwish: number };
}

/** ORT's basic optimizations applied offline: the optimized model's bytes. */
export async function optimizeBytes(bytes: Uint8Array, level: 'basic' | 'extended' | 'all'): Promise<Uint8Array> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-optimize-'));
  const out = path.join(dir, 'optimized.onnx');
  try {
    const session = await Session.create(bytes, { graphOptimizationLevel: level, optimizedModelPath: out, providers: ['cpu'] });
    await session.dispose();
    return new Uint8Array(fs.readFileSync(out));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Quantizes a model (path or bytes). */
export async function quantize(source: string | Uint8Array, options: QuantizeOptions = {}): Promise<QuantizeResult> {
  const original = encodeModel(readModel(source));
  const mode = options.mode ?? (options.calibration?.length ? 'static' : 'dynamic');
  if (mode === 'static' && !options.calibration?.length) {
    throw new KilnError('E_INVALID_ARGUMENT', 'static quantization needs calibration samples');
  }
  const preprocessed = options.preprocess === false ? original : await optimizeBytes(original, 'basic');
  // The integer ops need opset 10 (static: QLinearConv/QLinearMatMul after ORT's fusion) or
  // 11 (dynamic: DynamicQuantizeLinear).
  const upgraded = readModel(preprocessed);
  upgradeOpset(upgraded, mode === 'dynamic' ? 11 : 10);
  const convAffine = options.fuse === false ? 0 : fuseConvAffine(upgraded) + fuseAffineConv(upgraded);
  const hardSwish = options.fuse === false ? 0 : fuseHardSwish(upgraded);
  if (mode === 'static') decomposeGemm(upgraded);
  const fp32 = encodeModel(upgraded);
  const base = (): ModelProto => readModel(fp32);

  // What a model quantizes to with some candidate nodes left in FP32.
  let candidates: string[];
  let ineligible: QuantizeReport['skipped'];
  let build: (keepFp32: ReadonlySet<string>) => { bytes: Uint8Array; report: QuantizeReport };
  if (mode === 'dynamic') {
    const probe = base();
    const all = quantizeDynamic(probe, options);
    candidates = all.quantized;
    ineligible = all.skipped;
    build = (keep) => {
      const m = base();
      const report = quantizeDynamic(m, { ...options, excludeNodes: [...(options.excludeNodes ?? []), ...keep] });
      return { bytes: encodeModel(m), report };
    };
  } else {
    const found = staticCandidates(base(), options);
    candidates = found.candidates.map((c) => c.name);
    ineligible = found.skipped;
    const tensors = [...new Set(found.candidates.flatMap(calibratedTensors))];
    const ranges = await calibrate(base(), tensors, options.calibration ?? [], {
      method: options.method, percentile: options.percentile, symmetric: options.symmetricActivations,
      onProgress: (d, t, pass) => options.onProgress?.(`calibration: ${pass}`, d, t),
    });
    if (options.tensorRtCalibrationTable) writeTensorRtTable(options.tensorRtCalibrationTable, ranges);
    build = (keep) => {
      const m = base();
      const chosen: Candidate[] = staticCandidates(m, options).candidates.filter((c) => !keep.has(c.name));
      const report = quantizeStatic(m, chosen, ranges, options);
      return { bytes: encodeModel(m), report };
    };
  }

  let result = build(new Set());
  let tuning: TuningReport | undefined;
  if (options.tolerance) {
    const evaluate = options.evaluate ?? (await referenceEvaluator(fp32, options.evaluationSamples ?? options.calibration ?? [], options.metric ?? 'top1'));
    const tuned = await tune(fp32, candidates, build, evaluate, options.tolerance, (d, t) => options.onProgress?.('tuning', d, t));
    tuning = tuned.report;
    result = tuned.result;
  }
  const skipped = [
    ...ineligible,
    ...result.report.skipped.filter((s) => !ineligible.some((i) => i.node === s.node) && !(tuning?.fallback.some((f) => f.node === s.node))),
    ...(tuning?.fallback.map((f) => ({ node: f.node, reason: `returned to FP32 by tuning: quantized alone it lowers the score by ${f.drop.toPrecision(3)}` })) ?? []),
  ];
  return {
    model: result.bytes,
    mode,
    quantized: result.report.quantized,
    skipped,
    tuning,
    sizeBefore: original.byteLength,
    sizeAfter: result.bytes.byteLength,
    fused: { convAffine, hardSwish },
  };
}

type Build = (keepFp32: ReadonlySet<string>) => { bytes: Uint8Array; report: QuantizeReport };

async function tune(fp32: Uint8Array, candidates: readonly string[], build: Build, evaluate: Evaluator, tolerance: Tolerance, progress: (done: number, total: number) => void): Promise<{ result: ReturnType<Build>; report: TuningReport }> {
  let evaluations = 0;
  const score = async (bytes: Uint8Array): Promise<number> => {
    evaluations++;
    return evaluate(bytes);
  };
  const baseline = await score(fp32);
  const required = acceptable(baseline, tolerance);
  const all = build(new Set());
  const first = await score(all.bytes);
  const total = 2 + candidates.length + Math.ceil(Math.log2(candidates.length + 1)) + 1;
  progress(evaluations, total);
  if (first >= required) {
    return { result: all, report: { baseline, required, score: first, met: true, fallback: [], evaluations } };
  }
  // Sensitivity: each node quantized alone, the rest in FP32.
  const drops: { node: string; drop: number }[] = [];
  for (const node of candidates) {
    const only = build(new Set(candidates.filter((c) => c !== node)));
    drops.push({ node, drop: baseline - (await score(only.bytes)) });
    progress(evaluations, total);
  }
  drops.sort((a, b) => b.drop - a.drop);
  // The fewest most-sensitive nodes to return to FP32: binary search over the ranked prefix.
  let lo = 1;
  let hi = drops.length;
  let best: { result: ReturnType<Build>; score: number; k: number } | undefined;
  while (lo <= hi) {
    const k = Math.floor((lo + hi) / 2);
    const r = build(new Set(drops.slice(0, k).map((d) => d.node)));
    const s = await score(r.bytes);
    progress(evaluations, total);
    if (s >= required) {
      best = { result: r, score: s, k };
      hi = k - 1;
    } else {
      lo = k + 1;
    }
  }
  if (!best) {
    // Not even all nodes in FP32 (the original, after preprocessing) meets it: report so.
    const none = build(new Set(candidates));
    const s = await score(none.bytes);
    return { result: none, report: { baseline, required, score: s, met: s >= required, fallback: drops, evaluations } };
  }
  return { result: best.result, report: { baseline, required, score: best.score, met: true, fallback: drops.slice(0, best.k), evaluations } };
}

/**
 * TensorRT's native calibration table: a header line, then `tensor: <scale>` with the
 * scale (absmax / 127) as the big-endian hex of its float32 bits. TensorRT reads it for
 * INT8 engines of models without Q/DQ (ORT: trt_int8_use_native_calibration_table).
 */
export function writeTensorRtTable(file: string, ranges: ReadonlyMap<string, Range>): void {
  const lines = ['TRT-8601-EntropyCalibration2'];
  const view = new DataView(new ArrayBuffer(4));
  for (const [name, r] of ranges) {
    const m = Math.max(Math.abs(r.min), Math.abs(r.max));
    view.setFloat32(0, m > 0 ? m / 127 : 1, false);
    lines.push(`${name}: ${view.getUint32(0, false).toString(16).padStart(8, '0')}`);
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

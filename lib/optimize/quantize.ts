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
import { formatMicroseconds } from '../latency';
import { encodeModel } from '../onnx';
import { ONNX_TYPE } from '../tensor';
import type { ModelProto, NodeProto } from '../onnx/types';
import { Session, type Feeds } from '../session';
import { calibrate, type CalibrationMethod, type Range } from './calibrate';
import { nodeName, quantizeDynamic, type QuantizeReport } from './dynamic';
import { acceptable, referenceEvaluator, type Evaluator, type Metric, type Tolerance } from './evaluate';
import { addValueTypes } from './fp16';
import { Graph } from './graph';
import { readModel } from './io';
import { fuseAffineConv, fuseConvAffine, fuseHardSwish } from './fusions';
import { upgradeOpset } from './opset';
import { calibratedTensors, decomposeGemm, quantizeStatic, staticCandidates, type Candidate } from './static';
import { interleavedMedians, runsFor, timingSession } from './timing';

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
  /**
   * Keep the output layer (the quantizable nodes nearest the graph outputs: the logits) in
   * FP32 when it is dense (MatMul, Gemm) and holds at most 5% of the quantizable weights
   * (default true). Rounding the logits decides near-ties, and such a layer costs little in
   * FP32: on the sample MLP it lifts dynamic INT8's top-1 agreement on 1,000 random rows from
   * 98.8–99.0% to 99.2–99.5% for about 1% of the speed. A larger one (the PP-OCR
   * recognizer's 6,625-class projection, a third of its weights) is quantized. Nodes named in
   * includeNodes are quantized regardless.
   */
  keepOutputLayer?: boolean;
  /** Turns on accuracy-aware tuning. */
  tolerance?: Tolerance;
  /** Tuning's score: your function (higher is better), or a comparison with FP32 on `evaluationSamples`. */
  evaluate?: Evaluator;
  metric?: Metric;
  /** Held-out samples for the built-in comparison (default: the calibration samples). */
  evaluationSamples?: readonly Feeds[];
  /**
   * Tuning weighs each fallback's latency cost as well as its accuracy gain (default true when
   * there is a sample to time on: the first evaluation or calibration sample). See tune().
   */
  latencyAware?: boolean;
  /**
   * Writes a TensorRT calibration table (static mode) for non-QDQ INT8 engine builds: a scale
   * for every float activation of the model as given (TensorRT parses that model, not the
   * rewritten one), calibrated with the same samples and method.
   */
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
  /**
   * Nodes returned to FP32, in the order they were chosen, with the score drop each caused
   * alone and (latency-aware tuning) what returning it alone to FP32 costs in µs per run.
   */
  fallback: { node: string; drop: number; costUs?: number }[];
  evaluations: number;
  /**
   * Latency-aware tuning: median µs per run (one intra-op thread, on `input`) of the model with
   * every candidate quantized and of the result, and of the fewest-nodes set when the cheaper
   * set was chosen over it.
   */
  latency?: { input: string; quantized: number; result: number; fewestNodes?: number; chosen: 'fewest nodes' | 'cheapest' };
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

  // The output layer stays FP32 (see keepOutputLayer): excluded like a listed node.
  const eligible = mode === 'dynamic' ? quantizeDynamic(base(), options).quantized : staticCandidates(base(), options).candidates.map((c) => c.name);
  const head = options.keepOutputLayer === false ? undefined : outputLayer(base(), eligible, options.includeNodes ?? []);
  const caller = options;
  options = head ? { ...options, excludeNodes: [...(options.excludeNodes ?? []), ...head.nodes] } : options;

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
    const table = options.tensorRtCalibrationTable ? await originalActivations(original, base()) : [];
    const tensors = [...new Set([...found.candidates.flatMap(calibratedTensors), ...table])];
    const ranges = await calibrate(base(), tensors, options.calibration ?? [], {
      method: options.method, percentile: options.percentile, symmetric: options.symmetricActivations,
      onProgress: (d, t, pass) => options.onProgress?.(`calibration: ${pass}`, d, t),
    });
    if (options.tensorRtCalibrationTable) writeTensorRtTable(options.tensorRtCalibrationTable, new Map(table.map((t) => [t, ranges.get(t) as Range])));
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
    const timing = options.latencyAware === false ? undefined : (options.evaluationSamples ?? options.calibration)?.[0];
    const tuned = await tune(fp32, candidates, build, evaluate, options.tolerance, timing, (d, t) => options.onProgress?.('tuning', d, t));
    tuning = tuned.report;
    result = tuned.result;
  }
  const headReason = head && `the output layer, ${(head.share * 100).toFixed(1)}% of the quantizable weights: kept in FP32 by default (keepOutputLayer: false, --quantize-output-layer)`;
  const skipped = [
    ...ineligible.map((s) => (head?.nodes.includes(s.node) && !caller.excludeNodes?.includes(s.node) ? { node: s.node, reason: headReason as string } : s)),
    ...result.report.skipped.filter((s) => !ineligible.some((i) => i.node === s.node) && !(tuning?.fallback.some((f) => f.node === s.node))),
    ...(tuning?.fallback.map((f) => ({
      node: f.node,
      reason: `returned to FP32 by tuning: quantized alone it lowers the score by ${f.drop.toPrecision(3)}${f.costUs === undefined ? '' : `; alone in FP32 it costs ${formatMicroseconds(f.costUs)} a run`}`,
    })) ?? []),
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

/**
 * The output layer among `candidates` (node names): the candidates a graph output is reached
 * from without passing another candidate, and their share of the candidates' constant
 * weights. Undefined when it holds more than 5% of them, when one is not a MatMul or Gemm, or
 * when includeNodes names one.
 */
function outputLayer(model: ModelProto, candidates: readonly string[], include: readonly string[]): { nodes: string[]; share: number } | undefined {
  const g = new Graph(model);
  const names = new Set(candidates);
  const producer = new Map<string, NodeProto>();
  for (const n of g.nodes) for (const o of n.output ?? []) producer.set(o, n);
  const weight = (n: NodeProto): number => {
    const w = g.constant(n.input?.[1] ?? '');
    return w ? w.data.length : 0;
  };
  const found = new Set<NodeProto>();
  const seen = new Set<NodeProto>();
  const stack = (model.graph?.output ?? []).map((o) => producer.get(o.name ?? '')).filter((n): n is NodeProto => n !== undefined);
  while (stack.length) {
    const n = stack.pop() as NodeProto;
    if (seen.has(n)) continue;
    seen.add(n);
    if (names.has(nodeName(n))) {
      found.add(n);
      continue;
    }
    for (const i of n.input ?? []) {
      const p = producer.get(i);
      if (p) stack.push(p);
    }
  }
  const nodes = [...found].map(nodeName);
  if (nodes.length === 0 || nodes.some((n) => include.includes(n))) return undefined;
  // Dense layers only: a convolution head has few weights but runs them over every pixel
  // (the PP-OCR detector's last Conv: 1.8% of the weights, 9% slower in FP32).
  if ([...found].some((n) => n.opType !== 'MatMul' && n.opType !== 'Gemm')) return undefined;
  const total = g.nodes.filter((n) => names.has(nodeName(n))).reduce((sum, n) => sum + weight(n), 0);
  const share = total > 0 ? [...found].reduce((sum, n) => sum + weight(n), 0) / total : 1;
  return share <= 0.05 ? { nodes, share } : undefined;
}

type Build = (keepFp32: ReadonlySet<string>) => { bytes: Uint8Array; report: QuantizeReport };
type Drop = TuningReport['fallback'][number];

/**
 * Accuracy-aware tuning. Quantize everything and score it; if that misses the tolerance,
 * score each candidate quantized alone (the rest FP32) to rank them by the drop each causes,
 * and find the shortest prefix of the ranking whose return to FP32 meets the tolerance
 * (binary search: the fewest nodes). Fewest is not fastest: an FP32 node between int8 ones
 * costs its own float kernel and a dequantize/quantize round trip, more for some nodes than
 * others. So with a sample to time on, each node that causes a drop is also timed back in
 * FP32 (alone, against everything quantized, interleaved), the nodes are ranked again by drop
 * per µs, the shortest prefix of that ranking that meets the tolerance is found the same way,
 * and that set is returned when it is measured faster than the fewest-nodes one.
 */
async function tune(fp32: Uint8Array, candidates: readonly string[], build: Build, evaluate: Evaluator, tolerance: Tolerance, timing: Feeds | undefined, progress: (done: number, total: number) => void): Promise<{ result: ReturnType<Build>; report: TuningReport }> {
  let evaluations = 0;
  const score = async (bytes: Uint8Array): Promise<number> => {
    evaluations++;
    return evaluate(bytes);
  };
  const baseline = await score(fp32);
  const required = acceptable(baseline, tolerance);
  const all = build(new Set());
  const first = await score(all.bytes);
  const searches = Math.ceil(Math.log2(candidates.length + 1)) + 1;
  let total = 2 + candidates.length + searches * (timing ? 2 : 1) + (timing ? candidates.length : 0);
  progress(evaluations, total);
  if (first >= required) {
    return { result: all, report: { baseline, required, score: first, met: true, fallback: [], evaluations } };
  }
  // Sensitivity: each node quantized alone, the rest in FP32.
  const drops: Drop[] = [];
  for (const node of candidates) {
    const only = build(new Set(candidates.filter((c) => c !== node)));
    drops.push({ node, drop: baseline - (await score(only.bytes)) });
    progress(evaluations, total);
  }
  drops.sort((a, b) => b.drop - a.drop);
  // The shortest prefix of `ranked` whose return to FP32 meets the tolerance (binary search).
  let steps = 0;
  const shortest = async (ranked: readonly Drop[]): Promise<{ result: ReturnType<Build>; score: number; nodes: Drop[] } | undefined> => {
    let lo = 1;
    let hi = ranked.length;
    let best: { result: ReturnType<Build>; score: number; nodes: Drop[] } | undefined;
    while (lo <= hi) {
      const k = Math.floor((lo + hi) / 2);
      const r = build(new Set(ranked.slice(0, k).map((d) => d.node)));
      const s = await score(r.bytes);
      progress(evaluations + steps, total);
      if (s >= required) {
        best = { result: r, score: s, nodes: ranked.slice(0, k) };
        hi = k - 1;
      } else {
        lo = k + 1;
      }
    }
    return best;
  };
  const fewest = await shortest(drops);
  if (!fewest) {
    // Not even all nodes in FP32 (the original, after preprocessing) meets it: report so.
    const none = build(new Set(candidates));
    const s = await score(none.bytes);
    return { result: none, report: { baseline, required, score: s, met: s >= required, fallback: drops, evaluations } };
  }
  const done = (pick: { result: ReturnType<Build>; score: number; nodes: Drop[] }, latency?: TuningReport['latency']): { result: ReturnType<Build>; report: TuningReport } =>
    ({ result: pick.result, report: { baseline, required, score: pick.score, met: true, fallback: pick.nodes, evaluations, latency } });
  if (!timing) return done(fewest);

  // The latency cost of each node that matters, returned to FP32 alone.
  const quantized = await timingSession(all.bytes);
  try {
    const [perRun] = interleavedMedians([quantized], timing, 5);
    const runs = runsFor(perRun, 2, 400);
    const useful = drops.filter((d) => d.drop > 0);
    total = evaluations + useful.length + searches + 1;
    for (const [i, d] of useful.entries()) {
      const one = await timingSession(build(new Set([d.node])).bytes);
      try {
        const [a, b] = interleavedMedians([quantized, one], timing, runs);
        d.costUs = b - a;
      } finally {
        await one.dispose();
      }
      steps = i + 1;
      progress(evaluations + steps, total);
    }
    // Drop per µs; a cost within the noise (0.5% of a run) counts as that much.
    const noise = 0.005 * perRun;
    const value = (d: Drop): number => d.drop / Math.max(noise, d.costUs ?? 0);
    const cheapest = await shortest([...useful].sort((a, b) => value(b) - value(a)));
    const input = Object.entries(timing).map(([name, t]) => `${name} [${t.dims.join(',')}]`).join(', ');
    const sessions = [quantized, await timingSession(fewest.result.bytes)];
    const same = !cheapest || cheapest.nodes.map((d) => d.node).sort().join() === fewest.nodes.map((d) => d.node).sort().join();
    if (!same) sessions.push(await timingSession(cheapest.result.bytes));
    try {
      const [q, f, c] = interleavedMedians(sessions, timing, runsFor(perRun, sessions.length, 1500));
      progress(total, total);
      // The cheaper set only when measurably faster (2%, above the timing's noise): at equal
      // speed fewer nodes in FP32 is the smaller model.
      if (same || c >= 0.98 * f) return done(fewest, { input, quantized: q, result: f, chosen: 'fewest nodes' });
      return done(cheapest, { input, quantized: q, result: c, fewestNodes: f, chosen: 'cheapest' });
    } finally {
      for (const s of sessions.slice(1)) await s.dispose();
    }
  } finally {
    await quantized.dispose();
  }
}

/**
 * The float activations (inputs, node outputs, in graph order) of `original` that `rewritten`
 * still computes under the same name: what TensorRT, which builds its network from the
 * original model, looks scales up by. The rewrites keep the name of a pattern's last output
 * (a decomposed Gemm's Add writes the Gemm's output, a fused Conv the Add's it absorbed), so a
 * shared name holds the same values. Names of their own (`<gemm>_product`) are left out, and
 * so are the few the rewrites remove (the output of a Conv that absorbed the BatchNormalization
 * after it: TensorRT fuses the two as well).
 */
async function originalActivations(original: Uint8Array, rewritten: ModelProto): Promise<string[]> {
  const model = readModel(original);
  await addValueTypes(model);
  const graph = model.graph ?? {};
  const float = new Set([...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]
    .filter((v) => v.type?.tensorType?.elemType === ONNX_TYPE.float32).map((v) => v.name));
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const names = [
    ...(graph.input ?? []).map((v) => v.name ?? '').filter((n) => !initializers.has(n)),
    ...(graph.node ?? []).filter((n) => n.opType !== 'Constant').flatMap((n) => n.output ?? []),
  ];
  const computed = new Set([...(rewritten.graph?.input ?? []).map((v) => v.name), ...(rewritten.graph?.node ?? []).flatMap((n) => n.output ?? [])]);
  return [...new Set(names)].filter((n) => n !== '' && float.has(n) && computed.has(n));
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

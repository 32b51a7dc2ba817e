/**
 * Static INT8 in QDQ form: calibrated activations get QuantizeLinear -> DequantizeLinear
 * pairs, weights are stored as int8 (per channel) behind a DequantizeLinear, biases as int32.
 * ONNX Runtime on a CPU fuses DQ -> Conv/MatMul/Gemm -> Q into its integer kernels; TensorRT
 * reads the Q/DQ scales (with symmetric activations) to build INT8 engines.
 */
import { KilnError } from '../errors';
import type { ModelProto, NodeProto } from '../onnx/types';
import type { Range } from './calibrate';
import { nodeName, type QuantizeReport } from './dynamic';
import { attrInt, floatAttr, Graph, intAttr } from './graph';
import { quantizeBias, quantizeWeight, transpose2d } from './weights';

export const STATIC_OP_TYPES = ['Conv', 'MatMul'] as const;

/** Ops whose float weight ONNX Runtime quantizes on its own when their input is dequantized. */
const WEIGHT_QUANTIZED_BY_ORT: ReadonlySet<string> = new Set(['Conv', 'ConvTranspose', 'Gemm']);

/**
 * Ops quantized when both inputs are activations: each input and the output get Q/DQ and
 * ONNX Runtime runs QLinearMatMul / QLinearMul / QLinearAdd. Mul and Add only when listed in
 * opTypes: on the PP-OCR recognizer quantizing the hard-swish gates (Mul) ran 8% faster but
 * changed the text of half the held-out lines.
 */
const TWO_ACTIVATION_OPS = ['MatMul', 'Mul', 'Add'];

export interface StaticOptions {
  /**
   * Op types to quantize (default Conv, MatMul; Gemms are decomposed into MatMul + Add
   * first). Mul and Add are quantized when listed and both their inputs are activations.
   */
  opTypes?: readonly string[];
  includeNodes?: readonly string[];
  excludeNodes?: readonly string[];
  /** Per output channel weight scales (default true). */
  perChannel?: boolean;
  /** int8 activations with zero point 0 (TensorRT's form) instead of asymmetric uint8 (default false). */
  symmetricActivations?: boolean;
}

/** A node the static quantizer can quantize, and the tensors it needs calibrated. */
export interface Candidate {
  node: NodeProto;
  name: string;
  input: string;
  output: string;
  /** A MatMul of two activations (attention's Q·Kᵀ, P·V): its second input, calibrated too. */
  input2?: string;
}

/** The tensors a candidate needs calibrated. */
export const calibratedTensors = (c: Candidate): string[] => (c.input2 ? [c.input, c.input2, c.output] : [c.input, c.output]);

/** The nodes of `model` eligible for static quantization under `options` (in graph order). */
export function staticCandidates(model: ModelProto, options: StaticOptions = {}): { candidates: Candidate[]; skipped: QuantizeReport['skipped'] } {
  const g = new Graph(model);
  const ops = new Set(options.opTypes ?? STATIC_OP_TYPES);
  const include = options.includeNodes ? new Set(options.includeNodes) : undefined;
  const exclude = new Set(options.excludeNodes ?? []);
  const candidates: Candidate[] = [];
  const skipped: QuantizeReport['skipped'] = [];
  for (const n of g.nodes) {
    if ((n.domain ?? '') !== '' || !ops.has(n.opType ?? '')) continue;
    const name = nodeName(n);
    if (exclude.has(name) || (include && !include.has(name))) {
      skipped.push({ node: name, reason: 'excluded by the node lists' });
      continue;
    }
    const [a, b] = n.input ?? [];
    if (TWO_ACTIVATION_OPS.includes(n.opType ?? '') && a && b && !g.isConstant(a) && !g.isConstant(b)) {
      candidates.push({ node: n, name, input: a, input2: b, output: n.output?.[0] as string });
      continue;
    }
    if (n.opType === 'Mul' || n.opType === 'Add') continue; // with a constant: scaling and shifting stay in float
    const why = ineligible(g, n);
    if (why) skipped.push({ node: name, reason: why });
    else candidates.push({ node: n, name, input: n.input?.[0] as string, output: n.output?.[0] as string });
  }
  return { candidates, skipped };
}

function ineligible(g: Graph, n: NodeProto): string | undefined {
  const [x, wName] = n.input ?? [];
  const w = wName ? g.constant(wName) : undefined;
  if (!w || w.type !== 'float32') return 'the weight is not a float32 constant';
  if (g.isConstant(x)) return 'the activation is a constant';
  if (n.opType === 'Conv' && w.dims.length < 3) return `the Conv weight has rank ${w.dims.length}`;
  if (n.opType !== 'Conv' && w.dims.length !== 2) return `the weight has rank ${w.dims.length}, not 2`;
  if (n.opType === 'Gemm') return 'a Gemm: decompose it into MatMul + Add first (decomposeGemm; quantize() does)';
  const bias = n.input?.[2];
  if (bias && !(g.constant(bias)?.type === 'float32')) return 'the bias is not a float32 constant';
  return undefined;
}

interface QParams {
  scale: number;
  zero: number;
}

function activationParams(r: Range, symmetric: boolean): QParams {
  if (symmetric) {
    const m = Math.max(Math.abs(r.min), Math.abs(r.max));
    return { scale: m > 0 ? m / 127 : 1, zero: 0 };
  }
  const min = Math.min(r.min, 0);
  const max = Math.max(r.max, 0);
  const scale = max > min ? (max - min) / 255 : 1;
  const zero = Math.max(0, Math.min(255, Math.round(-min / scale)));
  return { scale, zero };
}

/**
 * Rewrites `model` in place with Q/DQ around `candidates` (from staticCandidates on this
 * model), using `ranges` for their activations. Returns the report.
 */
export function quantizeStatic(model: ModelProto, candidates: readonly Candidate[], ranges: ReadonlyMap<string, Range>, options: StaticOptions = {}): QuantizeReport {
  const g = new Graph(model);
  const symmetric = options.symmetricActivations ?? false;
  const perChannel = options.perChannel ?? true;
  // Per-channel DequantizeLinear (the axis attribute) is opset 13; older models keep their
  // opset and use ONNX Runtime's com.microsoft Q/DQ, which take the same inputs.
  const domain = g.opset('') >= 13 ? '' : 'com.microsoft';
  if (domain) g.requireOpset('com.microsoft', 1);
  else g.requireOpset('', 13);
  const report: QuantizeReport = { quantized: [], skipped: [] };
  const dequantized = new Map<string, { value: string; params: QParams }>();
  const byName = new Map(g.nodes.map((n) => [nodeName(n), n]));
  const chosen = new Set(candidates.map((c) => c.name));

  const qdq = (tensor: string): { value: string; params: QParams } => {
    const done = dequantized.get(tensor);
    if (done) return done;
    const range = ranges.get(tensor);
    if (!range) throw new KilnError('E_INVALID_ARGUMENT', `no calibrated range for tensor "${tensor}"`);
    const params = activationParams(range, symmetric);
    const scale = g.addInitializer(`${tensor}_scale`, 'float32', [], Float32Array.of(params.scale));
    const zero = symmetric
      ? g.addInitializer(`${tensor}_zero_point`, 'int8', [], Int8Array.of(0))
      : g.addInitializer(`${tensor}_zero_point`, 'uint8', [], Uint8Array.of(params.zero));
    const q = g.fresh(`${tensor}_quantized`);
    const dq = g.fresh(`${tensor}_dequantized`);
    const nodes = [g.node('QuantizeLinear', [tensor, scale, zero], [q], [], domain), g.node('DequantizeLinear', [q, scale, zero], [dq], [], domain)];
    // Every reader of the tensor reads the dequantized value (the graph output keeps the float),
    // so that its producer's output is only quantized and ONNX Runtime can fuse the Q into it,
    // except a Conv, ConvTranspose or Gemm left in FP32: ONNX Runtime's WeightBiasQuantization
    // quantizes the float weight of such a node reading a DequantizeLinear itself (per tensor;
    // in an opset-10 model with a Round that makes the model invalid), so it reads the float.
    for (const n of g.nodes) {
      if (!n.input || (WEIGHT_QUANTIZED_BY_ORT.has(n.opType ?? '') && !chosen.has(nodeName(n)))) continue;
      n.input = n.input.map((i) => (i === tensor ? dq : i));
    }
    const producer = g.producer(tensor);
    const at = producer ? g.nodes.indexOf(producer) + 1 : 0;
    g.nodes.splice(at, 0, ...nodes);
    const entry = { value: dq, params };
    dequantized.set(tensor, entry);
    return entry;
  };

  for (const c of candidates) {
    const n = byName.get(c.name);
    if (!n) {
      report.skipped.push({ node: c.name, reason: 'not in this model' });
      continue;
    }
    // By its original name: an earlier reader of the same activation rewired this node's input.
    const x = qdq(c.input);
    if (c.input2) {
      // Two activations: both through Q/DQ, per tensor (ORT: QLinearMatMul, QLinearMul, QLinearAdd).
      n.input = [x.value, qdq(c.input2).value];
      report.quantized.push(c.name);
      continue;
    }
    const wName = n.input?.[1] as string;
    const w = g.constant(wName);
    if (!w) {
      report.skipped.push({ node: c.name, reason: 'the weight is not a constant' });
      continue;
    }
    // The output channel: Conv [M, C, ...] axis 0; MatMul [K, N] axis 1.
    const axis = n.opType === 'Conv' ? 0 : 1;
    const weight = w.data as Float32Array;
    const dims = w.dims;
    const q = quantizeWeight(weight, dims, perChannel ? axis : -1);
    const base = n.name || c.output;
    const wq = g.addInitializer(`${base}.weight_quantized`, 'int8', dims, q.data);
    const channels = q.scales.length;
    const ws = g.addInitializer(`${base}.weight_scale`, 'float32', perChannel ? [channels] : [], q.scales);
    // Symmetric: no zero point (DequantizeLinear's default for int8 is 0).
    const wdq = g.fresh(`${base}.weight_dequantized`);
    const added: NodeProto[] = [g.node('DequantizeLinear', [wq, ws], [wdq], perChannel ? [attrInt('axis', axis)] : [], domain)];
    const inputs = [x.value, wdq];
    const biasName = n.input?.[2];
    if (biasName) {
      const b = g.constant(biasName);
      const bias = b ? quantizeBias(b.data as Float32Array, x.params.scale, q.scales) : undefined;
      if (bias && b && b.data.length === (perChannel ? channels : b.data.length)) {
        const bq = g.addInitializer(`${base}.bias_quantized`, 'int32', b.dims, bias.data);
        const bs = g.addInitializer(`${base}.bias_scale`, 'float32', [bias.scales.length], bias.scales);
        const bdq = g.fresh(`${base}.bias_dequantized`);
        added.push(g.node('DequantizeLinear', [bq, bs], [bdq], [attrInt('axis', 0)], domain));
        inputs.push(bdq);
      } else {
        inputs.push(biasName);
      }
    }
    n.input = inputs;
    const at = g.nodes.indexOf(n);
    g.nodes.splice(at, 0, ...added);
    report.quantized.push(c.name);
  }
  // Outputs last: a quantized node's output is often the next one's input, quantized once.
  for (const c of candidates) {
    if (report.quantized.includes(c.name) && ranges.has(c.output)) qdq(c.output);
  }
  g.prune();
  return report;
}

/**
 * Every Gemm with a constant weight (and no transA) becomes MatMul (alpha and a transposed B
 * folded into the weight) + Add (beta C). ONNX Runtime fuses DQ -> MatMul -> Q into
 * QLinearMatMul but leaves a QDQ Gemm in float, and the MatMul's own output can then be
 * calibrated and quantized. Each MatMul takes its Gemm's name. Returns the names decomposed.
 */
export function decomposeGemm(model: ModelProto): Set<string> {
  const g = new Graph(model);
  const made = new Set<string>();
  for (const n of [...g.nodes]) {
    if ((n.domain ?? '') !== '' || n.opType !== 'Gemm' || intAttr(n, 'transA', 0) !== 0) continue;
    const [x, wName, cName] = n.input ?? [];
    const w = wName ? g.constant(wName) : undefined;
    if (!w || w.type !== 'float32' || w.dims.length !== 2) continue;
    let weight = w.data as Float32Array;
    let dims = w.dims;
    if (intAttr(n, 'transB', 0)) {
      weight = transpose2d(weight, dims[0], dims[1]);
      dims = [dims[1], dims[0]];
    }
    const alpha = floatAttr(n, 'alpha', 1);
    if (alpha !== 1) weight = weight.map((v) => v * alpha);
    const beta = floatAttr(n, 'beta', 1);
    const c = cName ? g.constant(cName) : undefined;
    // A computed C (ORT fuses MatMul + Add of an activation into such a Gemm) is added as is;
    // scaled by beta it would need a Mul: leave that Gemm alone.
    if (cName && !c && beta !== 1) continue;
    if (c && c.type !== 'float32') continue;
    const name = nodeName(n);
    const out = n.output?.[0] as string;
    const base = n.name || out;
    const wNew = g.addInitializer(`${base}.weight`, 'float32', dims, weight);
    // The MatMul keeps the Gemm's name, so node lists and reports speak of the model's names.
    const matmul: NodeProto = { opType: 'MatMul', input: [x, wNew], name };
    const nodes: NodeProto[] = [matmul];
    if (cName && beta !== 0) {
      const product = g.fresh(`${base}_product`);
      matmul.output = [product];
      const bias = c ? g.addInitializer(`${base}.bias`, 'float32', c.dims, (c.data as Float32Array).map((v) => v * beta)) : cName;
      nodes.push({ opType: 'Add', input: [product, bias], output: [out], name: g.fresh(`${base}_Add`) });
    } else {
      matmul.output = [out];
    }
    g.replace(n, nodes);
    made.add(name);
  }
  g.prune();
  return made;
}

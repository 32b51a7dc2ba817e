/**
 * Dynamic INT8: MatMul and Gemm weights become int8 with a scale per output channel;
 * activations are quantized at run time. Each quantized node becomes
 *
 *   DynamicQuantizeLinear(x) -> x_u8, x_scale, x_zero        (once per activation)
 *   MatMulInteger(x_u8, W_s8, x_zero) -> int32
 *   Cast(float) * (x_scale * W_scale[n]) (+ bias)
 *
 * which ONNX Runtime fuses into its integer kernels (u8 x s8: VNNI/AMX where the CPU has it).
 */
import { KilnError } from '../errors';
import type { ModelProto, NodeProto } from '../onnx/types';
import { attrInt, floatAttr, Graph, intAttr } from './graph';
import { quantizeWeight, transpose2d } from './weights';

export interface DynamicOptions {
  /** Op types to quantize (default MatMul and Gemm). */
  opTypes?: readonly string[];
  /** Only these node names (default all eligible). */
  includeNodes?: readonly string[];
  excludeNodes?: readonly string[];
  /** Per output channel scales (default true); false: one scale per weight. */
  perChannel?: boolean;
}

export interface QuantizeReport {
  /** Nodes quantized, by name. */
  quantized: string[];
  /** Eligible-looking nodes left in FP32, and why. */
  skipped: { node: string; reason: string }[];
}

export const nodeName = (n: NodeProto): string => n.name || `${n.opType}(${n.output?.[0] ?? '?'})`;

/** Quantizes `model` in place; returns what was quantized and what was not. */
export function quantizeDynamic(model: ModelProto, options: DynamicOptions = {}): QuantizeReport {
  const g = new Graph(model);
  const ops = new Set(options.opTypes ?? ['MatMul', 'Gemm']);
  const include = options.includeNodes ? new Set(options.includeNodes) : undefined;
  const exclude = new Set(options.excludeNodes ?? []);
  if (g.opset('') < 11) {
    throw new KilnError('E_INVALID_ARGUMENT', `DynamicQuantizeLinear needs opset 11; the model imports ${g.opset('')} (upgradeOpset first)`);
  }
  const report: QuantizeReport = { quantized: [], skipped: [] };
  // One DynamicQuantizeLinear per activation, shared by every node that reads it.
  const quantizedInputs = new Map<string, [string, string, string]>();
  for (const n of [...g.nodes]) {
    if ((n.domain ?? '') !== '' || !ops.has(n.opType ?? '')) continue;
    const name = nodeName(n);
    if (exclude.has(name) || (include && !include.has(name))) {
      report.skipped.push({ node: name, reason: 'excluded by the node lists' });
      continue;
    }
    const why = quantizeNode(g, n, options.perChannel ?? true, quantizedInputs);
    if (why) report.skipped.push({ node: name, reason: why });
    else report.quantized.push(name);
  }
  g.prune();
  return report;
}

/** Rewrites one MatMul/Gemm; returns why not when it cannot. */
function quantizeNode(g: Graph, n: NodeProto, perChannel: boolean, quantizedInputs: Map<string, [string, string, string]>): string | undefined {
  const [x, wName, cName] = n.input ?? [];
  const w = wName ? g.constant(wName) : undefined;
  if (!w || w.type !== 'float32') return 'the weight is not a float32 constant';
  if (g.isConstant(x)) return 'both inputs are constants';
  if (w.dims.length !== 2) return `the weight has rank ${w.dims.length}, not 2`;
  let [k, cols] = w.dims as [number, number];
  let weight = w.data as Float32Array;
  let alpha = 1;
  let bias: Float32Array | undefined;
  let biasName: string | undefined;
  let computedBias: string | undefined;
  if (n.opType === 'Gemm') {
    if (intAttr(n, 'transA', 0) !== 0) return 'Gemm with transA';
    if (intAttr(n, 'transB', 0) !== 0) {
      weight = transpose2d(weight, k, cols);
      [k, cols] = [cols, k];
    }
    alpha = floatAttr(n, 'alpha', 1);
    const beta = floatAttr(n, 'beta', 1);
    if (cName && !g.isConstant(cName)) {
      // A computed C (ORT fuses MatMul + Add of an activation into such a Gemm): added as is.
      if (beta !== 1) return 'a computed Gemm bias scaled by beta';
      computedBias = cName;
    } else if (cName) {
      const c = g.constant(cName);
      if (!c || c.type !== 'float32') return 'the Gemm bias is not a float32 constant';
      if (c.data.length !== cols || !(c.dims.length === 1 || (c.dims.length === 2 && c.dims[0] === 1))) return `the Gemm bias has dims [${c.dims.join(',')}], not [${cols}]`;
      bias = Float32Array.from(c.data as Float32Array, (v) => v * beta);
    }
  }
  const q = quantizeWeight(weight, [k, cols], perChannel ? 1 : -1);
  const out = n.output?.[0] as string;
  const base = n.name || out;
  const wq = g.addInitializer(`${base}.weight_quantized`, 'int8', [k, cols], q.data);
  const ws = g.addInitializer(`${base}.weight_scale`, 'float32', [q.scales.length], q.scales.map((s) => s * alpha));
  let xq = quantizedInputs.get(x);
  const added: NodeProto[] = [];
  if (!xq) {
    xq = [g.fresh(`${x}_quantized`), g.fresh(`${x}_scale`), g.fresh(`${x}_zero_point`)];
    added.push(g.node('DynamicQuantizeLinear', [x], [...xq]));
    quantizedInputs.set(x, xq);
  }
  const product = g.fresh(`${base}_int32`);
  const asFloat = g.fresh(`${base}_float`);
  const scale = g.fresh(`${base}_scale`);
  added.push(
    g.node('MatMulInteger', [xq[0], wq, xq[2]], [product]),
    g.node('Cast', [product], [asFloat], [attrInt('to', 1)]),
    g.node('Mul', [xq[1], ws], [scale]),
  );
  if (bias || computedBias) {
    biasName = bias ? g.addInitializer(`${base}.bias`, 'float32', [cols], bias) : (computedBias as string);
    const scaled = g.fresh(`${base}_scaled`);
    added.push(g.node('Mul', [asFloat, scale], [scaled]), g.node('Add', [scaled, biasName], [out]));
  } else {
    added.push(g.node('Mul', [asFloat, scale], [out]));
  }
  // DynamicQuantizeLinear must come before every node reading it: the first reader's place
  // is before any later one, since the graph is in topological order.
  g.replace(n, added);
  return undefined;
}

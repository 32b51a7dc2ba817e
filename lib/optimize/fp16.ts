/**
 * FP16 conversion: float32 weights and activations become float16, halving the weights and
 * the memory traffic on GPUs with fast half-precision math (CUDA, TensorRT). Numerically
 * sensitive ops (see FLOAT16_BLOCKED_OPS), BatchNormalization nodes whose statistics exceed
 * float16's range, integers cast to float and the arithmetic on them (shape computations,
 * exact in float32 only), and any nodes you name stay in float32 behind Cast nodes, and so,
 * by default, do the graph's inputs and outputs. Other weights beyond ±65504 (typically -1e9 or
 * -3.4e38 standing for minus infinity in masks) are clamped to ±65504.
 *
 * Whether a value is a float32 tensor is read from the model's declared types (inputs,
 * outputs, value_info, initializers) and otherwise worked out from the ops (Cast's `to`,
 * Shape's int64...). Call addValueTypes() first to take every type from ONNX Runtime's own
 * inference instead, as `kiln fp16` does.
 */
import { KilnError } from '../errors';
import { encodeModel, tensorFromProto, tensorProto } from '../onnx';
import { AttributeType, DataLocation, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TensorProto, type ValueInfoProto } from '../onnx/types';
import { OptionReader, optionError } from '../options';
import { Session } from '../session';
import { ONNX_TYPE } from '../tensor';
import { nodeName } from './dynamic';
import { Graph, subgraphsOf } from './graph';
import { initializersOf } from './io';

const FLOAT = ONNX_TYPE.float32;
const FLOAT16 = ONNX_TYPE.float16;

/**
 * Ops kept in float32 by default, and why. Ops of other domains than ONNX's own (ai.onnx.ml,
 * com.microsoft...) and nodes with subgraphs (If, Loop, Scan) are kept too. Not listed, on
 * purpose: reductions and Softmax (a mean or a softmax stays within its inputs' range; add
 * them with `blockOps` where long reductions need float32 accuracy) and Pow (it overflows
 * only for large bases: see the clamped count and block it where that matters).
 */
export const FLOAT16_BLOCKED_OPS: Readonly<Record<string, string>> = {
  Range: 'ONNX defines no float16 Range',
  EyeLike: 'ONNX Runtime has no float16 EyeLike kernel (CPU or CUDA); an identity matrix loses nothing in a Cast',
  NonMaxSuppression: 'box coordinates need float32 (ONNX defines it for float only)',
  RoiAlign: 'box coordinates need float32',
  TopK: 'values that round together in float16 can change the selected indices',
  ArgMax: 'values that round together in float16 can change the selected index',
  ArgMin: 'values that round together in float16 can change the selected index',
  CumSum: 'running sums lose precision and overflow in float16',
  Resize: 'sampling coordinates computed from float16 scales shift the output grid',
  Upsample: 'sampling coordinates computed from float16 scales shift the output grid',
  RandomNormal: 'random generators keep their float32 dtype',
  RandomUniform: 'random generators keep their float32 dtype',
  RandomNormalLike: 'random generators keep their float32 dtype',
  RandomUniformLike: 'random generators keep their float32 dtype',
  Multinomial: 'random generators keep their float32 dtype',
  Bernoulli: 'random generators keep their float32 dtype',
  QuantizeLinear: 'quantization scales stay float32',
  DequantizeLinear: 'quantization scales stay float32',
  DynamicQuantizeLinear: 'quantization scales stay float32',
  QLinearConv: 'quantization scales stay float32',
  QLinearMatMul: 'quantization scales stay float32',
  MatMulInteger: 'an integer op',
  ConvInteger: 'an integer op',
  SequenceConstruct: 'sequence values are not converted',
  SequenceInsert: 'sequence values are not converted',
  SequenceAt: 'sequence values are not converted',
  SplitToSequence: 'sequence values are not converted',
  ConcatFromSequence: 'sequence values are not converted',
};

/** Inputs that stay float32 even in a converted node (their ONNX type is tensor(float) only). */
const FLOAT32_INPUTS: Readonly<Record<string, (index: number) => boolean>> = {
  Resize: (i) => i > 0,
  Upsample: (i) => i > 0,
};

/** Outputs whose type a converted node does not change (LayerNormalization's stash_type statistics). */
const FLOAT32_OUTPUTS: Readonly<Record<string, (index: number) => boolean>> = {
  LayerNormalization: (i) => i > 0,
};

export interface Float16Options {
  /** Graph inputs and outputs stay float32, with Casts at the boundary (default true). */
  keepIoTypes?: boolean;
  /** Op types kept in float32, in addition to FLOAT16_BLOCKED_OPS. */
  blockOps?: readonly string[];
  /** Node names (or nodeName() labels of unnamed nodes) kept in float32; each must name a node. */
  blockNodes?: readonly string[];
}

export interface Float16Report {
  /** Nodes that now compute in float16. */
  converted: number;
  /** Nodes with float32 tensors that stay float32, and why. */
  blocked: { node: string; opType: string; reason: string }[];
  /** float32 initializers and Constant values now stored as float16. */
  initializers: number;
  /** Values beyond float16's range (|x| > 65504) stored as ±65504. */
  clamped: number;
  /** Non-zero values below float16's smallest subnormal stored as ±2^-24 rather than 0 (an epsilon stays an epsilon). */
  underflowed: number;
  /** Cast nodes inserted between float32 and float16 regions. */
  casts: number;
  /** Values whose element type could not be determined (Casts may be missing around them). */
  warnings: string[];
}

// ---------------------------------------------------------------------------------------------
// float32 <-> float16 bits

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bits of `v`, rounded to nearest even (±Infinity beyond the range, NaN kept). */
export function float16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 112; // rebias 127 -> 15
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1) !== 0)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) !== 0)) h++; // a carry rolls into the exponent, as it should
  return sign | h;
}

/** The value of float16 bits `h`. */
export function float16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const FLOAT16_MAX = 65504;
const FLOAT16_MIN_SUBNORMAL = 2 ** -24;

/** float32 values as float16 bits, finite values clamped into float16's range; counts what was clamped. */
export function toFloat16Array(values: ArrayLike<number>): { data: Uint16Array; clamped: number; underflowed: number } {
  const data = new Uint16Array(values.length);
  let clamped = 0;
  let underflowed = 0;
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    if (v > FLOAT16_MAX && v !== Infinity) {
      v = FLOAT16_MAX;
      clamped++;
    } else if (v < -FLOAT16_MAX && v !== -Infinity) {
      v = -FLOAT16_MAX;
      clamped++;
    } else if (v !== 0 && Math.abs(v) <= FLOAT16_MIN_SUBNORMAL / 2) { // at half, rounding to even gives 0
      v = v < 0 ? -FLOAT16_MIN_SUBNORMAL : FLOAT16_MIN_SUBNORMAL;
      underflowed++;
    }
    data[i] = float16Bits(v);
  }
  return { data, clamped, underflowed };
}

// ---------------------------------------------------------------------------------------------
// Element types of the graph's values

const BOOL = ONNX_TYPE.bool;
const INT64 = ONNX_TYPE.int64;
const BOOL_OPS = new Set(['Equal', 'Less', 'Greater', 'LessOrEqual', 'GreaterOrEqual', 'And', 'Or', 'Xor', 'Not', 'IsNaN', 'IsInf']);
const INT64_OPS = new Set(['Shape', 'Size', 'ArgMax', 'ArgMin', 'NonZero', 'NonMaxSuppression']);

function attribute(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute?.find((a) => a.name === name);
}

function dtypeAttr(n: NodeProto, name: string): number | undefined {
  const a = attribute(n, name);
  return a?.i !== undefined ? Number(a.i) : undefined;
}

/** The element type of a Constant node's value. */
function constantType(n: NodeProto): number | undefined {
  for (const a of n.attribute ?? []) {
    if (a.name === 'value' && a.t) return a.t.dataType;
    if (a.name === 'value_float' || a.name === 'value_floats') return FLOAT;
    if (a.name === 'value_int' || a.name === 'value_ints') return INT64;
    if (a.name === 'value_string' || a.name === 'value_strings') return ONNX_TYPE.string;
  }
  return undefined;
}

const hasSubgraph = (n: NodeProto): boolean => subgraphsOf(n).length > 0;

/** The element types of `n`'s outputs from its inputs' (undefined where unknown). */
function outputTypes(n: NodeProto, typeOf: (value: string) => number | undefined): (number | undefined)[] {
  const op = n.opType ?? '';
  const domain = n.domain ?? '';
  const outs = n.output ?? [];
  const ins = n.input ?? [];
  const input = (i: number): number | undefined => (ins[i] ? typeOf(ins[i]) : undefined);
  const all = (t: number | undefined): (number | undefined)[] => outs.map(() => t);
  if (domain === 'ai.onnx.ml' || hasSubgraph(n)) return all(undefined);
  if (domain === '' || domain === 'ai.onnx') {
    if (op === 'Constant') return all(constantType(n));
    if (op === 'Cast') return all(dtypeAttr(n, 'to'));
    if (op === 'CastLike') return all(input(1));
    if (op === 'ConstantOfShape') return all(attribute(n, 'value')?.t?.dataType ?? FLOAT);
    if (op === 'EyeLike' || op === 'RandomNormalLike' || op === 'RandomUniformLike' || op === 'Bernoulli') return all(dtypeAttr(n, 'dtype') ?? input(0));
    if (op === 'RandomNormal' || op === 'RandomUniform') return all(dtypeAttr(n, 'dtype') ?? FLOAT);
    if (op === 'Multinomial') return all(dtypeAttr(n, 'dtype') ?? ONNX_TYPE.int32);
    if (BOOL_OPS.has(op)) return all(BOOL);
    if (INT64_OPS.has(op)) return all(INT64);
    if (op === 'TopK' || op === 'MaxPool') return [input(0), INT64];
    if (op === 'Unique') return [input(0), INT64, INT64, INT64];
    if (op === 'Dropout') return [input(0), BOOL];
    if (op === 'Where') return all(input(1));
    if (op === 'OneHot') return all(input(2));
    if (op === 'LayerNormalization') return outs.map((_, i) => (i === 0 ? input(0) : (dtypeAttr(n, 'stash_type') ?? FLOAT)));
    if (op === 'DequantizeLinear') return all(input(1));
    if (op === 'QuantizeLinear') return all(input(2) ?? ONNX_TYPE.uint8);
    if (op === 'DynamicQuantizeLinear') return [ONNX_TYPE.uint8, FLOAT, ONNX_TYPE.uint8];
    if (op === 'MatMulInteger' || op === 'ConvInteger') return all(ONNX_TYPE.int32);
    if (op === 'QLinearConv' || op === 'QLinearMatMul') return all(input(7));
  }
  // Most ops: every output has the type of the first input (T).
  return all(ins.map((i) => (i ? typeOf(i) : undefined)).find((t) => t !== undefined));
}

/** Element types of the graph's values: the declared ones, then inferred op by op. */
function valueTypes(graph: GraphProto): Map<string, number> {
  const types = new Map<string, number>();
  const declare = (v: ValueInfoProto): void => {
    const t = v.type?.tensorType?.elemType;
    if (v.name && t) types.set(v.name, t);
  };
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])]) declare(v);
  for (const t of graph.initializer ?? []) if (t.name && t.dataType) types.set(t.name, t.dataType);
  const typeOf = (v: string): number | undefined => types.get(v);
  for (const n of graph.node ?? []) {
    const inferred = outputTypes(n, typeOf);
    (n.output ?? []).forEach((o, i) => {
      if (o && !types.has(o) && inferred[i] !== undefined) types.set(o, inferred[i] as number);
    });
  }
  return types;
}

/**
 * Adds the element type ONNX Runtime infers for every node output without a declared type
 * to the model's value_info (its own type inference, exact for every op it knows). Returns
 * how many were added; 0 when ONNX Runtime cannot load the model (custom ops).
 */
export async function addValueTypes(model: ModelProto): Promise<number> {
  const graph = model.graph;
  if (!graph) return 0;
  const declared = new Set([...(graph.input ?? []), ...(graph.output ?? []), ...(graph.valueInfo ?? [])].filter((v) => v.type?.tensorType?.elemType).map((v) => v.name));
  const wanted = [...new Set((graph.node ?? []).flatMap((n) => n.output ?? []))].filter((o) => o && !declared.has(o));
  if (wanted.length === 0) return 0;
  const probe: ModelProto = { ...model, graph: { ...graph, output: [...(graph.output ?? []), ...wanted.map((name) => ({ name }))] } };
  let session: Session;
  try {
    session = await Session.create(encodeModel(probe), { graphOptimizationLevel: 'disabled' });
  } catch {
    return 0;
  }
  let added = 0;
  try {
    const wantedSet = new Set(wanted);
    for (const o of session.outputs) {
      const t = ONNX_TYPE[o.type as keyof typeof ONNX_TYPE];
      if (!wantedSet.has(o.name) || t === undefined) continue;
      (graph.valueInfo ??= []).push({ name: o.name, type: { tensorType: { elemType: t } } });
      added++;
    }
  } finally {
    await session.dispose();
  }
  return added;
}

// ---------------------------------------------------------------------------------------------
// Conversion

type Precision = 16 | 32;

/** Names a subgraph reads from enclosing graphs (ONNX forbids shadowing, so any name it does not define). */
function outerReferences(g: GraphProto, out: Set<string>): void {
  const defined = new Set<string>([...(g.input ?? []).map((v) => v.name ?? ''), ...(g.initializer ?? []).map((t) => t.name ?? '')]);
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) if (i && !defined.has(i)) out.add(i);
    for (const sub of subgraphsOf(n)) {
      const inner = new Set<string>();
      outerReferences(sub, inner);
      for (const i of inner) if (!defined.has(i)) out.add(i);
    }
    for (const o of n.output ?? []) defined.add(o);
  }
}

function renameInSubgraph(g: GraphProto, from: string, to: string): void {
  for (const n of g.node ?? []) {
    if (n.input) n.input = n.input.map((i) => (i === from ? to : i));
    for (const sub of subgraphsOf(n)) renameInSubgraph(sub, from, to);
  }
}

/**
 * Converts `model` to float16 in place (see the module comment); returns what was done.
 * The model's external data must be loaded (readModel does). Bad options, a blockNodes name
 * that matches no node, or external data are E_INVALID_ARGUMENT, with the model unchanged.
 */
export function convertFloat16(model: ModelProto, options: Float16Options = {}): Float16Report {
  // Everything is checked before the model changes.
  const r = OptionReader.of(options, '', ['keepIoTypes', 'blockOps', 'blockNodes']);
  const keepIo = r.bool('keepIoTypes') ?? true;
  const blockOps = new Set(names(r, 'blockOps', 'op types'));
  const blockNodes = new Set(names(r, 'blockNodes', 'node names'));
  const g = new Graph(model);
  const graph = g.graph;
  const missing = [...blockNodes].filter((b) => !g.nodes.some((n) => n.name === b || nodeName(n) === b));
  if (missing.length > 0) {
    throw new KilnError('E_INVALID_ARGUMENT', `option "blockNodes": no node is named ${missing.map((m) => `"${m}"`).join(', ')} (an unnamed node goes by its op and first output, e.g. "Relu(x)")`);
  }
  const external = initializersOf(model).find((t) => t.dataType === FLOAT && t.dataLocation === DataLocation.EXTERNAL);
  if (external) {
    throw new KilnError('E_INVALID_ARGUMENT', `${external.name ? `initializer '${external.name}'` : 'a Constant value'}: its data is still in an external file; read the model with readModel(path), which loads it`);
  }
  const report: Float16Report = { converted: 0, blocked: [], initializers: 0, clamped: 0, underflowed: 0, casts: 0, warnings: [] };
  const types = valueTypes(graph);
  const isFloat = (v: string): boolean => types.get(v) === FLOAT;
  const initializers = new Map<string, TensorProto>((graph.initializer ?? []).filter((t) => t.name).map((t) => [t.name as string, t]));
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? '').filter((n) => n && !initializers.has(n)));
  const known = new Set(types.keys());
  const warned = new Set<string>();
  const unknown = (v: string, n: NodeProto): void => {
    if (!v || known.has(v) || warned.has(v)) return;
    warned.add(v);
    report.warnings.push(`the element type of "${v}" (${nodeName(n)}) is unknown; it is left as it is`);
  };

  // Which nodes stay float32.
  const blocked = new Set<NodeProto>();
  for (const n of g.nodes) {
    const op = n.opType ?? '';
    const domain = n.domain ?? '';
    const name = nodeName(n);
    let reason: string | undefined;
    if (blockNodes.has(name) || (n.name !== undefined && blockNodes.has(n.name))) reason = 'named in blockNodes';
    else if (domain !== '' && domain !== 'ai.onnx') reason = `an op of domain '${domain}', whose float16 support is not known`;
    else if (hasSubgraph(n)) reason = 'has subgraphs, which are not converted';
    else if (blockOps.has(op)) reason = 'listed in blockOps';
    else if (FLOAT16_BLOCKED_OPS[op] !== undefined) reason = FLOAT16_BLOCKED_OPS[op];
    else if (op === 'BatchNormalization') reason = batchNormOverflow(g, n);
    if (reason === undefined) continue;
    blocked.add(n);
    const touchesFloat = [...(n.input ?? []), ...(n.output ?? [])].some((v) => v && isFloat(v)) || hasSubgraph(n);
    if (touchesFloat) report.blocked.push({ node: name, opType: domain ? `${domain}:${op}` : op, reason });
  }
  blockShapeArithmetic(g, types, blocked, report);

  // The precision each float32 value is produced in, and each reader needs.
  const home = new Map<string, Precision>();
  const producerOf = new Map<string, NodeProto>();
  // Constant nodes' values are stored like initializers: in the precision their readers need.
  const constantNodes = new Map<string, NodeProto>();
  for (const n of g.nodes) {
    const op = n.opType ?? '';
    const floatIn = (n.input ?? []).some((v, i) => v && isFloat(v) && !FLOAT32_INPUTS[op]?.(i));
    // Ops whose float output does not follow a float input: converted by rewriting an attribute.
    const rewritten = op === 'ConstantOfShape' || (op === 'Cast' && dtypeAttr(n, 'to') === FLOAT);
    (n.output ?? []).forEach((o, i) => {
      if (!o) return;
      producerOf.set(o, n);
      if (!types.has(o)) unknown(o, n);
      if (!isFloat(o)) return;
      if (op === 'Constant' && !blocked.has(n) && constantTensor(n)) {
        constantNodes.set(o, n);
        return;
      }
      const sixteen = !blocked.has(n) && !FLOAT32_OUTPUTS[op]?.(i) && (floatIn || rewritten);
      home.set(o, sixteen ? 16 : 32);
    });
  }
  for (const v of graphInputs) if (isFloat(v)) home.set(v, keepIo ? 32 : 16);

  const required = (n: NodeProto, index: number): Precision =>
    blocked.has(n) || FLOAT32_INPUTS[n.opType ?? '']?.(index) ? 32 : 16;

  // Initializers and Constant values: converted where only float16 readers use them; copied
  // (to an initializer) where both kinds do.
  const needs = new Map<string, Set<Precision>>();
  const need = (v: string, p: Precision): void => {
    let s = needs.get(v);
    if (!s) needs.set(v, (s = new Set()));
    s.add(p);
  };
  for (const n of g.nodes) (n.input ?? []).forEach((v, i) => {
    if (v && (initializers.has(v) || constantNodes.has(v)) && isFloat(v)) need(v, required(n, i));
  });
  for (const o of graph.output ?? []) if (o.name && initializers.has(o.name) && isFloat(o.name)) need(o.name, keepIo ? 32 : 16);
  const halfCopy = new Map<string, string>();
  const toHalfProto = (t: TensorProto, name: string | undefined): TensorProto => {
    const values = tensorFromProto(t).data as Float32Array;
    const h = toFloat16Array(values);
    report.clamped += h.clamped;
    report.underflowed += h.underflowed;
    report.initializers++;
    const proto = tensorProto('float16', (t.dims ?? []).map(Number), h.data, name);
    if (t.docString) proto.docString = t.docString;
    return proto;
  };
  for (const [name, want] of needs) {
    const node = constantNodes.get(name);
    if (node) {
      home.set(name, want.has(32) ? 32 : 16);
      if (!want.has(16)) continue;
      if (!want.has(32)) {
        convertConstant(node, (t) => toHalfProto(t, t.name));
      } else {
        const copy = g.fresh(`${name}_fp16`);
        graph.initializer?.push(toHalfProto(constantTensor(node) as TensorProto, copy));
        halfCopy.set(name, copy);
        home.set(copy, 16);
      }
      continue;
    }
    const t = initializers.get(name) as TensorProto;
    if (!want.has(16)) {
      home.set(name, 32);
      continue;
    }
    if (!want.has(32)) {
      const half = toHalfProto(t, name);
      const list = graph.initializer as TensorProto[];
      list[list.indexOf(t)] = half;
      home.set(name, 16);
      for (const v of graph.input ?? []) if (v.name === name && v.type?.tensorType) v.type.tensorType.elemType = FLOAT16;
    } else {
      const copy = g.fresh(`${name}_fp16`);
      graph.initializer?.push(toHalfProto(t, copy));
      halfCopy.set(name, copy);
      home.set(name, 32);
      home.set(copy, 16);
    }
  }

  // Graph outputs whose producer's precision differs from the one they must have: the
  // producer writes a renamed value, and a Cast writes the output under its own name.
  const outputCasts: NodeProto[] = [];
  const finalType = new Map<string, number>();
  for (const o of graph.output ?? []) {
    const v = o.name ?? '';
    if (!isFloat(v)) continue;
    const want: Precision = keepIo ? 32 : 16;
    const have = home.get(v) ?? 32;
    if (initializers.has(v)) {
      if (o.type?.tensorType) o.type.tensorType.elemType = have === 16 ? FLOAT16 : FLOAT;
      continue;
    }
    if (have !== want && !graphInputs.has(v)) {
      const renamed = g.fresh(`${v}_fp${have}`);
      const producer = producerOf.get(v);
      if (producer) producer.output = (producer.output ?? []).map((x) => (x === v ? renamed : x));
      for (const n of g.nodes) if (n.input) n.input = n.input.map((x) => (x === v ? renamed : x));
      home.set(renamed, have);
      home.delete(v);
      if (producer) producerOf.set(renamed, producer);
      types.set(renamed, FLOAT);
      outputCasts.push({ opType: 'Cast', name: g.fresh(`${v}_cast`), input: [renamed], output: [v], attribute: [{ name: 'to', type: AttributeType.INT, i: BigInt(want === 16 ? FLOAT16 : FLOAT) }] });
      report.casts++;
    }
    finalType.set(v, want === 16 ? FLOAT16 : FLOAT);
    if (o.type?.tensorType) o.type.tensorType.elemType = want === 16 ? FLOAT16 : FLOAT;
  }
  if (!keepIo) for (const v of graph.input ?? []) if (v.name && graphInputs.has(v.name) && isFloat(v.name) && v.type?.tensorType) v.type.tensorType.elemType = FLOAT16;

  // Casts where a reader needs the other precision: one per value and direction, right after the producer.
  const casts = new Map<string, string>();
  const after = new Map<NodeProto | undefined, NodeProto[]>();
  const castOf = (v: string, to: Precision): string => {
    const key = `${to}:${v}`;
    let out = casts.get(key);
    if (out !== undefined) return out;
    out = g.fresh(`${v}_to_fp${to}`);
    casts.set(key, out);
    home.set(out, to);
    const producer = producerOf.get(v);
    const list = after.get(producer) ?? [];
    list.push({ opType: 'Cast', name: g.fresh(`${v}_to_fp${to}_cast`), input: [v], output: [out], attribute: [{ name: 'to', type: AttributeType.INT, i: BigInt(to === 16 ? FLOAT16 : FLOAT) }] });
    after.set(producer, list);
    report.casts++;
    return out;
  };
  for (const n of [...g.nodes]) {
    if (!n.input) continue;
    n.input = n.input.map((v, i) => {
      if (!v) return v;
      if (!types.has(v)) unknown(v, n);
      if (!isFloat(v)) return v;
      const want = required(n, i);
      if (want === 16 && halfCopy.has(v)) return halfCopy.get(v) as string;
      const have = home.get(v) ?? 32;
      return have === want ? v : castOf(v, want);
    });
    if (hasSubgraph(n)) {
      const refs = new Set<string>();
      for (const sub of subgraphsOf(n)) outerReferences(sub, refs);
      for (const v of refs) {
        if (!isFloat(v) || (home.get(v) ?? 32) === 32) continue;
        const cast = castOf(v, 32);
        for (const sub of subgraphsOf(n)) renameInSubgraph(sub, v, cast);
      }
    }
  }

  // Converted nodes: attributes that fix a float32 type, and the count.
  for (const n of g.nodes) {
    if (blocked.has(n)) continue;
    const op = n.opType ?? '';
    if (op !== 'Constant' && [...(n.input ?? []), ...(n.output ?? [])].some((v) => home.get(v) === 16)) report.converted++;
    if (op === 'Cast' && dtypeAttr(n, 'to') === FLOAT && home.get(n.output?.[0] ?? '') === 16) {
      (attribute(n, 'to') as AttributeProto).i = BigInt(FLOAT16);
    } else if (op === 'ConstantOfShape' && home.get(n.output?.[0] ?? '') === 16) {
      const a = attribute(n, 'value');
      const value = a?.t ? (tensorFromProto(a.t).data as Float32Array)[0] : 0;
      const half = toFloat16Array([value]);
      report.clamped += half.clamped;
      const t = tensorProto('float16', [1], half.data);
      if (a) a.t = t;
      else (n.attribute ??= []).push({ name: 'value', type: AttributeType.TENSOR, t });
    }
  }

  // Place the Casts and record the final types.
  const nodes: NodeProto[] = [...(after.get(undefined) ?? [])];
  for (const n of g.nodes) {
    nodes.push(n);
    nodes.push(...(after.get(n) ?? []));
  }
  nodes.push(...outputCasts);
  graph.node = nodes;
  for (const [v, p] of home) if (!finalType.has(v)) finalType.set(v, p === 16 ? FLOAT16 : FLOAT);
  for (const vi of graph.valueInfo ?? []) {
    const t = vi.name !== undefined ? finalType.get(vi.name) : undefined;
    if (t !== undefined && vi.type?.tensorType) vi.type.tensorType.elemType = t;
  }
  g.prune();
  return report;
}

/** A list option of names; [] when absent. */
function names(r: OptionReader, key: string, what: string): string[] {
  const v = r.raw(key);
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw optionError(r.field(key), `an array of ${what}`, v);
  return v;
}

const INTEGER_TYPES: ReadonlySet<number> = new Set(['int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'bool'].map((t) => ONNX_TYPE[t as keyof typeof ONNX_TYPE]));
/** Ops that shape arithmetic done in float goes through. */
const SHAPE_MATH = new Set(['Add', 'Sub', 'Mul', 'Div', 'Mod', 'Pow', 'Floor', 'Ceil', 'Round', 'Max', 'Min', 'Neg', 'Abs', 'Sqrt', 'Reciprocal', 'Clip',
  'Identity', 'Unsqueeze', 'Squeeze', 'Reshape', 'Concat', 'Gather', 'Slice', 'Expand', 'ReduceProd', 'ReduceSum', 'ReduceMax', 'ReduceMin']);

/**
 * Integers cast to float (sizes from Shape, positions, masks) and the arithmetic done on them
 * alone stay float32: float16 holds integers exactly only up to 2048, so a computed size of
 * 4000 would come out as 4000 ± 2. Readers in the float16 region get a Cast of the result.
 */
function blockShapeArithmetic(g: Graph, types: ReadonlyMap<string, number>, blocked: Set<NodeProto>, report: Float16Report): void {
  const derived = new Set<string>();
  const block = (n: NodeProto, reason: string): void => {
    blocked.add(n);
    report.blocked.push({ node: nodeName(n), opType: n.opType ?? '', reason });
    for (const o of n.output ?? []) if (o && types.get(o) === FLOAT) derived.add(o);
  };
  for (const n of g.nodes) {
    if (blocked.has(n) || (n.domain ?? '') !== '') continue;
    const op = n.opType ?? '';
    const source = types.get(n.input?.[0] ?? '');
    if (op === 'Cast' && dtypeAttr(n, 'to') === FLOAT && source !== undefined && INTEGER_TYPES.has(source)) {
      block(n, 'casts integers (often a size) to float: float16 holds integers exactly only up to 2048');
      continue;
    }
    if (!SHAPE_MATH.has(op)) continue;
    const floats = (n.input ?? []).filter((v) => v && types.get(v) === FLOAT);
    if (floats.some((v) => derived.has(v)) && floats.every((v) => derived.has(v) || g.isConstant(v))) {
      block(n, 'arithmetic on integers cast to float: kept exact in float32');
    }
  }
}

/**
 * Why a BatchNormalization must stay float32: statistics beyond float16's range (a variance
 * of 1e8 is not rare in trained models), which clamping would turn into a wrong scale.
 */
function batchNormOverflow(g: Graph, n: NodeProto): string | undefined {
  const names = ['scale', 'bias', 'mean', 'variance'];
  for (let i = 1; i < 5; i++) {
    const t = n.input?.[i] ? g.constant(n.input[i]) : undefined;
    if (!t || t.type !== 'float32') continue;
    let max = 0;
    for (const v of t.data as Float32Array) if (Math.abs(v) > max) max = Math.abs(v);
    if (max > FLOAT16_MAX) return `its ${names[i - 1]} reaches ${max.toPrecision(3)}, beyond float16's ±65504`;
  }
  return undefined;
}

/** A Constant node's float32 value (from value, value_float or value_floats) as a TensorProto. */
function constantTensor(n: NodeProto): TensorProto | undefined {
  for (const a of n.attribute ?? []) {
    if (a.name === 'value' && a.t && a.t.dataType === FLOAT) return a.t;
    if (a.name === 'value_float' && a.f !== undefined) return tensorProto('float32', [], Float32Array.of(a.f));
    if (a.name === 'value_floats') return tensorProto('float32', [a.floats?.length ?? 0], Float32Array.from(a.floats ?? []));
  }
  return undefined;
}

/** A Constant node's float32 value as float16, in its `value` attribute. */
function convertConstant(n: NodeProto, half: (t: TensorProto) => TensorProto): void {
  const t = constantTensor(n);
  if (!t) return;
  n.attribute = [{ name: 'value', type: AttributeType.TENSOR, t: half(t) }];
}

/**
 * Graph rewrites that ONNX Runtime's optimizer does not make and that matter before
 * quantization: every op left in float between two quantized ones costs a DequantizeLinear,
 * the op, and a QuantizeLinear, so patterns of several elementwise ops are folded into one.
 */
import type { ModelProto, NodeProto } from '../onnx/types';
import { attrFloat, Graph } from './graph';

/** A scalar float constant's value (an initializer or Constant node), else undefined. */
function scalar(g: Graph, name: string | undefined): number | undefined {
  if (!name) return undefined;
  const t = g.constant(name);
  return t && t.type === 'float32' && t.data.length === 1 ? (t.data as Float32Array)[0] : undefined;
}

/** Clip's bounds: opset ≥ 11 inputs, or opset < 11 attributes. */
function clipBounds(g: Graph, n: NodeProto): [number, number] | undefined {
  if ((n.input?.length ?? 0) > 1) {
    const lo = scalar(g, n.input?.[1]);
    const hi = scalar(g, n.input?.[2]);
    return lo === undefined || hi === undefined ? undefined : [lo, hi];
  }
  const lo = n.attribute?.find((a) => a.name === 'min')?.f;
  const hi = n.attribute?.find((a) => a.name === 'max')?.f;
  return lo === undefined || hi === undefined ? undefined : [lo, hi];
}

/**
 * Hard-swish as exporters write it, `Div(Mul(x, Clip(Add(x, 3), 0, 6)), 6)` (or its
 * `Mul(..., 1/6)` form), becomes `Mul(x, HardSigmoid(x; alpha 1/6, beta 0.5))`: the same
 * function (clip(x + 3, 0, 6) / 6 = clip(x / 6 + 0.5, 0, 1)) in two ops instead of four
 * (HardSwish itself needs opset 14). Returns how many were rewritten.
 */
export function fuseHardSwish(model: ModelProto): number {
  const g = new Graph(model);
  const only = (value: string): NodeProto | undefined => {
    const readers = g.consumers(value);
    return readers.length === 1 && !g.isGraphOutput(value) ? readers[0] : undefined;
  };
  let count = 0;
  for (const clip of [...g.nodes]) {
    if (clip.opType !== 'Clip' || (clip.domain ?? '') !== '') continue;
    const bounds = clipBounds(g, clip);
    if (!bounds || bounds[0] !== 0 || bounds[1] !== 6) continue;
    const add = g.producer(clip.input?.[0] as string);
    if (add?.opType !== 'Add' || only(add.output?.[0] as string) !== clip) continue;
    const [a0, a1] = add.input ?? [];
    const x = scalar(g, a1) === 3 ? a0 : scalar(g, a0) === 3 ? a1 : undefined;
    if (!x) continue;
    const mul = only(clip.output?.[0] as string);
    if (mul?.opType !== 'Mul' || !(mul.input ?? []).includes(x)) continue;
    const div = only(mul.output?.[0] as string);
    if (!div) continue;
    const by = scalar(g, div.input?.[1]);
    const divides = div.opType === 'Div' && by === 6;
    const multiplies = div.opType === 'Mul' && by !== undefined && Math.abs(by - 1 / 6) < 1e-6;
    if (!divides && !multiplies) continue;
    const gate = g.fresh(`${clip.output?.[0]}_hardsigmoid`);
    const hs: NodeProto = { opType: 'HardSigmoid', input: [x], output: [gate], name: g.fresh(`${clip.name || gate}_HardSigmoid`), attribute: [attrFloat('alpha', 1 / 6), attrFloat('beta', 0.5)] };
    const product: NodeProto = { opType: 'Mul', input: [x, gate], output: [div.output?.[0] as string], name: mul.name || g.fresh(`${gate}_Mul`) };
    g.replace(add, []);
    g.replace(clip, []);
    g.replace(div, []);
    g.replace(mul, [hs, product]);
    count++;
  }
  if (count) g.prune();
  return count;
}

/**
 * A constant per-channel (or scalar) scale and shift after a convolution, `Add(Mul(Conv(x),
 * s), b)` (PP-LCNet's learnable affine blocks write this), folded into the Conv's weights and
 * bias: W' = W·s, B' = B·s + b. ONNX Runtime's own Conv-Mul/Conv-Add fusions refuse scalar
 * constants. Either step may be absent. Returns how many Convs absorbed something.
 */
export function fuseConvAffine(model: ModelProto): number {
  const g = new Graph(model);
  let count = 0;
  const only = (value: string): NodeProto | undefined => {
    const readers = g.consumers(value);
    return readers.length === 1 && !g.isGraphOutput(value) ? readers[0] : undefined;
  };
  for (const conv of [...g.nodes]) {
    if (conv.opType !== 'Conv' || (conv.domain ?? '') !== '') continue;
    const w = conv.input?.[1] ? g.constant(conv.input[1]) : undefined;
    if (!w || w.type !== 'float32' || w.dims.length < 3) continue;
    const channels = w.dims[0];
    const b = conv.input?.[2] ? g.constant(conv.input[2]) : undefined;
    if (conv.input?.[2] && (!b || b.type !== 'float32')) continue;
    // The other operand of a Mul/Add reading `value`, if it is a scalar or per-channel constant.
    const channelConstant = (n: NodeProto, value: string): Float32Array | undefined => {
      const other = n.input?.[0] === value ? n.input?.[1] : n.input?.[0];
      const t = other ? g.constant(other) : undefined;
      if (!t || t.type !== 'float32') return undefined;
      const data = t.data as Float32Array;
      if (data.length === 1) return new Float32Array(channels).fill(data[0]);
      const dims = t.dims.filter((d, i) => !(d === 1 && i !== t.dims.length - 3));
      const perChannel = data.length === channels && t.dims.length >= 3 && t.dims[t.dims.length - 3] === channels && dims.length <= 2;
      return perChannel ? Float32Array.from(data) : undefined;
    };
    let out = conv.output?.[0] as string;
    const weight = Float32Array.from(w.data as Float32Array);
    const bias = b ? Float32Array.from(b.data as Float32Array) : new Float32Array(channels);
    const per = weight.length / channels;
    const absorbed: NodeProto[] = [];
    let next = only(out);
    if (next?.opType === 'Mul') {
      const s = channelConstant(next, out);
      if (s) {
        for (let c = 0; c < channels; c++) {
          for (let i = 0; i < per; i++) weight[c * per + i] *= s[c];
          bias[c] *= s[c];
        }
        absorbed.push(next);
        out = next.output?.[0] as string;
        next = only(out);
      }
    }
    if (next?.opType === 'Add') {
      const shift = channelConstant(next, out);
      if (shift) {
        for (let c = 0; c < channels; c++) bias[c] += shift[c];
        absorbed.push(next);
        out = next.output?.[0] as string;
      }
    }
    if (!absorbed.length) continue;
    const base = conv.name || out;
    const inputs = [conv.input?.[0] as string, g.addInitializer(`${base}.weight_folded`, 'float32', w.dims, weight), g.addInitializer(`${base}.bias_folded`, 'float32', [channels], bias)];
    conv.input = inputs;
    conv.output = [out];
    for (const n of absorbed) g.replace(n, []);
    count++;
  }
  if (count) g.prune();
  return count;
}

/**
 * The other direction: a scalar scale and shift *before* a Conv without padding, `Conv(Add(
 * Mul(x, s), b))`, folded into it: W' = W·s, B'[o] = B[o] + b·Σ W[o]. (With padding the
 * border would see b where the original saw zeros, so padded Convs are left alone.)
 * Returns how many Convs absorbed one.
 */
export function fuseAffineConv(model: ModelProto): number {
  const g = new Graph(model);
  let count = 0;
  for (const conv of [...g.nodes]) {
    if (conv.opType !== 'Conv' || (conv.domain ?? '') !== '') continue;
    const pads = conv.attribute?.find((a) => a.name === 'pads')?.ints ?? [];
    const autoPad = conv.attribute?.find((a) => a.name === 'auto_pad')?.s;
    const autoPadText = autoPad ? new TextDecoder().decode(autoPad) : 'NOTSET';
    if (pads.some((p) => p !== 0n) || !(autoPadText === 'NOTSET' || autoPadText === 'VALID')) continue;
    const w = conv.input?.[1] ? g.constant(conv.input[1]) : undefined;
    if (!w || w.type !== 'float32' || w.dims.length < 3) continue;
    const b = conv.input?.[2] ? g.constant(conv.input[2]) : undefined;
    if (conv.input?.[2] && (!b || b.type !== 'float32')) continue;
    const add = g.producer(conv.input?.[0] as string);
    if (add?.opType !== 'Add' || g.consumers(add.output?.[0] as string).length !== 1 || g.isGraphOutput(add.output?.[0] as string)) continue;
    const addConst = add.input?.find((i) => g.isConstant(i));
    const shift = addConst ? scalar(g, addConst) : undefined;
    const mul = g.producer(add.input?.find((i) => i !== addConst) as string);
    if (shift === undefined || mul?.opType !== 'Mul' || g.consumers(mul.output?.[0] as string).length !== 1 || g.isGraphOutput(mul.output?.[0] as string)) continue;
    const mulConst = mul.input?.find((i) => g.isConstant(i));
    const s = mulConst ? scalar(g, mulConst) : undefined;
    const x = mul.input?.find((i) => i !== mulConst);
    if (s === undefined || !x) continue;
    const channels = w.dims[0];
    const per = w.data.length / channels;
    const weight = Float32Array.from(w.data as Float32Array, (v) => v * s);
    const bias = b ? Float32Array.from(b.data as Float32Array) : new Float32Array(channels);
    for (let o = 0; o < channels; o++) {
      let sum = 0;
      for (let i = 0; i < per; i++) sum += (w.data as Float32Array)[o * per + i];
      bias[o] += shift * sum;
    }
    const base = conv.name || (conv.output?.[0] as string);
    conv.input = [x, g.addInitializer(`${base}.weight_prefolded`, 'float32', w.dims, weight), g.addInitializer(`${base}.bias_prefolded`, 'float32', [channels], bias)];
    g.replace(add, []);
    g.replace(mul, []);
    count++;
  }
  if (count) g.prune();
  return count;
}

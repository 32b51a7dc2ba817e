/**
 * Padding of ragged batches: requests whose lengths on an input's padded axes differ share a
 * batch, each padded to the batch's largest length (rounded up to a length bucket), and every
 * caller's outputs are cut back to its own lengths by a rule per output axis. At load, the
 * configuration is checked (every output axis a padded length may reach has a rule) and the
 * model is run on a sample unpadded and padded, so that a model whose results padding would
 * change is refused (or warned about) before it serves anyone. See docs/padding.md.
 */
import { KilnError } from '../errors';
import { optionError } from '../options';
import { randomFeeds } from '../optimize/data';
import { float16Value } from '../optimize/fp16';
import { batchPort, type BatchPadding, type Results, type Session } from '../session';
import { cropTensor, formatShape, wrapTensor, type Tensor, type TensorLike, type TensorType } from '../tensor';
import type { ResolvedConfig, ResolvedCropAxis, ResolvedInput, ResolvedPaddingCheck } from './config';

/** One request as the batcher holds it: its feeds as (data, dims) pairs in input order. */
export interface PaddedRequest {
  readonly pairs: readonly unknown[];
  readonly size: number;
}

/** A padded input: its settings, with the axes resolved against the model. */
interface PaddedInput {
  readonly name: string;
  readonly padValue: number;
  readonly lengthBuckets: readonly number[];
  /** Sorted non-batch axes that padding may lengthen. */
  readonly padAxes: readonly number[];
}

/** An output axis's length for one caller: steps applied to its length on (input, inputAxis). */
interface LengthRule {
  readonly input: number;
  readonly inputAxis: number;
  readonly steps: ResolvedCropAxis['steps'];
}

function lengthBy(rule: LengthRule, length: number): number {
  let len = length;
  for (const s of rule.steps) len = s.rounding === 'floor' ? Math.floor(len * s.ratio + 1e-9) : Math.ceil(len * s.ratio - 1e-9);
  return len;
}

export class RaggedPadding {
  /** Per model input (in order): its padding, when its requests may be padded. */
  readonly #inputs: (PaddedInput | undefined)[];
  /** Per output: per non-batch axis (index axis - 1), the rule of its length, if padding reaches it. */
  readonly #rules = new Map<string, (LengthRule | undefined)[]>();

  private constructor(session: Session, config: ResolvedConfig) {
    const names = session.inputs.map((i) => i.name);
    this.#inputs = session.inputs.map((info) => {
      const settings = config.padded.get(info.name);
      return settings && { name: info.name, padValue: settings.padValue, lengthBuckets: settings.lengthBuckets, padAxes: padAxesOf(info, settings) };
    });
    // Which padded axis each symbolic dim name stands for, and the names of axes that must agree.
    const padded = new Map<string, { input: number; axis: number }>();
    const agreed = new Set<string>();
    session.inputs.forEach((info, i) => {
      info.shape.forEach((d, k) => {
        if (k === 0 || typeof d !== 'string' || d === '?') return;
        if (this.#inputs[i]?.padAxes.includes(k)) {
          if (!padded.has(d)) padded.set(d, { input: i, axis: k });
        } else {
          agreed.add(d);
        }
      });
    });
    const outputNames = session.outputs.map((o) => o.name);
    for (const [name, settings] of config.outputs) {
      if (!outputNames.includes(name)) {
        throw optionError(`output[${settings.index}].name`, `one of the model's outputs (${outputNames.join(', ')})`, name);
      }
    }
    for (const info of session.outputs) {
      const settings = config.outputs.get(info.name);
      const rank = info.shape.length;
      const field = `output[${settings?.index ?? 0}]`;
      const rules: (LengthRule | undefined)[] = [];
      for (const [j, c] of (settings?.cropAxes ?? []).entries()) {
        const f = `${field}.cropAxes[${j}]`;
        if (rank > 0 && c.axis >= rank) throw optionError(`${f}.axis`, `a non-batch axis of output "${info.name}" ${formatShape(info.shape)} (1..${rank - 1})`, c.axis);
        const input = names.indexOf(c.input);
        const target = this.#inputs[input];
        if (!target) {
          const list = this.#inputs.filter((p) => p).map((p) => (p as PaddedInput).name).join(', ');
          throw optionError(`${f}.input`, `an input with allowPadding (${list})`, c.input);
        }
        if (!target.padAxes.includes(c.inputAxis)) {
          throw optionError(`${f}.inputAxis`, `one of input "${c.input}"'s padded axes (${target.padAxes.join(', ')})`, c.inputAxis);
        }
        rules[c.axis - 1] = { input, inputAxis: c.inputAxis, steps: c.steps };
      }
      for (const k of settings?.keepAxes ?? []) {
        if (rank > 0 && k >= rank) throw optionError(`${field}.keepAxes`, `non-batch axes of output "${info.name}" ${formatShape(info.shape)} (1..${rank - 1})`, k);
      }
      for (let k = 1; k < rank; k++) {
        const d = info.shape[k];
        if (rules[k - 1] || typeof d === 'number' || settings?.keepAxes.includes(k)) continue;
        const tied = padded.get(d);
        if (tied) {
          rules[k - 1] = { input: tied.input, inputAxis: tied.axis, steps: [{ ratio: 1, rounding: 'ceil' }] };
        } else if (d === '?' || !agreed.has(d)) {
          throw this.#unmapped(info.name, info.shape, k, session);
        }
      }
      if (rules.some((r) => r)) this.#rules.set(info.name, rules);
    }
  }

  /** The refusal of an output axis whose length padding may change, with no rule to cut it back by. */
  #unmapped(output: string, shape: readonly (number | string)[], axis: number, session: Session): KilnError {
    const i = this.#inputs.findIndex((p) => p);
    const p = this.#inputs[i] as PaddedInput;
    const example = `output: [{ name: "${output}", cropAxes: [{ axis: ${axis}, input: "${p.name}", inputAxis: ${p.padAxes[0]}, ratio: <output length / input length> }] }]`;
    return new KilnError('E_INVALID_ARGUMENT',
      `output "${output}" ${formatShape(shape)}: axis ${axis} ("${String(shape[axis])}") may depend on the padded length of input "${p.name}" ${formatShape(session.inputs[i].shape)} ` +
      `(axes ${p.padAxes.join(', ')}), and no rule says how to cut it back to each caller's length; add ${example} to the model config, ` +
      `or output: [{ name: "${output}", keepAxes: [${axis}] }] if its length does not depend on padding`);
  }

  /**
   * The padding of a model, or undefined when no input may be padded (or the model does not
   * batch). Validates the padding configuration against the model, then runs the padding
   * check (config.paddingCheck) on `session`. Throws a KilnError to refuse the load.
   */
  static async create(session: Session, config: ResolvedConfig): Promise<RaggedPadding | undefined> {
    if (config.padded.size === 0) {
      const [first] = config.outputs.values();
      if (first) throw optionError(`output[${first.index}]`, 'cut-back rules only with an input that has allowPadding: true', 'rules without one');
      return undefined;
    }
    const padding = new RaggedPadding(session, config);
    if (!config.batching) return undefined;
    await padding.#check(session, config.paddingCheck);
    return padding;
  }

  /** The part of a request's batching key for input `input` with `dims`: what must agree. */
  keyOf(input: number, dims: readonly number[]): string {
    const settings = this.#inputs[input];
    if (!settings) return dims.slice(1).join(',');
    let key = `${dims.length}:`;
    for (let k = 1; k < dims.length; k++) key += settings.padAxes.includes(k) ? '*,' : `${dims[k]},`;
    return key;
  }

  /**
   * Per input, the dims its requests are padded to in this batch: on each padded axis the
   * largest length, rounded up to a length bucket; null where no request needs padding.
   */
  spec(batch: readonly PaddedRequest[]): BatchPadding {
    let any = false;
    const spec = this.#inputs.map((settings, i) => {
      if (!settings) return null;
      const target = (batch[0].pairs[2 * i + 1] as readonly number[]).slice(1);
      let ragged = false;
      for (const r of batch) {
        const dims = r.pairs[2 * i + 1] as readonly number[];
        for (const k of settings.padAxes) {
          if (dims[k] !== target[k - 1]) ragged = true;
          if (dims[k] > target[k - 1]) target[k - 1] = dims[k];
        }
      }
      if (!ragged) return null;
      any = true;
      for (const k of settings.padAxes) target[k - 1] = settings.lengthBuckets.find((b) => b >= target[k - 1]) ?? target[k - 1];
      return [settings.padValue, ...target];
    });
    return any ? spec : null;
  }

  /**
   * The error a padded batch's run failed with, told in terms of the padding applied: one
   * line naming the padded inputs, their target and the requests' own shapes, then the
   * runtime's own reason (the first line of it, without source locations).
   */
  describeFailure(e: KilnError, spec: BatchPadding, batch: readonly PaddedRequest[]): KilnError {
    if (!spec) return e;
    const parts: string[] = [];
    spec.forEach((s, i) => {
      const settings = this.#inputs[i];
      if (!s || !settings) return;
      const own = batch.map((r) => formatShape(r.pairs[2 * i + 1] as readonly number[]));
      parts.push(`input "${settings.name}" padded with ${s[0]} to ${formatShape(['N', ...s.slice(1)])} on axes ${settings.padAxes.join(', ')} from ${[...new Set(own)].join(', ')}`);
    });
    const reason = runtimeReason(e.message);
    return new KilnError(e.code, `model run failed on a padded batch of ${batch.length} request${batch.length > 1 ? 's' : ''} (${parts.join('; ')}): ${reason}`, { cause: e });
  }

  /** The lengths of output `name`'s non-batch dims for request `r`, or undefined if they are the batch's. */
  ownDims(name: string, rest: readonly number[], r: PaddedRequest): number[] | undefined {
    const rules = this.#rules.get(name);
    if (!rules) return undefined;
    let differs = false;
    const own = rest.map((len, k) => {
      const rule = rules[k];
      if (!rule) return len;
      const mine = Math.min(len, lengthBy(rule, (r.pairs[2 * rule.input + 1] as readonly number[])[rule.inputAxis]));
      if (mine !== len) differs = true;
      return mine;
    });
    return differs ? own : undefined;
  }

  /**
   * Runs a one-row sample unpadded and padded through the batch path, cuts the padded outputs
   * back by the rules and compares; also checks that the rules predict the unpadded output
   * lengths (over consecutive sample lengths, so a wrong rounding shows). Refuses or warns.
   */
  async #check(session: Session, check: ResolvedPaddingCheck): Promise<void> {
    if (check.action === 'off') return;
    const problem = await this.#measure(session, check);
    if (!problem) return;
    if (check.action === 'warn' && !problem.config) {
      process.emitWarning(`Kiln padding check: ${problem.message}; loading anyway (paddingCheck.action is 'warn')`, { code: 'KILN_PADDING' });
      return;
    }
    throw new KilnError('E_INVALID_ARGUMENT', `padding check: ${problem.message}${problem.advice ? `. ${problem.advice[0].toUpperCase()}${problem.advice.slice(1)}` : ''}`);
  }

  /** What the padding check found wrong, or undefined; `config` marks a wrong rule (refused under 'warn' too). */
  async #measure(session: Session, check: ResolvedPaddingCheck): Promise<{ message: string; advice?: string; config?: boolean } | undefined> {
    const [u, p] = this.#sampleLengths(check);
    const generated = check.sample === undefined;
    const feeds = check.sample ?? this.#generated(session, u);
    const sampleWords = generated
      ? `Kiln's generated sample (${describeFeeds(feeds)}, pseudo-random values)`
      : `the given sample (${describeFeeds(feeds)})`;
    const howToSample = 'give a sample the model accepts with paddingCheck: { sample: { <input>: tensor of one row } } (or other lengths with paddingCheck.sampleLengths), or skip the check with paddingCheck: { action: "off" }';
    let pairs: unknown[];
    let unpadded: Results;
    try {
      pairs = batchPort(session).requestFeeds(feeds);
      unpadded = (await batchPort(session).runBatch([pairs], null)).outputs;
    } catch (e) {
      return { message: `the model failed on ${sampleWords}: ${runtimeReason((e as Error).message)}; ${howToSample}` };
    }
    const request = { pairs, size: 1 };
    // The rules must predict each output length of an unpadded run.
    const wrong = this.#mispredicted(unpadded, request);
    if (wrong) return { message: `${wrong} (${sampleWords}); fix the output's cropAxes rule`, config: true };
    if (generated && !check.sampleLengths) {
      for (let extra = 1; extra < this.#probeCount(); extra++) {
        const probe = this.#generated(session, u + extra);
        let outputs: Results;
        try {
          const probePairs = batchPort(session).requestFeeds(probe);
          outputs = (await batchPort(session).runBatch([probePairs], null)).outputs;
          const miss = this.#mispredicted(outputs, { pairs: probePairs, size: 1 });
          if (miss) return { message: `${miss} (Kiln's generated sample, ${describeFeeds(probe)}); fix the output's cropAxes rule`, config: true };
        } catch {
          break; // a length the model does not take: the probes stop there
        }
      }
    }
    const spec: BatchPadding = this.#inputs.map((settings, i) => {
      if (!settings) return null;
      const dims = (pairs[2 * i + 1] as readonly number[]).slice(1);
      for (const k of settings.padAxes) dims[k - 1] = Math.max(p, dims[k - 1] + 1);
      return [settings.padValue, ...dims];
    });
    const paddedWords = this.#inputs.flatMap((settings, i) => {
      if (!settings || !spec[i]) return [];
      const own = pairs[2 * i + 1] as readonly number[];
      return [`input "${settings.name}" ${formatShape(own)} padded with ${settings.padValue} to ${formatShape([own[0], ...(spec[i] as number[]).slice(1)])}`];
    }).join(', ');
    let padded: Results;
    try {
      padded = (await batchPort(session).runBatch([pairs], spec)).outputs;
    } catch (e) {
      return { message: `the model failed on ${sampleWords} with ${paddedWords}, though it ran unpadded: ${runtimeReason((e as Error).message)}; padding these axes breaks the model` };
    }
    for (const [name, ref] of Object.entries(unpadded)) {
      const got = cutBack(padded[name], this.ownDims(name, padded[name].dims.slice(1), request));
      const diff = compare(ref, got);
      if (diff === undefined) continue;
      if (typeof diff === 'string') {
        return { message: `output "${name}" of ${sampleWords} with ${paddedWords} ${diff}, unpadded ${formatShape(ref.dims)}: padding changes the model's results`, advice: 'keep allowPadding off for this input, or add a cropAxes rule for the output' };
      }
      if (diff.max <= check.tolerance * diff.scale) continue;
      const cut = got === padded[name] ? '' : `, cut back to ${formatShape(got.dims)},`;
      return {
        message: `output "${name}" of ${sampleWords} with ${paddedWords}${cut} differs from the unpadded run by up to ` +
          `${precise(diff.max)} at ${formatShape(diff.at)} (${precise(diff.padded)} instead of ${precise(diff.reference)}; the output's largest magnitude is ${precise(diff.scale)}, ` +
          `tolerance ${check.tolerance} of it): the model is not padding-invariant, so a padded batch would change callers' results (see docs/padding.md)`,
        advice: 'keep allowPadding off for this input, or accept the difference with paddingCheck: { action: "warn" } (or "off"), or raise paddingCheck.tolerance',
      };
    }
    return undefined;
  }

  /** The [unpadded, padded] sample lengths: given, else below and at the first bucket, else 12 and 24. */
  #sampleLengths(check: ResolvedPaddingCheck): [number, number] {
    if (check.sampleLengths) return check.sampleLengths;
    const firsts = this.#inputs.flatMap((s) => (s && s.lengthBuckets.length > 0 ? [s.lengthBuckets[0]] : []));
    if (firsts.length === 0) return [12, 24];
    const p = Math.max(2, Math.min(...firsts));
    return [Math.max(1, p - Math.ceil(p / 4)), p];
  }

  /** How many consecutive lengths show a wrong rounding: the largest denominator of the rules' ratios (at most 16). */
  #probeCount(): number {
    let n = 1;
    for (const rules of this.#rules.values()) {
      for (const rule of rules) {
        if (!rule) continue;
        const total = rule.steps.reduce((t, s) => t * s.ratio, 1);
        if (total < 1) n = Math.max(n, Math.min(16, Math.round(1 / total)));
      }
    }
    return n;
  }

  /** A one-row feed of every input: fixed dims as declared, every other named non-batch dim `length`. */
  #generated(session: Session, length: number): Record<string, TensorLike> {
    const dims: Record<string, number> = {};
    for (const info of session.inputs) info.shape.forEach((d, k) => {
      if (typeof d === 'string' && d !== '?') dims[d] = k === 0 ? 1 : length;
    });
    return randomFeeds(session.inputs, { dims, seed: 0x9add1e });
  }

  /** Where a rule's predicted length differs from an unpadded run's, in words. */
  #mispredicted(outputs: Results, request: PaddedRequest): string | undefined {
    for (const [name, rules] of this.#rules) {
      const dims = outputs[name]?.dims;
      if (!dims) continue;
      for (const [k, rule] of rules.entries()) {
        if (!rule || k + 1 >= dims.length) continue;
        const length = (request.pairs[2 * rule.input + 1] as readonly number[])[rule.inputAxis];
        const predicted = lengthBy(rule, length);
        if (predicted !== dims[k + 1]) {
          const input = (this.#inputs[rule.input] as PaddedInput).name;
          return `output "${name}" axis ${k + 1}: its rule predicts length ${predicted} for input "${input}" axis ${rule.inputAxis} of length ${length}, the model gives ${dims[k + 1]}`;
        }
      }
    }
    return undefined;
  }
}

/** The padded axes of `info`: as configured (checked against the model), else its symbolic non-batch axes. */
function padAxesOf(info: Session['inputs'][number], settings: ResolvedInput): number[] {
  const field = `input[${settings.index}].padAxes`;
  const rank = info.shape.length;
  if (!settings.padAxes) {
    const axes = info.shape.flatMap((d, k) => (k > 0 && typeof d === 'string' ? [k] : []));
    if (axes.length === 0) {
      throw optionError(field, `the axes to pad: input "${info.name}" ${formatShape(info.shape)} has no symbolic non-batch axis to pad by default`, undefined);
    }
    return axes;
  }
  for (const k of settings.padAxes) {
    if (rank > 0 && k >= rank) throw optionError(field, `non-batch axes of input "${info.name}" ${formatShape(info.shape)} (1..${rank - 1})`, settings.padAxes);
    if (typeof info.shape[k] === 'number') {
      throw optionError(field, `axes of dynamic length: input "${info.name}" ${formatShape(info.shape)} has axis ${k} fixed at ${info.shape[k]}`, settings.padAxes);
    }
  }
  return settings.padAxes;
}

function describeFeeds(feeds: Record<string, TensorLike>): string {
  return Object.entries(feeds).map(([name, t]) => `"${name}" ${t.type} ${formatShape(t.dims)}`).join(', ');
}

/** `t` cut back to non-batch dims `own` (undefined: as it is). */
function cutBack(t: Tensor, own: readonly number[] | undefined): Tensor {
  if (!own || Array.isArray(t.data)) return t;
  const dims = [t.dims[0], ...own];
  return cropTensor(t, 0, dims);
}

interface Difference {
  max: number;
  at: number[];
  padded: number;
  reference: number;
  scale: number;
}

/** How `got` differs from `ref`: a shape or value mismatch in words, the largest numeric difference, or undefined when equal. */
function compare(ref: Tensor, got: Tensor): Difference | string | undefined {
  if (ref.dims.join() !== got.dims.join()) return `has shape ${formatShape(got.dims)} after the cut-back`;
  if (Array.isArray(ref.data)) {
    const i = (ref.data as string[]).findIndex((v, k) => v !== (got.data as string[])[k]);
    return i < 0 ? undefined : `holds ${JSON.stringify((got.data as string[])[i])} at element ${i} instead of ${JSON.stringify((ref.data as string[])[i])}`;
  }
  const a = ref.data as ArrayLike<number | bigint>;
  const b = got.data as ArrayLike<number | bigint>;
  const value = ref.type === 'float16' ? (x: number | bigint) => float16Value(Number(x))
    : ref.type === 'bfloat16' ? (x: number | bigint) => bfloat16Value(Number(x)) : Number;
  let max = 0;
  let at = -1;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    const r = value(a[i]);
    const d = Math.abs(value(b[i]) - r);
    if (Math.abs(r) > scale) scale = Math.abs(r);
    if (d > max || (Number.isNaN(d) && at < 0)) {
      max = Number.isNaN(d) ? Infinity : d;
      at = i;
    }
  }
  if (at < 0) return undefined;
  return { max, at: unravel(at, ref.dims), padded: value(b[at]), reference: value(a[at]), scale: scale || 1 };
}

function bfloat16Value(h: number): number {
  return new Float32Array(new Uint32Array([h << 16]).buffer)[0];
}

/** The multi-index of flat element `i` of `dims`. */
function unravel(i: number, dims: readonly number[]): number[] {
  const at: number[] = [];
  let rest = i;
  for (let k = dims.length - 1; k >= 0; k--) {
    at[k] = rest % dims[k];
    rest = Math.floor(rest / dims[k]);
  }
  return at;
}

function precise(v: number): string {
  return Number.isFinite(v) ? String(Number(v.toPrecision(4))) : String(v);
}

/**
 * ONNX Runtime's reason for a failed run on one line: the status message without the
 * "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :" prefix, the node named briefly, source
 * locations dropped, whitespace collapsed, at most 400 characters.
 */
function runtimeReason(message: string): string {
  const reason = message
    .replace(/\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*\w+\s*:\s*/g, '')
    .replace(/Non-zero status code returned while running (\w+) node\. Name:'([^']*)' Status Message:\s*/g, '$1 node "$2": ')
    .replace(/\S*\.(?:cc|h|cpp):\d+\s+(?:[\w:<>,~ ]*\([^)]*\)\s*(?:const\s*)?)?/g, '')
    .replace(/\s+/g, ' ')
    .trim();
  return reason.length > 400 ? `${reason.slice(0, 400)}...` : reason;
}

/**
 * What every request's share of the batch outputs needs, computed once per batch: per
 * output whether dim 0 is the batch's rows (else every request sees the whole output), the
 * elements per row and the non-batch dims.
 */
interface OutputSplit {
  name: string;
  tensor: Tensor;
  batched: boolean;
  per: number;
  rest: readonly number[];
}

export function splitOf(outputs: Results, rows: number): OutputSplit[] {
  return Object.entries(outputs).map(([name, tensor]) => {
    const batched = tensor.dims.length > 0 && tensor.dims[0] === rows;
    return { name, tensor, batched, per: batched ? (tensor.data as { length: number }).length / rows : 0, rest: tensor.dims.slice(1) };
  });
}

/**
 * A request's part of the batch's outputs: its rows [offset, offset + size) of every output
 * whose first dim is the batch's — views, unless padding made the batch wider than the
 * request, in which case the padded dims are cut back to the request's own lengths (a copy
 * made by the addon: the block is not contiguous).
 */
export function rowsOf(split: readonly OutputSplit[], offset: number, r: PaddedRequest, padding: RaggedPadding | undefined): Results {
  const size = r.size;
  const out: Results = {};
  for (const { name, tensor: t, batched, per, rest } of split) {
    if (!batched) {
      out[name] = t;
      continue;
    }
    const own = padding && !Array.isArray(t.data) ? padding.ownDims(name, rest, r) : undefined;
    if (own) {
      out[name] = cropTensor(t, offset, [size, ...own]);
      continue;
    }
    const data = Array.isArray(t.data)
      ? (t.data as string[]).slice(offset * per, (offset + size) * per)
      : (t.data as Exclude<Tensor['data'], string[]>).subarray(offset * per, (offset + size) * per);
    out[name] = wrapTensor(t.type as TensorType, data as Tensor['data'], [size, ...rest]);
  }
  return out;
}

/**
 * Padding of ragged batches: requests whose padded input dims differ share a batch, each
 * padded to the batch's largest length (rounded up to a length bucket), and every caller's
 * outputs are cut back to its own lengths.
 */
import { native, type NativePadding } from '../binding';
import type { KilnError } from '../errors';
import type { Results, Session } from '../session';
import { wrapTensor, type Tensor, type TensorType } from '../tensor';
import type { ResolvedConfig, ResolvedInput } from './config';

/** One request as the batcher holds it: its feeds as (data, dims) pairs in input order. */
export interface PaddedRequest {
  readonly pairs: readonly unknown[];
  readonly size: number;
}

/**
 * Per output, per non-batch dim: the (input, dim) whose padded length it carries — matched
 * by the symbolic dim names of the model's metadata (x ['N','L'] -> y ['N','L']), so an
 * output dim that merely happens to equal a padded length is left alone.
 */
type OwnDims = Map<string, ({ input: number; dim: number } | undefined)[]>;

export class RaggedPadding {
  /** Per model input (in order): its padding settings, when its requests may be padded. */
  readonly #padded: (ResolvedInput | undefined)[];
  readonly #ownDims: OwnDims;

  private constructor(session: Session, config: ResolvedConfig) {
    this.#padded = session.inputs.map((i) => config.padded.get(i.name));
    this.#ownDims = ownDimsOf(session, this.#padded);
  }

  /** The padding of a model, or undefined when no input may be padded. */
  static async create(session: Session, config: ResolvedConfig): Promise<RaggedPadding | undefined> {
    return config.padded.size > 0 ? new RaggedPadding(session, config) : undefined;
  }

  /** The part of a request's batching key for input `input` with `dims`: what must agree. */
  keyOf(input: number, dims: readonly number[]): string {
    return this.#padded[input] ? `rank ${dims.length}` : dims.slice(1).join(',');
  }

  /**
   * Per input, the dims its requests are padded to in this batch: the largest of each dim,
   * rounded up to a length bucket; null where no request needs padding.
   */
  spec(batch: readonly PaddedRequest[]): NativePadding {
    let any = false;
    const spec = this.#padded.map((settings, i) => {
      if (!settings) return null;
      const first = batch[0].pairs[2 * i + 1] as readonly number[];
      const target = first.slice(1);
      let ragged = false;
      for (const r of batch) {
        const dims = r.pairs[2 * i + 1] as readonly number[];
        for (let d = 1; d < dims.length; d++) {
          if (dims[d] !== target[d - 1]) ragged = true;
          if (dims[d] > target[d - 1]) target[d - 1] = dims[d];
        }
      }
      if (!ragged) return null;
      any = true;
      const rounded = target.map((len) => settings.lengthBuckets.find((b) => b >= len) ?? len);
      return [settings.padValue, ...rounded];
    });
    return any ? spec : null;
  }

  /** The error a padded batch's run failed with, told in terms of the padding applied. */
  describeFailure(e: KilnError, _spec: NativePadding, _batch: readonly PaddedRequest[]): KilnError {
    return e;
  }

  /** The lengths of output `name`'s non-batch dims for request `r`, or undefined if they are the batch's. */
  ownDims(name: string, rest: readonly number[], r: PaddedRequest): number[] | undefined {
    const dims = this.#ownDims.get(name);
    if (!dims) return undefined;
    const own = rest.map((len, k) => {
      const src = dims[k];
      return src ? (r.pairs[2 * src.input + 1] as readonly number[])[src.dim] : len;
    });
    return own.some((d, k) => d !== rest[k]) ? own : undefined;
  }
}

function ownDimsOf(session: Session, padded: readonly (ResolvedInput | undefined)[]): OwnDims {
  const byName = new Map<string, { input: number; dim: number }>();
  session.inputs.forEach((input, i) => {
    if (!padded[i]) return;
    input.shape.forEach((d, k) => {
      if (k > 0 && typeof d === 'string' && d !== '?' && !byName.has(d)) byName.set(d, { input: i, dim: k });
    });
  });
  const out: OwnDims = new Map();
  for (const o of session.outputs) {
    out.set(o.name, o.shape.slice(1).map((d) => (typeof d === 'string' ? byName.get(d) : undefined)));
  }
  return out;
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
      const data = native().crop(t.data as ArrayBufferView, t.dims, offset, [size, ...own]);
      out[name] = wrapTensor(t.type as TensorType, data as unknown as Tensor['data'], [size, ...own]);
      continue;
    }
    const data = Array.isArray(t.data)
      ? (t.data as string[]).slice(offset * per, (offset + size) * per)
      : (t.data as Exclude<Tensor['data'], string[]>).subarray(offset * per, (offset + size) * per);
    out[name] = wrapTensor(t.type as TensorType, data as Tensor['data'], [size, ...rest]);
  }
  return out;
}

/**
 * Verification of semantic hits: a fraction of hits is run again and the cached result is
 * compared with the fresh one, so that false hits (a near vector whose answer differs) are
 * counted on real traffic and the threshold can be tuned.
 */
import { KilnError } from '../../errors';
import { prng } from '../../samples';
import type { TensorLike } from '../../tensor';
import { tensorVector } from './embedding';

export type Results = Readonly<Record<string, TensorLike>>;

export interface CompareHow {
  /**
   * 'top1': the arg max over the last axis agrees, row by row (score: the fraction of rows
   * that agree; tolerance: the fraction allowed to differ, default 0). 'cosine': cosine
   * similarity of the flattened outputs (score; same when >= 1 - tolerance, default 1e-3).
   * 'maxError': the largest absolute difference (score; same when <= tolerance, default 1e-3).
   * 'ctc': for CTC outputs ([..., time, classes] scores: OCR and speech recognizers), the
   * decoded label sequences agree (arg max per step, repeats collapsed, `blank` dropped);
   * score: the fraction of sequences that agree; tolerance as for top1. A near-duplicate image
   * moves arg maxes between blank and a character at the edges of a glyph without changing
   * the text: top1 counts that as a difference, ctc does not.
   */
  metric: 'top1' | 'cosine' | 'maxError' | 'ctc';
  tolerance?: number;
  /** 'ctc': the blank class (default 0, as PP-OCR's recognizers have it). */
  blank?: number;
}

export interface Comparison {
  same: boolean;
  /** The worst output's score (see CompareHow.metric). */
  score: number;
}

const DEFAULT_TOLERANCE = { top1: 0, cosine: 1e-3, maxError: 1e-3, ctc: 0 } as const;
const METRICS = Object.keys(DEFAULT_TOLERANCE);

/** The arg max of each row of `width` values. */
function rowArgmax(a: Float32Array, width: number): Int32Array {
  const rows = width === 0 ? 0 : a.length / width;
  const out = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let i = 1; i < width; i++) if (a[r * width + i] > a[r * width + best]) best = i;
    out[r] = best;
  }
  return out;
}

/**
 * The fraction of sequences (everything before the last two axes) whose CTC decodings agree:
 * per time step the arg max class, repeats collapsed, `blank` dropped.
 */
function ctcAgreement(a: Float32Array, b: Float32Array, dims: readonly number[], blank: number): number {
  if (dims.length < 2) throw new KilnError('E_INVALID_ARGUMENT', `verification metric "ctc" needs outputs of rank >= 2 ([..., time, classes]), received dims [${dims.join(', ')}]`);
  const classes = dims[dims.length - 1];
  const steps = dims[dims.length - 2];
  const ia = rowArgmax(a, classes);
  const ib = rowArgmax(b, classes);
  const sequences = steps === 0 ? 0 : ia.length / steps;
  if (sequences === 0) return 1;
  const decode = (labels: Int32Array, s: number): number[] => {
    const out: number[] = [];
    let previous = -1;
    for (let t = s * steps; t < (s + 1) * steps; t++) {
      if (labels[t] !== previous && labels[t] !== blank) out.push(labels[t]);
      previous = labels[t];
    }
    return out;
  };
  let agree = 0;
  for (let s = 0; s < sequences; s++) {
    const x = decode(ia, s);
    const y = decode(ib, s);
    if (x.length === y.length && x.every((v, i) => v === y[i])) agree++;
  }
  return agree / sequences;
}

function argmaxAgreement(a: Float32Array, b: Float32Array, dims: readonly number[]): number {
  const ia = rowArgmax(a, dims.length === 0 ? 1 : dims[dims.length - 1]);
  const ib = rowArgmax(b, dims.length === 0 ? 1 : dims[dims.length - 1]);
  if (ia.length === 0) return 1;
  let agree = 0;
  for (let r = 0; r < ia.length; r++) if (ia[r] === ib[r]) agree++;
  return agree / ia.length;
}

function cosine(a: Float32Array, b: Float32Array): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  if (na === 0 && nb === 0) return 1;
  if (na === 0 || nb === 0) return 0;
  return dot / Math.sqrt(na * nb);
}

function maxError(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d; // NaN counts as the largest error
  }
  return m;
}

/** The score of one output pair; outputs of different types or shapes score as different as can be. */
function score(cached: TensorLike, fresh: TensorLike, metric: CompareHow['metric'], name: string, blank: number): number {
  const worst = metric === 'maxError' ? Infinity : 0;
  const best = metric === 'maxError' ? 0 : 1;
  if (cached.type !== fresh.type || cached.dims.length !== fresh.dims.length || cached.dims.some((d, i) => d !== fresh.dims[i])) return worst;
  if (cached.type === 'string') {
    const a = cached.data as string[];
    const b = fresh.data as string[];
    return a.length === b.length && a.every((s, i) => s === b[i]) ? best : worst;
  }
  const a = tensorVector(cached, `output "${name}"`);
  const b = tensorVector(fresh, `output "${name}"`);
  if (metric === 'top1') return argmaxAgreement(a, b, cached.dims);
  if (metric === 'ctc') return ctcAgreement(a, b, cached.dims, blank);
  return metric === 'cosine' ? cosine(a, b) : maxError(a, b);
}

/** Whether the cached result is the same as the fresh one, by `how`, over every output of either. */
export function compareResults(cached: Results, fresh: Results, how: CompareHow): Comparison {
  const { metric } = how;
  if (!METRICS.includes(metric)) {
    throw new KilnError('E_INVALID_ARGUMENT', `verification metric must be one of ${METRICS.map((m) => `"${m}"`).join(', ')}, received ${String(metric)}`);
  }
  const tolerance = how.tolerance ?? DEFAULT_TOLERANCE[metric];
  if (!(tolerance >= 0)) throw new KilnError('E_INVALID_ARGUMENT', `verification tolerance must be >= 0, received ${String(tolerance)}`);
  const blank = how.blank ?? 0;
  if (!Number.isSafeInteger(blank) || blank < 0) throw new KilnError('E_INVALID_ARGUMENT', `verification blank must be an integer >= 0, received ${String(blank)}`);
  let worst = metric === 'maxError' ? 0 : 1;
  for (const name of new Set([...Object.keys(cached), ...Object.keys(fresh)])) {
    const s = name in cached && name in fresh ? score(cached[name], fresh[name], metric, name, blank) : metric === 'maxError' ? Infinity : 0;
    worst = metric === 'maxError' ? Math.max(worst, s) : Math.min(worst, s);
  }
  const same = metric === 'maxError' ? worst <= tolerance : worst >= 1 - tolerance;
  return { same, score: worst };
}

export interface VerifierOptions {
  /** Fraction of hits to verify, 0..1. */
  verifyFraction: number;
  how: CompareHow;
  /** Uniform in [0, 1); default Math.random, or a PRNG seeded with `seed`. */
  random?: () => number;
  seed?: number;
}

/** Picks which hits to verify and counts how many were checked and how many were false. */
export class Verifier {
  readonly verifyFraction: number;
  readonly how: CompareHow;
  readonly #random: () => number;
  #checked = 0;
  #falseHits = 0;

  constructor(options: VerifierOptions) {
    const { verifyFraction, how, random, seed } = options;
    if (!(verifyFraction >= 0 && verifyFraction <= 1)) throw new KilnError('E_INVALID_ARGUMENT', `verifyFraction must be in [0, 1], received ${String(verifyFraction)}`);
    compareResults({}, {}, how); // checks `how`
    this.verifyFraction = verifyFraction;
    this.how = how;
    if (random) this.#random = random;
    else if (seed !== undefined) {
      const next = prng(seed);
      this.#random = () => (next() + 1) / 2;
    } else this.#random = Math.random;
  }

  /** Whether to verify the hit at hand (true for a verifyFraction of the calls). */
  shouldVerify(): boolean {
    return this.verifyFraction > 0 && this.#random() < this.verifyFraction;
  }

  /** Compares a verified hit's cached result with the fresh one and counts it. */
  record(cached: Results, fresh: Results): Comparison {
    const c = compareResults(cached, fresh, this.how);
    this.#checked++;
    if (!c.same) this.#falseHits++;
    return c;
  }

  /** When this hit is picked: runs `rerun`, then records; undefined when not picked. */
  async verify(cached: Results, rerun: () => Promise<Results>): Promise<Comparison | undefined> {
    if (!this.shouldVerify()) return undefined;
    return this.record(cached, await rerun());
  }

  get checked(): number {
    return this.#checked;
  }

  get falseHits(): number {
    return this.#falseHits;
  }

  /** falseHits / checked (0 before any check). */
  get falseHitRate(): number {
    return this.#checked === 0 ? 0 : this.#falseHits / this.#checked;
  }
}

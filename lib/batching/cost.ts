/**
 * What a batch costs, learned per batch size from warm runs. A run at a shape the model has
 * not run before is not a sample (ONNX Runtime plans and allocates for a new shape on its
 * first run, which can cost several times a warm run): it is remembered only as a rough
 * figure for retry hints. Each size keeps a running mean that weighs recent runs most; a
 * size not run for a while is forgotten.
 */
interface SizeCost {
  rows: number;
  mean: number;
  samples: number;
  at: number; // ms, last sample
}

/** Samples after which a size's estimate becomes a moving average (older runs decay). */
const WINDOW = 16;
/**
 * Estimates older than this are stale: a model with no fresh estimate is treated as
 * unmeasured, and the next sample drops them (after a pause, the machine or the model's
 * inputs may have changed).
 */
const STALE_MS = 1000;
/** How many shapes are remembered as run once (bounded: padded lengths can be many). */
const MAX_SHAPES = 4096;
/** Batching keys whose costs are kept at once. */
const MAX_KEYS = 64;

export class BatchCostModel {
  /** Warm estimates, by rows, kept sorted by rows. */
  readonly #sizes: SizeCost[] = [];
  readonly #seen = new Set<string>();
  /** Least-squares line over the sizes' means: extrapolation past the largest size seen. */
  #slope = 0;
  /** The last run's time, cold or warm: a retry hint before any warm sample. */
  #lastMs: number | undefined;
  #lastSample = -Infinity;

  /** Whether any warm sample exists: before that nothing is predicted. */
  get warm(): boolean {
    return this.#sizes.length > 0;
  }

  /** Whether a warm sample was taken lately (within STALE_MS of `t`). */
  fresh(t: number): boolean {
    return t - this.#lastSample <= STALE_MS;
  }

  /**
   * Records a run of `rows` rows at `shape` (the full batch shape) that took `ms`; returns
   * whether it counted as a warm sample.
   */
  observe(shape: string, rows: number, ms: number, t: number): boolean {
    this.#lastMs = ms;
    if (!this.#seen.has(shape)) {
      if (this.#seen.size >= MAX_SHAPES) this.#seen.clear();
      this.#seen.add(shape);
      return false;
    }
    // Estimates not refreshed for STALE_MS are dropped: they describe another time.
    for (let k = this.#sizes.length - 1; k >= 0; k--) if (t - this.#sizes[k].at > STALE_MS) this.#sizes.splice(k, 1);
    let i = this.#sizes.findIndex((s) => s.rows >= rows);
    if (i < 0) i = this.#sizes.length;
    let s = this.#sizes[i];
    if (s === undefined || s.rows !== rows) {
      s = { rows, mean: ms, samples: 0, at: t };
      this.#sizes.splice(i, 0, s);
    }
    s.samples++;
    s.mean += (ms - s.mean) / Math.min(s.samples, WINDOW);
    s.at = t;
    this.#lastSample = t;
    this.#fit();
    return true;
  }

  /**
   * Expected milliseconds for a batch of `rows`: the size's own estimate, else interpolated
   * between the nearest sizes seen; below the smallest, the smallest's; above the largest,
   * along the fitted line (never below the largest's). Undefined before any warm sample.
   * Extrapolation is deliberately not pessimistic: an estimate too high would refuse the
   * larger batches that would correct it, one too low is corrected by the next run.
   */
  mean(rows: number): number | undefined {
    const sizes = this.#sizes;
    if (sizes.length === 0) return undefined;
    const i = sizes.findIndex((s) => s.rows >= rows);
    if (i === 0) return sizes[0].mean;
    if (i < 0) {
      const last = sizes[sizes.length - 1];
      return last.mean + this.#slope * (rows - last.rows);
    }
    const hi = sizes[i];
    if (hi.rows === rows) return hi.mean;
    const lo = sizes[i - 1];
    return lo.mean + ((hi.mean - lo.mean) * (rows - lo.rows)) / (hi.rows - lo.rows);
  }

  /** A retry hint for `rows`: the warm estimate, else the last run's time. */
  hint(rows: number): number | undefined {
    return this.mean(rows) ?? this.#lastMs;
  }

  #fit(): void {
    const n = this.#sizes.length;
    if (n < 2) {
      this.#slope = 0;
      return;
    }
    let sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (const s of this.#sizes) {
      sx += s.rows;
      sy += s.mean;
      sxx += s.rows * s.rows;
      sxy += s.rows * s.mean;
    }
    const den = n * sxx - sx * sx;
    this.#slope = den > 0 ? Math.max(0, (n * sxy - sx * sy) / den) : 0;
  }
}

/** Cost models by batching key: requests that batch separately (other shapes) cost separately. */
export class BatchCosts {
  readonly #byKey = new Map<string, BatchCostModel>();

  of(key: string): BatchCostModel {
    let c = this.#byKey.get(key);
    if (!c) {
      if (this.#byKey.size >= MAX_KEYS) this.#byKey.clear();
      c = new BatchCostModel();
      this.#byKey.set(key, c);
    }
    return c;
  }
}

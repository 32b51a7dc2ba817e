/**
 * When session.run() executes on the calling thread. Handing a run to an executor thread
 * and taking its answer back costs a few microseconds with a polling JS thread and tens on
 * a VM without one: more than a tiny model's whole run. A run expected to take less than
 * that hand-off (and at most INLINE_MAX_US) runs inline; as far as recent runs predict it,
 * the event loop is then blocked no longer than the hand-off would have cost, and the
 * caller is answered sooner. Sessions with several executor threads, runs with an
 * AbortSignal and device sessions never run inline (lib/session.ts decides those). Both figures are learned from the
 * session's own runs:
 *  - the hand-off: an executor run's wall time (submitted to answered, measured on runs
 *    that had the executor to themselves) less its time in the core;
 *  - the run: the core's time plus what the binding adds, then inline runs' wall time.
 * Guards, since a run's time can depend on its inputs: a run with more input elements than
 * any run measured short goes to the executor, and after an inline run that took longer
 * than INLINE_MAX_US (a surprise: only runs predicted shorter go inline) the next runs go to
 * the executor, where their time is measured again. The
 * machine can cause such a run too (a preempted thread), so one surprise costs little; each
 * further surprise doubles the number of runs sent to the executor, and a long stretch
 * without one halves it again: a model whose runs are often long for some input values
 * ends up off the calling thread.
 */

/** Executor runs measured before any run goes inline. */
const HANDOFF_SAMPLES = 4;
/** Samples each median is taken over. */
const WINDOW = 9;
/** No run expected to take longer than this (µs) goes inline, however slow a hand-off is. */
export const INLINE_MAX_US = 100;
/** Runs sent to the executor after a first surprise, and the most after many. */
const COOLDOWN_MIN = 64;
const COOLDOWN_MAX = 1 << 20;
/** Inline runs without a surprise that halve the cool-down again. */
const CALM = 1000;
/** One run in this many goes to the executor, to keep the hand-off's cost current. */
const RECHECK = 256;
/** What a run on the calling thread adds to the core's run time (µs): the binding's conversions. */
const GLUE_US = 1.5;

/** The median of the last WINDOW values. */
class RecentMedian {
  readonly #values: number[] = [];
  #next = 0;
  #median = NaN;

  get value(): number {
    return this.#median;
  }

  get count(): number {
    return this.#values.length;
  }

  add(v: number): void {
    if (this.#values.length < WINDOW) this.#values.push(v);
    else this.#values[this.#next] = v;
    this.#next = (this.#next + 1) % WINDOW;
    const sorted = [...this.#values].sort((x, y) => x - y);
    const mid = sorted.length >> 1;
    this.#median = sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }
}

export class InlinePolicy {
  readonly #handoffUs = new RecentMedian();
  /** Expected time of a run on the calling thread (µs). */
  readonly #runUs = new RecentMedian();
  /** The most input elements of a run measured shorter than the bound. */
  #maxElements = 0;
  #sinceExecutor = 0;
  /** Runs still to go to the executor after a surprise, and how many the next surprise sends. */
  #cooldown = 0;
  #nextCooldown = COOLDOWN_MIN;
  #calm = 0;

  /** Whether inlining is possible at all now (the figures are known). */
  get ready(): boolean {
    return this.#handoffUs.count >= HANDOFF_SAMPLES;
  }

  /** Whether a run with `elements` input elements executes inline. */
  choose(elements: number): boolean {
    if (!this.ready || !(this.#runUs.value < this.#bound()) || elements > this.#maxElements) return false;
    if (this.#cooldown > 0) {
      this.#cooldown--;
      return false;
    }
    if (++this.#sinceExecutor >= RECHECK) {
      this.#sinceExecutor = 0;
      return false;
    }
    return true;
  }

  /**
   * An executor run ended: `wallUs` from submission to answer (NaN when other runs were in
   * flight: queueing is not the hand-off's cost), `coreUs` its time in the core.
   */
  executed(wallUs: number, coreUs: number, elements: number): void {
    const handoff = wallUs - coreUs;
    if (handoff >= 0) this.#handoffUs.add(handoff);
    this.#observe(coreUs + GLUE_US, elements);
  }

  /** An inline run took `us` (wall time on the calling thread). */
  ranInline(us: number, elements: number): void {
    if (us > INLINE_MAX_US) {
      this.#cooldown = this.#nextCooldown;
      this.#nextCooldown = Math.min(2 * this.#nextCooldown, COOLDOWN_MAX);
      this.#calm = 0;
      return;
    }
    if (++this.#calm >= CALM) {
      this.#calm = 0;
      this.#nextCooldown = Math.max(this.#nextCooldown >> 1, COOLDOWN_MIN);
    }
    this.#observe(us, elements);
  }

  #observe(us: number, elements: number): void {
    this.#runUs.add(us);
    if (us < this.#bound() && elements > this.#maxElements) this.#maxElements = elements;
  }

  #bound(): number {
    return Math.min(this.#handoffUs.value, INLINE_MAX_US);
  }
}

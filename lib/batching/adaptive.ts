/**
 * Adaptive batching (`maxLatencyMs`): which requests to accept, and how long a formed batch
 * may wait for companions, so that accepted requests finish within the target while the
 * instances do as much work per batch as the load needs.
 *
 * - Cost: learned per batch size from warm runs (BatchCostModel). Before any warm run, and
 *   after a pause that left no fresh estimate, the policy neither refuses nor waits: it
 *   behaves as batching without a delay until it has measured something.
 * - Admission: a request is refused (E_OVERLOADED) only when the queue ahead of it and the
 *   batches running on busy instances would, at the measured costs, finish it after the
 *   limit. A request that an idle instance could take at once is always accepted: an idle
 *   model never refuses, so a cold start or a pause cannot lock it out. The limit starts at
 *   the target and is lowered while served requests that had to queue still end late (the
 *   spread of run times and of the machine's scheduling, which the mean costs leave out),
 *   then drifts back up; lateness of requests that did not queue is the machine's, and
 *   refusing others would not cure it.
 * - Waiting: a batch waits for companions only when batches of its size would keep the
 *   instances busy at the measured arrival rate (waiting is what raises throughput there),
 *   a companion is likely to arrive within the slack the target leaves, and waits have been
 *   paying off: for a caller that sends its next request only after the answer, waiting is
 *   pure delay, and the policy stops doing it.
 */
import type { BatchCosts } from './cost';

/** A batch on an instance: when it started and its rows, under its cost key. */
export interface RunningBatch {
  readonly started: number;
  readonly rows: number;
  readonly key: string;
}

export type Admission = { accept: true } | { accept: false; predictedMs: number; retryAfterMs: number };

/** Arrival rate memory (ms): the rate follows changes in load within about this long. */
const RATE_TAU_MS = 100;
/** A batch waits only while the instances would be at least this busy at its size. */
const BUSY_ENOUGH = 0.5;
/** How quickly a record of futile waits is forgotten (ms), so waiting is tried again. */
const FUTILE_TAU_MS = 2000;
/**
 * The admission limit, as a share of the target: lowered by LATE_STEP for each request
 * served late through queueing, raised by ON_TIME_STEP for each request served on time (so it settles where
 * about one request in LATE_STEP / ON_TIME_STEP = 200 is late), never below MIN_LIMIT. At
 * most LATE_PER_BATCH late requests count per batch: one stall of the JS thread makes a whole
 * batch late at once, which says little about the admission.
 */
const LATE_STEP = 0.02;
const ON_TIME_STEP = 0.0001;
const LATE_PER_BATCH = 4;
const MIN_LIMIT = 0.5;
/** A served request "queued" when it waited at least this share of the target before its run. */
const QUEUED_SHARE = 0.1;

export class AdaptivePolicy {
  readonly target: number;
  readonly #instances: number;
  readonly #costs: BatchCosts;
  #arrivals = 0; // decayed rows
  #lastArrival = 0;
  /** Probability that a wait gains a companion, learned from past waits. */
  #waitPays = 1;
  #lastWaitEnd = 0;
  /** Rows of the batch that started waiting, while it waits. */
  #waitingRows: number | undefined;
  /** Admission limit as a share of the target. */
  #limit = 1;
  /** Mean delay (ms) between a batch's end in the core and its answer on the JS thread. */
  #answerMs = 0;

  constructor(targetMs: number, instances: number, costs: BatchCosts) {
    this.target = targetMs;
    this.#instances = instances;
    this.#costs = costs;
  }

  /** Records `rows` arriving at `t`. */
  arrived(rows: number, t: number): void {
    this.#arrivals = this.#arrivals * Math.exp((this.#lastArrival - t) / RATE_TAU_MS) + rows;
    this.#lastArrival = t;
  }

  /** Rows per millisecond arriving lately. */
  #rate(t: number): number {
    return (this.#arrivals * Math.exp((this.#lastArrival - t) / RATE_TAU_MS)) / RATE_TAU_MS;
  }

  /**
   * Whether a request of `size` rows under `key` can finish within the target with `rowsAhead`
   * rows queued before it, `free` idle instances and `running` batches on the others.
   */
  admit(key: string, size: number, rowsAhead: number, free: number, running: Iterable<RunningBatch>, cap: number, t: number): Admission {
    if (free > 0 && rowsAhead === 0) return { accept: true };
    const limit = this.target * this.#limit;
    const predicted = this.#completion(key, size, rowsAhead, free, running, cap, t);
    if (predicted === undefined || predicted <= limit) return { accept: true };
    return { accept: false, predictedMs: predicted, retryAfterMs: Math.max(1, Math.ceil(predicted - limit)) };
  }

  /**
   * Predicted milliseconds from `t` until a request of `size` rows behind `rowsAhead` rows
   * finishes: the rows are cut into batches of `cap` rows, each taken by the instance free
   * first (idle ones now, busy ones when their batch is expected to end), at mean costs.
   * Undefined without a fresh measurement.
   */
  #completion(key: string, size: number, rowsAhead: number, free: number, running: Iterable<RunningBatch>, cap: number, t: number): number | undefined {
    const cost = this.#costs.of(key);
    if (!cost.fresh(t)) return undefined;
    const available: number[] = [];
    for (let i = 0; i < free; i++) available.push(t);
    for (const b of running) {
      // A batch past its expected cost may be running long, or may have ended while the JS
      // thread was busy: it is taken to need its overrun again, at most its expected cost.
      const expected = this.#costs.of(b.key).mean(b.rows) ?? 0;
      const elapsed = t - b.started;
      available.push(elapsed <= expected ? b.started + expected : t + Math.min(elapsed - expected, expected));
    }
    if (available.length === 0) available.push(t);
    available.sort((a, b) => a - b);
    const rows = rowsAhead + size;
    const batches = Math.ceil(rows / cap);
    const before = batches - 1; // full batches ahead of the request's own
    const instance = before % available.length;
    const rounds = Math.floor(before / available.length);
    const own = rows - before * cap;
    const end = available[instance] + rounds * (cost.mean(cap) as number) + (cost.mean(own) as number);
    return end + this.#answerMs - t;
  }

  /**
   * When a batch of `rows` rows whose oldest request arrived at `oldest` should be dispatched:
   * undefined for now, else the time to look again (any arrival looks again sooner).
   */
  waitUntil(key: string, rows: number, oldest: number, cap: number, t: number): number | undefined {
    const cost = this.#costs.of(key);
    const batchMs = cost.mean(rows);
    if (batchMs === undefined || rows >= cap || !cost.fresh(t)) return undefined;
    // A batch that waited to the last moment would end late whenever it ran long: a fifth
    // of the target stays spare.
    const slack = oldest + this.target * this.#limit * 0.8 - t - (cost.mean(rows + 1) as number) - this.#answerMs;
    const rate = this.#rate(t);
    const busy = (rate * batchMs) / rows / this.#instances;
    const pays = 1 - (1 - this.#waitPays) * Math.exp((this.#lastWaitEnd - t) / FUTILE_TAU_MS);
    if (slack <= 0 || rate * slack < 1 || busy < BUSY_ENOUGH || pays < 0.5) return undefined;
    this.#waitingRows ??= rows;
    return t + slack;
  }

  /** A warm batch's answer reached the JS thread `ms` after its run ended in the core. */
  answered(ms: number): void {
    this.#answerMs += (ms - this.#answerMs) / 16;
  }

  /**
   * A batch started at `started` answered its requests (arrival times `arrivals`) at `t`:
   * lateness of requests that queued moves the admission limit.
   */
  served(arrivals: readonly number[], started: number, t: number): void {
    let onTime = 0;
    let lateQueued = 0;
    // Late through queueing: on time had it not waited for its batch to start. A batch that
    // alone took longer than the target was late through the machine, not the admission.
    const runMs = t - started;
    for (const a of arrivals) {
      if (t - a <= this.target) onTime++;
      else if (runMs <= this.target && started - a >= QUEUED_SHARE * this.target) lateQueued++;
    }
    this.#limit = Math.max(MIN_LIMIT, Math.min(1, this.#limit + onTime * ON_TIME_STEP - Math.min(lateQueued, LATE_PER_BATCH) * LATE_STEP));
  }

  /** A batch of `rows` rows goes at `t`: if it had waited, learn whether the wait gained anything. */
  dispatched(rows: number, t: number): void {
    if (this.#waitingRows === undefined) return;
    this.#waitPays += ((rows > this.#waitingRows ? 1 : 0) - this.#waitPays) * 0.25;
    this.#lastWaitEnd = t;
    this.#waitingRows = undefined;
  }
}

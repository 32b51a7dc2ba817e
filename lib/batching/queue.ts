/**
 * Triton's priority queue: one queue per priority level (level 1 first), each in arrival
 * order, with a second queue per level for requests whose timeout expired under the DELAY
 * action (they are served after the level's other requests).
 */
import type { ResolvedPolicy } from './config';

export interface Queued {
  readonly seq: number;
  readonly level: number; // index into the levels
  readonly size: number; // rows: the request's batch dim
  readonly enqueuedAt: number; // ms
  readonly deadline: number; // ms; Infinity without a timeout
  delayed: boolean;
}

interface Level<T> {
  policy: ResolvedPolicy;
  main: T[];
  delayed: T[];
}

export class PriorityQueue<T extends Queued> {
  readonly #levels: Level<T>[];
  #count = 0;
  #rows = 0;

  constructor(policies: readonly ResolvedPolicy[]) {
    this.#levels = policies.map((policy) => ({ policy, main: [], delayed: [] }));
  }

  get count(): number {
    return this.#count;
  }

  /** Rows queued: the sum of the requests' batch dims. */
  get rows(): number {
    return this.#rows;
  }

  policy(level: number): ResolvedPolicy {
    return this.#levels[level].policy;
  }

  /** Rows queued at levels up to and including `level`: what is served before a new request there. */
  rowsThrough(level: number): number {
    if (level >= this.#levels.length - 1) return this.#rows;
    let rows = 0;
    for (let i = 0; i <= level; i++) {
      for (const item of this.#levels[i].main) rows += item.size;
      for (const item of this.#levels[i].delayed) rows += item.size;
    }
    return rows;
  }

  /** Requests queued at `level` (for its maxQueueSize). */
  levelCount(level: number): number {
    const l = this.#levels[level];
    return l.main.length + l.delayed.length;
  }

  push(item: T): void {
    this.#levels[item.level].main.push(item);
    this.#count++;
    this.#rows += item.size;
  }

  /** Removes `item` wherever it is; false if it was not queued. */
  remove(item: T): boolean {
    const l = this.#levels[item.level];
    const list = item.delayed ? l.delayed : l.main;
    const i = list.indexOf(item);
    if (i < 0) return false;
    list.splice(i, 1);
    this.#count--;
    this.#rows -= item.size;
    return true;
  }

  /**
   * Removes `items` (all queued), in one pass over the lists they are in: a batch of N
   * requests leaves the queue in O(queue) rather than N searches and splices.
   */
  removeAll(items: readonly T[]): void {
    if (items.length === 1) {
      this.remove(items[0]);
      return;
    }
    const gone = new Set<T>(items);
    for (const l of this.#levels) {
      for (const key of ['main', 'delayed'] as const) {
        const list = l[key];
        if (list.length === 0 || !list.some((item) => gone.has(item))) continue;
        l[key] = list.filter((item) => !gone.has(item));
        for (const item of list) {
          if (!gone.has(item)) continue;
          this.#count--;
          this.#rows -= item.size;
        }
      }
    }
  }

  /** Removes and returns every queued item `drop` selects, in one pass over the queue. */
  removeWhere(drop: (item: T) => boolean): T[] {
    const removed: T[] = [];
    for (const l of this.#levels) {
      for (const key of ['main', 'delayed'] as const) {
        if (!l[key].some(drop)) continue;
        const keep: T[] = [];
        for (const item of l[key]) (drop(item) ? removed : keep).push(item);
        l[key] = keep;
      }
    }
    for (const item of removed) {
      this.#count--;
      this.#rows -= item.size;
    }
    return removed;
  }

  /** Scan order: level by level, each level's requests in arrival order, delayed ones last. */
  *ordered(): Generator<T> {
    for (const l of this.#levels) {
      yield* l.main;
      yield* l.delayed;
    }
  }

  /**
   * Applies expired timeouts at `now`: REJECT-policy requests are removed and returned;
   * DELAY-policy ones move behind their level's other requests.
   */
  expire(now: number): T[] {
    const rejected: T[] = [];
    for (const l of this.#levels) {
      if (l.main.length === 0) continue;
      const keep: T[] = [];
      for (const item of l.main) {
        if (item.deadline > now) {
          keep.push(item);
        } else if (l.policy.timeoutAction === 'DELAY') {
          item.delayed = true;
          l.delayed.push(item);
        } else {
          rejected.push(item);
          this.#count--;
          this.#rows -= item.size;
        }
      }
      l.main = keep;
    }
    return rejected;
  }

  /** The earliest deadline of a request not yet delayed (for the timeout timer). */
  nextDeadline(): number {
    let t = Infinity;
    for (const l of this.#levels) for (const item of l.main) if (item.deadline < t) t = item.deadline;
    return t;
  }
}

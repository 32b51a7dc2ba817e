/**
 * The exact response cache: answers a request whose key (lib/cache/key.ts) was answered
 * before from a store, and runs concurrent identical misses once (single flight). Only
 * successful results are stored. A store that fails (Redis down or slow) never fails a
 * request: the request runs uncached and the failure is counted and reported.
 */
import { KilnError } from '../errors';
import { OptionReader, optionError } from '../options';
import type { Results } from '../session';
import { decodeResults, encodeResults } from './codec';
import type { RedisStoreOptions } from './redis-store';
import { LocalStore, type CacheStore, type CacheStoreStats, type LocalStoreOptions } from './store';

export type ResponseCacheOptions =
  | { local: LocalStoreOptions; onError?: (error: Error) => void }
  | { redis: Omit<RedisStoreOptions, 'onError'>; onError?: (error: Error) => void };

/** How a request was served: from the cache, by running the model, or by a model without a cache. */
export type CacheOutcome = 'hit' | 'miss' | 'none';

/**
 * A model's cache counters (Triton's cache statistics). A request that joined an identical
 * request in flight counts as a hit. hitUs: time spent serving hits (lookup and decode);
 * missUs: time spent on misses' lookups and on storing their results. `errors`: failed
 * lookups and stores (those requests ran, and count as misses).
 */
export interface CacheCounters {
  hits: number;
  misses: number;
  errors: number;
  hitUs: number;
  missUs: number;
}

export function emptyCounters(): CacheCounters {
  return { hits: 0, misses: 0, errors: 0, hitUs: 0, missUs: 0 };
}

export interface ResponseCacheStats extends Partial<CacheStoreStats> {
  kind: string;
  /** Failed lookups and stores, over every model using this cache. */
  errors: number;
}

const now = (): number => performance.now();

export class ResponseCache {
  readonly #store: CacheStore;
  readonly #onError: ((error: Error) => void) | undefined;
  /** Misses being answered, by key: resolves with the encoded result, or undefined when the run failed. */
  readonly #inflight = new Map<string, Promise<Uint8Array | undefined>>();
  /** Stores in progress (close() lets them finish). */
  readonly #storing = new Set<Promise<void>>();
  #errors = 0;
  /** Without onError: one process warning per outage (reset once the store answers again). */
  #warned = false;

  constructor(store: CacheStore, onError?: (error: Error) => void) {
    this.#store = store;
    this.#onError = onError;
  }

  get kind(): string {
    return this.#store.kind;
  }

  /**
   * The answer for `key`: a copy of a cached one, a copy of the one an identical request in
   * flight gets, or `run()`'s (stored once it succeeds, as `owner`'s entry). Counts into
   * `counters`. A request waiting on another's run is rejected with E_ABORTED when `signal` aborts.
   */
  async serve(key: string, run: () => Promise<Results>, counters: CacheCounters, signal?: AbortSignal, owner?: string): Promise<{ outputs: Results; outcome: 'hit' | 'miss' }> {
    const flight = this.#inflight.get(key);
    if (flight) {
      const bytes = await abortable(flight, signal);
      if (bytes === undefined) return this.#miss(key, run, counters, 0, owner);
      const t = now();
      const outputs = decodeResults(bytes);
      counters.hits++;
      counters.hitUs += (now() - t) * 1000;
      return { outputs, outcome: 'hit' };
    }
    let settle!: (bytes: Uint8Array | undefined) => void;
    this.#inflight.set(key, new Promise((resolve) => (settle = resolve)));
    try {
      const t = now();
      const bytes = await this.#lookup(key, counters);
      const outputs = bytes && this.#decode(bytes, counters);
      if (bytes && outputs) {
        // Identical requests that came while this lookup ran share its answer.
        settle(bytes);
        counters.hits++;
        counters.hitUs += (now() - t) * 1000;
        return { outputs, outcome: 'hit' };
      }
      return await this.#miss(key, run, counters, (now() - t) * 1000, owner, settle);
    } finally {
      this.#inflight.delete(key);
      settle(undefined);
    }
  }

  /** What the store holds (all of it, or `owner`'s entries; where known) and the errors counted. */
  stats(owner?: string): ResponseCacheStats {
    return { kind: this.#store.kind, errors: this.#errors, ...this.#store.stats(owner) };
  }

  /** Lets stores in progress finish, then releases the store (a Redis connection); models using this cache then run uncached. */
  async close(): Promise<void> {
    await Promise.all(this.#storing);
    await this.#store.close();
  }

  /** The stored answer decoded; undefined (counted and reported as a failure) for bytes that are not an answer. */
  #decode(bytes: Uint8Array, counters: CacheCounters): Results | undefined {
    try {
      return decodeResults(bytes);
    } catch (e) {
      this.#report(e, counters);
      return undefined;
    }
  }

  /** The stored answer's bytes, undefined on a miss or a failed store (counted and reported). */
  async #lookup(key: string, counters: CacheCounters): Promise<Uint8Array | undefined> {
    try {
      const bytes = await this.#store.get(key);
      this.#warned = false;
      return bytes;
    } catch (e) {
      this.#report(e, counters);
      return undefined;
    }
  }

  async #miss(key: string, run: () => Promise<Results>, counters: CacheCounters, lookupUs: number, owner?: string, settle?: (bytes: Uint8Array) => void): Promise<{ outputs: Results; outcome: 'miss' }> {
    counters.misses++;
    counters.missUs += lookupUs;
    const outputs = await run();
    const t = now();
    const bytes = encodeResults(outputs);
    settle?.(bytes);
    const storing = this.#store.set(key, bytes, undefined, owner).then(
      () => void (counters.missUs += (now() - t) * 1000),
      (e) => this.#report(e, counters),
    );
    this.#storing.add(storing);
    void storing.finally(() => this.#storing.delete(storing));
    return { outputs, outcome: 'miss' };
  }

  #report(e: unknown, counters: CacheCounters): void {
    const error = e instanceof Error ? e : new Error(String(e));
    counters.errors++;
    this.#errors++;
    if (this.#onError) {
      this.#onError(error);
    } else if (!this.#warned) {
      this.#warned = true;
      process.emitWarning(`response cache (${this.#store.kind}) failed, requests run uncached until it answers again: ${error.message}`, 'KilnCacheWarning');
    }
  }
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new KilnError('E_ABORTED', 'request was aborted before it was answered'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new KilnError('E_ABORTED', 'request was aborted while an identical request ran'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** A cache from options: `{ local: { maxBytes, ttlMs? } }` or `{ redis: { url, ttlMs?, timeoutMs?, prefix? } }`. */
export function createResponseCache(options: ResponseCacheOptions): ResponseCache {
  const r = OptionReader.of(options, 'responseCache', ['local', 'redis', 'onError']);
  const onError = r.raw('onError');
  if (onError !== undefined && typeof onError !== 'function') throw optionError('responseCache.onError', 'a function', onError);
  const report = onError as ((error: Error) => void) | undefined;
  if ((r.raw('local') === undefined) === (r.raw('redis') === undefined)) {
    throw optionError('responseCache', 'one of { local: { maxBytes, ttlMs } } or { redis: { url, ttlMs, timeoutMs, prefix } }', options);
  }
  if (r.raw('local') !== undefined) {
    const l = OptionReader.of(r.raw('local'), 'responseCache.local', ['maxBytes', 'ttlMs']);
    const maxBytes = l.int('maxBytes', 1);
    if (maxBytes === undefined) throw optionError('responseCache.local.maxBytes', 'an integer >= 1', maxBytes);
    return new ResponseCache(new LocalStore({ maxBytes, ttlMs: l.int('ttlMs', 1) }), report);
  }
  const s = OptionReader.of(r.raw('redis'), 'responseCache.redis', ['url', 'ttlMs', 'timeoutMs', 'prefix']);
  const url = s.string('url');
  if (url === undefined || !/^rediss?:\/\//.test(url)) throw optionError('responseCache.redis.url', 'a redis:// or rediss:// URL', url);
  // node-redis loads only when a Redis cache is made.
  const { RedisStore } = require('./redis-store') as typeof import('./redis-store');
  const store = new RedisStore({ url, ttlMs: s.int('ttlMs', 1), timeoutMs: s.int('timeoutMs', 1), prefix: s.string('prefix'), onError: report });
  return new ResponseCache(store, report);
}

let defaultCache: ResponseCache | undefined;

/** The process-wide cache that `responseCache: true` uses: in-process, 64 MiB. */
export function defaultResponseCache(): ResponseCache {
  return (defaultCache ??= createResponseCache({ local: { maxBytes: 64 * 1024 * 1024 } }));
}

/**
 * Where the response cache keeps its entries: one interface, an in-process store here and
 * a Redis store in redis-store.ts (loaded only when used).
 */
import { LRUCache } from 'lru-cache';

export interface CacheStoreStats {
  entries: number;
  bytes: number;
}

export interface CacheStore {
  /** 'local' or 'redis'. */
  readonly kind: string;
  get(key: string): Promise<Uint8Array | undefined>;
  /** Stores `value` (the store may keep it without copying); ttlMs: the store's default when omitted. */
  set(key: string, value: Uint8Array, ttlMs?: number): Promise<void>;
  /** What the store holds, where this process can know it (not for a shared Redis). */
  stats(): CacheStoreStats | undefined;
  close(): Promise<void>;
}

export interface LocalStoreOptions {
  /** Budget of value and key bytes; least recently used entries are evicted beyond it. */
  maxBytes: number;
  /** Entries expire this long after they were stored (default: never). */
  ttlMs?: number;
}

/** An in-process store: LRU eviction under a byte budget, optional TTL. */
export class LocalStore implements CacheStore {
  readonly kind = 'local';
  readonly #lru: LRUCache<string, Uint8Array>;

  constructor(options: LocalStoreOptions) {
    this.#lru = new LRUCache<string, Uint8Array>({
      maxSize: options.maxBytes,
      sizeCalculation: (value, key) => value.byteLength + key.length,
      ttl: options.ttlMs,
    });
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#lru.get(key));
  }

  set(key: string, value: Uint8Array, ttlMs?: number): Promise<void> {
    // An entry larger than the whole budget is not kept (lru-cache skips it).
    this.#lru.set(key, value, ttlMs === undefined ? undefined : { ttl: ttlMs });
    return Promise.resolve();
  }

  stats(): CacheStoreStats {
    return { entries: this.#lru.size, bytes: this.#lru.calculatedSize };
  }

  close(): Promise<void> {
    this.#lru.clear();
    return Promise.resolve();
  }
}

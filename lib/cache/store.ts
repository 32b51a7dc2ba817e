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
  /**
   * Stores `value` (the store may keep it without copying); ttlMs: the store's default when
   * omitted; `owner`: whose entry it is (a model), for stats(owner).
   */
  set(key: string, value: Uint8Array, ttlMs?: number, owner?: string): Promise<void>;
  /** What the store holds (all of it, or `owner`'s entries), where this process can know it (not for a shared Redis). */
  stats(owner?: string): CacheStoreStats | undefined;
  close(): Promise<void>;
}

export interface LocalStoreOptions {
  /** Budget of value and key bytes; least recently used entries are evicted beyond it. */
  maxBytes: number;
  /** Entries expire this long after they were stored (default: never). */
  ttlMs?: number;
}

interface Held {
  value: Uint8Array;
  owner: string;
}

/**
 * An in-process store: LRU eviction under a byte budget, optional TTL. Entries and bytes are
 * also counted per owner (the models sharing the store), kept up to date by lru-cache's
 * dispose callback on every eviction, expiry, replacement and deletion.
 */
export class LocalStore implements CacheStore {
  readonly kind = 'local';
  readonly #lru: LRUCache<string, Held>;
  readonly #owners = new Map<string, CacheStoreStats>();

  constructor(options: LocalStoreOptions) {
    this.#lru = new LRUCache<string, Held>({
      maxSize: options.maxBytes,
      sizeCalculation: (held, key) => entryBytes(held, key),
      ttl: options.ttlMs,
      dispose: (held, key) => this.#count(held, key, -1),
    });
  }

  get(key: string): Promise<Uint8Array | undefined> {
    return Promise.resolve(this.#lru.get(key)?.value);
  }

  set(key: string, value: Uint8Array, ttlMs?: number, owner = ''): Promise<void> {
    const held: Held = { value, owner };
    // An entry larger than the whole budget is not kept (lru-cache skips it).
    this.#lru.set(key, held, ttlMs === undefined ? undefined : { ttl: ttlMs });
    if (this.#lru.peek(key, { allowStale: true }) === held) this.#count(held, key, 1);
    return Promise.resolve();
  }

  stats(owner?: string): CacheStoreStats {
    if (owner !== undefined) return { ...(this.#owners.get(owner) ?? { entries: 0, bytes: 0 }) };
    return { entries: this.#lru.size, bytes: this.#lru.calculatedSize };
  }

  close(): Promise<void> {
    this.#lru.clear();
    return Promise.resolve();
  }

  #count(held: Held, key: string, sign: 1 | -1): void {
    const c = this.#owners.get(held.owner) ?? { entries: 0, bytes: 0 };
    c.entries += sign;
    c.bytes += sign * entryBytes(held, key);
    if (c.entries === 0) this.#owners.delete(held.owner);
    else this.#owners.set(held.owner, c);
  }
}

function entryBytes(held: Held, key: string): number {
  return held.value.byteLength + key.length;
}

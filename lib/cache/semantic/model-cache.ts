/**
 * A model's use of a semantic cache: each request's vector (from the embedding source), the
 * nearest entry of its partition, and the verification of a fraction of hits. Entries hold
 * encoded results (lib/cache/codec.ts), so every hit decodes into tensors no other caller
 * shares. A vector that cannot be made (an all-zero input has no direction; an embedding
 * model that is not loaded) never fails a request: it runs uncached and counts as an error.
 */
import type { ResolvedSemanticCache } from '../../batching/config';
import type { Feeds, Results } from '../../session';
import { decodeResults, encodeResults } from '../codec';
import { embedder, inputEmbedder, type EmbeddingFeeds } from './embedding';
import { SemanticCache } from './index';
import { Verifier } from './verify';

/** A model's semantic cache counters; `entries`: what its cache holds (a shared cache's total). */
export interface SemanticCacheCounters {
  hits: number;
  misses: number;
  /** Verified hits whose cached answer differed from a fresh run's. */
  falseHits: number;
  /** Hits re-run and compared. */
  verified: number;
  /** Requests whose vector could not be made (they ran uncached, and are not in hits or misses). */
  errors: number;
  /** Entries and their bytes (answers and vectors) held: the model's own caches', or a shared cache's totals. */
  entries: number;
  bytes: number;
}

export type SemanticLookup =
  | { hit: true; outputs: Results; similarity: number }
  | { hit: false; vector: Float32Array | undefined };

export class ModelSemanticCache {
  readonly #config: ResolvedSemanticCache;
  readonly #key: string;
  readonly #embed: (feeds: EmbeddingFeeds) => Promise<Float32Array>;
  /** For sources computed from the feeds alone: the vector written into #scratch, synchronously. */
  readonly #embedInput: ((feeds: EmbeddingFeeds, into?: Float32Array) => Float32Array) | undefined;
  /**
   * Reused by every lookup of an input source: the lookup runs from the vector's making to the
   * index without an await, so no other request writes it meanwhile; a miss takes a copy to
   * insert later.
   */
  #scratch: Float32Array | undefined;
  /** The model's own caches by vector length, when none is shared. */
  readonly #own = new Map<number, SemanticCache<Uint8Array>>();
  readonly #verifier: Verifier;
  #hits = 0;
  #misses = 0;
  #errors = 0;

  constructor(config: ResolvedSemanticCache, key: string) {
    this.#config = config;
    this.#key = key;
    this.#embed = embedder(config.embedding);
    this.#embedInput = inputEmbedder(config.embedding);
    this.#verifier = new Verifier({ verifyFraction: config.verifyFraction, how: config.verify });
  }

  /**
   * The partition of a request: the model, the tenant, and the request's input dims (a
   * cached answer has the rows and shape of the request that made it).
   */
  partition(tenant: string, feeds: Feeds): string {
    const dims = Object.entries(feeds).map(([name, t]) => [name, t.dims]);
    // JSON keeps the parts apart whatever characters a model name or a tenant contains.
    return JSON.stringify([this.#key, tenant, dims]);
  }

  /** A copy of the nearest cached answer when near enough; else the vector to insert the answer under. */
  async lookup(partition: string, feeds: Feeds): Promise<SemanticLookup> {
    let vector: Float32Array;
    try {
      if (this.#embedInput) {
        vector = this.#embedInput(feeds, this.#scratch);
        this.#scratch = vector;
      } else {
        vector = await this.#embed(feeds);
      }
    } catch {
      this.#errors++;
      return { hit: false, vector: undefined };
    }
    const found = this.#cacheFor(vector.length)?.lookup(partition, vector);
    if (!found) {
      this.#misses++;
      return { hit: false, vector: vector === this.#scratch ? vector.slice() : vector };
    }
    this.#hits++;
    return { hit: true, outputs: decodeResults(found.value), similarity: found.similarity };
  }

  /** Stores a miss's answer (a copy) under its vector. */
  insert(partition: string, vector: Float32Array, outputs: Results): void {
    this.#cacheFor(vector.length, true)?.insert(partition, vector, encodeResults(outputs));
  }

  /** Whether the hit at hand is one to verify (verifyFraction of them). */
  shouldVerify(): boolean {
    return this.#verifier.shouldVerify();
  }

  /** Counts a verified hit: the cached answer against a fresh run's. */
  record(cached: Results, fresh: Results): void {
    this.#verifier.record(cached, fresh);
  }

  stats(): SemanticCacheCounters {
    const shared = this.#config.cache;
    let entries = 0;
    let bytes = 0;
    for (const c of shared ? [shared] : this.#own.values()) {
      const s = c.stats();
      entries += s.entries;
      bytes += s.bytes;
    }
    return { hits: this.#hits, misses: this.#misses, falseHits: this.#verifier.falseHits, verified: this.#verifier.checked, errors: this.#errors, entries, bytes };
  }

  /**
   * The cache for vectors of `length`: the shared one (undefined when its dimensions differ:
   * such requests are misses), or the model's own, made on first insert.
   */
  #cacheFor(length: number, create = false): SemanticCache<Uint8Array> | undefined {
    const c = this.#config;
    if (c.cache) return c.cache.dimensions === length ? c.cache : undefined;
    let own = this.#own.get(length);
    if (!own && create) {
      own = new SemanticCache<Uint8Array>({ dimensions: length, threshold: c.threshold, metric: c.metric, capacity: c.capacity, ttlMs: c.ttlMs, sizeOf: (v) => v.byteLength });
      this.#own.set(length, own);
    }
    return own;
  }
}

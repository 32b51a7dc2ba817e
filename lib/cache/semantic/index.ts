/**
 * The semantic cache: values keyed by vectors, found again by a near (not only an identical)
 * vector. A lookup returns the nearest entry of the caller's partition when it is similar
 * enough (cosine similarity at or above the threshold, or L2 distance at or below it).
 * Partitions (model, version, output selection, tenant: whatever the caller puts in the
 * partition string) each have their own vector index, so a lookup can never return another
 * partition's entry.
 *
 * Nearest neighbours come from usearch's HNSW index over quantized vectors (int8 for cosine,
 * float16 for L2); its few nearest candidates are re-ranked on the exact vectors. Its remove() is not used: in the version
 * we ship, removing keys while adding others makes later removes fail silently (the key stays
 * searchable) and can make add() loop forever. Entries are therefore removed here only (a
 * removed entry's key stays in the index as a "ghost" that lookups skip), and a partition's
 * index is rebuilt from its live entries once ghosts outnumber them, which costs at most one
 * extra insertion per removal. The live vectors are kept in JS for that rebuild, for exact
 * similarities (the threshold test is decided in float64 on the stored vector, not on the
 * index's float32 distance) and for small partitions, which are scanned linearly because
 * below SCAN_WORK multiply-adds a scan beats a call into the index.
 */
import { Index, MetricKind, ScalarKind } from 'usearch';
import { KilnError } from '../../errors';

export interface SemanticCacheOptions {
  /** Length of every vector. */
  dimensions: number;
  /** 'cosine' (default) or 'l2' (Euclidean distance). */
  metric?: 'cosine' | 'l2';
  /** A hit needs a cosine similarity >= threshold (in [-1, 1]), or an L2 distance <= threshold (>= 0). */
  threshold: number;
  /** Most entries held over all partitions; the least recently hit or inserted goes first. Default 100 000. */
  capacity?: number;
  /** Entries older than this (ms since insertion) are never returned, and are removed when met. Default: no expiry. */
  ttlMs?: number;
  /** HNSW graph connectivity (usearch's M); default usearch's (16). */
  connectivity?: number;
  /** Clock for TTLs, in ms; default Date.now. */
  now?: () => number;
}

export interface SemanticHit<V> {
  value: V;
  /** Cosine similarity (metric 'cosine') or L2 distance (metric 'l2'): the number compared with the threshold. */
  similarity: number;
  /** The entry's id, as insert() returned it. */
  id: number;
}

export interface SemanticCacheStats {
  entries: number;
  partitions: number;
  hits: number;
  misses: number;
  /** Entries dropped for capacity. */
  evictions: number;
  /** Entries dropped because their TTL had passed. */
  expirations: number;
}

interface Entry<V> {
  id: number;
  partition: Partition<V>;
  value: V;
  /** Normalized for cosine. */
  vector: Float32Array;
  expiresAt: number;
}

interface Partition<V> {
  name: string;
  index: Index;
  live: Map<number, Entry<V>>;
  /** Removed entries whose keys are still in `index`. */
  ghosts: number;
}

/** Below this many multiply-adds (entries × dimensions) a partition is scanned, not searched. */
const SCAN_WORK = 4096;
/** Ghosts tolerated in a partition before a rebuild, however few entries are live. */
const MIN_GHOSTS_BEFORE_REBUILD = 256;
/** Keys asked of the index at first when a partition has ghosts; doubled while all returned are ghosts. */
const FIRST_K_WITH_GHOSTS = 4;
/**
 * Candidates asked of the index per lookup and re-ranked on the exact float32 vectors: the
 * index holds quantized vectors (see #newIndex), whose order can differ from the exact one
 * between near-equal candidates.
 */
const CANDIDATES = 8;
const DEFAULT_CAPACITY = 100_000;

function invalid(message: string): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `semantic cache: ${message}`);
}

export class SemanticCache<V> {
  readonly dimensions: number;
  readonly metric: 'cosine' | 'l2';
  readonly threshold: number;
  readonly capacity: number;
  readonly ttlMs: number;
  readonly #connectivity: number;
  readonly #now: () => number;
  readonly #partitions = new Map<string, Partition<V>>();
  /** Every live entry, least recently used first (a Map iterates in insertion order). */
  readonly #entries = new Map<number, Entry<V>>();
  #nextId = 1;
  #hits = 0;
  #misses = 0;
  #evictions = 0;
  #expirations = 0;

  constructor(options: SemanticCacheOptions) {
    const { dimensions, metric = 'cosine', threshold, capacity = DEFAULT_CAPACITY, ttlMs = Infinity, connectivity = 0, now = Date.now } = options;
    if (!Number.isSafeInteger(dimensions) || dimensions < 1) throw invalid(`dimensions must be an integer >= 1, received ${String(dimensions)}`);
    if (metric !== 'cosine' && metric !== 'l2') throw invalid(`metric must be "cosine" or "l2", received ${String(metric)}`);
    if (typeof threshold !== 'number' || (metric === 'cosine' ? !(threshold >= -1 && threshold <= 1) : !(threshold >= 0 && threshold < Infinity))) {
      throw invalid(`threshold must be ${metric === 'cosine' ? 'a cosine similarity in [-1, 1]' : 'an L2 distance >= 0'}, received ${String(threshold)}`);
    }
    if (!(capacity >= 1) || (capacity !== Infinity && !Number.isSafeInteger(capacity))) throw invalid(`capacity must be an integer >= 1, received ${String(capacity)}`);
    if (!(ttlMs > 0)) throw invalid(`ttlMs must be > 0, received ${String(ttlMs)}`);
    if (!Number.isSafeInteger(connectivity) || connectivity < 0) throw invalid(`connectivity must be an integer >= 0, received ${String(connectivity)}`);
    if (typeof now !== 'function') throw invalid('now must be a function returning milliseconds');
    this.dimensions = dimensions;
    this.metric = metric;
    this.threshold = threshold;
    this.capacity = capacity;
    this.ttlMs = ttlMs;
    this.#connectivity = connectivity;
    this.#now = now;
  }

  /** Entries held, over all partitions (expired ones not yet met included). */
  get size(): number {
    return this.#entries.size;
  }

  /** The nearest live entry of `partition` when it passes the threshold; a hit makes it the most recently used. */
  lookup(partition: string, vector: Float32Array): SemanticHit<V> | undefined {
    const query = this.#checkVector(vector, 'lookup');
    const p = this.#partitions.get(checkPartition(partition));
    const nearest = p && this.#nearest(p, query);
    if (nearest && this.#passes(nearest.similarity)) {
      this.#hits++;
      this.#entries.delete(nearest.entry.id);
      this.#entries.set(nearest.entry.id, nearest.entry);
      return { value: nearest.entry.value, similarity: nearest.similarity, id: nearest.entry.id };
    }
    this.#misses++;
    return undefined;
  }

  /** Stores `value` under `vector` in `partition`; returns the new entry's id. May evict the least recently used entry. */
  insert(partition: string, vector: Float32Array, value: V): number {
    const stored = this.#checkVector(vector, 'insert');
    const name = checkPartition(partition);
    let p = this.#partitions.get(name);
    if (!p) {
      p = { name, index: this.#newIndex(), live: new Map(), ghosts: 0 };
      this.#partitions.set(name, p);
    }
    const id = this.#nextId++;
    const entry: Entry<V> = { id, partition: p, value, vector: stored, expiresAt: this.#now() + this.ttlMs };
    p.index.add(BigInt(id), stored, 1);
    p.live.set(id, entry);
    this.#entries.set(id, entry);
    while (this.#entries.size > this.capacity) {
      const oldest = this.#entries.values().next().value as Entry<V>;
      this.#drop(oldest);
      this.#evictions++;
    }
    return id;
  }

  /** Removes entry `id`; false when there is none (removed, evicted or never inserted). */
  remove(id: number): boolean {
    const entry = this.#entries.get(id);
    if (!entry) return false;
    this.#drop(entry);
    return true;
  }

  /** Removes every entry; the counters stay. */
  clear(): void {
    this.#entries.clear();
    this.#partitions.clear();
  }

  stats(): SemanticCacheStats {
    return {
      entries: this.#entries.size,
      partitions: this.#partitions.size,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      expirations: this.#expirations,
    };
  }

  #passes(similarity: number): boolean {
    return this.metric === 'cosine' ? similarity >= this.threshold : similarity <= this.threshold;
  }

  /** The nearest unexpired entry of `p` and its similarity; expired entries met on the way are removed. */
  #nearest(p: Partition<V>, query: Float32Array): { entry: Entry<V>; similarity: number } | undefined {
    const now = this.#now();
    for (;;) {
      if (p.live.size === 0) return undefined;
      const entry = p.live.size * this.dimensions <= SCAN_WORK ? this.#scan(p, query) : this.#search(p, query);
      if (!entry) return undefined;
      if (entry.expiresAt > now) return { entry, similarity: vectorSimilarity(query, entry.vector, this.metric) };
      this.#drop(entry);
      this.#expirations++;
    }
  }

  #scan(p: Partition<V>, query: Float32Array): Entry<V> | undefined {
    let best: Entry<V> | undefined;
    let bestSimilarity = 0;
    for (const entry of p.live.values()) {
      const s = vectorSimilarity(query, entry.vector, this.metric);
      if (!best || (this.metric === 'cosine' ? s > bestSimilarity : s < bestSimilarity)) {
        best = entry;
        bestSimilarity = s;
      }
    }
    return best;
  }

  /** The live entry nearest to `query` (by exact similarity) among the index's nearest candidates. */
  #search(p: Partition<V>, query: Float32Array): Entry<V> | undefined {
    const indexed = p.live.size + p.ghosts;
    for (let k = Math.min(CANDIDATES + (p.ghosts === 0 ? 0 : FIRST_K_WITH_GHOSTS), indexed); ; k = Math.min(2 * k, indexed)) {
      const { keys } = p.index.search(query, k, 1);
      let best: Entry<V> | undefined;
      let bestSimilarity = 0;
      for (const key of keys) {
        const entry = p.live.get(Number(key));
        if (!entry) continue;
        const s = vectorSimilarity(query, entry.vector, this.metric);
        if (!best || (this.metric === 'cosine' ? s > bestSimilarity : s < bestSimilarity)) {
          best = entry;
          bestSimilarity = s;
        }
      }
      if (best || k >= indexed) return best;
    }
  }

  #drop(entry: Entry<V>): void {
    const p = entry.partition;
    this.#entries.delete(entry.id);
    p.live.delete(entry.id);
    p.ghosts++;
    if (p.live.size === 0) {
      if (this.#partitions.get(p.name) === p) this.#partitions.delete(p.name);
    } else if (p.ghosts > Math.max(p.live.size, MIN_GHOSTS_BEFORE_REBUILD)) {
      this.#rebuild(p);
    }
  }

  /** A fresh index over the live entries of `p`, without its ghosts. */
  #rebuild(p: Partition<V>): void {
    const keys = new BigUint64Array(p.live.size);
    const vectors = new Float32Array(p.live.size * this.dimensions);
    let i = 0;
    for (const entry of p.live.values()) {
      keys[i] = BigInt(entry.id);
      vectors.set(entry.vector, i * this.dimensions);
      i++;
    }
    p.index = this.#newIndex();
    p.index.add(keys, vectors, 0);
    p.ghosts = 0;
  }

  /**
   * Cosine indexes store int8 vectors (usearch scales each to unit length, then to ±127), L2
   * indexes float16 (int8's rescaling would change distances): a search is bound by memory
   * traffic over the graph's vectors, and 1 or 2 bytes a component instead of 4 make it 2-4
   * times faster at equal recall; candidates are re-ranked on the exact vectors.
   */
  #newIndex(): Index {
    return this.metric === 'cosine'
      ? new Index(this.dimensions, MetricKind.Cos, ScalarKind.I8, this.#connectivity)
      : new Index(this.dimensions, MetricKind.L2sq, ScalarKind.F16, this.#connectivity);
  }

  /** A copy of `vector` (unit length for cosine) after checking it. */
  #checkVector(vector: Float32Array, what: string): Float32Array {
    if (!(vector instanceof Float32Array)) throw invalid(`${what}: vector must be a Float32Array, received ${vector === null ? 'null' : typeof vector === 'object' ? (vector as object).constructor?.name ?? 'object' : typeof vector}`);
    if (vector.length !== this.dimensions) throw invalid(`${what}: vector must have ${this.dimensions} dimensions, received ${vector.length}`);
    let sum = 0;
    for (let i = 0; i < vector.length; i++) {
      const x = vector[i];
      if (!Number.isFinite(x)) throw invalid(`${what}: vector[${i}] is ${x}; every element must be finite`);
      sum += x * x;
    }
    if (this.metric === 'l2') return vector.slice();
    if (sum === 0) throw invalid(`${what}: vector is all zeros, which has no direction for cosine similarity`);
    const out = new Float32Array(vector.length);
    const scale = 1 / Math.sqrt(sum);
    for (let i = 0; i < vector.length; i++) out[i] = vector[i] * scale;
    return out;
  }
}

function checkPartition(partition: string): string {
  if (typeof partition !== 'string') throw invalid(`partition must be a string, received ${typeof partition}`);
  return partition;
}

/** Cosine similarity of unit vectors (the dot product), or L2 distance; in float64. */
export function vectorSimilarity(a: Float32Array, b: Float32Array, metric: 'cosine' | 'l2'): number {
  let sum = 0;
  if (metric === 'cosine') {
    for (let i = 0; i < a.length; i++) sum += a[i] * b[i];
    return Math.min(1, Math.max(-1, sum));
  }
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    sum += d * d;
  }
  return Math.sqrt(sum);
}

/**
 * The semantic cache: values keyed by vectors, found again by a near (not only an identical)
 * vector. A lookup returns the nearest entry of the caller's partition when it is similar
 * enough (cosine similarity at or above the threshold, or L2 distance at or below it).
 * Partitions (model, version, output selection, tenant: whatever the caller puts in the
 * partition string) each have their own vector index, so a lookup can never return another
 * partition's entry.
 *
 * Nearest neighbours come from usearch's HNSW index over quantized vectors (int8 for cosine,
 * float16 for L2); its few nearest candidates are re-ranked on the exact vectors. Long vectors
 * (an image input flattened: 69 120 values for a PP-OCR line) are indexed by a sketch of
 * INDEX_DIMENSIONS values instead (see Sketch), so a search costs the same whatever the
 * vector length, and int8 keeps its precision (a 69 120-value unit vector scaled to ±127 rounds
 * almost every component to 0 or ±1). Vectors longer than RERANK_DIMENSIONS also keep a
 * sketch of that length, on which the index's candidates are ranked before the few nearest
 * are compared on their whole vectors (each such comparison is a pass over 69 120 values). Its remove() is not used: in the version
 * we ship, removing keys while adding others makes later removes fail silently (the key stays
 * searchable) and can make add() loop forever. Entries are therefore removed here only (a
 * removed entry's key stays in the index as a "ghost" that lookups skip), and a partition's
 * index is rebuilt from its live entries once ghosts outnumber them, which costs at most one
 * extra insertion per removal. The live vectors are kept in JS for that rebuild, for exact
 * similarities (the threshold test is decided in float64 on the stored vector, not on the
 * index's float32 distance or a sketch's estimate) and for small partitions, which are
 * scanned linearly because below SCAN_WORK multiply-adds a scan beats a call into the index.
 * A sketch can only change which near entry is chosen or turn a hit into a miss, never make
 * a hit of an entry below the threshold.
 */
import { Index, MetricKind, ScalarKind } from 'usearch';
import { KilnError } from '../../errors';

export interface SemanticCacheOptions<V = unknown> {
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
  /**
   * Length of what the index holds: vectors longer than this are indexed by a sketch of this
   * length (default INDEX_DIMENSIONS, 64; vectors of at most that length are indexed whole).
   */
  indexDimensions?: number;
  /** HNSW graph connectivity (usearch's M); default usearch's (16). */
  connectivity?: number;
  /**
   * Candidates a search keeps while walking the graph (usearch's expansion_search, HNSW's
   * ef); default DEFAULT_EXPANSION_SEARCH (32). Lower is faster and finds the nearest entry
   * less often (a lookup that misses it is a miss or a less similar hit, never a hit below
   * the threshold).
   */
  expansionSearch?: number;
  /** Clock for TTLs, in ms; default Date.now. */
  now?: () => number;
  /** Bytes a value takes, for stats().bytes (default: values count 0; vectors always count). */
  sizeOf?: (value: V) => number;
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
  /** Bytes held: the vectors (and sketches) kept in JS, and the values as `sizeOf` counts them; not usearch's graph. */
  bytes: number;
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
  /** What the index holds for it: `vector` itself, or its sketch. */
  key: Float32Array;
  /** Vectors longer than RERANK_DIMENSIONS: their sketch of that length, else `vector`. */
  rerank: Float32Array;
  expiresAt: number;
  bytes: number;
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
/**
 * usearch's default expansion_search is 64. On 100 000 random 256-value vectors (64-value
 * sketches indexed), 64 found a query's own entry 1000 times in 1000 in 332 µs, 32 999 times
 * in 141 µs, 16 987 times in 102 µs (docs/cache.md): 32 keeps recall and takes 2.4 times less.
 */
const DEFAULT_EXPANSION_SEARCH = 32;
/**
 * Vectors longer than this are indexed (and scanned) by a sketch of this many values. A
 * search walks the HNSW graph comparing vectors, so shorter ones make it cheaper, and a near
 * copy stays the nearest of its sketch: on random 256-value vectors a 64-value sketch made
 * lookups faster and found more queries' own entries than the whole vectors (docs/cache.md,
 * "Lookup cost against index size").
 */
export const INDEX_DIMENSIONS = 64;
/**
 * Vectors longer than this keep a sketch of this many values, on which the index's candidates
 * are ranked; only those within RERANK_MARGIN of the best are compared on whole vectors. With
 * the index's 64-value sketches alone, lines of text (all alike: cosine 0.45-0.85 to each
 * other) left most of the 8 candidates within any safe margin, and their whole-vector
 * comparisons made a lookup 2.3 times slower than with this step.
 */
export const RERANK_DIMENSIONS = 1024;
/**
 * A sketch of n values estimates the difference between two candidates' similarities with a
 * standard deviation of about sqrt(|a - b|² / n): 0.02 for entries at cosine 0.8 of each
 * other and n = 1024. Candidates more than 0.0625 (2/sqrt(1024), three of those) below the
 * best are not compared on whole vectors.
 */
const RERANK_MARGIN = 2 / Math.sqrt(RERANK_DIMENSIONS);

/**
 * A count sketch (feature hashing with random signs): component i of a vector is added, with
 * sign ±1, to one of `out` buckets. Inner products of sketches estimate those of the vectors
 * without bias (the error falls as 1/sqrt(out)); computing one is a single pass over the
 * vector, with no matrix. Buckets and signs come from a fixed seed, so equal vectors always
 * have equal sketches.
 */
class Sketch {
  readonly #bucket: Int32Array;
  readonly #sign: Float32Array;
  readonly #out: number;
  readonly #unit: boolean;

  /** `unit`: scale sketches to unit length (cosine); else keep their scale (L2 distances). */
  constructor(dimensions: number, out: number, unit: boolean) {
    this.#out = out;
    this.#unit = unit;
    this.#bucket = new Int32Array(dimensions);
    this.#sign = new Float32Array(dimensions);
    let state = 0x9e3779b9;
    for (let i = 0; i < dimensions; i++) {
      // xorshift32: a fixed, well-spread sequence (no cryptographic need).
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      const u = state >>> 0;
      this.#bucket[i] = u % out;
      this.#sign[i] = (u & 0x80000000) === 0 ? 1 : -1;
    }
  }

  /**
   * The sketch of `v`, unit length for cosine (a zero sketch, possible only in theory, then
   * becomes a unit vector on one axis: the index cannot hold a direction-less vector).
   */
  of(v: Float32Array): Float32Array {
    const acc = new Float64Array(this.#out);
    const bucket = this.#bucket;
    const sign = this.#sign;
    for (let i = 0; i < v.length; i++) acc[bucket[i]] += sign[i] * v[i];
    const out = new Float32Array(this.#out);
    if (!this.#unit) {
      out.set(acc);
      return out;
    }
    let sum = 0;
    for (let i = 0; i < acc.length; i++) sum += acc[i] * acc[i];
    if (sum === 0) {
      out[0] = 1;
      return out;
    }
    const scale = 1 / Math.sqrt(sum);
    for (let i = 0; i < acc.length; i++) out[i] = acc[i] * scale;
    return out;
  }
}

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
  readonly #expansionSearch: number;
  readonly #now: () => number;
  readonly #sizeOf: (value: V) => number;
  #bytes = 0;
  /** Set when vectors are longer than the index's length: from the rerank sketch when there is one, else from the vector. */
  readonly #sketch: Sketch | undefined;
  /** Set when vectors are longer than RERANK_DIMENSIONS. */
  readonly #rerankSketch: Sketch | undefined;
  readonly #indexDimensions: number;
  readonly #partitions = new Map<string, Partition<V>>();
  /** Every live entry, least recently used first (a Map iterates in insertion order). */
  readonly #entries = new Map<number, Entry<V>>();
  #nextId = 1;
  #hits = 0;
  #misses = 0;
  #evictions = 0;
  #expirations = 0;

  constructor(options: SemanticCacheOptions<V>) {
    const { dimensions, metric = 'cosine', threshold, capacity = DEFAULT_CAPACITY, ttlMs = Infinity, indexDimensions = INDEX_DIMENSIONS, connectivity = 0, expansionSearch = DEFAULT_EXPANSION_SEARCH, now = Date.now, sizeOf = () => 0 } = options;
    if (!Number.isSafeInteger(dimensions) || dimensions < 1) throw invalid(`dimensions must be an integer >= 1, received ${String(dimensions)}`);
    if (metric !== 'cosine' && metric !== 'l2') throw invalid(`metric must be "cosine" or "l2", received ${String(metric)}`);
    if (typeof threshold !== 'number' || (metric === 'cosine' ? !(threshold >= -1 && threshold <= 1) : !(threshold >= 0 && threshold < Infinity))) {
      throw invalid(`threshold must be ${metric === 'cosine' ? 'a cosine similarity in [-1, 1]' : 'an L2 distance >= 0'}, received ${String(threshold)}`);
    }
    if (!(capacity >= 1) || (capacity !== Infinity && !Number.isSafeInteger(capacity))) throw invalid(`capacity must be an integer >= 1, received ${String(capacity)}`);
    if (!(ttlMs > 0)) throw invalid(`ttlMs must be > 0, received ${String(ttlMs)}`);
    if (!Number.isSafeInteger(indexDimensions) || indexDimensions < 1) throw invalid(`indexDimensions must be an integer >= 1, received ${String(indexDimensions)}`);
    if (!Number.isSafeInteger(connectivity) || connectivity < 0) throw invalid(`connectivity must be an integer >= 0, received ${String(connectivity)}`);
    if (!Number.isSafeInteger(expansionSearch) || expansionSearch < 0) throw invalid(`expansionSearch must be an integer >= 0, received ${String(expansionSearch)}`);
    if (typeof now !== 'function') throw invalid('now must be a function returning milliseconds');
    if (typeof sizeOf !== 'function') throw invalid('sizeOf must be a function returning bytes');
    this.dimensions = dimensions;
    this.metric = metric;
    this.threshold = threshold;
    this.capacity = capacity;
    this.ttlMs = ttlMs;
    this.#connectivity = connectivity;
    this.#expansionSearch = expansionSearch;
    this.#now = now;
    this.#sizeOf = sizeOf;
    this.#indexDimensions = Math.min(dimensions, indexDimensions);
    const rerankDimensions = Math.max(RERANK_DIMENSIONS, this.#indexDimensions);
    this.#rerankSketch = dimensions > rerankDimensions ? new Sketch(dimensions, rerankDimensions, metric === 'cosine') : undefined;
    // A sketch of the rerank sketch is itself a count sketch of the vector (hashes and signs compose).
    this.#sketch = dimensions > indexDimensions ? new Sketch(Math.min(dimensions, rerankDimensions), this.#indexDimensions, metric === 'cosine') : undefined;
  }

  /** Entries held, over all partitions (expired ones not yet met included). */
  get size(): number {
    return this.#entries.size;
  }

  /** The nearest live entry of `partition` when it passes the threshold; a hit makes it the most recently used. */
  lookup(partition: string, vector: Float32Array): SemanticHit<V> | undefined {
    const query = this.#checkVector(vector, 'lookup', false);
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
    const stored = this.#checkVector(vector, 'insert', true);
    const name = checkPartition(partition);
    let p = this.#partitions.get(name);
    if (!p) {
      p = { name, index: this.#newIndex(), live: new Map(), ghosts: 0 };
      this.#partitions.set(name, p);
    }
    const id = this.#nextId++;
    const { key, rerank } = this.#keys(stored);
    const bytes = stored.byteLength + (key === stored ? 0 : key.byteLength) + (rerank === stored ? 0 : rerank.byteLength) + this.#sizeOf(value);
    const entry: Entry<V> = { id, partition: p, value, vector: stored, key, rerank, expiresAt: this.#now() + this.ttlMs, bytes };
    this.#bytes += bytes;
    p.index.add(BigInt(id), key, 1);
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
    this.#bytes = 0;
  }

  stats(): SemanticCacheStats {
    return {
      entries: this.#entries.size,
      bytes: this.#bytes,
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
    const { key: queryKey, rerank: queryRerank } = this.#keys(query);
    for (;;) {
      if (p.live.size === 0) return undefined;
      const candidates = p.live.size * this.#indexDimensions <= SCAN_WORK ? [...p.live.values()] : this.#search(p, queryKey);
      const nearest = this.#closest(candidates, query, queryRerank);
      if (!nearest) return undefined;
      if (nearest.entry.expiresAt > now) return nearest;
      this.#drop(nearest.entry);
      this.#expirations++;
    }
  }

  /** What the index holds for a vector (its key) and what candidates are ranked on (rerank). */
  #keys(vector: Float32Array): { key: Float32Array; rerank: Float32Array } {
    const rerank = this.#rerankSketch ? this.#rerankSketch.of(vector) : vector;
    return { key: this.#sketch ? this.#sketch.of(rerank) : rerank, rerank };
  }

  /**
   * The candidate nearest to `query` on the exact vectors. For vectors with a rerank sketch,
   * only the candidates whose sketched similarity is within RERANK_MARGIN of the best one's
   * are compared on whole vectors (usually one or two); for L2, whose distances have no fixed
   * scale, all of them.
   */
  #closest(candidates: readonly Entry<V>[], query: Float32Array, queryRerank: Float32Array): { entry: Entry<V>; similarity: number } | undefined {
    const ranked = this.#rerankSketch !== undefined && this.metric === 'cosine';
    const sketched = ranked ? candidates.map((entry) => vectorSimilarity(queryRerank, entry.rerank, 'cosine')) : [];
    const floor = ranked ? Math.max(...sketched) - RERANK_MARGIN : -Infinity;
    let best: { entry: Entry<V>; similarity: number } | undefined;
    for (const [i, entry] of candidates.entries()) {
      if (ranked && sketched[i] < floor) continue;
      const s = vectorSimilarity(query, entry.vector, this.metric);
      if (!best || (this.metric === 'cosine' ? s > best.similarity : s < best.similarity)) best = { entry, similarity: s };
    }
    return best;
  }

  /** The live entries among the index's nearest candidates to `queryKey`. */
  #search(p: Partition<V>, queryKey: Float32Array): Entry<V>[] {
    const indexed = p.live.size + p.ghosts;
    for (let k = Math.min(CANDIDATES + (p.ghosts === 0 ? 0 : FIRST_K_WITH_GHOSTS), indexed); ; k = Math.min(2 * k, indexed)) {
      const { keys } = p.index.search(queryKey, k, 1);
      const found: Entry<V>[] = [];
      for (const key of keys) {
        const entry = p.live.get(Number(key));
        if (entry) found.push(entry);
      }
      if (found.length > 0 || k >= indexed) return found;
    }
  }

  #drop(entry: Entry<V>): void {
    const p = entry.partition;
    this.#entries.delete(entry.id);
    this.#bytes -= entry.bytes;
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
    const vectors = new Float32Array(p.live.size * this.#indexDimensions);
    let i = 0;
    for (const entry of p.live.values()) {
      keys[i] = BigInt(entry.id);
      vectors.set(entry.key, i * this.#indexDimensions);
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
      ? new Index({ dimensions: this.#indexDimensions, metric: MetricKind.Cos, quantization: ScalarKind.I8, connectivity: this.#connectivity, expansion_add: 0, expansion_search: this.#expansionSearch, multi: false })
      : new Index({ dimensions: this.#indexDimensions, metric: MetricKind.L2sq, quantization: ScalarKind.F16, connectivity: this.#connectivity, expansion_add: 0, expansion_search: this.#expansionSearch, multi: false });
  }

  /**
   * `vector` checked, unit length for cosine: a copy when `keep` (insert holds on to it), else
   * possibly `vector` itself (a lookup only reads it; an embedding is usually unit already).
   */
  #checkVector(vector: Float32Array, what: string, keep: boolean): Float32Array {
    if (!(vector instanceof Float32Array)) throw invalid(`${what}: vector must be a Float32Array, received ${vector === null ? 'null' : typeof vector === 'object' ? (vector as object).constructor?.name ?? 'object' : typeof vector}`);
    if (vector.length !== this.dimensions) throw invalid(`${what}: vector must have ${this.dimensions} dimensions, received ${vector.length}`);
    let sum = 0;
    for (let i = 0; i < vector.length; i++) sum += vector[i] * vector[i];
    // float32 squares cannot overflow a float64 sum of any array that fits in memory, so the
    // sum is finite exactly when every element is (one pass, no test per element).
    if (!Number.isFinite(sum)) {
      const i = vector.findIndex((x) => !Number.isFinite(x));
      throw invalid(`${what}: vector[${i}] is ${vector[i]}; every element must be finite`);
    }
    if (this.metric === 'l2' || Math.abs(sum - 1) < 1e-6) return keep ? vector.slice() : vector;
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

/**
 * bench/semantic-lookup: what a SemanticCache lookup and insert cost against the number of
 * entries, and the memory an entry takes. Entries are random unit vectors (the hardest case
 * for an HNSW index: no low-dimensional structure); each query is an entry plus small noise,
 * so it has a true nearest entry and hits. Per size: median and p99 lookup time (µs), recall
 * (the query found its own entry), mean insert time while filling, and resident memory per
 * entry (RSS growth over the fill / entries: usearch's graph and vectors are native memory,
 * plus the JS-side copy of each vector kept for rebuilds and exact similarities).
 *
 * Each size is measured per --index-dims: 0 is the cache's default (a 64-value sketch of longer
 * vectors), a number N indexes sketches of N values (N >= dims: the whole vectors).
 *
 *   node dist/bench/semantic-lookup.js [--dims 256,1024] [--sizes 1000,10000,100000] [--queries 2000] [--index-dims 0,256]
 *     [--expansion 32]
 */
import { SemanticCache } from '../lib/cache/semantic';
import { INDEX_DIMENSIONS } from '../lib/cache/semantic/index';
import { prng } from '../lib/samples';
import { benchCommand, integerAtLeast, listOf } from './cli';
import { fmt, quantile } from './stats';

function unitVectors(n: number, dims: number, seed: number): Float32Array {
  const next = prng(seed);
  const out = new Float32Array(n * dims);
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = 0; j < dims; j++) {
      const x = next();
      out[i * dims + j] = x;
      sum += x * x;
    }
    const scale = 1 / Math.sqrt(sum);
    for (let j = 0; j < dims; j++) out[i * dims + j] *= scale;
  }
  return out;
}

interface Row {
  dims: number;
  indexDims: number;
  entries: number;
  lookupMedian: number;
  lookupP99: number;
  recall: number;
  insertMean: number;
  bytesPerEntry: number;
}

function measure(dims: number, indexDims: number, entries: number, queries: number, expansionSearch: number): Row {
  global.gc?.();
  const vectors = unitVectors(entries, dims, dims * 7919 + entries);
  const rssBefore = process.memoryUsage().rss;
  const cache = new SemanticCache<number>({ dimensions: dims, threshold: 0.9, capacity: entries, expansionSearch, ...(indexDims > 0 ? { indexDimensions: indexDims } : {}) });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < entries; i++) cache.insert('p', vectors.subarray(i * dims, (i + 1) * dims), i);
  const insertMean = Number(process.hrtime.bigint() - t0) / 1000 / entries;
  const bytesPerEntry = (process.memoryUsage().rss - rssBefore) / entries;
  const noise = prng(entries + dims);
  const times: number[] = [];
  let found = 0;
  for (let q = 0; q < queries; q++) {
    const i = Math.floor(((noise() + 1) / 2) * entries);
    const query = vectors.slice(i * dims, (i + 1) * dims).map((x) => x + (0.2 / Math.sqrt(dims)) * noise());
    const start = process.hrtime.bigint();
    const hit = cache.lookup('p', query);
    times.push(Number(process.hrtime.bigint() - start) / 1000);
    if (hit?.value === i) found++;
  }
  times.sort((a, b) => a - b);
  return { dims, indexDims: Math.min(dims, indexDims || INDEX_DIMENSIONS), entries, lookupMedian: quantile(times, 0.5), lookupP99: quantile(times, 0.99), recall: found / queries, insertMean, bytesPerEntry };
}

const program = benchCommand('semantic-lookup', 'SemanticCache lookup and insert cost, and memory per entry, against index size')
  .option('--dims <list>', 'vector dimensions, comma-separated', listOf(integerAtLeast(1)), [256, 1024])
  .option('--sizes <list>', 'entries in the index, comma-separated', listOf(integerAtLeast(1)), [1000, 10_000, 100_000])
  .option('--queries <n>', 'timed lookups per size', integerAtLeast(1), 2000)
  .option('--expansion <n>', 'the index\'s expansion_search (HNSW ef); 0: usearch\'s own default (64)', integerAtLeast(0), 32)
  .option('--index-dims <list>', 'what the index holds, comma-separated: 0 the default, N a sketch of N values (>= dims: whole vectors)', listOf(integerAtLeast(0)), [0])
  .parse();
const opts = program.opts<{ dims: number[]; sizes: number[]; queries: number; indexDims: number[]; expansion: number }>();

console.log('dims  index  entries   lookup median   lookup p99   recall   insert mean   memory/entry');
for (const dims of opts.dims) {
  for (const entries of opts.sizes) {
    for (const indexDims of opts.indexDims) {
      const r = measure(dims, indexDims, entries, opts.queries, opts.expansion);
      console.log(
        `${String(r.dims).padStart(4)}  ${String(r.indexDims).padStart(5)}  ${String(r.entries).padStart(7)}   ${fmt(r.lookupMedian).padStart(13)}   ${fmt(r.lookupP99).padStart(10)}   ${r.recall.toFixed(3).padStart(6)}   ${fmt(r.insertMean).padStart(11)}   ${(r.bytesPerEntry / 1024).toFixed(1).padStart(9)} KiB`,
      );
    }
  }
}

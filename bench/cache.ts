/**
 * bench/cache: the response caches on a replayed workload with repeats and near-duplicates.
 * A pool of distinct text lines is rendered for the PP-OCRv4 recognizer at one fixed width
 * (so every request has the same shape, batches, and shares one semantic partition); requests
 * are drawn Zipf-distributed over the pool (seeded); a share of them (default 50%) are
 * perturbed repeats of a line seen before (noise, ±1 px shift, brightness ±5%), the other
 * repeats byte-identical (see bench/cache-workload.ts). Contenders, each its own loadModel of
 * the recognizer, replay the same requests interleaved request by request (the order rotating):
 *   none       no cache
 *   exact      responseCache (in-process, sized to hold the whole workload)
 *   semantic   semanticCache, embedding 'input', cosine, --threshold
 *   both       both (the exact cache is asked first)
 * With --serve the four are models of one `kiln serve` (a child process, a local response
 * cache), asked over HTTP with binary tensors from this process (bench/cache-served.ts).
 * Each round loads fresh models (empty caches), warms them up, then replays. Per contender:
 * inference runs avoided (1 − inferenceCount ÷ requests, from model.stats()), latency of all
 * requests and of hits (median, p99, spread of the round medians), a hit's median over the
 * uncached contender's median, false hits (a hit whose ctcDecode text differs from what the
 * uncached contender read for the same request), and memory per entry (exact: the store's
 * bytes ÷ entries; semantic: heap + external memory released by clearing the cache ÷ entries;
 * served: kiln_cache_bytes ÷ kiln_cache_entries of each cache).
 *
 *   node --expose-gc dist/bench/cache.js [--pool 100] [--requests 400] [--near 0.5] [--zipf 1]
 *     [--threshold 0.72] [--width 480] [--concurrency 1] [--rounds 3] [--seed 14] [--serve]
 */
import * as os from 'os';
import * as path from 'path';
import { createResponseCache, loadModel, runtime, SemanticCache, type Model } from '../lib';
import { ctcDecode, loadKeys, OCR_MODELS, recPreprocess } from '../support/ppocr';
import { renderText } from '../support/text-image';
import { benchCommand, fractionBelow, integerAtLeast, positiveNumber } from './cli';
import { serveContenders, type ContenderClient } from './cache-served';
import { workload, type WorkloadRequest } from './cache-workload';
import { fmt, quantile, summarize, type Summary } from './stats';

const CONTENDERS = ['none', 'exact', 'semantic', 'both'] as const;
type Contender = (typeof CONTENDERS)[number];

interface Options {
  pool: number;
  requests: number;
  near: number;
  zipf: number;
  threshold: number;
  width: number;
  concurrency: number;
  rounds: number;
  seed: number;
  serve: boolean;
}

interface Tally {
  requests: number;
  runs: number;
  hits: number;
  semanticHits: number;
  falseHits: number;
  /** Hits of near-duplicate requests. */
  nearHits: number;
  /** Hits of a line's first request: another line's answer, whatever its text. */
  firstHits: number;
  /** Requests the uncached recognizer read differently from the rendered line. */
  misread: number;
  latency: number[][];
  hitLatency: number[][];
  /** Exact: the store's bytes ÷ entries. */
  bytesPerEntry: number[];
  /** Semantic: heap + external bytes released by clearing it ÷ entries. */
  semanticBytesPerEntry: number[];
}

const keys = loadKeys();

/** One round's contenders (empty caches), and what each cache holds per entry once the round is over. */
interface Round {
  clients: Record<Contender, ContenderClient>;
  /** Memory per entry of `c`'s caches; releases `c` (in-process). */
  finish(c: Contender): Promise<{ exact?: number; semantic?: number }>;
  close(): Promise<void>;
}

const hasExact = (c: Contender): boolean => c === 'exact' || c === 'both';
const hasSemantic = (c: Contender): boolean => c === 'semantic' || c === 'both';

/** Each contender its own loadModel of the recognizer, in this process. */
async function inProcessRound(o: Options): Promise<Round> {
  const loaded = {} as Record<Contender, { model: Model; semantic?: SemanticCache<Uint8Array> }>;
  for (const c of CONTENDERS) {
    const responseCache = hasExact(c) ? createResponseCache({ local: { maxBytes: 4 * 2 ** 30 } }) : undefined;
    const semantic = hasSemantic(c) ? new SemanticCache<Uint8Array>({ dimensions: 3 * 48 * o.width, threshold: o.threshold, capacity: o.requests + 16 }) : undefined;
    const model = await loadModel(OCR_MODELS.rec, { maxBatchSize: Math.max(1, o.concurrency), ...(responseCache && { responseCache }), ...(semantic && { semanticCache: { cache: semantic } }) });
    loaded[c] = { model, semantic };
  }
  const client = (c: Contender): ContenderClient => ({
    async infer(x, partition) {
      const { outputs, cache } = await loaded[c].model.infer({ x }, { withCacheInfo: true, partition });
      const y = Object.values(outputs)[0];
      return { y: { data: y.data as Float32Array, dims: [...y.dims] }, outcome: cache.outcome };
    },
    inferenceCount: () => Promise.resolve(loaded[c].model.stats().inferenceCount),
    bytesPerEntry: () => Promise.resolve({}),
  });
  return {
    clients: Object.fromEntries(CONTENDERS.map((c) => [c, client(c)])) as Record<Contender, ContenderClient>,
    async finish(c) {
      const { model, semantic } = loaded[c];
      const out: { exact?: number; semantic?: number } = {};
      const s = model.stats();
      if (s.cache?.bytes && s.cache.entries) out.exact = s.cache.bytes / s.cache.entries;
      if (semantic) {
        const entries = semantic.size;
        const held = await heldBytes();
        semantic.clear();
        out.semantic = (held - (await heldBytes())) / entries;
      }
      await model.dispose();
      return out;
    },
    close: () => Promise.resolve(),
  };
}

/** The contenders as models of one `kiln serve` child process. */
async function servedRound(o: Options): Promise<Round> {
  const semantic = { threshold: o.threshold, capacity: o.requests + 16 };
  const served = await serveContenders(Object.fromEntries(CONTENDERS.map((c) => [c, { exact: hasExact(c), ...(hasSemantic(c) ? { semantic } : {}) }])), 4 * 2 ** 30);
  return {
    clients: served.clients as Record<Contender, ContenderClient>,
    finish: (c) => served.clients[c].bytesPerEntry(),
    close: () => served.close(),
  };
}

/** Heap and external (ArrayBuffer) bytes after full collections. */
async function heldBytes(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    global.gc?.();
    await new Promise((r) => setTimeout(r, 20));
  }
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

async function replay(o: Options, requests: WorkloadRequest[], tallies: Record<Contender, Tally>, round: number): Promise<void> {
  const r0 = o.serve ? await servedRound(o) : await inProcessRound(o);
  const clients = r0.clients;
  // Warm-up: lines outside the pool, in a partition of their own (the exact cache keeps them; counted out below).
  const warm = ['warm up one', 'warm up two', 'warm up three'].map((t) => recPreprocess(renderText(t), { width: o.width }));
  for (const c of CONTENDERS) for (let i = 0; i < 2; i++) for (const x of warm) await clients[c].infer(x, 'warm-up');
  const before = {} as Record<Contender, number>;
  for (const c of CONTENDERS) before[c] = await clients[c].inferenceCount();
  const lat = Object.fromEntries(CONTENDERS.map((c) => [c, [] as number[]])) as Record<Contender, number[]>;
  const hitLat = Object.fromEntries(CONTENDERS.map((c) => [c, [] as number[]])) as Record<Contender, number[]>;
  const step = o.concurrency;
  for (let start = 0, chunk = 0; start < requests.length; start += step, chunk++) {
    const group = requests.slice(start, start + step);
    const texts = {} as Record<Contender, { text: string; outcome: string }[]>;
    for (let j = 0; j < CONTENDERS.length; j++) {
      const c = CONTENDERS[(chunk + round + j) % CONTENDERS.length];
      texts[c] = await Promise.all(group.map(async (r) => {
        const t0 = process.hrtime.bigint();
        const { y, outcome } = await clients[c].infer(r.x);
        const us = Number(process.hrtime.bigint() - t0) / 1000;
        lat[c].push(us);
        if (outcome === 'hit' || outcome === 'semantic_hit') hitLat[c].push(us);
        return { text: ctcDecode(y.data, y.dims, keys).text, outcome };
      }));
    }
    group.forEach((r, i) => {
      const truth = texts.none[i].text;
      if (truth !== r.text) tallies.none.misread++;
      for (const c of CONTENDERS) {
        const t = tallies[c];
        const { text, outcome } = texts[c][i];
        t.requests++;
        if (outcome === 'hit') t.hits++;
        if (outcome === 'semantic_hit') t.semanticHits++;
        if (outcome === 'hit' || outcome === 'semantic_hit') {
          if (text !== truth) t.falseHits++;
          if (r.kind === 'near') t.nearHits++;
          if (r.kind === 'first') t.firstHits++;
        }
      }
    });
  }
  for (const c of CONTENDERS) {
    const t = tallies[c];
    t.runs += (await clients[c].inferenceCount()) - before[c];
    t.latency.push(lat[c]);
    t.hitLatency.push(hitLat[c]);
    const held = await r0.finish(c);
    if (held.exact !== undefined) t.bytesPerEntry.push(held.exact);
    if (held.semantic !== undefined) t.semanticBytesPerEntry.push(held.semantic);
  }
  await r0.close();
}

const mib = (b: number): string => `${(b / 2 ** 20).toFixed(2)} MiB`;

function report(o: Options, lines: string[], requests: WorkloadRequest[], t: Record<Contender, Tally>): string {
  const rt = runtime();
  const kinds = { first: 0, exact: 0, near: 0 };
  for (const r of requests) kinds[r.kind]++;
  const uncached = summarize(t.none.latency);
  const out = [
    `ONNX Runtime ${rt.version} (${path.basename(rt.library)}), node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}`,
    `PP-OCRv4 recognizer [1,3,48,${o.width}]; pool ${o.pool} lines (${lines.length} distinct), ${o.requests} requests (Zipf s=${o.zipf}, seed ${o.seed}): ` +
      `${kinds.first} first sight, ${kinds.exact} exact repeats, ${kinds.near} perturbed repeats (${((100 * kinds.near) / o.requests).toFixed(0)}%); ` +
      `${o.serve ? 'served: kiln serve in a child process (max_batch_size 64, local response cache), HTTP binary tensors; ' : 'in-process: loadModel per contender, '}` +
      `${o.concurrency} concurrent caller(s)${o.serve ? '' : `, maxBatchSize ${o.concurrency}`}; ${o.rounds} rounds, contenders interleaved per request; semantic threshold ${o.threshold} (cosine, embedding 'input')`,
    `ideal: ${(((kinds.exact + kinds.near) / o.requests) * 100).toFixed(1)}% of runs avoidable (every repeat), exact repeats alone ${((kinds.exact / o.requests) * 100).toFixed(1)}%`,
    `uncached recognizer misread ${t.none.misread} of ${t.none.requests} requests (its text ≠ the rendered line; false hits are judged against its reading, not the rendered line)`,
    '',
    '| contender | runs avoided | exact hits | semantic hits | near-dups hit | hits on a first sight | false hits (rate of hits) | latency median / p99 | spread of round medians | hit median / p99 | hit ÷ uncached median | memory per entry |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  const verdicts: string[] = [];
  for (const c of CONTENDERS) {
    const x = t[c];
    const all: Summary = summarize(x.latency);
    const hits = x.hits + x.semanticHits;
    const hit = hits > 0 ? summarize(x.hitLatency.filter((r) => r.length > 0)) : undefined;
    const avoided = 1 - x.runs / x.requests;
    const ratio = hit ? hit.median / uncached.median : NaN;
    const median = (v: number[]): string => mib(quantile([...v].sort((a, b) => a - b), 0.5));
    const mem = [x.bytesPerEntry.length ? `exact ${median(x.bytesPerEntry)}` : '', x.semanticBytesPerEntry.length ? `semantic ${median(x.semanticBytesPerEntry)}` : ''].filter(Boolean).join(', ') || '–';
    out.push(`| ${c} | ${(avoided * 100).toFixed(1)}% | ${x.hits} | ${x.semanticHits} | ${x.nearHits} of ${kinds.near * o.rounds} | ${x.firstHits} of ${kinds.first * o.rounds} | ` +
      `${x.falseHits} (${hits ? ((100 * x.falseHits) / hits).toFixed(2) : '0'}%) | ${fmt(all.median)} / ${fmt(all.p99)} | ${fmt(all.roundMin)} – ${fmt(all.roundMax)} | ` +
      `${hit ? `${fmt(hit.median)} / ${fmt(hit.p99)}` : '–'} | ${hit ? `${(ratio * 100).toFixed(2)}%` : '–'} | ${mem} |`);
    if (c === 'none') continue;
    const falseRate = hits ? x.falseHits / hits : 0;
    verdicts.push(`- ${c}: hit ${(ratio * 100).toFixed(2)}% of the uncached request (target ≤ 5%): ${ratio <= 0.05 ? 'met' : 'MISSED'}; ` +
      `runs avoided ${(avoided * 100).toFixed(1)}% (target ≥ 45%): ${avoided >= 0.45 ? 'met' : 'MISSED'}; ` +
      `false hits ${(falseRate * 100).toFixed(2)}% (target ≤ 1%): ${falseRate <= 0.01 ? 'met' : 'MISSED'}`);
  }
  return [...out, '', ...verdicts].join('\n');
}

async function main(): Promise<void> {
  const program = benchCommand('cache', 'exact and semantic response caches on a replayed PP-OCR workload with repeats and near-duplicates')
    .option('--pool <n>', 'distinct text lines', integerAtLeast(1), 100)
    .option('--requests <n>', 'requests per replay', integerAtLeast(1), 400)
    .option('--near <fraction>', 'share of requests that are perturbed repeats', fractionBelow(1), 0.5)
    .option('--zipf <s>', 'Zipf exponent of the draws over the pool', positiveNumber, 1)
    .option('--threshold <cosine>', 'semantic cache threshold', Number, 0.72)
    .option('--width <px>', 'the recognizer input width (fixed)', integerAtLeast(48), 480)
    .option('--concurrency <n>', 'concurrent callers (and maxBatchSize)', integerAtLeast(1), 1)
    .option('--rounds <n>', 'replays, each with fresh caches', integerAtLeast(1), 3)
    .option('--seed <n>', 'workload seed', integerAtLeast(0), 14)
    .option('--serve', 'the contenders as models of a kiln serve child process, asked over HTTP (binary tensors)', false)
    .parse();
  const o = program.opts<Options>();
  if (!global.gc && !o.serve) process.stderr.write('run with node --expose-gc for the semantic memory per entry\n');
  const { lines, requests } = workload({ pool: o.pool, requests: o.requests, zipf: o.zipf, nearShare: o.near, width: o.width, seed: o.seed });
  const tally = (): Tally => ({ requests: 0, runs: 0, hits: 0, semanticHits: 0, falseHits: 0, nearHits: 0, firstHits: 0, misread: 0, latency: [], hitLatency: [], bytesPerEntry: [], semanticBytesPerEntry: [] });
  const tallies = Object.fromEntries(CONTENDERS.map((c) => [c, tally()])) as Record<Contender, Tally>;
  for (let r = 0; r < o.rounds; r++) await replay(o, requests, tallies, r);
  process.stdout.write(`${report(o, lines, requests, tallies)}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});

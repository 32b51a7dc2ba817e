/**
 * Serving statistics in Triton's two forms: the statistics extension's JSON
 * (`/v2/models[/name[/versions/v]]/stats`, durations in ns) and Prometheus metrics with
 * Triton's names (`nv_inference_*` and `nv_cache_*`, durations in µs, labelled by model and
 * version) through prom-client, plus Kiln's batch-size histogram, response cache gauges,
 * semantic cache counters and the process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { KilnErrorCode } from '../errors';
import type { ModelManager, VersionStats } from './models';

const ns = (us: number): number => Math.round(us * 1000);
const duration = (count: number, us: number): { count: number; ns: number } => ({ count, ns: ns(us) });

/** One version's entry of Triton's statistics extension. */
export function tritonStatistics(s: VersionStats): Record<string, unknown> {
  const m = s.model;
  return {
    name: s.name,
    version: String(s.version),
    last_inference: s.requests.lastInference,
    inference_count: m.inferenceCount,
    execution_count: m.executionCount,
    inference_stats: {
      success: duration(m.success, s.requests.successUs),
      fail: duration(s.requests.failureCount, s.requests.failureUs),
      queue: duration(m.success, m.queueUs),
      compute_input: duration(m.success, m.computeInputUs),
      compute_infer: duration(m.success, m.computeInferUs),
      compute_output: duration(m.success, m.computeOutputUs),
      // Triton's: hits with their lookup time; misses with their lookup and store time.
      cache_hit: duration(m.cache?.hits ?? 0, m.cache?.hitUs ?? 0),
      cache_miss: duration(m.cache?.misses ?? 0, m.cache?.missUs ?? 0),
    },
    batch_stats: Object.entries(m.batchStats).map(([size, b]) => ({
      batch_size: Number(size),
      compute_input: duration(b.count, b.computeInputUs),
      compute_infer: duration(b.count, b.computeInferUs),
      compute_output: duration(b.count, b.computeOutputUs),
    })),
  };
}

/** Triton's failure reasons for Kiln's codes. */
function reasonOf(code: string): string {
  if (code === 'E_QUEUE_FULL' || code === 'E_OVERLOADED' || code === 'E_TIMEOUT') return 'REJECTED';
  if (code === 'E_ABORTED') return 'CANCELED';
  if (code === 'E_ORT') return 'BACKEND';
  return 'OTHER';
}

/**
 * Prometheus metrics of `manager`: `scrape()` brings the counters up to what each version did
 * since the previous scrape (a reloaded version starts again from its own zero), then returns
 * the text exposition.
 */
export function serverMetrics(manager: ModelManager): { registry: Registry; scrape(): Promise<string> } {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const labels = ['model', 'version'] as const;
  const counter = (name: string, help: string, extra: readonly string[] = []): Counter<string> => new Counter({ name, help, labelNames: [...labels, ...extra], registers: [registry] });
  const success = counter('nv_inference_request_success', 'Number of successful inference requests, all batch sizes');
  const failure = counter('nv_inference_request_failure', 'Number of failed inference requests, all batch sizes', ['reason']);
  const count = counter('nv_inference_count', 'Number of inferences performed (a request of batch size N counts N)');
  const exec = counter('nv_inference_exec_count', 'Number of model executions performed (a batch counts once)');
  const requestUs = counter('nv_inference_request_duration_us', 'Cumulative inference request duration in microseconds (successful requests)');
  const queueUs = counter('nv_inference_queue_duration_us', 'Cumulative inference queuing duration in microseconds');
  const inputUs = counter('nv_inference_compute_input_duration_us', 'Cumulative compute input duration in microseconds');
  const inferUs = counter('nv_inference_compute_infer_duration_us', 'Cumulative compute inference duration in microseconds');
  const outputUs = counter('nv_inference_compute_output_duration_us', 'Cumulative inference compute output duration in microseconds');
  const gauge = (name: string, help: string, extra: readonly string[] = []): Gauge<string> => new Gauge({ name, help, labelNames: [...labels, ...extra], registers: [registry] });
  const pending = gauge('nv_inference_pending_request_count', 'Instantaneous number of pending requests awaiting execution per-model');
  const cacheHits = counter('nv_cache_num_hits_per_model', 'Number of response cache hits per model');
  const cacheMisses = counter('nv_cache_num_misses_per_model', 'Number of response cache misses per model');
  const cacheHitUs = counter('nv_cache_hit_duration_per_model', 'Total response cache hit duration per model (lookups), in microseconds');
  const cacheMissUs = counter('nv_cache_miss_duration_per_model', 'Total response cache miss duration per model (lookups and stores), in microseconds');
  const cacheErrors = counter('kiln_cache_errors_total', 'Response cache lookups and stores that failed (the requests ran uncached)');
  // The server's models share one store: what it holds is the server's, not a model's.
  const cacheEntries = gauge('kiln_cache_entries', 'Entries held for the model: cache="response" (an in-process store; unknown for Redis) or "semantic"', ['cache']);
  const cacheBytes = gauge('kiln_cache_bytes', 'Bytes of the entries held for the model (answers, keys, vectors): cache="response" or "semantic"', ['cache']);
  const semanticHits = counter('kiln_semantic_cache_hits_total', 'Requests answered from the semantic cache');
  const semanticMisses = counter('kiln_semantic_cache_misses_total', 'Semantic cache lookups that found no entry near enough (the model ran)');
  const semanticFalse = counter('kiln_semantic_cache_false_hits_total', 'Verified semantic cache hits whose cached answer differed from a fresh run');
  const batch = new Histogram({ name: 'kiln_batch_size', help: "Rows per model execution (the dynamic batcher's batch sizes)", labelNames: [...labels], buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256], registers: [registry] });

  /** What each version (by model and version) had reached at the previous scrape. */
  const seen = new Map<string, { values: Record<string, number>; sizes: Record<number, number> }>();
  const update = (): void => {
    for (const s of manager.statistics()) {
      const l = { model: s.name, version: String(s.version) };
      const m = s.model;
      const id = `${s.name}\u0000${s.version}`;
      const previous = seen.get(id) ?? { values: {}, sizes: {} };
      const grow = (c: Counter<string>, name: string, value: number, extra: Record<string, string> = {}): void => {
        const before = previous.values[name] ?? 0;
        // Below what was seen: the version was reloaded and counts from zero again.
        const delta = value >= before ? value - before : value;
        if (delta > 0) c.inc({ ...l, ...extra }, delta);
        previous.values[name] = value;
      };
      grow(success, 'success', m.success);
      for (const [code, n] of Object.entries(m.failure) as [KilnErrorCode, number][]) grow(failure, `failure:${code}`, n, { reason: reasonOf(code) });
      grow(count, 'count', m.inferenceCount);
      grow(exec, 'exec', m.executionCount);
      grow(requestUs, 'request', s.requests.successUs);
      grow(queueUs, 'queue', m.queueUs);
      grow(inputUs, 'input', m.computeInputUs);
      grow(inferUs, 'infer', m.computeInferUs);
      grow(outputUs, 'output', m.computeOutputUs);
      pending.set(l, m.pending);
      if (m.cache) {
        // A cached model shows its cache counters from the first scrape, zeros included.
        if (previous.values.cache_hits === undefined) for (const c of [cacheHits, cacheMisses, cacheHitUs, cacheMissUs, cacheErrors]) c.inc(l, 0);
        grow(cacheHits, 'cache_hits', m.cache.hits);
        grow(cacheMisses, 'cache_misses', m.cache.misses);
        grow(cacheHitUs, 'cache_hit_us', m.cache.hitUs);
        grow(cacheMissUs, 'cache_miss_us', m.cache.missUs);
        grow(cacheErrors, 'cache_errors', m.cache.errors);
        if (m.cache.entries !== undefined) cacheEntries.set({ ...l, cache: 'response' }, m.cache.entries);
        if (m.cache.bytes !== undefined) cacheBytes.set({ ...l, cache: 'response' }, m.cache.bytes);
      }
      if (m.semanticCache) {
        if (previous.values.semantic_hits === undefined) for (const c of [semanticHits, semanticMisses, semanticFalse]) c.inc(l, 0);
        grow(semanticHits, 'semantic_hits', m.semanticCache.hits);
        grow(semanticMisses, 'semantic_misses', m.semanticCache.misses);
        grow(semanticFalse, 'semantic_false_hits', m.semanticCache.falseHits);
        cacheEntries.set({ ...l, cache: 'semantic' }, m.semanticCache.entries);
        cacheBytes.set({ ...l, cache: 'semantic' }, m.semanticCache.bytes);
      }
      for (const [size, n] of Object.entries(m.batchSizes)) {
        const before = previous.sizes[Number(size)] ?? 0;
        for (let i = n >= before ? n - before : n; i > 0; i--) batch.observe(l, Number(size));
        previous.sizes[Number(size)] = n;
      }
      seen.set(id, previous);
    }
  };
  return {
    registry,
    async scrape() {
      update();
      return registry.metrics();
    },
  };
}

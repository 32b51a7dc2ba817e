/** Per-model statistics: the quantities behind Triton's nv_inference_* metrics. */
import type { KilnErrorCode } from '../errors';
import type { CacheCounters } from '../cache/response-cache';
import type { SemanticCacheCounters } from '../cache/semantic/model-cache';

/** A model's response cache: its own counters, and its entries and their bytes in the (possibly shared) store where known (not for Redis). */
export interface ModelCacheStats extends CacheCounters {
  entries?: number;
  bytes?: number;
}

export interface ModelStats {
  /** Requests accepted or rejected since the model was loaded. */
  requests: number;
  success: number;
  /** Failed requests by error code. */
  failure: Partial<Record<KilnErrorCode, number>>;
  /** Rows inferred (a request of batch dim 4 counts 4), as nv_inference_count. */
  inferenceCount: number;
  /** Batches executed, as nv_inference_exec_count. */
  executionCount: number;
  /** Executions by batch size (rows). */
  batchSizes: Record<number, number>;
  /**
   * Per batch size (rows): executions and their cumulative durations in microseconds, each
   * execution counted once (Triton's batch_stats).
   */
  batchStats: Record<number, { count: number; computeInputUs: number; computeInferUs: number; computeOutputUs: number }>;
  /**
   * Cumulative durations in microseconds over successful requests, counted per request as
   * Triton's nv_inference_*_duration_us are: a batch of 8 adds its compute time 8 times, so
   * computeInferUs / success is the mean per request, not computeInferUs / executionCount.
   */
  queueUs: number;
  computeInputUs: number;
  computeInferUs: number;
  computeOutputUs: number;
  /** Requests queued or executing now. */
  pending: number;
  /** Present when the model has a response cache. Hits count in requests and success, not in inferenceCount. */
  cache?: ModelCacheStats;
  /** Present when the model has a semantic cache. Hits count in requests and success, not in inferenceCount. */
  semanticCache?: SemanticCacheCounters;
}

export function emptyStats(): ModelStats {
  return {
    requests: 0, success: 0, failure: {}, inferenceCount: 0, executionCount: 0, batchSizes: {}, batchStats: {},
    queueUs: 0, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0, pending: 0,
  };
}

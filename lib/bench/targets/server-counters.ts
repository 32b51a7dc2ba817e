/**
 * A served model's cumulative counters from Triton's statistics extension, which `kiln serve`
 * answers too (lib/server/stats.ts): `GET /v2/models/{m}[/versions/{v}]/stats` over HTTP and
 * `ModelStatistics` over gRPC, both `{ model_stats: [...] }` with durations in nanoseconds.
 * The load generator diffs two readings to get a window's ServerCounters.
 */
import { KilnError } from '../../errors';
import type { ServerCounters } from '../types';

/** `{ count, ns }` of the extension; uint64s arrive as numbers or (some JSON encoders) strings. */
interface Duration {
  count?: number | string;
  ns?: number | string;
}

interface ModelStatistics {
  name?: string;
  version?: string;
  inference_count?: number | string;
  execution_count?: number | string;
  inference_stats?: { success?: Duration; queue?: Duration; compute_input?: Duration; compute_infer?: Duration; compute_output?: Duration };
  batch_stats?: { batch_size?: number | string; compute_infer?: Duration }[];
}

const num = (x: number | string | undefined): number => {
  const n = Number(x ?? 0);
  return Number.isFinite(n) ? n : 0;
};
const us = (d: Duration | undefined): number => num(d?.ns) / 1000;

/**
 * The counters of `model` in a statistics answer, summed over its versions (the answer holds
 * every version of the model when the request named none).
 */
export function countersFromStatistics(answer: unknown, model: string): ServerCounters {
  const all = (answer as { model_stats?: unknown } | null)?.model_stats;
  if (!Array.isArray(all)) throw new KilnError('E_UNAVAILABLE', `the statistics of model "${model}" are not a statistics extension answer (no "model_stats" array)`);
  const entries = (all as ModelStatistics[]).filter((s) => s && (s.name === undefined || s.name === model));
  if (entries.length === 0) throw new KilnError('E_NOT_FOUND', `the server's statistics hold no entry for model "${model}"`);
  const c: ServerCounters = { requests: 0, inferenceCount: 0, executionCount: 0, queueUs: 0, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0 };
  const sizes: Record<number, number> = {};
  let sized = false;
  for (const s of entries) {
    const i = s.inference_stats ?? {};
    c.requests += num(i.success?.count);
    c.inferenceCount += num(s.inference_count);
    c.executionCount += num(s.execution_count);
    c.queueUs += us(i.queue);
    c.computeInputUs += us(i.compute_input);
    c.computeInferUs += us(i.compute_infer);
    c.computeOutputUs += us(i.compute_output);
    for (const b of s.batch_stats ?? []) {
      const size = num(b.batch_size);
      sizes[size] = (sizes[size] ?? 0) + num(b.compute_infer?.count);
      sized = true;
    }
  }
  if (sized) c.batchSizes = sizes;
  return c;
}

/** The statistics path of a model (or one version of it), below the server's base URL. */
export function statisticsPath(model: string, version?: string): string {
  return `/v2/models/${encodeURIComponent(model)}${version ? `/versions/${encodeURIComponent(version)}` : ''}/stats`;
}

/** Cumulative counters over HTTP; `get` answers a path's JSON (or throws a KilnError). */
export async function httpServerCounters(get: (path: string) => Promise<unknown>, model: string, version?: string): Promise<ServerCounters> {
  return countersFromStatistics(await get(statisticsPath(model, version)), model);
}

/** Cumulative counters over gRPC; `call` makes the unary ModelStatistics call. */
export async function grpcServerCounters(call: (request: { name: string; version: string }) => Promise<unknown>, model: string, version?: string): Promise<ServerCounters> {
  return countersFromStatistics(await call({ name: model, version: version ?? '' }), model);
}

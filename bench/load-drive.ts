/**
 * Load generators for bench/load: a closed loop (N callers, each sending its next request
 * as soon as the previous one is answered) and an open loop (requests sent on a fixed
 * schedule whether or not earlier ones were answered). Latency is in microseconds; in the
 * open loop it runs from the *scheduled* send time, so a sender held up by a blocked event
 * loop is charged to the contender that blocked it (no coordinated omission), and refusals
 * (backpressure) are counted apart from the answers.
 */
import { once } from 'events';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { KilnError } from '../lib';
import { prng } from '../lib/samples';
import type { TickerStart } from './load-ticker';
import { quantile } from './stats';

/** Sends one request on behalf of `caller` (an index into per-caller inputs). */
export type Infer = (caller: number) => Promise<unknown>;

export interface Measured {
  requests: number;
  seconds: number;
  /** Requests per second over the whole measurement. */
  throughput: number;
  p50Us: number;
  p99Us: number;
  /** Process CPU time (user + system, every thread) per request, µs. */
  cpuUsPerRequest: number;
  /** Requests refused (E_OVERLOADED, E_QUEUE_FULL): not in the latencies or the throughput. */
  refused: number;
}

/** Raw result of one measurement. */
export interface Sample {
  latenciesUs: number[];
  seconds: number;
  /** Process CPU time (user + system, every thread), µs. */
  cpuUs: number;
  refused: number;
}

function sample(latenciesUs: number[], t0: number, cpu0: NodeJS.CpuUsage, refused = 0): Sample {
  const cpu = process.cpuUsage(cpu0);
  return { latenciesUs, seconds: (performance.now() - t0) / 1000, cpuUs: cpu.user + cpu.system, refused };
}

/** Whether `e` is a refusal to be counted (backpressure) rather than a failure of the run. */
const isRefusal = (e: unknown): boolean => e instanceof KilnError && (e.code === 'E_OVERLOADED' || e.code === 'E_QUEUE_FULL');

/** Pools samples (e.g. interleaved rounds) into one summary. */
export function summarize(samples: readonly Sample[]): Measured {
  const sorted = samples.flatMap((s) => s.latenciesUs).sort((a, b) => a - b);
  const n = sorted.length;
  const seconds = samples.reduce((a, s) => a + s.seconds, 0);
  const cpuUs = samples.reduce((a, s) => a + s.cpuUs, 0);
  return {
    requests: n,
    seconds,
    throughput: n / seconds,
    p50Us: quantile(sorted, 0.5),
    p99Us: quantile(sorted, 0.99),
    cpuUsPerRequest: n > 0 ? cpuUs / n : NaN,
    refused: samples.reduce((a, s) => a + s.refused, 0),
  };
}

/**
 * `callers` concurrent callers sending back to back until `seconds` have passed; a refused
 * request is counted and the caller sends its next one.
 */
export async function closedLoop(infer: Infer, callers: number, seconds: number): Promise<Sample> {
  const latencies: number[] = [];
  let refused = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  const caller = async (id: number): Promise<void> => {
    for (let t = performance.now(); t < end; t = performance.now()) {
      try {
        await infer(id);
        latencies.push((performance.now() - t) * 1000);
      } catch (e) {
        if (!isRefusal(e)) throw e;
        refused++;
      }
    }
  };
  await Promise.all(Array.from({ length: callers }, (_, id) => caller(id)));
  // Requests started before the deadline finish after it: count their time too.
  return sample(latencies, t0, cpu0, refused);
}

/** Send times (ms from the start) of a Poisson process at `rate` req/s, seeded: every contender gets the same. */
export function poissonSchedule(rate: number, seconds: number, seed: number): number[] {
  const rand = prng(seed);
  const out: number[] = [];
  for (let t = 0; ; ) {
    const u = (rand() + 1) / 2; // [0, 1)
    t += (-Math.log(1 - u) / rate) * 1000;
    if (t >= seconds * 1000) return out;
    out.push(t);
  }
}

const TICKER = path.join(__dirname, 'load-ticker.js');

/**
 * Sends request i at `schedule[i]` ms (a worker thread keeps the time); `callers` rotates the
 * inputs used. A send delayed by a busy event loop is charged to the contender that kept it
 * busy; with `from: 'call'` latency runs from the call instead (what the callee is responsible
 * for, without the sender's own lag).
 */
export async function openLoop(infer: Infer, schedule: readonly number[], callers: number, from: 'scheduled' | 'call' = 'scheduled'): Promise<Sample> {
  if (schedule.length === 0) return { latenciesUs: [], seconds: 0, cpuUs: 0, refused: 0 };
  const worker = new Worker(TICKER);
  await once(worker, 'online');
  const latencies: number[] = [];
  let refused = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now() + 20;
  const start: TickerStart = { start: performance.timeOrigin + t0, schedule: Float64Array.from(schedule) };
  await new Promise<void>((done, fail) => {
    let answered = 0;
    const answer = (due: number) => (): void => {
      latencies.push((performance.now() - due) * 1000);
      if (++answered === schedule.length) done();
    };
    const refusal = (e: unknown): void => {
      if (!isRefusal(e)) return fail(e);
      refused++;
      if (++answered === schedule.length) done();
    };
    worker.on('message', ([first, to]: [number, number]) => {
      for (let i = first; i < to; i++) infer(i % callers).then(answer(from === 'call' ? performance.now() : t0 + schedule[i]), refusal);
    });
    worker.on('error', fail);
    worker.postMessage(start);
  });
  const result = sample(latencies, t0, cpu0, refused);
  await worker.terminate();
  return result;
}

/**
 * Closed and open loop load in this process, over a Target that knows how to send one
 * request. Open loop measures each latency from the request's scheduled send time, so a
 * generator that falls behind shows up as latency instead of silently sending less
 * (no coordinated omission).
 */
import { performance } from 'perf_hooks';
import { KilnError } from '../errors';
import { schedule } from './schedule';
import { diffCounters } from './stats';
import type { Driver, Load, ServerCounters, Target, WindowLimit, WindowResult } from './types';

/** Distinct error messages a window keeps. */
const MAX_MESSAGES = 5;
/** Node's timers fire about a millisecond late: a send lag under this is the timer's, not the generator's. */
export const LATE_SEND_US = 1000;
/** How long a window waits for requests still in flight at its end, at least. */
const MIN_DRAIN_MS = 10_000;

const nowUs = (): number => performance.now() * 1000;

/** What one window collects while it runs. */
class WindowRecorder {
  readonly latenciesUs: number[] = [];
  errors = 0;
  readonly errorMessages: string[] = [];
  lastAnswerUs = 0;
  /** Set when the window has returned: answers arriving later are not its own. */
  closed = false;

  /** Sends one request whose latency counts from `startUs`; a synchronous throw is a failed request too. */
  send(target: Target, startUs: number): Promise<void> {
    try {
      return target.infer().then(() => this.answered(startUs), (e: unknown) => this.failed(e));
    } catch (e) {
      this.failed(e);
      return Promise.resolve();
    }
  }

  answered(startUs: number): void {
    if (this.closed) return;
    const t = nowUs();
    this.latenciesUs.push(t - startUs);
    this.lastAnswerUs = Math.max(this.lastAnswerUs, t);
  }

  failed(e: unknown): void {
    if (this.closed) return;
    this.errors++;
    this.lastAnswerUs = Math.max(this.lastAnswerUs, nowUs());
    const message = e instanceof Error ? e.message : String(e);
    if (this.errorMessages.length < MAX_MESSAGES && !this.errorMessages.includes(message)) this.errorMessages.push(message);
  }
}

/** Requests in flight, awaited at the end of a window for at most `ms` (the rest count as errors). */
async function drain(inFlight: Set<Promise<void>>, ms: number, rec: WindowRecorder): Promise<void> {
  if (!inFlight.size) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  const done = await Promise.race([Promise.all(inFlight).then(() => 'done' as const), timeout]);
  clearTimeout(timer);
  if (done === 'timeout') {
    for (let i = 0; i < inFlight.size; i++) rec.failed(new KilnError('E_TIMEOUT', `no answer within ${ms} ms after the window ended`));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => (ms >= 1 ? setTimeout(resolve, ms) : setImmediate(resolve)));

/** Closed loop: `concurrency` callers, each sending its next request when its last returns. */
async function closedLoop(target: Target, concurrency: number, limit: WindowLimit, rec: WindowRecorder, drainMs: number): Promise<number> {
  const start = nowUs();
  const endUs = 'ms' in limit ? start + limit.ms * 1000 : Infinity;
  let tickets = 'requests' in limit ? limit.requests : Infinity;
  const inFlight = new Set<Promise<void>>();
  let stopped = false;
  const caller = async (): Promise<void> => {
    while (!stopped && tickets > 0 && nowUs() < endUs) {
      tickets--;
      const t0 = nowUs();
      const request = rec.send(target, t0);
      inFlight.add(request);
      await request;
      inFlight.delete(request);
    }
  };
  const callers = Promise.all(Array.from({ length: concurrency }, caller));
  // A time window ends at its deadline: what is in flight then is awaited for a bounded time.
  const bounded = Math.max(drainMs, 'ms' in limit ? limit.ms * 2 : 0);
  let timer: NodeJS.Timeout | undefined;
  if ('ms' in limit) {
    await Promise.race([callers, new Promise<void>((resolve) => (timer = setTimeout(resolve, limit.ms)))]);
    clearTimeout(timer);
    stopped = true;
    await drain(inFlight, bounded, rec);
  } else {
    await callers;
  }
  return start;
}

interface OpenLoopResult {
  start: number;
  lateSends: number;
  maxSendLagUs: number;
}

/**
 * Open loop: each request sent at its scheduled time without waiting for answers. The
 * sender sleeps on timers until about a millisecond before a send, waits the rest on
 * setImmediate (timers alone are too coarse for sub-millisecond gaps; that wait is CPU time
 * the window's cpuUs includes), and sends every request already due at once; a request's
 * latency runs from when it was due.
 */
async function openLoop(target: Target, rate: number, arrival: 'poisson' | 'constant', seed: number, limit: WindowLimit, rec: WindowRecorder, drainMs: number): Promise<OpenLoopResult> {
  const next = schedule(rate, arrival, seed);
  const inFlight = new Set<Promise<void>>();
  const endOffsetUs = 'ms' in limit ? limit.ms * 1000 : Infinity;
  let remaining = 'requests' in limit ? limit.requests : Infinity;
  let lateSends = 0;
  let maxSendLagUs = 0;
  const start = nowUs();
  let due = next();
  while (remaining > 0 && due < endOffsetUs) {
    const wait = start + due - nowUs();
    if (wait > LATE_SEND_US) await sleep((wait - LATE_SEND_US) / 1000);
    else if (wait > 0) await sleep(0);
    else {
      const scheduled = start + due;
      const lag = nowUs() - scheduled;
      if (lag > LATE_SEND_US) lateSends++;
      maxSendLagUs = Math.max(maxSendLagUs, lag);
      const request = rec.send(target, scheduled);
      inFlight.add(request);
      void request.then(() => inFlight.delete(request));
      remaining--;
      due = next();
    }
  }
  await drain(inFlight, Math.max(drainMs, 'ms' in limit ? limit.ms * 2 : 0), rec);
  return { start, lateSends, maxSendLagUs };
}

export interface DriverOptions {
  /** Seed of the Poisson schedules (each window draws its own from it). */
  seed?: number;
  /** How long a window waits for requests in flight at its end, at least (default 10 s). */
  drainMs?: number;
  /**
   * Whether the target runs in this process, so that this process's CPU time and peak RSS
   * are the target's (default true; false for a server, whose process is not this one).
   */
  inProcess?: boolean;
}

/** A Driver that generates its load in this process against `target`. */
export function targetDriver(target: Target, options: DriverOptions = {}): Driver {
  const drainMs = options.drainMs ?? MIN_DRAIN_MS;
  let windows = 0;
  return {
    name: target.name,
    description: target.description,
    async warmup(requests: number): Promise<void> {
      for (let i = 0; i < requests; i++) await target.infer();
    },
    async window(load: Load, limit: WindowLimit): Promise<WindowResult> {
      const before: ServerCounters | undefined = await target.counters?.();
      const cpu = process.cpuUsage();
      const rec = new WindowRecorder();
      let start: number;
      let lag: { lateSends: number; maxSendLagUs: number } | undefined;
      if (load.kind === 'concurrency') {
        start = await closedLoop(target, load.concurrency, limit, rec, drainMs);
      } else {
        const r = await openLoop(target, load.rate, load.arrival, (options.seed ?? 1) + windows, limit, rec, drainMs);
        start = r.start;
        lag = { lateSends: r.lateSends, maxSendLagUs: r.maxSendLagUs };
      }
      rec.closed = true;
      windows++;
      const used = process.cpuUsage(cpu);
      const result: WindowResult = {
        durationUs: Math.max(rec.lastAnswerUs, start) - start,
        latenciesUs: rec.latenciesUs,
        errors: rec.errors,
        errorMessages: rec.errorMessages,
        ...lag,
        ...(options.inProcess === false ? {} : { cpuUs: used.user + used.system, peakRssBytes: process.resourceUsage().maxRSS * 1024 }),
      };
      if (before) {
        const after = await target.counters?.();
        if (after) result.server = diffCounters(after, before);
      }
      return result;
    },
    close: () => target.close(),
  };
}

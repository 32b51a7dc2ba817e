/**
 * The native floor for the benchmarks in bench/: native/bench/harness.cc in its --serve mode
 * (found or built as `kiln bench --native` does, lib/bench/targets/native.ts), asked for
 * back-to-back rounds so that a benchmark can interleave them with in-process contenders.
 */
import { HarnessProcess, resolveHarness } from '../lib/bench/targets/native';

export interface HarnessOptions {
  model: string;
  batch?: number;
  intra?: number;
  warmup?: number;
  dims?: Record<string, number>;
}

export class Harness {
  readonly #process: HarnessProcess;

  private constructor(p: HarnessProcess) {
    this.#process = p;
  }

  static async start(o: HarnessOptions): Promise<Harness> {
    const args = ['--model', o.model, '--batch', String(o.batch ?? 1), '--intra', String(o.intra ?? 1), '--warmup', String(o.warmup ?? 200)];
    for (const [k, v] of Object.entries(o.dims ?? {})) args.push('--dim', `${k}=${v}`);
    return new Harness(await HarnessProcess.start(await resolveHarness(), args));
  }

  /** The harness's process id (for CPU accounting from /proc). */
  get pid(): number | undefined {
    return this.#process.pid;
  }

  /** Per-call latencies in microseconds of `calls` back-to-back runs. */
  async latencies(calls: number): Promise<number[]> {
    return (await this.#process.ask<{ samples_us: number[] }>(`run ${calls}`)).samples_us;
  }

  /** Inferences per second over `calls` back-to-back runs. */
  async throughput(calls: number): Promise<number> {
    return (await this.#process.ask<{ inferences_per_s: number }>(`throughput ${calls}`)).inferences_per_s;
  }

  close(): void {
    void this.#process.close();
  }
}

/**
 * The contenders of bench/load: Kiln's batched Model, onnxruntime-node one request at a
 * time, and the native harness (Kiln's core, no Node) at its best batch size: the ceiling.
 * All run ORT with `intra` intra-op threads, one inter-op thread, sequential execution and
 * pools that do not spin.
 */
import * as ort from 'onnxruntime-node';
import { loadModel, type Model, type ModelStats } from '../lib';
import { Harness } from './harness';
import type { Infer } from './load-drive';
import { childPids, procStat } from './load-proc';

/** Kiln's batching configuration for a model (Triton's fields). */
export interface KilnSettings {
  maxBatchSize: number;
  maxQueueDelayUs: number;
  preferredBatchSize: number[];
  instances: number;
  /** Adaptive batching's target, when set. */
  maxLatencyMs?: number;
}

export interface LoadCase {
  name: string;
  file: string;
  /** One request's dims (batch dim 1). */
  dims: number[];
  /** Values of the model's named dynamic dims other than the batch, for the harness. */
  harnessDims: Record<string, number>;
  kiln: KilnSettings;
}

/** Seeded inputs, one per caller: each request gathers from its own buffer, as in a server. */
export function callerInputs(c: LoadCase, callers: number): Float32Array[] {
  const n = c.dims.reduce((a, b) => a * b, 1);
  let s = 7;
  return Array.from({ length: callers }, () => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      a[i] = s / 2 ** 32 - 0.5;
    }
    return a;
  });
}

export interface BatchDelta {
  executions: number;
  /** Executions by batch size (rows). */
  batchSizes: Record<number, number>;
  /** Mean compute time of the batch a request ran in, µs (computeInferUs accumulates per request, as Triton's). */
  computeUsPerBatch: number;
}

export class KilnContender {
  readonly name = 'kiln';
  readonly infer: Infer;
  readonly #model: Model;

  private constructor(model: Model, feeds: Record<string, { type: 'float32'; data: Float32Array; dims: number[] }>[]) {
    this.#model = model;
    this.infer = (caller) => model.infer(feeds[caller]);
  }

  static async create(c: LoadCase, intra: number, inputs: Float32Array[], k: KilnSettings = c.kiln): Promise<KilnContender> {
    const model = await loadModel(c.file, {
      maxBatchSize: k.maxBatchSize,
      dynamicBatching: { maxQueueDelayMicroseconds: k.maxQueueDelayUs, preferredBatchSize: k.preferredBatchSize, maxLatencyMs: k.maxLatencyMs },
      instanceGroup: [{ count: k.instances, kind: 'CPU' }],
      session: { intraOpThreads: intra, interOpThreads: 1, executionMode: 'sequential' },
    });
    const name = model.inputs[0].name;
    return new KilnContender(model, inputs.map((data) => ({ [name]: { type: 'float32', data, dims: c.dims } })));
  }

  stats(): ModelStats {
    return this.#model.stats();
  }

  /** What ran between two stats snapshots. */
  static delta(before: ModelStats, after: ModelStats): BatchDelta {
    const batchSizes: Record<number, number> = {};
    for (const [size, n] of Object.entries(after.batchSizes)) {
      const d = n - (before.batchSizes[Number(size)] ?? 0);
      if (d > 0) batchSizes[Number(size)] = d;
    }
    const requests = after.success - before.success;
    return {
      executions: after.executionCount - before.executionCount,
      batchSizes,
      computeUsPerBatch: requests > 0 ? (after.computeInferUs - before.computeInferUs) / requests : NaN,
    };
  }

  close(): Promise<void> {
    return this.#model.dispose();
  }
}

export class OrtContender {
  readonly name = 'ort-node';
  readonly infer: Infer;
  readonly #session: ort.InferenceSession;

  private constructor(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>[]) {
    this.#session = session;
    this.infer = (caller) => session.run(feeds[caller]);
  }

  /** `ownDefaults`: onnxruntime-node's own settings (a spinning pool, a thread per core) instead of the shared ones. */
  static async create(c: LoadCase, intra: number, inputs: Float32Array[], ownDefaults = false): Promise<OrtContender> {
    const session = await ort.InferenceSession.create(c.file, ownDefaults ? {} : {
      intraOpNumThreads: intra, interOpNumThreads: 1, executionMode: 'sequential',
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
    });
    const name = session.inputNames[0];
    return new OrtContender(session, inputs.map((data) => ({ [name]: new ort.Tensor('float32', data, c.dims) })));
  }

  close(): Promise<void> {
    return this.#session.release();
  }
}

export interface CeilingPoint {
  batch: number;
  throughput: number;
  /** CPU of the harness process per inference, µs. */
  cpuUsPerInference: number;
}

/** The native harness at one batch size, with its process's CPU time. */
export class Ceiling {
  readonly batch: number;
  readonly #harness: Harness;
  readonly #pid: number | undefined;
  /** Inferences per second, from the last measurement: sizes the next one. */
  #rate: number;

  private constructor(batch: number, harness: Harness, pid: number | undefined, rate: number) {
    this.batch = batch;
    this.#harness = harness;
    this.#pid = pid;
    this.#rate = rate;
  }

  static async start(c: LoadCase, intra: number, batch: number): Promise<Ceiling> {
    const before = childPids('kiln-harness');
    const harness = await Harness.start({ model: c.file, batch, intra, warmup: 1, dims: c.harnessDims });
    const pid = [...childPids('kiln-harness')].find((p) => !before.has(p));
    // One timed batch sizes the first measurement (a PP-OCR batch of 64 takes over a second).
    const t0 = performance.now();
    await harness.throughput(1);
    return new Ceiling(batch, harness, pid, (batch * 1000) / (performance.now() - t0));
  }

  /** Measures the harness's best batch size among `batches` (each for about `seconds`); returns it started. */
  static async find(c: LoadCase, intra: number, batches: readonly number[], seconds: number): Promise<{ best: Ceiling; scan: CeilingPoint[] }> {
    const scan: CeilingPoint[] = [];
    for (const b of batches) {
      const h = await Ceiling.start(c, intra, b);
      scan.push(await h.measure(seconds));
      h.close();
    }
    const top = scan.reduce((a, b) => (b.throughput > a.throughput ? b : a));
    return { best: await Ceiling.start(c, intra, top.batch), scan };
  }

  /** The mean of measurements of equal length. */
  static mean(points: readonly CeilingPoint[]): CeilingPoint {
    const avg = (f: (p: CeilingPoint) => number): number => points.reduce((a, p) => a + f(p), 0) / points.length;
    return { batch: points[0].batch, throughput: avg((p) => p.throughput), cpuUsPerInference: avg((p) => p.cpuUsPerInference) };
  }

  async measure(seconds: number): Promise<CeilingPoint> {
    const calls = Math.max(1, Math.round((this.#rate * seconds) / this.batch));
    const cpu0 = this.#cpuS();
    const throughput = await this.#harness.throughput(calls);
    this.#rate = throughput;
    const cpuUsPerInference = ((this.#cpuS() - cpu0) * 1e6) / (calls * this.batch);
    return { batch: this.batch, throughput, cpuUsPerInference };
  }

  #cpuS(): number {
    return this.#pid === undefined ? NaN : (procStat(this.#pid)?.cpuS ?? NaN);
  }

  close(): void {
    this.#harness.close();
  }
}

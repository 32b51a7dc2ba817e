/**
 * The shapes `kiln bench` passes between its parts: a load description, what one measurement
 * window returns, the per-step summary and the whole report (what `--json` writes and the
 * HTML report draws).
 *
 *   drivers (targets/)  run one window of a load against one target → WindowResult
 *   runner.ts           repeats windows until stable, sweeps loads, searches a latency bound
 *   stats.ts            percentiles, window agreement, summaries
 *   report/             terminal table, JSON, CSV, HTML
 */

/** How requests are issued during a window. */
export type Load =
  /** Closed loop: `concurrency` callers, each sending its next request when its last returns. */
  | { kind: 'concurrency'; concurrency: number }
  /** Open loop: requests sent at `rate` per second regardless of answers, Poisson or evenly spaced. */
  | { kind: 'rate'; rate: number; arrival: 'poisson' | 'constant' };

/** When a window ends: after `ms` milliseconds, or after `requests` completed requests. */
export type WindowLimit = { ms: number } | { requests: number };

/**
 * Server-side (or in-process batcher) counters over one window, as differences of cumulative
 * counters taken before and after it (Kiln's `model.stats()`, Triton's statistics extension
 * or its Prometheus metrics). Durations are sums in microseconds over `requests`.
 */
export interface ServerCounters {
  requests: number;
  /** Rows inferred and batches executed (nv_inference_count, nv_inference_exec_count). */
  inferenceCount: number;
  executionCount: number;
  queueUs: number;
  computeInputUs: number;
  computeInferUs: number;
  computeOutputUs: number;
  /** Executions by batch size (rows), when the source reports them. */
  batchSizes?: Record<number, number>;
}

/** One measurement window. Latencies in microseconds, one per completed request. */
export interface WindowResult {
  /** Wall time of the window, microseconds (first send to last answer counted). */
  durationUs: number;
  latenciesUs: number[];
  /** Requests that failed, by message (at most a few distinct messages kept). */
  errors: number;
  errorMessages: string[];
  /**
   * Open loop only: requests whose send time came while the sender was still busy with
   * earlier ones (the load generator fell behind), and the largest lag in microseconds.
   */
  lateSends?: number;
  maxSendLagUs?: number;
  /** CPU time used by the measured process during the window (user + system), microseconds. */
  cpuUs?: number;
  /** Peak resident set size of the measured process so far, bytes. */
  peakRssBytes?: number;
  server?: ServerCounters;
}

export interface LatencySummary {
  count: number;
  mean: number;
  p50: number;
  p90: number;
  p95: number;
  p99: number;
  max: number;
  /** The percentile chosen with `--percentile` (perf_analyzer's name), if not one of the above. */
  chosen?: { percentile: number; value: number };
}

/** One load step: the windows taken and what they add up to. */
export interface StepResult {
  load: Load;
  /** Whether the last `stabilityWindows` windows agreed within the tolerance. */
  stable: boolean;
  windows: WindowResult[];
  /** Over the windows the stability rule accepted (the last `stabilityWindows`). */
  throughput: number;
  latency: LatencySummary;
  /** Lowest and highest per-window throughput and p50/p99 over the accepted windows. */
  spread: { throughput: [number, number]; p50: [number, number]; p99: [number, number] };
  errors: number;
  /** Executions by batch size over the accepted windows, when known. */
  batchSizes?: Record<number, number>;
  /** Mean microseconds per request on the server side, when known. */
  breakdown?: { queueUs: number; computeInputUs: number; computeInferUs: number; computeOutputUs: number };
  cpuUsPerRequest?: number;
  peakRssBytes?: number;
}

/** Everything measured for one target. */
export interface TargetReport {
  /** 'kiln' | 'kiln-batcher' | 'onnxruntime-node' | 'native' | 'http' | 'grpc' */
  name: string;
  /** What it ran: model path, provider, URL, protocol and tensor encoding. */
  description: string;
  steps: StepResult[];
  /** Set by `--latency-bound-ms`: the highest-throughput step whose chosen percentile met the bound. */
  best?: { stepIndex: number; boundMs: number };
  /** Outputs checked against a reference run, when asked (`--check`). */
  check?: { compared: number; mismatches: number; maxAbsError: number };
}

/** Ratios between targets at equal load: `other` ÷ `base`, for latency and throughput alike. */
export interface Comparison {
  base: string;
  other: string;
  load: Load;
  p50Ratio: number;
  p99Ratio: number;
  throughputRatio: number;
}

export interface BenchReport {
  tool: 'kiln bench';
  version: 1;
  /** The command line as typed. */
  command: string;
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryBytes: number; os: string; node: string; onnxRuntime?: string };
  model?: { path: string; inputs: { name: string; type: string; shape: (number | string)[] }[] };
  settings: {
    windowMs?: number;
    windowRequests?: number;
    warmupRequests: number;
    stabilityWindows: number;
    stabilityPercentage: number;
    maxWindows: number;
    /** `--percentile`; 0 when none was chosen (stability then judges the mean latency, a latency bound the p99). */
    percentile: number;
  };
  targets: TargetReport[];
  comparisons: Comparison[];
}

/**
 * One way to send requests to one thing under test. JS targets implement `Target` and get a
 * Driver from loadgen.ts (closed and open loop in this process); the native harness is a
 * Driver itself, its load generated in C++.
 */
export interface Driver {
  readonly name: string;
  readonly description: string;
  /** Sends `requests` requests (one caller) and discards their timings. */
  warmup(requests: number): Promise<void>;
  window(load: Load, limit: WindowLimit): Promise<WindowResult>;
  close(): Promise<void>;
}

/** A JS target: one request at a time is what it knows; loadgen.ts builds the loads. */
export interface Target {
  readonly name: string;
  readonly description: string;
  /** One request with the next input; resolves when its answer has arrived (and was decoded). */
  infer(): Promise<void>;
  /** Cumulative server-side counters, when the target has them; loadgen diffs them per window. */
  counters?(): Promise<ServerCounters>;
  /** The outputs for input set `index`, for `--check` against a reference. */
  outputs?(index: number): Promise<Record<string, { type: string; dims: number[]; data: ArrayLike<number | bigint | string> }>>;
  close(): Promise<void>;
}

/**
 * One request's inputs by name (inputs.ts makes them: random from the model's metadata, or
 * read from .npy / raw files or perf_analyzer's --input-data JSON). Targets cycle through a
 * list of these.
 */
export type InputSet = Record<string, import('../tensor').Tensor>;

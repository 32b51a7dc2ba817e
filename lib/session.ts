/**
 * Session: one loaded model, run asynchronously on Kiln's executor threads or synchronously
 * on the caller's. Feeds are validated here, once, before anything is queued; tensor bytes
 * are never copied in JS.
 */
import { availableParallelism } from 'os';
import { markAsUntransferable } from 'worker_threads';
import { native, type NativeFetches, type NativeResults, type NativeBatchArgs, type NativePadding, type NativeRunArgs, type NativeSession, type NativeValueInfo } from './binding';
import { KilnError, toKilnError } from './errors';
import { completionPolling, sessionConfig, type SessionOptions } from './options';
import { runtime } from './runtime';
import { DeviceTensor } from './device';
import { InlinePolicy } from './inline';
import {
  ARRAY_TYPE, TYPE_FROM_ONNX, describeData, elementCount, formatShape, wrapTensor,
  type Tensor, type TensorLike, type TensorType,
} from './tensor';

export type ValueType = TensorType | 'sequence' | 'map' | 'optional' | 'sparse_tensor' | 'unknown';

export interface ValueInfo {
  readonly name: string;
  readonly type: ValueType;
  /** Fixed dims as numbers; symbolic dims by name; unnamed dynamic dims as '?'. */
  readonly shape: readonly (number | string)[];
}

/** Input name -> tensor; a DeviceTensor (an output kept on the GPU) feeds a session on its device. */
export type Feeds = Readonly<Record<string, TensorLike | DeviceTensor>>;
/** Output names, or output name -> preallocated tensor (ORT writes into it) or null. */
export type Fetches = readonly string[] | Readonly<Record<string, TensorLike | null>>;
export type Results = Record<string, Tensor>;
/** The results of a run with outputLocation: 'cuda'. */
export type DeviceResults = Record<string, DeviceTensor>;

export interface RunOptions {
  outputs?: Fetches;
  /**
   * Where outputs are delivered: 'cpu' (default), or 'cuda' to keep them on the session's
   * GPU as DeviceTensors (a session running on a GPU provider with device IO).
   */
  outputLocation?: 'cpu' | 'cuda';
  /** Aborting removes a queued run at once, or stops a running one (E_ABORTED). */
  signal?: AbortSignal;
}

interface Port {
  info: ValueInfo;
  /** `input "x"`: names the port in error messages. */
  label: string;
  index: number;
  type: TensorType | undefined;
  ctor: Function | undefined;
  dims: readonly number[]; // -1 where dynamic
}

const INTERNAL = Symbol('kiln.session');

let nextCancelId = 1;

/** Only cancellable runs get an id: the addon then gives them ORT run options to stop. */
function cancelId(): number {
  const id = nextCancelId++;
  if (nextCancelId > 0xffffffff) nextCancelId = 1;
  return id;
}

/**
 * Completion polling. A finished run wakes the JS thread through a uv_async; when the
 * thread is parked in epoll on an idle core, waking it costs tens of microseconds on a VM,
 * more than a small model's whole run. For a short while after each submission the JS
 * thread instead collects finished runs itself from a chain of setImmediate (the executor
 * threads then skip the wake-up), so a completion is seen within a microsecond or two.
 * A session polls only while its runs recently computed within `completionPollMicroseconds`
 * and the runs in flight leave a core free: for longer waits the wake-up is cheap next to
 * the wait, and a polling JS thread would take a core from the computation.
 */
let inFlight = 0;
let pollUntil = 0;
let polling = false;

function pollCompletions(): void {
  const keep = inFlight > 0 && performance.now() < pollUntil;
  native().poll(keep);
  if (keep) {
    setImmediate(pollCompletions);
  } else {
    polling = false;
  }
}

function submitted(budgetMs: number): void {
  inFlight++;
  if (budgetMs <= 0) {
    // This run leaves no spare core: stop polling, it would compete with the computation.
    pollUntil = 0;
    return;
  }
  const until = performance.now() + budgetMs;
  if (until > pollUntil) pollUntil = until;
  if (!polling) {
    polling = true;
    setImmediate(pollCompletions);
  }
}

function describePort(role: 'input' | 'output', v: NativeValueInfo, index: number): Port {
  const type = v.kind === 'tensor' ? TYPE_FROM_ONNX[v.type] : undefined;
  const shape = v.shape.map((d, i) => (d >= 0 ? d : v.symbolic[i] || '?'));
  const info: ValueInfo = Object.freeze({
    name: v.name,
    type: v.kind === 'tensor' ? (type ?? 'unknown') : v.kind,
    shape: Object.freeze(shape),
  });
  const ctor = type && type !== 'string' ? ARRAY_TYPE[type] : type === 'string' ? Array : undefined;
  return { info, label: `${role} "${v.name}"`, index, type, ctor, dims: v.shape };
}

function expectation(p: Port): string {
  return `${p.type ?? p.info.type} with shape ${formatShape(p.info.shape)}`;
}

function received(t: TensorLike | DeviceTensor): string {
  const dims = Array.isArray(t.dims) ? formatShape(t.dims) : String(t.dims);
  return `${String(t.type)} with shape ${dims}`;
}

/** The input elements of a run's arguments: (fetches, cancel id, data0, dims0, data1, ...). */
function inputElements(args: NativeRunArgs): number {
  let n = 0;
  for (let i = 2; i < args.length; i += 2) n += (args[i] as { length?: number }).length ?? 0;
  return n;
}

/**
 * An asynchronous run borrows the caller's buffers until it ends. A transfer (postMessage,
 * structuredClone) would free memory the run still reads or writes, so, as Node does for its
 * own pooled Buffers, borrowed buffers are marked untransferable (a transfer then copies).
 * A resizable buffer could shrink under the run: those are for runSync only.
 */
function borrow(p: Port, data: TensorLike['data']): void {
  if (!ArrayBuffer.isView(data)) return;
  const buffer = data.buffer as ArrayBuffer & { resizable?: boolean };
  if (buffer.resizable) {
    throw new KilnError('E_INVALID_ARGUMENT', `${p.label}: a resizable ArrayBuffer cannot be borrowed by an asynchronous run (use runSync, or a fixed-length buffer)`);
  }
  if (!(buffer instanceof SharedArrayBuffer)) markAsUntransferable(buffer);
}

/** Validates one tensor against a model port. */
function checkTensor(p: Port, t: TensorLike | DeviceTensor | undefined): void {
  const name = p.label;
  if (t === null || typeof t !== 'object') {
    throw new KilnError('E_INVALID_ARGUMENT', `${name}: expected a tensor ({ type, data, dims }), received ${describeData(t)}`);
  }
  if (p.type === undefined) {
    throw new KilnError('E_INVALID_ARGUMENT', `${name}: ${p.info.type} values are not supported`);
  }
  if (t.type !== p.type) {
    throw new KilnError('E_DTYPE_MISMATCH', `${name}: expected ${expectation(p)}, received ${received(t)}`);
  }
  if (t instanceof DeviceTensor) {
    checkDims(p, t);
    return;
  }
  // instanceof alone lets through objects that only borrow a TypedArray's prototype (or a
  // Proxy of one): the native layer needs a real view.
  if (!(t.data instanceof (p.ctor as Function)) || (p.type !== 'string' && !ArrayBuffer.isView(t.data))) {
    throw new KilnError('E_DTYPE_MISMATCH', `${name}: ${p.type} data must be a ${(p.ctor as Function).name}, received ${describeData(t.data)}`);
  }
  const n = checkDims(p, t);
  const dims = t.dims;
  const length = (t.data as { length: number }).length;
  if (length !== n) {
    const detached = ArrayBuffer.isView(t.data) && length === 0 && n > 0;
    throw new KilnError('E_INVALID_ARGUMENT', detached
      ? `${name}: its ArrayBuffer is detached or empty, dims ${formatShape(dims)} need ${n} elements`
      : `${name}: dims ${formatShape(dims)} need ${n} elements, data has ${length}`);
  }
}

/**
 * TensorRT builds its engines while the model loads (on a loader thread: the JS thread runs
 * on), which takes seconds to minutes without an engine cache. Loads that take longer than
 * PROGRESS_MS report, every PROGRESS_MS and once done, through `onProgress` (default: a line
 * on stderr).
 */
const PROGRESS_MS = 5000;

function loadProgress(source: string | Uint8Array, onProgress: ((message: string) => void) | undefined): { done(provider: string | undefined): void } {
  const report = onProgress ?? ((m: string): void => void process.stderr.write(`${m}\n`));
  const what = typeof source === 'string' ? source : `a ${source.byteLength}-byte model`;
  const started = performance.now();
  const seconds = (): string => ((performance.now() - started) / 1000).toFixed(1);
  const timer = setInterval(() => report(`kiln: loading ${what} with TensorRT (building engines): ${seconds()} s`), PROGRESS_MS);
  timer.unref();
  return {
    done(provider) {
      clearInterval(timer);
      if (performance.now() - started < PROGRESS_MS) return;
      report(provider ? `kiln: ${what} ready on ${provider} after ${seconds()} s` : `kiln: loading ${what} failed after ${seconds()} s`);
    },
  };
}

/** Validates a tensor's dims against a port; returns its element count. */
function checkDims(p: Port, t: TensorLike | DeviceTensor): number {
  const name = p.label;
  const dims = t.dims;
  if (!Array.isArray(dims)) {
    throw new KilnError('E_INVALID_ARGUMENT', `${name}: dims must be an array of integers, received ${describeData(dims)}`);
  }
  const n = elementCount(dims, name);
  // Rank 0 in the metadata is a scalar or a shape the model does not declare: ORT checks those.
  if (p.dims.length !== 0 && dims.length !== p.dims.length) {
    throw new KilnError('E_SHAPE_MISMATCH', `${name}: expected ${expectation(p)}, received ${received(t)} (rank ${dims.length}, expected ${p.dims.length})`);
  }
  for (let i = 0; i < dims.length; i++) {
    if (p.dims[i] >= 0 && p.dims[i] !== dims[i]) {
      throw new KilnError('E_SHAPE_MISMATCH', `${name}: expected ${expectation(p)}, received ${received(t)} (dims[${i}] must be ${p.dims[i]})`);
    }
  }
  return n;
}

/** Per input: null, or [pad value, ...the non-batch dims to pad to] (see BatchPort.runBatch). */
export type BatchPadding = NativePadding;

export interface BatchResult {
  outputs: Results;
  /** The run's time in ORT (µs). */
  computeUs: number;
  /** The time gathering the batch's inputs (µs). */
  inputUs: number;
}

/**
 * What the dynamic batcher needs of a session beyond its public API. Not part of the
 * published Session type: lib/batching reaches it through batchPort(session).
 */
export interface BatchPort {
  /** Validates one request's feeds (borrowing its buffers) and returns them as (data, dims) pairs in the model's input order. */
  requestFeeds(feeds: Feeds): unknown[];
  /**
   * Runs requests (from requestFeeds) as one batch: the core gathers each input into one
   * pooled buffer, padding where `padding` says. Resolves with the whole batch's outputs.
   */
  runBatch(requests: readonly unknown[][], padding?: BatchPadding, signal?: AbortSignal): Promise<BatchResult>;
}

let portOf: (session: Session) => BatchPort;

/** The batcher's access to `session` (one object per session). */
export function batchPort(session: Session): BatchPort {
  return portOf(session);
}

export class Session {
  readonly #native: NativeSession;
  readonly #inputs: Port[];
  readonly #outputs: Port[];
  readonly #inputByName: Map<string, Port>;
  readonly #outputByName: Map<string, Port>;
  readonly #allOutputPorts: Port[];
  readonly #providers: readonly string[];
  readonly #providerNotes: readonly string[];
  readonly #device: number;
  readonly #pollMs: number;
  /** Moving average of a run's time in ORT, in ms: decides whether polling pays. */
  #computeMs = 0;
  /** Whether run() executes on the calling thread (host IO only; undefined: never). */
  readonly #inline: InlinePolicy | undefined;
  #inFlight = 0;
  /** Runs in flight beyond which a polling JS thread would take a core from them. */
  readonly #pollMaxInFlight: number;
  #disposed = false;
  #disposing: Promise<void> | undefined;
  #port: BatchPort | undefined;

  /** Loads a model (a file path or its bytes) off the JS thread. */
  static async create(model: string | Uint8Array | ArrayBuffer, options?: SessionOptions): Promise<Session> {
    let source: string | Uint8Array;
    if (typeof model === 'string') source = model;
    else if (model instanceof Uint8Array) source = model;
    else if (model instanceof ArrayBuffer) source = new Uint8Array(model);
    else throw new KilnError('E_INVALID_ARGUMENT', `model must be a file path, a Uint8Array or an ArrayBuffer, received ${describeData(model)}`);
    const config = sessionConfig(options);
    const rt = runtime();
    const cores = availableParallelism();
    // Threads a run computes on: the session's own pool, else the global one (0: a thread per core).
    const intra = config.intraOpThreads ?? (config.interOpThreads === undefined ? rt.intraOpThreads : 0);
    const polling = completionPolling(intra > 0 ? intra : cores, cores);
    const poll = config.completionPollMicroseconds ?? polling.budgetUs;
    const progress = config.providers.some((p) => p.name === 'tensorrt') ? loadProgress(source, options?.onProgress) : undefined;
    try {
      const handle = await native().NativeSession.load(source, config);
      // Inline runs only where runs are serial anyway: several executor threads exist to run them in parallel.
      const inline = config.inlineRuns && config.executorThreads === 1;
      const session = new Session(INTERNAL, handle, poll, Math.min(polling.maxInFlight, config.executorThreads), inline);
      progress?.done(session.providers[0]);
      return session;
    } catch (e) {
      progress?.done(undefined);
      throw toKilnError(e);
    }
  }

  /** @internal use Session.create() */
  constructor(token: symbol, handle: NativeSession, pollMicroseconds: number, pollMaxInFlight: number, inlineRuns: boolean) {
    if (token !== INTERNAL) throw new KilnError('E_INVALID_ARGUMENT', 'use Session.create() to load a model');
    this.#native = handle;
    this.#pollMs = pollMicroseconds / 1000;
    this.#pollMaxInFlight = pollMaxInFlight;
    const meta = handle.metadata();
    this.#inputs = meta.inputs.map((v, i) => describePort('input', v, i));
    this.#outputs = meta.outputs.map((v, i) => describePort('output', v, i));
    this.#inputByName = new Map(this.#inputs.map((p) => [p.info.name, p]));
    this.#outputByName = new Map(this.#outputs.map((p) => [p.info.name, p]));
    this.#allOutputPorts = this.#outputs.filter((p) => p.type !== undefined);
    this.#providers = Object.freeze(meta.providers);
    this.#providerNotes = Object.freeze(meta.providerNotes);
    this.#device = meta.device;
    this.#inline = inlineRuns && meta.device < 0 ? new InlinePolicy() : undefined;
  }

  /**
   * The CUDA device this session's inputs and outputs go through (device IO on a GPU
   * provider), or undefined when it runs with host IO.
   */
  get device(): number | undefined {
    return this.#device >= 0 ? this.#device : undefined;
  }

  get inputs(): readonly ValueInfo[] {
    return this.#inputs.map((p) => p.info);
  }

  get outputs(): readonly ValueInfo[] {
    return this.#outputs.map((p) => p.info);
  }

  /** ONNX Runtime's names of the providers in use, in priority order. */
  get providers(): readonly string[] {
    return this.#providers;
  }

  /** Why providers earlier in the requested list were skipped. */
  get providerNotes(): readonly string[] {
    return this.#providerNotes;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Runs on Kiln's executor threads; the JS thread is free meanwhile. A run predicted to be
   * shorter than the hand-off to an executor thread would cost (both learned from this
   * session's runs; see lib/inline.ts) executes on the calling thread instead: it then
   * blocks the event loop about as long as the hand-off would have, and answers sooner.
   */
  run(feeds: Feeds, options: RunOptions & { outputLocation: 'cuda' }): Promise<DeviceResults>;
  run(feeds: Feeds, options?: RunOptions): Promise<Results>;
  async run(feeds: Feeds, options?: RunOptions): Promise<Results | DeviceResults> {
    const signal = options?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new KilnError('E_INVALID_ARGUMENT', `signal must be an AbortSignal, received ${describeData(signal)}`);
    }
    const location = options?.outputLocation;
    const { args, ports } = this.#prepare(feeds, options?.outputs, true, location);
    if (signal?.aborted) throw new KilnError('E_ABORTED', 'run was aborted before it started');
    const inline = this.#inline;
    // A run with a signal stays abortable until it ends: it goes to the executor.
    const elements = inline?.ready && location !== 'cuda' && signal === undefined ? inputElements(args) : -1;
    if (elements >= 0 && inline?.choose(elements)) {
      const t0 = performance.now();
      let raw: NativeResults;
      try {
        raw = this.#native.runSync(...args);
      } catch (e) {
        throw toKilnError(e);
      }
      const us = (performance.now() - t0) * 1000;
      inline.ranInline(us, elements);
      this.#computeMs += (us / 1000 - this.#computeMs) * 0.125;
      return this.#wrap(ports, raw);
    }
    // A hand-off is measured only on a run that had the executor to itself (queueing is not its cost).
    const started = this.#inFlight === 0 ? performance.now() : NaN;
    let onAbort: (() => void) | undefined;
    if (signal) {
      const id = cancelId();
      args[1] = id;
      onAbort = (): void => void this.#native.cancel(id);
    }
    let raw: NativeResults;
    try {
      const pending = this.#native.run(...args);
      this.#submitted();
      if (onAbort) signal?.addEventListener('abort', onAbort, { once: true });
      try {
        raw = await pending;
      } finally {
        this.#answered();
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      }
    } catch (e) {
      throw toKilnError(e);
    }
    const computeUs = raw[raw.length - 2] as number;
    this.#computeMs += (computeUs / 1000 - this.#computeMs) * 0.125;
    this.#inline?.executed((performance.now() - started) * 1000, computeUs, elements >= 0 ? elements : inputElements(args));
    return this.#wrap(ports, raw, location);
  }

  #submitted(): void {
    const crowded = ++this.#inFlight > this.#pollMaxInFlight;
    submitted(crowded || this.#computeMs > this.#pollMs ? 0 : this.#pollMs);
  }

  #answered(): void {
    this.#inFlight--;
    inFlight--;
  }

  /** Runs on the calling thread and blocks it until done. */
  runSync(feeds: Feeds, options: Pick<RunOptions, 'outputs' | 'outputLocation'> & { outputLocation: 'cuda' }): DeviceResults;
  runSync(feeds: Feeds, options?: Pick<RunOptions, 'outputs' | 'outputLocation'>): Results;
  runSync(feeds: Feeds, options?: Pick<RunOptions, 'outputs' | 'outputLocation'>): Results | DeviceResults {
    const { args, ports } = this.#prepare(feeds, options?.outputs, false, options?.outputLocation);
    let raw: NativeResults;
    try {
      raw = this.#native.runSync(...args);
    } catch (e) {
      throw toKilnError(e);
    }
    return this.#wrap(ports, raw, options?.outputLocation);
  }

  /**
   * Releases the model. Runs not yet started reject with E_DISPOSED; running ones finish.
   * Resolves once nothing of this session is running.
   */
  dispose(): Promise<void> {
    if (!this.#disposing) {
      this.#disposed = true;
      this.#disposing = this.#native.dispose();
    }
    return this.#disposing;
  }

  /** Stops profiling and returns the profile file's path ('' when profiling was off). */
  endProfiling(): string {
    this.#checkOpen();
    try {
      return this.#native.endProfiling();
    } catch (e) {
      throw toKilnError(e);
    }
  }

  #checkOpen(): void {
    if (this.#disposed) throw new KilnError('E_DISPOSED', 'session is disposed');
  }

  /** Validates and flattens a run's arguments; `async` runs borrow the buffers (see borrow()). */
  #prepare(feeds: Feeds, fetches: Fetches | undefined, async: boolean, location: RunOptions['outputLocation']): { args: NativeRunArgs; ports: Port[] } {
    this.#checkOpen();
    const args: NativeRunArgs = [null, undefined];
    this.#pushFeeds(feeds, async, args);
    if (location !== undefined && location !== 'cpu') {
      if (location !== 'cuda') throw new KilnError('E_INVALID_ARGUMENT', `outputLocation: expected 'cpu' or 'cuda', received ${describeData(location)}`);
      return this.#deviceFetches(fetches, args);
    }
    if (fetches === undefined) return { args, ports: this.#allOutputPorts };
    const f = this.#fetches(fetches, async);
    args[0] = f.fetchList;
    return { args, ports: f.ports };
  }

  /** Fetches for outputs kept on the device: names only (nothing to preallocate). */
  #deviceFetches(fetches: Fetches | undefined, args: NativeRunArgs): { args: NativeRunArgs; ports: Port[] } {
    if (this.#device < 0) {
      throw new KilnError('E_INVALID_ARGUMENT', `outputLocation 'cuda' needs a session running on a GPU provider with device IO; this one runs on ${this.#providers[0]}`);
    }
    let ports = this.#allOutputPorts;
    if (fetches !== undefined) {
      if (!Array.isArray(fetches)) throw new KilnError('E_INVALID_ARGUMENT', "outputs: with outputLocation 'cuda', name the outputs (an array); device outputs cannot be preallocated");
      ports = this.#fetches(fetches, false).ports;
    }
    const list: unknown[] = [];
    for (const p of ports) {
      if (p.type === 'string') throw new KilnError('E_INVALID_ARGUMENT', `${p.label}: string outputs cannot stay on a device`);
      list.push(p.index, 'cuda', null);
    }
    args[0] = list;
    return { args, ports };
  }

  /** Validates `feeds` and appends (data, dims) per model input, in the model's order. */
  #pushFeeds(feeds: Feeds, async: boolean, into: unknown[], batched = false): void {
    if (feeds === null || typeof feeds !== 'object') {
      throw new KilnError('E_INVALID_ARGUMENT', `feeds must be an object of input name -> tensor, received ${describeData(feeds)}`);
    }
    const inputs = this.#inputs;
    for (let i = 0; i < inputs.length; i++) {
      const p = inputs[i];
      const t = feeds[p.info.name];
      if (t === undefined) this.#missingOrUnknown(feeds);
      if (batched && t instanceof DeviceTensor) {
        throw new KilnError('E_INVALID_ARGUMENT', `${p.label}: a device tensor cannot join a batch (batches are assembled in host memory); run it with session.run()`);
      }
      checkTensor(p, t);
      if (t instanceof DeviceTensor) {
        into.push(t._handle(p.label), t.dims);
        continue;
      }
      if (async) borrow(p, t.data);
      into.push(t.data, t.dims);
    }
    let count = 0;
    for (const name in feeds) if (feeds[name] !== undefined) count++;
    if (count !== inputs.length) this.#missingOrUnknown(feeds);
  }

  static {
    portOf = (s) =>
      (s.#port ??= {
        requestFeeds: (feeds) => s.#requestFeeds(feeds),
        runBatch: (requests, padding = null, signal) => s.#runBatch(requests, padding, signal),
      });
  }

  /** See BatchPort.requestFeeds. */
  #requestFeeds(feeds: Feeds): unknown[] {
    this.#checkOpen();
    const out: unknown[] = [];
    this.#pushFeeds(feeds, true, out, true);
    return out;
  }

  /** See BatchPort.runBatch. */
  async #runBatch(requests: readonly unknown[][], padding: BatchPadding, signal: AbortSignal | undefined): Promise<BatchResult> {
    this.#checkOpen();
    const id = signal ? cancelId() : undefined;
    const args: unknown[] = [null, id, requests.length, padding];
    for (const r of requests) for (let i = 0; i < r.length; i++) args.push(r[i]);
    const onAbort = id === undefined ? undefined : (): void => void this.#native.cancel(id);
    let raw: NativeResults;
    try {
      const pending = this.#native.runBatch(...(args as NativeBatchArgs));
      this.#submitted();
      if (onAbort) signal?.addEventListener('abort', onAbort, { once: true });
      try {
        raw = await pending;
      } finally {
        this.#answered();
        if (onAbort) signal?.removeEventListener('abort', onAbort);
      }
    } catch (e) {
      throw toKilnError(e);
    }
    const n = raw.length;
    this.#computeMs += ((raw[n - 2] as number) / 1000 - this.#computeMs) * 0.125;
    return { outputs: this.#wrap(this.#allOutputPorts, raw), computeUs: raw[n - 2] as number, inputUs: raw[n - 1] as number };
  }

  #missingOrUnknown(feeds: Feeds): never {
    for (const name of Object.keys(feeds)) {
      if (feeds[name] !== undefined && !this.#inputByName.has(name)) {
        throw new KilnError('E_INVALID_ARGUMENT', `unknown input "${name}"; the model's inputs are: ${this.#inputs.map((q) => q.info.name).join(', ')}`);
      }
    }
    const missing = this.#inputs.filter((p) => feeds[p.info.name] === undefined).map((p) => `"${p.info.name}"`);
    throw new KilnError('E_INVALID_ARGUMENT', `missing input${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`);
  }

  #fetches(fetches: Fetches, async: boolean): { fetchList: NativeFetches; ports: Port[] } {
    const fetchList: unknown[] = [];
    const ports: Port[] = [];
    const output = (name: unknown): Port => {
      const p = typeof name === 'string' ? this.#outputByName.get(name) : undefined;
      if (!p) {
        throw new KilnError('E_INVALID_ARGUMENT', `unknown output ${JSON.stringify(name)}; the model's outputs are: ${this.#outputs.map((q) => q.info.name).join(', ')}`);
      }
      if (p.type === undefined) throw new KilnError('E_INVALID_ARGUMENT', `output "${p.info.name}": ${p.info.type} values are not supported`);
      return p;
    };
    if (Array.isArray(fetches)) {
      if (fetches.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'outputs: name at least one output');
      for (const name of fetches) {
        const p = output(name);
        if (ports.includes(p)) throw new KilnError('E_INVALID_ARGUMENT', `outputs: "${p.info.name}" is named twice`);
        fetchList.push(p.index, null, null);
        ports.push(p);
      }
    } else if (fetches !== null && typeof fetches === 'object') {
      const entries = Object.entries(fetches as Record<string, TensorLike | null>);
      if (entries.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'outputs: name at least one output');
      for (const [name, t] of entries) {
        const p = output(name);
        if (t === null || t === undefined) {
          fetchList.push(p.index, null, null);
        } else {
          checkTensor(p, t);
          if (async) borrow(p, t.data);
          if (p.type === 'string') throw new KilnError('E_INVALID_ARGUMENT', `output "${name}": string outputs cannot be preallocated`);
          fetchList.push(p.index, t.data, t.dims);
        }
        ports.push(p);
      }
    } else {
      throw new KilnError('E_INVALID_ARGUMENT', `outputs must be an array of names or an object of name -> tensor | null, received ${describeData(fetches)}`);
    }
    return { fetchList, ports };
  }

  #wrap(ports: Port[], raw: NativeResults, location?: RunOptions['outputLocation']): Results {
    const out: Results = {};
    if (location === 'cuda') {
      const device: DeviceResults = {};
      for (let i = 0; i < ports.length; i++) {
        const p = ports[i];
        device[p.info.name] = DeviceTensor._wrap(p.type as TensorType, raw[2 * i + 1] as number[], this.#device, raw[2 * i]);
      }
      return device as unknown as Results;
    }
    for (let i = 0; i < ports.length; i++) {
      const p = ports[i];
      out[p.info.name] = wrapTensor(p.type as TensorType, raw[2 * i] as Tensor['data'], raw[2 * i + 1] as number[]);
    }
    return out;
  }
}

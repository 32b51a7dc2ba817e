/**
 * Model: a session behind a dynamic batcher with Triton's batch-forming rules, priority
 * queues and queue policies, plus adaptive batching, cancellation and backpressure.
 * Membership of batches is decided here; tensor bytes are gathered by the native core (one
 * copy per request per input) and every caller receives zero-copy views of its rows.
 */
import { KilnError, toKilnError, type KilnErrorCode } from '../errors';
import type { SessionOptions } from '../options';
import { Session, batchPort, type BatchPadding, type Feeds, type Results } from '../session';
import { resolveConfig, type ModelConfig, type ResolvedConfig } from './config';
import { AdaptivePolicy, type RunningBatch } from './adaptive';
import { BatchCosts } from './cost';
import { providersFor, tensorRtProfiles, wantsTensorRt } from './gpu';
import { RaggedPadding, rowsOf, splitOf } from './padding';
import { PriorityQueue, type Queued } from './queue';
import { emptyStats, type ModelStats } from './stats';
import { modelDigest, responseKey, type KeyInput } from '../cache/key';
import { emptyCounters, type CacheCounters, type CacheOutcome, type ResponseCache } from '../cache/response-cache';
import { ModelSemanticCache } from '../cache/semantic/model-cache';
import { Tensor, type TensorType } from '../tensor';

export interface InferOptions {
  /** Priority level (1 is highest); 0 or omitted: the model's default level. */
  priority?: number;
  /** Queue timeout; only shorter than the policy's default, and only where overrides are allowed. */
  timeoutMs?: number;
  /**
   * Aborting removes a queued request at once; an executing one is answered at once with
   * E_ABORTED while its batch runs on for the others (the run stops once every request of
   * the batch is aborted).
   */
  signal?: AbortSignal;
  /**
   * The tenant: response and semantic cache entries are kept per partition, so a request never
   * gets an answer cached for another partition's request. Default ''.
   */
  partition?: string;
}

/** infer's option `withCacheInfo`: resolve with { outputs, cache: { outcome } } instead of the outputs alone. */
export interface CacheInfoOption {
  withCacheInfo?: boolean;
}

/**
 * What infer resolves with for options of type O: InferResult for withCacheInfo: true,
 * either for a withCacheInfo only known at run time, else Results. (A generic rather than
 * overloads, so that Parameters<Model['infer']> stays the general options type.)
 */
export type InferOutput<O> = O extends { withCacheInfo: true } ? InferResult
  : O extends { withCacheInfo: false } ? Results
  : O extends { withCacheInfo: boolean } ? Results | InferResult
  : Results;

/** What infer resolves with when asked withCacheInfo. */
export interface InferResult {
  outputs: Results;
  cache: CacheInfo;
}

/**
 * How a request was served. 'hit': from the response cache; 'semantic_hit': from the
 * semantic cache, with the similarity (cosine, or L2 distance) of the cached request;
 * 'miss': the model ran; 'none': the model has no cache.
 */
export interface CacheInfo {
  outcome: CacheOutcome | 'semantic_hit';
  similarity?: number;
}

/** Thrown through the response cache's run to answer from the semantic cache without storing that answer as an exact one. */
class SemanticAnswer {
  constructor(readonly outputs: Results, readonly similarity: number) {}
}

/** A request that passed validation, before it is queued. */
interface Checked {
  readonly pairs: unknown[];
  readonly size: number;
  readonly shapeKey: string;
  readonly level: number;
  readonly timeoutUs: number;
}

/** A model's use of a response cache. */
interface ModelCache {
  readonly cache: ResponseCache;
  /** The model's identity in keys. */
  readonly key: string;
  readonly inputs: KeyInput[];
  readonly counters: CacheCounters;
}

interface Request extends Queued {
  readonly feeds: Feeds;
  readonly pairs: unknown[];
  readonly shapeKey: string;
  state: 'queued' | 'running' | 'settled';
  resolve(r: Results): void;
  reject(e: KilnError): void;
  detach?: () => void;
  /** While running: the batch it runs in. */
  batch?: Batch;
}

interface Batch extends RunningBatch {
  readonly requests: Request[];
  /** Stops the run; present when a request of the batch can be aborted. */
  readonly stop?: AbortController;
}

const now = (): number => performance.now();

export class Model {
  /** The first instance's session: the model's metadata. */
  readonly #session: Session;
  readonly #sessions: Session[];
  /** Instances not running a batch (the same session repeated for a CPU group). */
  readonly #freeInstances: Session[];
  readonly #config: ResolvedConfig;
  readonly #queue: PriorityQueue<Request>;
  readonly #costs = new BatchCosts();
  /** Present with maxLatencyMs. */
  readonly #adaptive: AdaptivePolicy | undefined;
  readonly #runningBatches = new Set<Batch>();
  readonly #stats: ModelStats = emptyStats();
  #seq = 0;
  #nextDelivery = 0;
  readonly #held = new Map<number, () => void>();
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  /** Padding of ragged requests, when an input allows it. */
  readonly #padding: RaggedPadding | undefined;
  #scheduled = false;
  #disposed = false;
  #runningRequests = 0;
  #idle: (() => void)[] = [];
  /** The last request's dims, per input, and their shape key (see #shapeKey). */
  readonly #lastDims: number[][] = [];
  #lastShapeKey = '';
  readonly #cache: ModelCache | undefined;
  readonly #semantic: ModelSemanticCache | undefined;

  /** Loads a model (path or bytes) with a Triton-style configuration. */
  static async load(model: string | Uint8Array | ArrayBuffer, config: ModelConfig = {}): Promise<Model> {
    // Validate what can be validated before loading; batchability needs the model.
    resolveConfig({ ...config, maxBatchSize: 0, dynamicBatching: false }, false);
    const raw = (config ?? {}) as ModelConfig;
    const group = raw.instanceGroup?.[0] ?? {};
    const count = group.count ?? 1;
    const base: SessionOptions = raw.session ?? {};
    const sessions: Session[] = [];
    try {
      if (group.kind === 'GPU') {
        // Triton's placement: `count` instances on each listed GPU, each its own session
        // (and so its own CUDA stream), loaded one after another so that a TensorRT engine
        // cache written by the first serves the rest.
        const maxBatch = typeof raw.maxBatchSize === 'number' ? raw.maxBatchSize : 0;
        const db = typeof raw.dynamicBatching === 'object' ? raw.dynamicBatching : undefined;
        const profiles = wantsTensorRt(base) ? await tensorRtProfiles(model, maxBatch, db?.preferredBatchSize ?? []) : undefined;
        for (const device of group.gpus?.length ? group.gpus : [0]) {
          for (let i = 0; i < count; i++) {
            sessions.push(await Session.create(model, { ...base, providers: providersFor(device, base.providers, profiles), executorThreads: 1 }));
          }
        }
      } else {
        sessions.push(await Session.create(model, { ...base, executorThreads: count }));
      }
      const session = sessions[0];
      const batchable = session.inputs.length > 0 &&
        session.inputs.every((i) => i.shape.length > 0 && typeof i.shape[0] === 'string');
      const resolved = resolveConfig(config, batchable, session.inputs.map((i) => i.name));
      // A CPU group is one session with `count` executor threads: each free slot names it.
      const instances = sessions.length > 1 ? sessions : Array.from({ length: count }, () => session);
      const padding = await RaggedPadding.create(session, resolved);
      const rc = resolved.responseCache;
      const cache: ModelCache | undefined = rc && {
        cache: rc.cache,
        key: rc.key ?? await modelDigest(model),
        inputs: session.inputs.map((i) => ({ name: i.name, type: i.type as TensorType })),
        counters: emptyCounters(),
      };
      const sc = resolved.semanticCache;
      const semantic = sc && new ModelSemanticCache(sc, sc.key ?? cache?.key ?? await modelDigest(model));
      return new Model(instances, { ...resolved, instances: instances.length }, padding, cache, semantic);
    } catch (e) {
      await Promise.all(sessions.map((s) => s.dispose()));
      throw toKilnError(e);
    }
  }

  private constructor(instances: Session[], config: ResolvedConfig, padding: RaggedPadding | undefined, cache: ModelCache | undefined, semantic: ModelSemanticCache | undefined) {
    this.#session = instances[0];
    this.#sessions = [...new Set(instances)];
    this.#freeInstances = instances;
    this.#config = config;
    this.#queue = new PriorityQueue<Request>(config.policies);
    this.#padding = padding;
    this.#cache = cache;
    this.#semantic = semantic;
    if (config.maxLatencyMs !== undefined) this.#adaptive = new AdaptivePolicy(config.maxLatencyMs, instances.length, this.#costs);
  }

  /** The sessions serving this model: one for a CPU group, one per instance on GPUs. */
  get sessions(): readonly Session[] {
    return this.#sessions;
  }

  get config(): Readonly<ResolvedConfig> {
    return this.#config;
  }

  get inputs(): Session['inputs'] {
    return this.#session.inputs;
  }

  get outputs(): Session['outputs'] {
    return this.#session.outputs;
  }

  /** A snapshot of the model's statistics. */
  stats(): ModelStats {
    const stats: ModelStats = { ...structuredClone(this.#stats), pending: this.#queue.count + this.#runningRequests };
    if (this.#cache) {
      const held = this.#cache.cache.stats(this.#cache.key);
      stats.cache = { ...this.#cache.counters, entries: held.entries, bytes: held.bytes };
    }
    if (this.#semantic) stats.semanticCache = this.#semantic.stats();
    return stats;
  }

  /**
   * Resolves with this request's outputs: views of its rows of the batch it ran in, or a
   * copy of a cached answer (a cache hit never enters the queue).
   */
  infer<const O extends InferOptions & CacheInfoOption = {}>(feeds: Feeds, options?: O): Promise<InferOutput<O>>;
  infer(feeds: Feeds, options: InferOptions & CacheInfoOption = {}): Promise<Results | InferResult> {
    if (this.#cache !== undefined || this.#semantic !== undefined || options?.withCacheInfo === true) return this.#inferCached(feeds, options);
    return this.#queued(feeds, options, undefined);
  }

  /** Queues a request (validating it first unless `checked`); failures before queueing are counted here. */
  #queued(feeds: Feeds, options: InferOptions, checked: Checked | undefined): Promise<Results> {
    return new Promise<Results>((resolve, reject) => {
      try {
        this.#enqueue(feeds, options, checked ?? this.#check(feeds, options), resolve, reject);
      } catch (e) {
        this.#count(toKilnError(e));
        reject(toKilnError(e));
      }
    });
  }

  /**
   * infer through the caches, looked up after validation: the exact response cache first,
   * then (on its miss) the semantic cache; or withCacheInfo on a model without either.
   */
  async #inferCached(feeds: Feeds, options: InferOptions & CacheInfoOption): Promise<Results | InferResult> {
    let checked: Checked;
    try {
      checked = this.#check(feeds, options);
    } catch (e) {
      this.#count(toKilnError(e));
      throw toKilnError(e);
    }
    const answer = (outputs: Results, cache: CacheInfo): Results | InferResult => (options.withCacheInfo ? { outputs, cache } : outputs);
    const c = this.#cache;
    if (!c) {
      if (!this.#semantic) return answer(await this.#queued(feeds, options, checked), { outcome: 'none' });
      const served = await this.#inferSemantic(feeds, options, checked);
      return served instanceof SemanticAnswer ? answer(served.outputs, { outcome: 'semantic_hit', similarity: served.similarity }) : answer(served, { outcome: 'miss' });
    }
    let ran = false;
    const run = async (): Promise<Results> => {
      ran = true;
      if (!this.#semantic) return this.#queued(feeds, options, checked);
      const served = await this.#inferSemantic(feeds, options, checked);
      if (served instanceof SemanticAnswer) throw served;
      return served;
    };
    let served: { outputs: Results; outcome: 'hit' | 'miss' };
    try {
      served = await c.cache.serve(responseKey(c.key, c.inputs, checked.pairs, [], options.partition), run, c.counters, options.signal, c.key);
    } catch (e) {
      if (e instanceof SemanticAnswer) return answer(e.outputs, { outcome: 'semantic_hit', similarity: e.similarity });
      // A run's failure is counted where it happened; a wait for another's run is counted here.
      if (!ran) this.#count(toKilnError(e));
      throw toKilnError(e);
    }
    if (served.outcome === 'hit') {
      this.#stats.requests++;
      this.#stats.success++;
    }
    return answer(served.outputs, { outcome: served.outcome });
  }

  /** A semantic hit (a copy of the cached answer), or the model's answer, then stored under the request's vector. */
  async #inferSemantic(feeds: Feeds, options: InferOptions, checked: Checked): Promise<Results | SemanticAnswer> {
    const s = this.#semantic as ModelSemanticCache;
    const partition = s.partition(options.partition ?? '', feeds);
    const found = await s.lookup(partition, feeds);
    if (found.hit) {
      this.#stats.requests++;
      this.#stats.success++;
      if (s.shouldVerify()) this.#verify(s, feeds, options, found.outputs);
      return new SemanticAnswer(found.outputs, found.similarity);
    }
    const outputs = await this.#queued(feeds, options, checked);
    if (found.vector) s.insert(partition, found.vector, outputs);
    return outputs;
  }

  /**
   * Re-runs a semantic hit's request in the background, through the queue, and counts
   * whether the cached answer was right. The feeds are copied first: the caller owns its
   * buffers again once answered. A rerun that fails (the model disposed) counts nothing.
   */
  #verify(s: ModelSemanticCache, feeds: Feeds, options: InferOptions, cached: Results): void {
    const copy: Record<string, Tensor> = {};
    const dup = (t: { type: string; dims: readonly number[] } & Partial<Pick<Tensor, 'data'>>): Tensor | undefined => {
      const data = t.data as unknown as { slice(): never } | undefined;
      return data && typeof data.slice === 'function' ? new Tensor(t.type as TensorType, data.slice(), t.dims) : undefined;
    };
    for (const [name, t] of Object.entries(feeds)) {
      const d = dup(t as Tensor);
      if (!d) return; // a device tensor: not verified
      copy[name] = d;
    }
    const expected: Results = {};
    for (const [name, t] of Object.entries(cached)) expected[name] = dup(t) as Tensor;
    this.#queued(copy, { priority: options.priority }, undefined).then((fresh) => s.record(expected, fresh), () => undefined);
  }

  /** Rejects queued requests with E_DISPOSED, lets running batches finish, then releases the session. */
  async dispose(): Promise<void> {
    if (!this.#disposed) {
      this.#disposed = true;
      clearTimeout(this.#timer);
      if (this.#immediate) clearImmediate(this.#immediate);
      for (const r of [...this.#queue.ordered()]) {
        this.#queue.remove(r);
        this.#fail(r, new KilnError('E_DISPOSED', 'model was disposed before this request ran'));
      }
      if (this.#runningBatches.size > 0) await new Promise<void>((done) => this.#idle.push(done));
    }
    await Promise.all(this.#sessions.map((session) => session.dispose()));
  }

  /** Validates a request: feeds, batch dims, priority, timeout. */
  #check(feeds: Feeds, options: InferOptions): Checked {
    if (this.#disposed) throw new KilnError('E_DISPOSED', 'model is disposed');
    const c = this.#config;
    if (options === null || typeof options !== 'object') {
      throw new KilnError('E_INVALID_ARGUMENT', `infer options must be an object, received ${options === null ? 'null' : typeof options}`);
    }
    const signal = options.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      throw new KilnError('E_INVALID_ARGUMENT', 'signal must be an AbortSignal');
    }
    if (signal?.aborted) throw new KilnError('E_ABORTED', 'request was aborted before it was queued');
    if (options.partition !== undefined && typeof options.partition !== 'string') {
      throw new KilnError('E_INVALID_ARGUMENT', `partition must be a string, received ${typeof options.partition}`);
    }
    const pairs = batchPort(this.#session).requestFeeds(feeds);
    let size = 1;
    let shapeKey = '';
    if (c.maxBatchSize > 0) {
      size = (pairs[1] as readonly number[])[0];
      for (let i = 1; i < pairs.length; i += 2) {
        const dims = pairs[i] as readonly number[];
        if (dims[0] !== size) {
          throw new KilnError('E_SHAPE_MISMATCH', `every input needs the same batch dim: received ${size} and ${dims[0]}`);
        }
      }
      shapeKey = this.#shapeKey(pairs);
      if (size < 1 || size > c.maxBatchSize) {
        throw new KilnError('E_INVALID_ARGUMENT', `request batch dim ${size} is outside [1, maxBatchSize = ${c.maxBatchSize}]`);
      }
    }
    const asked = options.priority;
    const levelNumber = c.priorityLevels === 0 ? 1 : asked === undefined || asked === 0 ? c.defaultPriorityLevel : asked;
    if (!Number.isInteger(levelNumber) || levelNumber < 1 || levelNumber > Math.max(c.priorityLevels, 1)) {
      throw new KilnError('E_INVALID_ARGUMENT', `priority must be an integer in [1, ${c.priorityLevels}], received ${String(options.priority)}`);
    }
    const level = levelNumber - 1;
    const policy = this.#queue.policy(level);
    let timeoutUs = policy.defaultTimeoutUs;
    if (options.timeoutMs !== undefined) {
      if (typeof options.timeoutMs !== 'number' || !(options.timeoutMs > 0)) {
        throw new KilnError('E_INVALID_ARGUMENT', `timeoutMs must be a positive number, received ${String(options.timeoutMs)}`);
      }
      const asked = options.timeoutMs * 1000;
      if (policy.allowTimeoutOverride && (timeoutUs === 0 || asked < timeoutUs)) timeoutUs = asked;
    }
    return { pairs, size, shapeKey, level, timeoutUs };
  }

  /** Queues a checked request, unless the queue is full or adaptive admission refuses it. */
  #enqueue(feeds: Feeds, options: InferOptions, checked: Checked, resolve: (r: Results) => void, reject: (e: KilnError) => void): void {
    // A cached model checks before its lookup: the model may be disposed, the signal aborted since.
    if (this.#disposed) throw new KilnError('E_DISPOSED', 'model is disposed');
    const signal = options.signal;
    if (signal?.aborted) throw new KilnError('E_ABORTED', 'request was aborted before it was queued');
    const c = this.#config;
    const { pairs, size, shapeKey, level, timeoutUs } = checked;
    const policy = this.#queue.policy(level);
    if (policy.maxQueueSize > 0 && this.#queue.levelCount(level) >= policy.maxQueueSize) {
      const retryAfterMs = this.#slotFreeInMs(shapeKey);
      throw new KilnError('E_QUEUE_FULL', `queue of priority level ${level + 1} is full (${policy.maxQueueSize} requests)` +
        (retryAfterMs === undefined ? '; no batch has finished yet to estimate when to retry' : ''), { retryAfterMs });
    }
    const t = now();
    const adaptive = this.#adaptive;
    if (adaptive) {
      adaptive.arrived(size, t);
      const rowsAhead = this.#queue.rowsThrough(level);
      const a = adaptive.admit(shapeKey, size, rowsAhead, this.#freeInstances.length, this.#runningBatches, c.maxBatchSize || 1, t);
      if (!a.accept) {
        throw new KilnError('E_OVERLOADED', `request would take about ${a.predictedMs.toFixed(1)} ms (${rowsAhead} rows queued ahead, ` +
          `${this.#runningBatches.size} of ${c.instances} instances busy), over maxLatencyMs = ${adaptive.target}`, { retryAfterMs: a.retryAfterMs });
      }
    }
    const request: Request = {
      seq: this.#seq++, level, size, enqueuedAt: t, deadline: timeoutUs > 0 ? t + timeoutUs / 1000 : Infinity,
      delayed: false, feeds, pairs, shapeKey, state: 'queued', resolve, reject,
    };
    this.#stats.requests++;
    if (signal) {
      const onAbort = (): void => this.#abort(request);
      signal.addEventListener('abort', onAbort, { once: true });
      request.detach = () => signal.removeEventListener('abort', onAbort);
    }
    this.#queue.push(request);
    this.#scheduleSoon();
  }

  #abort(r: Request): void {
    if (r.state === 'queued') this.#queue.remove(r);
    if (r.state !== 'settled') this.#fail(r, new KilnError('E_ABORTED', r.state === 'queued' ? 'request was aborted while queued' : 'request was aborted while its batch ran'));
    // Nobody waits for a batch whose every request is answered: stop its run.
    const batch = r.batch;
    if (batch && this.#runningBatches.has(batch) && batch.requests.every((q) => q.state === 'settled')) batch.stop?.abort();
    this.#scheduleSoon();
  }

  /**
   * A retry hint for a full queue: when the next running batch is expected to end (and take
   * queued requests), from measured batch costs; undefined before any batch has finished.
   */
  #slotFreeInMs(key: string): number | undefined {
    const t = now();
    let soonest = Infinity;
    for (const b of this.#runningBatches) {
      const ms = this.#costs.of(b.key).hint(b.rows);
      if (ms !== undefined) soonest = Math.min(soonest, b.started + ms - t);
    }
    if (soonest === Infinity) soonest = this.#costs.of(key).hint(1) ?? Infinity;
    return soonest === Infinity ? undefined : Math.max(1, Math.ceil(soonest));
  }

  /**
   * Schedules once per turn of the microtask queue: requests that arrive together (a burst,
   * or the callers a finished batch just answered) are all queued before a batch forms.
   */
  #scheduleSoon(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#schedule();
    });
  }

  /** Forms and dispatches batches while an instance is free; arms a timer otherwise. */
  #schedule(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#disposed) return;
    const t = now();
    for (const r of this.#queue.expire(t)) {
      this.#fail(r, new KilnError('E_TIMEOUT', `request timed out after ${((t - r.enqueuedAt)).toFixed(1)} ms in the queue`));
    }
    this.#rejectLate(t);
    let wakeAt = this.#queue.nextDeadline();
    while (this.#freeInstances.length > 0 && this.#queue.count > 0) {
      const decision = this.#formBatch(t);
      if ('batch' in decision) {
        this.#dispatch(decision.batch);
      } else {
        wakeAt = Math.min(wakeAt, decision.waitUntil);
        break;
      }
    }
    if (wakeAt !== Infinity && this.#queue.count > 0) this.#wake(wakeAt);
  }

  /**
   * Adaptive batching: while every instance is busy, a queued request that has already
   * waited past maxLatencyMs is answered with E_OVERLOADED rather than served late, so the
   * backlog sheds (only once costs are measured: the slow first runs of a cold model do not
   * count against the requests queued behind them). With an instance free it is served: it
   * is late through a stall of the machine, and refusing it would help nobody.
   */
  #rejectLate(t: number): void {
    const adaptive = this.#adaptive;
    if (!adaptive || this.#queue.count === 0 || this.#freeInstances.length > 0) return;
    const limit = t - adaptive.target;
    const late = this.#queue.removeWhere((r) => r.enqueuedAt < limit && this.#costs.of(r.shapeKey).warm);
    for (const r of late) {
      const retryAfterMs = this.#slotFreeInMs(r.shapeKey);
      this.#fail(r, new KilnError('E_OVERLOADED', `request waited ${(t - r.enqueuedAt).toFixed(1)} ms in the queue, past maxLatencyMs = ${adaptive.target}`, { retryAfterMs }));
    }
  }

  #wake(at: number): void {
    const delay = at - now();
    if (delay >= 1) {
      this.#timer = setTimeout(() => this.#schedule(), Math.floor(delay));
    } else if (!this.#immediate) {
      // Sub-millisecond waits (queue delays are in µs): re-check on the next loop turn.
      this.#immediate = setImmediate(() => {
        this.#immediate = undefined;
        this.#schedule();
      });
    }
  }

  /**
   * Triton's rules: scan in priority then arrival order, never splitting a request; a
   * request that would exceed maxBatchSize or has other non-batch dims ends the batch; a
   * preferred size reached runs at once (the largest reached); when the oldest scanned
   * request has waited maxQueueDelay the preferred sizes are ignored.
   */
  #formBatch(t: number): { batch: Request[] } | { waitUntil: number } {
    const c = this.#config;
    if (!c.batching) {
      const first = this.#queue.ordered().next().value as Request;
      return { batch: [first] };
    }
    // While waiting can still reach a preferred size, the scan stops at the largest one
    // (Triton's max preferred batch size); once the delay is exceeded, at maxBatchSize.
    const preferredCap = c.preferredBatchSize.length > 0 ? c.preferredBatchSize[c.preferredBatchSize.length - 1] : c.maxBatchSize;
    let scan = this.#scan(preferredCap);
    // As in Triton, no delay means nothing is ever "exceeded": preferred sizes still cut.
    const due = scan.oldest + c.maxQueueDelayUs / 1000;
    const adaptive = this.#adaptive;
    if (!adaptive && c.maxQueueDelayUs > 0 && t >= due) {
      if (preferredCap < c.maxBatchSize) scan = this.#scan(c.maxBatchSize);
      return { batch: scan.batch };
    }
    const { batch, rows, preferredCount, oldest, full } = scan;
    if (preferredCount > 0) return { batch: batch.slice(0, preferredCount) };
    if (full || (!adaptive && c.maxQueueDelayUs === 0)) return { batch };
    if (adaptive) {
      const waitUntil = adaptive.waitUntil(batch[0].shapeKey, rows, oldest, c.maxBatchSize, t);
      return waitUntil === undefined ? { batch } : { waitUntil };
    }
    return { waitUntil: due };
  }

  /**
   * Requests in scan order that form one batch of at most `cap` rows (a larger request
   * alone), stopping at one with other non-batch dims. `full`: stopped because the next
   * request cannot join, so waiting cannot grow the batch.
   */
  #scan(cap: number): { batch: Request[]; rows: number; preferredCount: number; oldest: number; full: boolean } {
    const preferred = this.#config.preferredBatchSize;
    const batch: Request[] = [];
    let rows = 0;
    let key: string | undefined;
    let preferredCount = 0;
    let oldest = Infinity;
    let full = false;
    for (const r of this.#queue.ordered()) {
      if ((key !== undefined && r.shapeKey !== key) || (rows + r.size > cap && batch.length > 0)) {
        full = true;
        break;
      }
      batch.push(r);
      rows += r.size;
      key = r.shapeKey;
      if (r.enqueuedAt < oldest) oldest = r.enqueuedAt;
      if (preferred.includes(rows)) preferredCount = batch.length;
      if (rows >= cap) {
        full = true;
        break;
      }
    }
    return { batch, rows, preferredCount, oldest, full };
  }

  #dispatch(requests: Request[]): void {
    const session = this.#freeInstances.pop() as Session;
    this.#runningRequests += requests.length;
    const t = now();
    let rows = 0;
    let abortable = false;
    this.#queue.removeAll(requests);
    for (const r of requests) {
      r.state = 'running';
      rows += r.size;
      if (r.detach) abortable = true;
    }
    const batch: Batch = { started: t, rows, key: requests[0].shapeKey, requests, stop: abortable ? new AbortController() : undefined };
    for (const r of requests) r.batch = batch;
    this.#runningBatches.add(batch);
    this.#adaptive?.dispatched(rows, t);
    void this.#execute(session, batch);
  }

  async #execute(session: Session, run: Batch): Promise<void> {
    const c = this.#config;
    const { requests: batch, rows, started } = run;
    let padding: BatchPadding = null;
    try {
      let outputs: Results;
      let computeUs = 0;
      let inputUs = 0;
      if (c.batching) {
        padding = this.#padding?.spec(batch) ?? null;
        const r = await batchPort(session).runBatch(batch.map((q) => q.pairs), padding, run.stop?.signal);
        outputs = r.outputs;
        computeUs = r.computeUs;
        inputUs = r.inputUs;
      } else {
        outputs = await session.run(batch[0].feeds);
        computeUs = (now() - started) * 1000; // no core timings without batching: the run's wall time
      }
      const ended = now();
      // A batch costs its time in the core (gather and run); the rest of its wall time is the
      // JS thread's delay in taking the answer, which depends on load, not on the batch size.
      const coreMs = (computeUs + inputUs) / 1000;
      const costMs = coreMs > 0 ? Math.min(coreMs, ended - started) : ended - started;
      // The batch's full shape: a first run at it is not a cost sample.
      const shape = `${rows};${run.key}${padding ? JSON.stringify(padding) : ''}`;
      if (this.#costs.of(run.key).observe(shape, rows, costMs, ended)) this.#adaptive?.answered(ended - started - costMs);
      this.#stats.executionCount++;
      this.#stats.batchSizes[rows] = (this.#stats.batchSizes[rows] ?? 0) + 1;
      const t0 = now();
      let offset = 0;
      const split = c.batching ? splitOf(outputs, rows) : undefined;
      const parts = batch.map((r) => {
        const part = split ? rowsOf(split, offset, r, padding ? this.#padding : undefined) : outputs;
        offset += r.size;
        return part;
      });
      const t1 = now();
      const outputUs = (t1 - t0) * 1000;
      const sized = (this.#stats.batchStats[rows] ??= { count: 0, computeInputUs: 0, computeInferUs: 0, computeOutputUs: 0 });
      sized.count++;
      sized.computeInputUs += inputUs;
      sized.computeInferUs += computeUs;
      sized.computeOutputUs += outputUs;
      this.#adaptive?.served(batch.filter((r) => r.state !== 'settled').map((r) => r.enqueuedAt), started, t1);
      batch.forEach((r, i) => {
        if (r.state === 'settled') return;
        this.#stats.success++;
        this.#stats.inferenceCount += r.size;
        this.#stats.queueUs += (started - r.enqueuedAt) * 1000;
        this.#stats.computeInputUs += inputUs;
        this.#stats.computeInferUs += computeUs;
        this.#stats.computeOutputUs += outputUs / batch.length;
        this.#settle(r, () => r.resolve(parts[i]));
      });
    } catch (e) {
      const err = padding && this.#padding ? this.#padding.describeFailure(toKilnError(e), padding, batch) : toKilnError(e);
      for (const r of batch) this.#fail(r, err);
    } finally {
      this.#runningBatches.delete(run);
      this.#freeInstances.push(session);
      this.#runningRequests -= batch.length;
      if (this.#runningBatches.size === 0) for (const done of this.#idle.splice(0)) done();
      this.#scheduleSoon();
    }
  }

  /**
   * Requests batch together when their non-batch dims agree (except where padding may even
   * them out): this key says which. Formatting numbers is the costliest step of queueing a
   * request, and consecutive requests nearly always repeat the last one's dims: those reuse
   * its key.
   */
  #shapeKey(pairs: readonly unknown[]): string {
    const padding = this.#padding;
    if (padding) {
      let key = '';
      for (let i = 1; i < pairs.length; i += 2) key += `${padding.keyOf((i - 1) / 2, pairs[i] as readonly number[])};`;
      return key;
    }
    const last = this.#lastDims;
    let same = last.length === pairs.length >> 1;
    for (let i = 1; i < pairs.length && same; i += 2) {
      const dims = pairs[i] as readonly number[];
      const before = last[(i - 1) >> 1];
      same = before.length === dims.length;
      for (let d = 1; d < dims.length && same; d++) same = before[d] === dims[d];
    }
    if (same) return this.#lastShapeKey;
    let key = '';
    last.length = 0;
    for (let i = 1; i < pairs.length; i += 2) {
      const dims = pairs[i] as readonly number[];
      last.push(dims.slice());
      key += `${dims.slice(1).join(',')};`;
    }
    this.#lastShapeKey = key;
    return key;
  }

  #count(e: KilnError): void {
    this.#stats.requests++;
    this.#stats.failure[e.code] = (this.#stats.failure[e.code] ?? 0) + 1;
  }

  #fail(r: Request, e: KilnError): void {
    if (r.state === 'settled') return;
    const code: KilnErrorCode = e.code;
    this.#stats.failure[code] = (this.#stats.failure[code] ?? 0) + 1;
    this.#settle(r, () => r.reject(e));
  }

  /** Settles `r`; with preserveOrdering, answers wait for every earlier request's. */
  #settle(r: Request, answer: () => void): void {
    r.state = 'settled';
    r.detach?.();
    if (!this.#config.preserveOrdering) {
      answer();
      return;
    }
    this.#held.set(r.seq, answer);
    for (let next = this.#held.get(this.#nextDelivery); next; next = this.#held.get(this.#nextDelivery)) {
      this.#held.delete(this.#nextDelivery++);
      next();
    }
  }
}

/** kiln.loadModel(pathOrBytes, config): a model behind the dynamic batcher. */
export function loadModel(model: string | Uint8Array | ArrayBuffer, config?: ModelConfig): Promise<Model> {
  return Model.load(model, config);
}

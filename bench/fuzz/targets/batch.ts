/**
 * Target batch: loadModel with a random batching configuration + concurrent infer().
 */
import { loadModel, type KilnErrorCode, type Model, type ModelConfig, type Results, type TensorType } from '../../../lib';
import { ALL_TYPES, addModel, mlpModel, mlpReference, multiIOModel, symbolicDimsModel } from '../../../lib/samples';
import type { FeedTensor } from '../generators/feed-mutations';
import { CTORS, type Numeric, type NumericType, product, randomValues } from '../generators/tensors';
import { Ctx, describeError, type Expect, WATCHDOG_MS, within } from '../judge';
import { Rng } from '../random';
import type { CallInfo } from '../report';
import { approximately, checkResults, elementwise, exactly, type Expected } from '../results';

interface BatchSubject {
  readonly name: string;
  readonly bytes: Uint8Array;
  readonly inputs: readonly { name: string; type: TensorType; rest: number[] | 'seq' }[];
  /** Model config fields this subject needs (padding). */
  readonly input?: ModelConfig['input'];
  /** A valid request of `n` rows: feeds and its outputs. */
  request(rng: Rng, n: number): { feeds: Record<string, FeedTensor>; expected: Record<string, Expected> };
}

function makeBatchSubjects(): BatchSubject[] {
  return [
    {
      name: 'add', bytes: addModel(),
      inputs: [{ name: 'a', type: 'float32', rest: [4] }, { name: 'b', type: 'float32', rest: [4] }],
      request(rng, n) {
        const a = randomValues(rng, 'float32', n * 4, true) as Float32Array;
        const b = randomValues(rng, 'float32', n * 4, true) as Float32Array;
        const y = Float32Array.from(a, (v, i) => v + b[i]);
        return {
          feeds: { a: { type: 'float32', data: a, dims: [n, 4] }, b: { type: 'float32', data: b, dims: [n, 4] } },
          expected: { y: approximately('float32', [n, 4], y, 1e-6) },
        };
      },
    },
    {
      name: 'multi_io', bytes: multiIOModel(),
      inputs: [{ name: 'x', type: 'float32', rest: [3] }, { name: 'idx', type: 'int64', rest: [] }],
      request(rng, n) {
        const x = randomValues(rng, 'float32', n * 3, false) as Float32Array;
        const idx = randomValues(rng, 'int64', n, false) as BigInt64Array;
        const sum = new Float64Array(n);
        for (let i = 0; i < n * 3; i++) sum[Math.floor(i / 3)] += x[i];
        const doubled = BigInt64Array.from(idx, (v) => v * 2n);
        return {
          feeds: { x: { type: 'float32', data: x, dims: [n, 3] }, idx: { type: 'int64', data: idx, dims: [n] } },
          expected: { sum: approximately('float32', [n], sum, 1e-4), doubled: exactly('int64', [n], doubled) },
        };
      },
    },
    {
      name: 'mlp', bytes: mlpModel(),
      inputs: [{ name: 'x', type: 'float32', rest: [512] }],
      request(rng, n) {
        const x = randomValues(rng, 'float32', n * 512, false) as Float32Array;
        return { feeds: { x: { type: 'float32', data: x, dims: [n, 512] } }, expected: { y: approximately('float32', [n, 10], mlpReference(x, n), 1e-3) } };
      },
    },
    {
      // Ragged requests padded into one batch; each caller gets its own lengths back.
      name: 'symbolic_dims (padded)', bytes: symbolicDimsModel(),
      inputs: [{ name: 'x', type: 'float32', rest: 'seq' }, { name: 'u', type: 'float32', rest: [4] }],
      input: [{ name: 'x', allowPadding: true, padValue: -1, lengthBuckets: [2, 4, 8] }],
      request(rng, n) {
        const seq = rng.range(1, 6);
        const x = randomValues(rng, 'float32', n * seq * 8, false) as Float32Array;
        const u = randomValues(rng, 'float32', n * 4, false) as Float32Array;
        return {
          feeds: { x: { type: 'float32', data: x, dims: [n, seq, 8] }, u: { type: 'float32', data: u, dims: [n, 4] } },
          expected: {
            y: elementwise('float32', [n, seq, 8], x.length, (got, i) => (got === (x[i] > 0 ? x[i] : 0) ? undefined : `is ${String(got)}, Relu(${x[i]})`)),
            v: elementwise('float32', [n, 4], u.length, (got, i) => (got === -u[i] ? undefined : `is ${String(got)}, -(${u[i]})`)),
          },
        };
      },
    },
  ];
}

interface Episode {
  readonly config: ModelConfig;
  readonly maxBatch: number;
  readonly levels: number;
  /** Codes any valid request of this configuration may end with. */
  readonly allow: string[];
  readonly label: string;
}

function randomEpisode(rng: Rng, s: BatchSubject): Episode {
  const maxBatch = rng.range(1, s.name === 'mlp' ? 8 : 16);
  const allow: string[] = [];
  let levels = 0;
  let dynamicBatching: ModelConfig['dynamicBatching'];
  if (rng.chance(0.15)) {
    dynamicBatching = false;
  } else {
    levels = rng.pick([0, 0, 2, 3]);
    const policy = rng.chance(0.5) ? {
      timeoutAction: rng.pick(['REJECT', 'DELAY'] as const),
      defaultTimeoutMicroseconds: rng.pick([0, 500, 5000]),
      allowTimeoutOverride: rng.chance(0.5),
      maxQueueSize: rng.pick([0, 0, 2, 8]),
    } : undefined;
    if (policy && policy.defaultTimeoutMicroseconds > 0) allow.push('E_TIMEOUT');
    if (policy && policy.maxQueueSize > 0) allow.push('E_QUEUE_FULL');
    const maxLatencyMs = rng.chance(0.15) ? rng.pick([1, 5, 50]) : undefined;
    if (maxLatencyMs !== undefined) allow.push('E_OVERLOADED');
    dynamicBatching = {
      preferredBatchSize: Array.from({ length: rng.int(3) }, () => rng.range(1, maxBatch)),
      maxQueueDelayMicroseconds: rng.pick([0, 100, 1000, 5000]),
      preserveOrdering: rng.chance(0.3),
      priorityLevels: levels,
      ...(levels > 0 ? { defaultPriorityLevel: rng.range(1, levels) } : {}),
      ...(policy ? { defaultQueuePolicy: policy } : {}),
      ...(maxLatencyMs !== undefined ? { maxLatencyMs } : {}),
    };
  }
  const config: ModelConfig = { maxBatchSize: maxBatch, dynamicBatching, instanceGroup: [{ count: rng.range(1, 3) }], ...(s.input ? { input: s.input } : {}) };
  return { config, maxBatch, levels, allow, label: `${s.name} ${JSON.stringify(config)}` };
}

/** Configurations loadModel must refuse. */
const BAD_CONFIGS: readonly unknown[] = [
  { maxBatchSize: -1 }, { maxBatchSize: 1.5 }, { maxBatchSize: 'x' }, { dynamicBatching: { priorityLevels: -1 } },
  { dynamicBatching: { preferredBatchSize: [0] } }, { dynamicBatching: { maxLatencyMs: 0 } }, { bogus: 1 },
  { instanceGroup: [] }, { instanceGroup: [{ count: 0 }] }, { input: [{ name: 'nowhere', allowPadding: true }] }, null, 42,
  { dynamicBatching: { priorityLevels: 2, defaultPriorityLevel: 3 } }, { dynamicBatching: { defaultQueuePolicy: { maxQueueSize: -1 } } },
];

interface BatchRequest {
  readonly index: number;
  readonly info: CallInfo;
  readonly expect: Expect;
  readonly feeds: unknown;
  settled: number;
  outcome?: string;
  value?: Results;
}

export class BatchFuzzer {
  readonly #subjects = makeBatchSubjects();

  async iteration(ctx: Ctx): Promise<void> {
    const rng = ctx.rng;
    const s = rng.weighted(this.#subjects.map((x) => [x.name === 'mlp' ? 0.5 : 1, x] as const));
    if (rng.chance(0.05)) {
      const config = rng.pick(BAD_CONFIGS);
      const info = { family: 'batch-config', label: `${s.name} config ${JSON.stringify(config)}` };
      if (ctx.skipped(info.family)) return;
      const { value } = await ctx.begin(info, { valid: 'no', want: 'E_INVALID_ARGUMENT' }, 'async', () => loadModel(s.bytes, config as ModelConfig));
      if (value) await (value as Model).dispose();
      return;
    }
    const episode = randomEpisode(rng, s);
    const family = 'batch';
    if (ctx.skipped(family)) return;
    const { value: model } = await ctx.begin({ family, label: `load ${episode.label}` }, { valid: 'yes' }, 'async', () => loadModel(s.bytes, episode.config));
    if (!model) return;
    await this.#episode(ctx, rng, s, episode, model);
  }

  async #episode(ctx: Ctx, rng: Rng, s: BatchSubject, e: Episode, model: Model): Promise<void> {
    const count = rng.range(1, 40);
    const disposeAt = rng.chance(0.5) ? rng.int(count + 1) : -1;
    const requests: BatchRequest[] = [];
    const pending: Promise<void>[] = [];
    const settleOrder: number[] = [];
    let disposing: Promise<void> | undefined;
    for (let i = 0; i < count; i++) {
      if (i === disposeAt) {
        ctx.step({ family: 'batch', label: `dispose after ${i} requests` });
        disposing = model.dispose();
      }
      const gap = rng.weighted([[6, 'none'], [1, 'microtask'], [1, 'immediate'], [1, 'timeout']] as const);
      if (gap === 'microtask') await Promise.resolve();
      else if (gap === 'immediate') await new Promise<void>((done) => setImmediate(done));
      else if (gap === 'timeout') await new Promise<void>((done) => setTimeout(done, rng.int(3)));
      const r = this.#request(rng.fork(i), s, e, i, disposing !== undefined);
      requests.push(r);
      ctx.step(r.info);
      let p: Promise<Results>;
      try {
        p = model.infer(r.feeds as never, r.options as never);
      } catch (err) {
        ctx.finding(r.info, 'sync-throw', `infer() threw synchronously instead of rejecting: ${describeError(err)}`);
        p = Promise.reject(err);
      }
      r.abort?.();
      pending.push(p.then(
        (value) => {
          r.settled++;
          r.value = value;
          settleOrder.push(r.index);
          r.outcome = ctx.judge(r.info, r.expect, { ok: true, value });
        },
        (error: unknown) => {
          r.settled++;
          r.outcome = ctx.judge(r.info, r.expect, { ok: false, error });
        },
      ));
    }
    const info = { family: 'batch', label: `episode ${e.label}, ${count} requests, dispose ${disposeAt < 0 ? 'at the end' : `after ${disposeAt}`}` };
    ctx.step(info);
    try {
      await within(Promise.all(pending), WATCHDOG_MS);
    } catch {
      const open = requests.filter((r) => r.settled === 0);
      ctx.finding(info, 'hang', `${open.length} of ${count} requests unanswered after ${WATCHDOG_MS} ms (first: ${open[0]?.info.label})`);
    }
    const { outcome } = await ctx.begin({ family: 'batch', label: `${info.label}: dispose` }, { valid: 'yes' }, 'async', () => disposing ?? model.dispose());
    if (outcome === 'hang') return;
    for (const r of requests) {
      if (r.settled > 1) ctx.finding(r.info, 'settled-twice', `request settled ${r.settled} times`);
      // Outputs are views of native memory: still correct once the model is gone.
      if (r.value !== undefined && r.expect.check) {
        const wrong = r.expect.check(r.value);
        if (wrong !== undefined) ctx.finding(r.info, 'wrong-result-after-dispose', `after dispose: ${wrong}`);
      }
    }
    if (e.config.dynamicBatching && (e.config.dynamicBatching as { preserveOrdering?: boolean }).preserveOrdering) {
      for (let k = 1; k < settleOrder.length; k++) {
        if (settleOrder[k] < settleOrder[k - 1]) {
          ctx.finding(info, 'order', `preserveOrdering: request ${settleOrder[k]} answered after request ${settleOrder[k - 1]}`);
          break;
        }
      }
    }
    const stats = model.stats();
    const failures = Object.values(stats.failure).reduce((a, b) => a + (b ?? 0), 0);
    if (stats.requests !== count || stats.success + failures !== stats.requests || stats.pending !== 0) {
      ctx.finding(info, 'stats', `stats after dispose: requests ${stats.requests} (made ${count}), success ${stats.success} + failures ${failures}, pending ${stats.pending}`);
    }
  }

  /** A random request: valid (of a random size) or broken in one way, with random options. */
  #request(rng: Rng, s: BatchSubject, e: Episode, index: number, afterDispose: boolean): BatchRequest & { options: unknown; abort?: () => void } {
    const n = rng.range(1, e.maxBatch);
    const valid = s.request(rng, n);
    const feeds: Record<string, unknown> = { ...valid.feeds };
    const allow = [...e.allow];
    const parts: string[] = [`${n} rows`];
    let validity: 'yes' | 'no' | 'maybe' = 'yes';
    let want: KilnErrorCode | undefined;
    if (rng.chance(0.25)) {
      const input = rng.pick(s.inputs);
      const t = valid.feeds[input.name];
      const what = rng.pick(['rows-0', 'rows-over', 'rows-differ', 'dtype', 'class', 'length', 'rest-dim', 'missing', 'extra', 'dims-nan']);
      const rest = (t.dims as number[]).slice(1);
      const ctor = CTORS[input.type as NumericType];
      const reshaped = (rowsNow: number, restNow: number[] = rest): FeedTensor => ({ type: input.type, data: new ctor(rowsNow * product(restNow)), dims: [rowsNow, ...restNow] });
      validity = 'no';
      switch (what) {
        case 'rows-0': feeds[input.name] = reshaped(0); if (s.inputs.length === 1) want = 'E_INVALID_ARGUMENT'; break;
        case 'rows-over': feeds[input.name] = reshaped(e.maxBatch + rng.range(1, 3)); if (s.inputs.length === 1) want = 'E_INVALID_ARGUMENT'; break;
        case 'rows-differ':
          if (s.inputs.length < 2) validity = 'yes';
          else { feeds[input.name] = reshaped(n === 1 ? 2 : n - 1); want = 'E_SHAPE_MISMATCH'; }
          break;
        case 'dtype': feeds[input.name] = { ...t, type: rng.pick(ALL_TYPES.filter((x) => x !== input.type)) }; want = 'E_DTYPE_MISMATCH'; break;
        case 'class': feeds[input.name] = { ...t, data: new Float64Array((t.data as Numeric).length) }; want = 'E_DTYPE_MISMATCH'; break;
        case 'length': feeds[input.name] = { ...t, data: new ctor((t.data as Numeric).length + 1) }; want = 'E_INVALID_ARGUMENT'; break;
        case 'rest-dim':
          if (input.rest === 'seq' || rest.length === 0) validity = 'yes';
          else { feeds[input.name] = reshaped(n, [rest[0] + 1, ...rest.slice(1)]); want = 'E_SHAPE_MISMATCH'; }
          break;
        case 'missing': delete feeds[input.name]; want = 'E_INVALID_ARGUMENT'; break;
        case 'extra': feeds.bogus = t; want = 'E_INVALID_ARGUMENT'; break;
        case 'dims-nan': feeds[input.name] = { ...t, dims: rest.length > 0 ? [n, ...rest.map(() => NaN)] : [NaN] }; want = 'E_INVALID_ARGUMENT'; break;
      }
      if (validity === 'no') parts.push(`input ${input.name}: ${what}`);
    }
    const options: Record<string, unknown> = {};
    let optionsValue: unknown = options;
    let abort: (() => void) | undefined;
    // With more than one problem, which one Kiln reports first is its business.
    const optionsValidity = (v: 'no'): void => {
      want = validity === 'yes' ? 'E_INVALID_ARGUMENT' : undefined;
      validity = v;
    };
    if (rng.chance(0.3)) {
      const priority = rng.pick([0, 1, 2, 3, -1, 1.5, 4, 99, 'high', NaN]);
      options.priority = priority;
      parts.push(`priority ${String(priority)}`);
      const ok = e.levels === 0 || priority === 0 || (Number.isInteger(priority) && (priority as number) >= 1 && (priority as number) <= e.levels);
      if (!ok) optionsValidity('no');
    }
    if (rng.chance(0.25)) {
      const timeoutMs = rng.pick([0.05, 0.5, 2, 20, 0, -1, NaN, '5', Infinity]);
      options.timeoutMs = timeoutMs;
      parts.push(`timeoutMs ${String(timeoutMs)}`);
      if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) optionsValidity('no');
      else allow.push('E_TIMEOUT');
    }
    if (rng.chance(0.25)) {
      const what = rng.pick(['aborted', 'sync', 'timeout', 'fake']);
      parts.push(`signal ${what}`);
      if (what === 'aborted') {
        options.signal = AbortSignal.abort();
        want = validity === 'yes' ? 'E_ABORTED' : undefined;
        validity = 'no';
      } else if (what === 'fake') {
        options.signal = { aborted: false, addEventListener(): void {}, removeEventListener(): void {} };
        optionsValidity('no');
      } else {
        const controller = new AbortController();
        options.signal = controller.signal;
        allow.push('E_ABORTED');
        const ms = rng.int(5);
        abort = what === 'sync' ? () => controller.abort() : () => void setTimeout(() => controller.abort(), ms);
      }
    }
    if (rng.chance(0.03)) {
      optionsValue = rng.pick([null, 42, 'options']);
      parts.push(`options ${JSON.stringify(optionsValue)}`);
      optionsValidity('no');
    }
    if (afterDispose) {
      validity = 'no';
      want = 'E_DISPOSED';
      parts.push('after dispose');
    } else {
      allow.push('E_DISPOSED');
    }
    const expected = valid.expected;
    const check = (r: unknown): string | undefined => checkResults(r, Object.keys(expected), expected);
    return {
      index, feeds, options: optionsValue, abort, settled: 0,
      info: { family: 'batch', label: `request ${index}: ${parts.join(', ')}` },
      expect: { valid: validity, want, allow, check },
    };
  }

  async teardown(): Promise<void> {}
}

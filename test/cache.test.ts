import { strict as assert } from 'assert';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GraphBuilder } from '../lib/onnx/builder';
import { createResponseCache, defaultResponseCache, KilnError, loadModel, type Feeds, type Model, type ModelConfig, type ResponseCache, type Results } from '../lib';
import { responseKey } from '../lib/cache/key';
import { ResponseCache as ResponseCacheClass } from '../lib/cache/response-cache';
import { LocalStore, type CacheStore } from '../lib/cache/store';
import { addModel } from '../lib/samples';
import { Tensor } from '../lib/tensor';
import { assertKilnError } from './helpers/assert-error';
import { FAIL, workModel, workRequest } from './helpers/batching-models';
import { startRedis, type RedisServer } from './helpers/redis';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** x: float32 ['N', 'M'] -> y = 2 * x. */
function doubleModel(): Uint8Array {
  const g = new GraphBuilder('double');
  const x = g.input('x', 'float32', ['N', 'M']);
  const two = g.initializer('two', 'float32', [], new Float32Array([2]));
  g.output(g.node('Mul', [x, two], { outputs: 'y' }) as string, 'float32', ['N', 'M']);
  return g.build({ opset: 17 });
}

const feedsOf = (values: number[], dims: number[]): Feeds => ({ x: { type: 'float32', data: Float32Array.from(values), dims } });
const yOf = (r: Results): number[] => [...(r.y.data as Float32Array)];

describe('exact response cache', function () {
  this.timeout(60_000);
  const double = doubleModel();
  const models: Model[] = [];
  const caches: ResponseCache[] = [];
  const load = async (bytes: Uint8Array | string, responseCache: ModelConfig['responseCache']): Promise<Model> => {
    const m = await loadModel(bytes, { responseCache });
    models.push(m);
    return m;
  };
  const local = (maxBytes = 1 << 20, ttlMs?: number): ResponseCache => {
    const c = createResponseCache({ local: { maxBytes, ttlMs } });
    caches.push(c);
    return c;
  };

  afterEach(async () => {
    await Promise.all(models.splice(0).map((m) => m.dispose()));
    await Promise.all(caches.splice(0).map((c) => c.close()));
  });

  describe('keys', () => {
    const x = new Float32Array([1, 2, 3, 4]);
    const key = (name: string, type: 'float32' | 'int32', dims: number[], outputs?: string[]): string =>
      responseKey('m', [{ name, type }], [type === 'int32' ? new Int32Array(x.buffer) : x, dims], outputs);

    it('the same bytes under another shape, datatype or input name give another key', () => {
      const base = key('x', 'float32', [1, 4]);
      assert.match(base, /^[0-9a-f]{64}$/);
      assert.equal(key('x', 'float32', [1, 4]), base);
      assert.notEqual(key('x', 'float32', [2, 2]), base);
      assert.notEqual(key('x', 'float32', [4, 1]), base);
      assert.notEqual(key('x', 'int32', [1, 4]), base);
      assert.notEqual(key('z', 'float32', [1, 4]), base);
      assert.notEqual(responseKey('m2', [{ name: 'x', type: 'float32' }], [x, [1, 4]]), base);
    });

    it('requested outputs are part of the key, in any order', () => {
      assert.notEqual(key('x', 'float32', [1, 4], ['y']), key('x', 'float32', [1, 4]));
      assert.equal(key('x', 'float32', [1, 4], ['a', 'b']), key('x', 'float32', [1, 4], ['b', 'a']));
      assert.notEqual(key('x', 'float32', [1, 4], ['a', 'b']), key('x', 'float32', [1, 4], ['ab']));
    });

    it('string tensors: each string is length-prefixed', () => {
      const k = (s: string[]): string => responseKey('m', [{ name: 's', type: 'string' }], [s, [s.length]]);
      assert.notEqual(k(['ab', 'c']), k(['a', 'bc']));
      assert.notEqual(k(['ab']), k(['a', 'b']));
    });
  });

  it('a hit equals the uncached result, never enters the queue, and says so', async () => {
    const plain = await load(double, undefined);
    const cached = await load(double, local());
    const f = feedsOf([1, 2, 3, 4], [1, 4]);
    const none = await plain.infer(f, { withCacheInfo: true });
    assert.equal(none.cache.outcome, 'none');
    const miss = await cached.infer(f, { withCacheInfo: true });
    const hit = await cached.infer(f, { withCacheInfo: true });
    assert.deepEqual([miss.cache.outcome, hit.cache.outcome], ['miss', 'hit']);
    assert.deepEqual(yOf(hit.outputs), yOf(none.outputs));
    assert.deepEqual(hit.outputs.y.dims, [1, 4]);
    assert.equal(hit.outputs.y.type, 'float32');
    assert.deepEqual(yOf(await cached.infer(f)), [2, 4, 6, 8], 'without withCacheInfo: the outputs alone');
    const s = cached.stats();
    assert.equal(s.executionCount, 1);
    assert.equal(s.requests, 3);
    assert.equal(s.success, 3);
    assert.equal(s.inferenceCount, 1, 'hits are not inferences');
    assert.ok(s.cache);
    assert.deepEqual([s.cache.hits, s.cache.misses, s.cache.errors, s.cache.entries], [2, 1, 0, 1]);
    assert.ok(s.cache.hitUs > 0 && s.cache.missUs > 0);
    assert.ok((s.cache.bytes ?? 0) > 16);
    assert.equal(plain.stats().cache, undefined);
  });

  it('tenants (partition) never share entries; a shared store counts entries and bytes per model', async () => {
    const shared = local();
    const m = await load(double, shared);
    const other = await load(addModel(), shared);
    const f = feedsOf([1, 2, 3, 4], [1, 4]);
    const outcome = async (partition?: string): Promise<string> => (await m.infer(f, { partition, withCacheInfo: true })).cache.outcome;
    assert.deepEqual([await outcome('a'), await outcome('a'), await outcome('b'), await outcome(), await outcome('b')], ['miss', 'hit', 'miss', 'miss', 'hit']);
    const held = m.stats().cache;
    assert.equal(held?.entries, 3);
    await other.infer({ a: new Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]), b: new Tensor('float32', new Float32Array([1, 1, 1, 1]), [1, 4]) });
    assert.equal(other.stats().cache?.entries, 1);
    assert.equal(m.stats().cache?.entries, 3, 'the other model\'s entry is not counted as this one\'s');
    const total = shared.stats();
    assert.equal(total.entries, 4);
    assert.equal(total.bytes, (held?.bytes ?? 0) + (other.stats().cache?.bytes ?? 0));
  });

  it('the same bytes under another shape miss and get their own answer', async () => {
    const m = await load(double, local());
    const a = await m.infer(feedsOf([1, 2, 3, 4], [1, 4]), { withCacheInfo: true });
    const b = await m.infer(feedsOf([1, 2, 3, 4], [2, 2]), { withCacheInfo: true });
    assert.deepEqual([a.cache.outcome, b.cache.outcome], ['miss', 'miss']);
    assert.deepEqual(b.outputs.y.dims, [2, 2]);
  });

  it('hits are copies: a caller changing its result changes nobody else\'s', async () => {
    const m = await load(double, local());
    const f = feedsOf([1, 2, 3, 4], [1, 4]);
    const first = await m.infer(f);
    (first.y.data as Float32Array).fill(-1);
    const second = await m.infer(f);
    assert.deepEqual(yOf(second), [2, 4, 6, 8]);
    (second.y.data as Float32Array).fill(-2);
    assert.deepEqual(yOf(await m.infer(f)), [2, 4, 6, 8]);
  });

  it('failures are not cached, and a request failing validation never gets a cached answer', async () => {
    const m = await load(workModel(), local());
    const failing = workRequest(1, 1, { fail: FAIL });
    for (let i = 0; i < 2; i++) await assert.rejects(m.infer(failing.feeds), (e) => e instanceof KilnError && e.code === 'E_ORT');
    assert.equal(m.stats().cache?.misses, 2);
    const ok = workRequest(1);
    await m.infer(ok.feeds);
    const x = ok.feeds.x as { data: Float32Array; dims: readonly number[] };
    const asInt = { ...ok.feeds, x: { type: 'int32' as const, data: new Int32Array(x.data.buffer), dims: x.dims } };
    await assert.rejects(m.infer(asInt), (e) => assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "x"') !== undefined);
    await assert.rejects(m.infer({ x: ok.feeds.x, work: ok.feeds.work }), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', 'missing input "fail"') !== undefined);
    const s = m.stats();
    assert.deepEqual([s.cache?.hits, s.cache?.misses], [0, 3]);
    assert.deepEqual(s.failure, { E_ORT: 2, E_DTYPE_MISMATCH: 1, E_INVALID_ARGUMENT: 1 });
  });

  it('single flight: concurrent identical misses run the model once, each caller gets its own copy', async () => {
    const m = await load(workModel(), local());
    const q = workRequest(5, 1, { work: 200 });
    const answers = await Promise.all(Array.from({ length: 8 }, () => m.infer(q.feeds, { withCacheInfo: true })));
    assert.deepEqual(answers.map((a) => a.cache.outcome).sort(), ['hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'hit', 'miss']);
    const s = m.stats();
    assert.equal(s.executionCount, 1);
    assert.equal(s.inferenceCount, 1);
    assert.equal(s.success, 8);
    assert.equal(new Set(answers.map((a) => (a.outputs.y.data as Float32Array).buffer)).size, 8);
    for (const a of answers) assert.deepEqual([...(a.outputs.y.data as Float32Array)], [10, 12, 14, 16]);
  });

  it('single flight on a hit too: identical requests that come while a lookup runs share its cached answer', async () => {
    const m = await load(workModel(), local());
    const q = workRequest(5, 1, { work: 50 });
    await m.infer(q.feeds);
    const answers = await Promise.all(Array.from({ length: 4 }, () => m.infer(q.feeds, { withCacheInfo: true })));
    assert.deepEqual(answers.map((a) => a.cache.outcome), ['hit', 'hit', 'hit', 'hit']);
    assert.equal(m.stats().executionCount, 1, 'the model ran for the first request only');
    for (const a of answers) assert.deepEqual([...(a.outputs.y.data as Float32Array)], [10, 12, 14, 16]);
    assert.equal(new Set(answers.map((a) => (a.outputs.y.data as Float32Array).buffer)).size, 4, 'each a copy of its own');
  });

  it('a stored value that is not an answer runs the model: counted as an error and a miss, never a failed request', async () => {
    const errors: Error[] = [];
    const garbage: CacheStore = {
      kind: 'local',
      get: () => Promise.resolve(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])),
      set: () => Promise.resolve(),
      stats: () => undefined,
      close: () => Promise.resolve(),
    };
    const m = await load(double, new ResponseCacheClass(garbage, (e) => errors.push(e)));
    for (let i = 0; i < 2; i++) {
      const a = await m.infer(feedsOf([1, 2, 3, 4], [1, 4]), { withCacheInfo: true });
      assert.equal(a.cache.outcome, 'miss');
      assert.deepEqual(yOf(a.outputs), [2, 4, 6, 8]);
    }
    assert.ok(errors.length === 2 && errors.every((e) => e instanceof KilnError && e.code === 'E_INVALID_ARGUMENT' && /not in the response cache format/.test(e.message)), errors.map(String).join('; '));
    assert.equal(m.stats().cache?.errors, errors.length);
  });

  it('a failed leader is not shared: identical requests waiting on it run themselves', async () => {
    const m = await load(workModel(), local());
    const q = workRequest(5, 1, { work: 50 });
    const leader = new AbortController();
    const first = m.infer(q.feeds, { signal: leader.signal });
    const rest = Array.from({ length: 3 }, () => m.infer(q.feeds, { withCacheInfo: true }));
    leader.abort();
    await assert.rejects(first, (e) => e instanceof KilnError && e.code === 'E_ABORTED');
    for (const r of await Promise.all(rest)) assert.deepEqual([...(r.outputs.y.data as Float32Array)], [10, 12, 14, 16]);
  });

  it('local store: LRU eviction by bytes, and TTL', async () => {
    const store = new LocalStore({ maxBytes: 3 * (100 + 1) });
    const v = (): Uint8Array => new Uint8Array(100);
    for (const k of ['a', 'b', 'c']) await store.set(k, v());
    assert.ok(await store.get('a'));
    await store.set('d', v());
    assert.equal(await store.get('b'), undefined, 'b was least recently used');
    assert.ok(await store.get('a'));
    assert.deepEqual(store.stats(), { entries: 3, bytes: 303 });
    await store.set('huge', new Uint8Array(1000));
    assert.equal(await store.get('huge'), undefined, 'an entry over the whole budget is not kept');

    const m = await load(double, local(1 << 20, 60));
    const f = feedsOf([1, 2], [1, 2]);
    await m.infer(f);
    assert.equal((await m.infer(f, { withCacheInfo: true })).cache.outcome, 'hit');
    await sleep(120);
    assert.equal((await m.infer(f, { withCacheInfo: true })).cache.outcome, 'miss', 'expired');
  });

  it('eviction through a model: a small budget keeps the most recent answers', async () => {
    const m = await load(double, local(2 * 200));
    for (let i = 0; i < 5; i++) await m.infer(feedsOf([i, i], [1, 2]));
    const s = m.stats().cache;
    assert.ok(s && s.entries !== undefined && s.entries < 5 && (s.bytes ?? Infinity) <= 400);
    assert.equal((await m.infer(feedsOf([4, 4], [1, 2]), { withCacheInfo: true })).cache.outcome, 'hit');
    assert.equal((await m.infer(feedsOf([0, 0], [1, 2]), { withCacheInfo: true })).cache.outcome, 'miss');
  });

  it('options are validated with the field named', async () => {
    const bad: [unknown, string][] = [
      [{ local: { maxBytes: 0 } }, 'responseCache.local.maxBytes'],
      [{ redis: { url: 'http://x' } }, 'responseCache.redis.url'],
      [{}, 'responseCache'],
      [{ local: { maxBytes: 1 }, redis: { url: 'redis://x' } }, 'responseCache'],
    ];
    for (const [options, field] of bad) {
      assert.throws(() => createResponseCache(options as never), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', `option "${field}"`) !== undefined);
    }
    await assert.rejects(loadModel(double, { responseCache: { cache: {} as ResponseCache } }), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', 'responseCache.cache') !== undefined);
    await assert.rejects(loadModel(double, { responseCache: { key: '' } }), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', 'responseCache.key') !== undefined);
    assert.equal(defaultResponseCache(), defaultResponseCache());
    const m = await load(double, true);
    assert.equal(m.config.responseCache?.cache, defaultResponseCache());
  });

  describe('Redis', () => {
    let redis: RedisServer;
    let dir: string;
    before(async () => {
      redis = await startRedis();
      dir = mkdtempSync(join(tmpdir(), 'kiln-cache-'));
    });
    after(async () => {
      await redis?.stop();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });
    const remote = (timeoutMs?: number, onError?: (e: Error) => void): ResponseCache => {
      const c = createResponseCache({ redis: { url: redis.url, timeoutMs }, onError });
      caches.push(c);
      return c;
    };

    it('two models with their own caches on one Redis share entries', async () => {
      const a = await load(double, remote());
      const b = await load(double, remote());
      const f = feedsOf([7, 8, 9], [1, 3]);
      assert.equal((await a.infer(f, { withCacheInfo: true })).cache.outcome, 'miss');
      await sleep(50);
      const hit = await b.infer(f, { withCacheInfo: true });
      assert.equal(hit.cache.outcome, 'hit');
      assert.deepEqual(yOf(hit.outputs), [14, 16, 18]);
      assert.equal(b.stats().executionCount, 0);
      assert.deepEqual(b.stats().cache, { hits: 1, misses: 0, errors: 0, hitUs: b.stats().cache?.hitUs, missUs: 0, entries: undefined, bytes: undefined });
    });

    it('two processes share one Redis', async () => {
      const path = join(dir, 'double.onnx');
      writeFileSync(path, double);
      const child = join(__dirname, 'helpers', 'cache-child.js');
      const run = async (): Promise<{ outcome: string; y: number[]; executions: number }> =>
        JSON.parse((await promisify(execFile)(process.execPath, [child, path, redis.url])).stdout);
      const first = await run();
      const second = await run();
      assert.deepEqual([first.outcome, first.executions], ['miss', 1]);
      assert.deepEqual([second.outcome, second.executions], ['hit', 0]);
      assert.deepEqual(second.y, [2, 4, 6, 8]);
      const here = await load(path, remote());
      assert.equal((await here.infer(feedsOf([1, 2, 3, 4], [1, 4]), { withCacheInfo: true })).cache.outcome, 'hit', 'a path and its bytes have one identity');
    });

    it('Redis hung or down: requests are answered uncached, errors counted, no lookup waits past the timeout', async () => {
      const errors: Error[] = [];
      const m = await load(double, remote(50, (e) => errors.push(e)));
      const f = feedsOf([3, 1], [1, 2]);
      await m.infer(f);
      await sleep(50);
      assert.equal((await m.infer(f, { withCacheInfo: true })).cache.outcome, 'hit');
      const timed = async (values: number[]): Promise<number> => {
        const t = performance.now();
        const r = await m.infer(feedsOf(values, [1, 2]), { withCacheInfo: true });
        assert.equal(r.cache.outcome, 'miss');
        assert.deepEqual(yOf(r.outputs), values.map((v) => 2 * v));
        return performance.now() - t;
      };
      redis.pause();
      try {
        for (const values of [[3, 1], [5, 5]]) assert.ok(await timed(values) < 50 + 100, 'bounded by timeoutMs');
      } finally {
        redis.resume();
      }
      await redis.stop();
      for (const values of [[3, 1], [6, 6]]) assert.ok(await timed(values) < 50 + 100);
      await sleep(60);
      const s = m.stats();
      assert.ok(s.cache && s.cache.errors >= 4, `errors: ${s.cache?.errors}`);
      assert.ok(errors.length >= 4);
      assert.equal(s.success, 6);
      assert.equal(Object.keys(s.failure).length, 0);
    });
  });
});

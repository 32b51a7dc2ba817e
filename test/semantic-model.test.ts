/**
 * The semantic cache behind loadModel: clustered inputs (seeded centres plus small noise) on
 * the generated MLP hit with the cached answer and far inputs miss; partitions are isolated;
 * the exact cache answers first; verification counts false hits when the threshold is too
 * low; a function embedding; option errors. Then the PP-OCR recognizer: rendered text lines,
 * perturbed, hit and read the same text, and different lines miss.
 */
import { strict as assert } from 'assert';
import { createResponseCache, loadModel, SemanticCache, type Model } from '../lib';
import { encodeResults } from '../lib/cache/codec';
import { INDEX_DIMENSIONS } from '../lib/cache/semantic/index';
import { mlpModel, mlpReference, prng } from '../lib/samples';
import type { Feeds } from '../lib/session';
import { Tensor } from '../lib/tensor';
import { OCR_MODELS, ctcDecode, loadKeys, recPreprocess } from '../support/ppocr';
import { perturb, renderText, type RgbImage } from '../support/text-image';
import { assertKilnError } from './helpers/assert-error';

/** Seeded cluster centres in [-1, 1)^512 and noisy members (noise ±0.05: cosine to the centre ≈ 0.998). */
function clusters(k: number, seed: number) {
  const next = prng(seed);
  const centres = Array.from({ length: k }, () => Float32Array.from({ length: 512 }, () => next()));
  return {
    centres,
    member: (c: number) => centres[c].map((x) => x + 0.05 * next()),
  };
}

const feed = (x: Float32Array): Feeds => ({ x: new Tensor('float32', x, [1, 512]) });
const argmax = (v: Float32Array): number => v.indexOf(Math.max(...v));

describe('semantic cache in loadModel', function () {
  this.timeout(60_000);
  const bytes = mlpModel();
  const data = clusters(8, 14);
  const models: Model[] = [];
  const load = async (config: Parameters<typeof loadModel>[1]): Promise<Model> => {
    const m = await loadModel(bytes, config);
    models.push(m);
    return m;
  };
  afterEach(async () => {
    await Promise.all(models.splice(0).map((m) => m.dispose()));
  });

  it('answers a near input with the cached outputs (a fresh copy each time) and runs a far one', async () => {
    const model = await load({ semanticCache: { threshold: 0.99 } });
    const first = await model.infer(feed(data.member(0)), { withCacheInfo: true });
    assert.deepEqual(first.cache, { outcome: 'miss' });
    const cached = Array.from(first.outputs.y.data as Float32Array);
    const near = await model.infer(feed(data.member(0)), { withCacheInfo: true });
    assert.equal(near.cache.outcome, 'semantic_hit');
    assert.ok(near.cache.similarity! >= 0.99 && near.cache.similarity! < 1, `similarity ${near.cache.similarity}`);
    assert.deepEqual(Array.from(near.outputs.y.data as Float32Array), cached);
    (near.outputs.y.data as Float32Array).fill(0);
    const again = await model.infer(feed(data.member(0)));
    assert.deepEqual(Array.from(again.y.data as Float32Array), cached, 'a caller changing its answer changes no one else\'s');
    const x1 = data.member(1);
    const far = await model.infer(feed(x1), { withCacheInfo: true });
    assert.deepEqual(far.cache, { outcome: 'miss' });
    const want = mlpReference(x1, 1);
    (far.outputs.y.data as Float32Array).forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-4 * Math.max(1, Math.abs(want[i]))));
    const s = model.stats();
    const { bytes, ...counters } = s.semanticCache!;
    assert.deepEqual(counters, { hits: 2, misses: 2, falseHits: 0, verified: 0, errors: 0, entries: 2 });
    assert.equal(bytes, 2 * (x1.length * 4 + INDEX_DIMENSIONS * 4 + encodeResults(first.outputs).byteLength), 'bytes: each entry\'s float32 vector, its sketch (512 values are more than an index holds) and encoded answer');
    assert.equal(s.success, 4);
    assert.equal(s.inferenceCount, 2, 'hits are not inferences');
  });

  it('concurrent requests each get their own answer (lookups share one scratch vector)', async () => {
    const model = await load({ semanticCache: { threshold: 0.99 } });
    const first = await Promise.all(data.centres.map((_, c) => model.infer(feed(data.member(c)), { withCacheInfo: true })));
    assert.deepEqual(first.map((r) => r.cache.outcome), data.centres.map(() => 'miss'));
    const again = await Promise.all(data.centres.map((_, c) => model.infer(feed(data.member(c)), { withCacheInfo: true })));
    again.forEach((r, c) => {
      assert.equal(r.cache.outcome, 'semantic_hit', `cluster ${c}`);
      assert.deepEqual(Array.from(r.outputs.y.data as Float32Array), Array.from(first[c].outputs.y.data as Float32Array), `cluster ${c} answered with its own entry`);
    });
  });

  it('keeps partitions apart', async () => {
    const model = await load({ semanticCache: { threshold: 0.99 } });
    const outcome = async (partition: string): Promise<string> => (await model.infer(feed(data.member(2)), { partition, withCacheInfo: true })).cache.outcome;
    assert.equal(await outcome('tenant-a'), 'miss');
    assert.equal(await outcome('tenant-b'), 'miss');
    assert.equal(await outcome('tenant-a'), 'semantic_hit');
    assert.equal(await outcome('tenant-b'), 'semantic_hit');
    assert.equal((await model.infer(feed(data.member(2)), { withCacheInfo: true })).cache.outcome, 'miss', 'no partition is a partition of its own');
    await assert.rejects(model.infer(feed(data.member(2)), { partition: 7 as unknown as string }), (e) => !!assertKilnError(e, 'E_INVALID_ARGUMENT', 'partition must be a string'));
  });

  it('looks up the exact cache first, then the semantic one', async () => {
    const model = await load({ responseCache: createResponseCache({ local: { maxBytes: 1 << 20 } }), semanticCache: { threshold: 0.99 } });
    const x = data.member(3);
    assert.equal((await model.infer(feed(x), { withCacheInfo: true })).cache.outcome, 'miss');
    assert.equal((await model.infer(feed(x.slice()), { withCacheInfo: true })).cache.outcome, 'hit');
    const near = await model.infer(feed(data.member(3)), { withCacheInfo: true });
    assert.equal(near.cache.outcome, 'semantic_hit');
    // The semantic answer is not stored as the exact answer of the near input's bytes.
    const s = model.stats();
    assert.equal(s.cache?.hits, 1);
    assert.equal(s.cache?.misses, 2);
    assert.deepEqual({ ...s.semanticCache, bytes: 0 }, { hits: 1, misses: 1, falseHits: 0, verified: 0, errors: 0, entries: 1, bytes: 0 });
  });

  it('verifies every hit with verifyFraction 1 and counts false hits when the threshold is too low', async () => {
    const model = await load({ semanticCache: { threshold: -1, verifyFraction: 1, verify: { metric: 'top1' } } });
    assert.equal((await model.infer(feed(data.centres[0]), { withCacheInfo: true })).cache.outcome, 'miss');
    const top0 = argmax(mlpReference(data.centres[0], 1));
    let expectedFalse = 0;
    for (let c = 1; c < 8; c++) {
      const r = await model.infer(feed(data.centres[c]), { withCacheInfo: true });
      assert.equal(r.cache.outcome, 'semantic_hit', 'threshold -1: every lookup hits');
      if (argmax(mlpReference(data.centres[c], 1)) !== top0) expectedFalse++;
    }
    assert.ok(expectedFalse > 0, 'the seeded clusters disagree in top-1');
    const deadline = Date.now() + 10_000;
    while (model.stats().semanticCache!.verified < 7 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const s = model.stats().semanticCache!;
    assert.equal(s.verified, 7);
    assert.equal(s.falseHits, expectedFalse);
  });

  it('takes the vector from a function of the feeds', async () => {
    let calls = 0;
    // The first 32 elements only.
    const model = await load({ semanticCache: { threshold: 0.99, embedding: (feeds) => {
      calls++;
      return ((feeds.x as Tensor<'float32'>).data).slice(0, 32);
    } } });
    assert.equal((await model.infer(feed(data.member(4)), { withCacheInfo: true })).cache.outcome, 'miss');
    assert.equal((await model.infer(feed(data.member(4)), { withCacheInfo: true })).cache.outcome, 'semantic_hit');
    // Same first 32 elements, different rest: the function says "the same request".
    const x = data.centres[5].slice();
    x.set(data.centres[4].subarray(0, 32));
    assert.equal((await model.infer(feed(x), { withCacheInfo: true })).cache.outcome, 'semantic_hit');
    assert.equal(calls, 3);
    // A vector that cannot be made (all zeros under cosine) runs uncached.
    const zero = await model.infer(feed(new Float32Array(512)), { withCacheInfo: true });
    assert.equal(zero.cache.outcome, 'miss');
    assert.equal(model.stats().semanticCache!.errors, 1);
  });

  it('shares one SemanticCache between models', async () => {
    const shared = new SemanticCache<Uint8Array>({ dimensions: 512, threshold: 0.99 });
    const a = await load({ semanticCache: { cache: shared, key: 'mlp' } });
    const b = await load({ semanticCache: { cache: shared, key: 'mlp' } });
    assert.equal((await a.infer(feed(data.member(6)), { withCacheInfo: true })).cache.outcome, 'miss');
    assert.equal((await b.infer(feed(data.member(6)), { withCacheInfo: true })).cache.outcome, 'semantic_hit');
    assert.equal(b.stats().semanticCache!.entries, 1);
  });

  it('rejects bad options naming the field', async () => {
    const bad: [unknown, string][] = [
      [{}, 'semanticCache.threshold'],
      [{ threshold: 2 }, 'semanticCache.threshold'],
      [{ threshold: 0.9, metric: 'dot' }, 'semanticCache.metric'],
      [{ threshold: 0.9, verifyFraction: 2 }, 'semanticCache.verifyFraction'],
      [{ threshold: 0.9, verify: { metric: 'top5' } }, 'semanticCache.verify.metric'],
      [{ threshold: 0.9, embedding: 'output' }, 'semanticCache.embedding'],
      [{ threshold: 0.9, embedding: { model: {}, output: 'y' } }, 'semanticCache.embedding.model'],
      [{ threshold: 0.9, capacity: 0 }, 'semanticCache.capacity'],
      [{ threshold: 0.9, ttlMs: -1 }, 'semanticCache.ttlMs'],
      [{ threshold: 0.9, cache: new SemanticCache({ dimensions: 4, threshold: 0.9 }) }, 'semanticCache.threshold'],
      [{ threshold: 0.9, size: 3 }, 'semanticCache.size'],
    ];
    for (const [semanticCache, field] of bad) {
      await assert.rejects(loadModel(bytes, { semanticCache } as never), (e) => !!assertKilnError(e, 'E_INVALID_ARGUMENT', `"${field}"`));
    }
  });
});


describe('semantic cache on the PP-OCR recognizer', function () {
  this.timeout(60_000);
  const LINES = ['Hello World', 'KILN 2026', 'ONNX Runtime 1.30', 'quick brown fox'];
  // Every line at one width, so that all share a partition (the input dims are part of it).
  const WIDTH = 480;
  const PERTURBATIONS = [{ noise: 6 }, { dx: 1 }, { dx: 2 }, { dx: 2, dy: 1 }, { gain: 0.95 }, { gain: 1.05, noise: 4 }, { dx: -1, gain: 0.95, noise: 4 }];
  // Measured (embedding 'input', cosine): perturbed copies 0.78 (2 px right and 1 down) to
  // 0.9999 (noise); different lines of this set 0.45 to 0.61.
  const THRESHOLD = 0.72;
  const keys = loadKeys();
  let rec: Model;
  before(async () => {
    rec = await loadModel(OCR_MODELS.rec, { semanticCache: { threshold: THRESHOLD } });
  });
  after(() => rec.dispose());

  const read = (y: Tensor): string => ctcDecode(y.data as Float32Array, y.dims, keys).text;

  it(`serves perturbed lines from the cache with the same text, and misses different lines (threshold ${THRESHOLD})`, async () => {
    const images = LINES.map((line) => renderText(line));
    for (const [i, line] of LINES.entries()) {
      const first = await rec.infer({ x: recPreprocess(images[i], { width: WIDTH }) }, { withCacheInfo: true });
      assert.equal(first.cache.outcome, 'miss', `"${line}" is a different line from those cached`);
      assert.equal(read(Object.values(first.outputs)[0]), line);
    }
    for (const [i, line] of LINES.entries()) {
      for (const [k, p] of PERTURBATIONS.entries()) {
        const r = await rec.infer({ x: recPreprocess(perturb(images[i], 100 * i + k, p), { width: WIDTH }) }, { withCacheInfo: true });
        assert.equal(r.cache.outcome, 'semantic_hit', `"${line}" ${JSON.stringify(p)}`);
        assert.ok(r.cache.similarity! >= THRESHOLD);
        assert.equal(read(Object.values(r.outputs)[0]), line);
      }
    }
    const s = rec.stats().semanticCache!;
    assert.deepEqual({ hits: s.hits, misses: s.misses, entries: s.entries }, { hits: LINES.length * PERTURBATIONS.length, misses: LINES.length, entries: LINES.length });
  });

  it('verification by "ctc" counts a hit false only when the text differs; "top1" also counts frames that read the same', async () => {
    const images = LINES.map((line) => renderText(line));
    const verified = async (metric: 'ctc' | 'top1', threshold: number): Promise<{ verified: number; falseHits: number; wrongText: number }> => {
      const m = await loadModel(OCR_MODELS.rec, { semanticCache: { threshold, verifyFraction: 1, verify: { metric } } });
      try {
        let wrongText = 0;
        let hits = 0;
        // First sights (which hit other lines when the threshold is low), then perturbed copies.
        const requests = [
          ...LINES.map((line, i) => ({ line, image: images[i] })),
          ...LINES.flatMap((line, i) => PERTURBATIONS.map((p, k) => ({ line, image: perturb(images[i], 100 * i + k, p) }))),
        ];
        for (const { line, image } of requests) {
          const r = await m.infer({ x: recPreprocess(image, { width: WIDTH }) }, { withCacheInfo: true });
          if (r.cache.outcome !== 'semantic_hit') continue;
          hits++;
          if (read(Object.values(r.outputs)[0]) !== line) wrongText++;
        }
        const deadline = Date.now() + 30_000;
        while (m.stats().semanticCache!.verified < hits && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const s = m.stats().semanticCache!;
        return { verified: s.verified, falseHits: s.falseHits, wrongText };
      } finally {
        await m.dispose();
      }
    };
    const all = LINES.length * PERTURBATIONS.length;
    // At the test's threshold every hit reads its own line: ctc finds no false hit, top1 finds frames that moved.
    const ctc = await verified('ctc', THRESHOLD);
    assert.deepEqual(ctc, { verified: all, falseHits: 0, wrongText: 0 });
    const top1 = await verified('top1', THRESHOLD);
    assert.equal(top1.verified, all);
    assert.ok(top1.falseHits > 0, 'some perturbed lines move an arg max between blank and a character');
    // Threshold 0.4 (below the 0.45-0.61 between different lines): hits on other lines are
    // false, and ctc counts exactly the hits that read another line's text.
    const low = await verified('ctc', 0.4);
    assert.ok(low.wrongText > 0, 'threshold 0.4 makes hits across lines');
    assert.equal(low.falseHits, low.wrongText);
  });
});

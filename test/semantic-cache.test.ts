/**
 * The semantic cache (lib/cache/semantic) on generated clustered data: K seeded cluster
 * centres on the unit sphere, members = centre + small Gaussian-like noise. Hits, misses and
 * the threshold, partitions, TTL with an injected clock, LRU capacity, removal, the L2 metric,
 * input errors, embeddings, result comparison, verification and threshold tuning.
 */
import { strict as assert } from 'assert';
import { SemanticCache, vectorSimilarity, type SemanticCacheOptions } from '../lib/cache/semantic';
import { INDEX_DIMENSIONS } from '../lib/cache/semantic/index';
import { embedder, inputEmbedding, modelEmbedding, type EmbeddingModel } from '../lib/cache/semantic/embedding';
import { suggestThreshold, type LabelledSample } from '../lib/cache/semantic/tune';
import { compareResults, Verifier, type Results } from '../lib/cache/semantic/verify';
import { float16Bits } from '../lib/optimize/fp16';
import { prng } from '../lib/samples';
import { Tensor } from '../lib/tensor';
import { assertKilnError, thrown } from './helpers/assert-error';

/** Seeded clustered data: `centres[c]` unit vectors, `member(c)` a noisy copy of one. */
function clusters(k: number, dims: number, noise: number, seed: number) {
  const next = prng(seed);
  const gaussian = () => (next() + next() + next()) / 1.0; // sum of 3 uniforms in [-1,1): variance 1
  const unit = (v: Float32Array) => {
    const n = Math.hypot(...v);
    return v.map((x) => x / n);
  };
  const centres = Array.from({ length: k }, () => unit(Float32Array.from({ length: dims }, gaussian)));
  return {
    centres,
    member: (c: number) => centres[c].map((x) => x + noise * gaussian()),
    far: () => unit(Float32Array.from({ length: dims }, gaussian)),
  };
}

function cache<V>(options: Partial<SemanticCacheOptions> = {}): SemanticCache<V> {
  return new SemanticCache<V>({ dimensions: 32, threshold: 0.9, ...options });
}

describe('semantic cache', () => {
  describe('SemanticCache', () => {
    const K = 50;
    const data = clusters(K, 32, 0.03, 7);

    for (const perCluster of [1, 5]) {
      it(`hits a new member's own cluster and misses far points (${perCluster * K} entries: ${perCluster === 1 ? 'linear scan' : 'HNSW'} path)`, () => {
        const c = cache<number>();
        for (let i = 0; i < perCluster; i++) for (let k = 0; k < K; k++) c.insert('p', data.member(k), k);
        for (let k = 0; k < K; k++) {
          const hit = c.lookup('p', data.member(k));
          assert.ok(hit, `cluster ${k} missed`);
          assert.equal(hit.value, k);
          assert.ok(hit.similarity >= 0.9);
        }
        const farCentres = clusters(K, 32, 0.03, 7);
        let misses = 0;
        for (let i = 0; i < 100; i++) {
          const v = farCentres.far();
          const nearest = Math.max(...data.centres.map((ctr) => vectorSimilarity(v, ctr, 'cosine')));
          if (nearest < 0.8) {
            assert.equal(c.lookup('p', v), undefined);
            misses++;
          }
        }
        assert.ok(misses > 90, `only ${misses} far points`);
        const s = c.stats();
        assert.equal(s.entries, perCluster * K);
        assert.equal(s.partitions, 1);
        assert.equal(s.hits, K);
        assert.equal(s.misses, misses);
      });
    }

    it('honours the threshold exactly at the boundary', () => {
      const entry = data.member(3);
      const query = data.member(3);
      const probe = cache<string>({ threshold: -1 });
      probe.insert('p', entry, 'x');
      const similarity = probe.lookup('p', query)!;
      assert.ok(similarity.similarity > 0.9 && similarity.similarity < 1);
      const at = cache<string>({ threshold: similarity.similarity });
      at.insert('p', entry, 'x');
      assert.equal(at.lookup('p', query)?.value, 'x');
      const above = cache<string>({ threshold: similarity.similarity + 1e-12 });
      above.insert('p', entry, 'x');
      assert.equal(above.lookup('p', query), undefined);
    });

    it('isolates partitions: the same vector in another partition is a miss', () => {
      const c = cache<string>();
      const v = data.member(0);
      c.insert('tenant-a/model/1', v, 'a');
      assert.equal(c.lookup('tenant-a/model/1', v)?.value, 'a');
      assert.equal(c.lookup('tenant-b/model/1', v), undefined);
      assert.equal(c.lookup('tenant-a/model/2', v), undefined);
      c.insert('tenant-b/model/1', v, 'b');
      assert.equal(c.lookup('tenant-b/model/1', v)?.value, 'b');
      assert.equal(c.lookup('tenant-a/model/1', v)?.value, 'a');
      assert.equal(c.stats().partitions, 2);
    });

    it('never returns an expired entry, and removes it when met (injected clock)', () => {
      let now = 1000;
      const c = cache<number>({ ttlMs: 100, now: () => now });
      for (let i = 0; i < 300; i++) c.insert('p', data.member(i % K), i % K); // HNSW path
      now = 1050;
      const young = c.insert('p', data.member(1), -1);
      assert.equal(c.lookup('p', data.member(1))?.value !== undefined, true);
      now = 1100; // the first 300 expire exactly now
      const hit = c.lookup('p', data.member(1));
      assert.equal(hit?.id, young);
      assert.equal(hit?.value, -1);
      const met = c.stats().expirations; // those nearer than the live entry were met, and removed
      assert.ok(met >= 1 && met < 300, String(met));
      assert.equal(c.size, 301 - met);
      assert.equal(c.lookup('p', data.member(2)), undefined); // meets the expired entries nearer than the live one
      const metToo = c.stats().expirations;
      assert.ok(metToo > met);
      now = 1150;
      assert.equal(c.lookup('p', data.member(1)), undefined);
      const { expirations, ...rest } = c.stats();
      assert.ok(expirations > metToo);
      assert.deepEqual(rest, { entries: 301 - expirations, bytes: (301 - expirations) * 32 * 4, partitions: expirations === 301 ? 0 : 1, hits: 2, misses: 2, evictions: 0 });
    });

    it('evicts the least recently hit or inserted entry at capacity', () => {
      const c = cache<number>({ capacity: 3 });
      const ids = [0, 1, 2].map((k) => c.insert('p', data.member(k), k));
      assert.equal(c.lookup('p', data.member(0))?.id, ids[0]); // 0 is now the most recent: 1 goes first
      c.insert('p', data.member(3), 3);
      assert.equal(c.lookup('p', data.member(1)), undefined);
      assert.equal(c.lookup('p', data.member(0))?.value, 0);
      c.insert('p', data.member(4), 4); // evicts 2
      assert.equal(c.lookup('p', data.member(2)), undefined);
      assert.deepEqual([0, 3, 4].map((k) => c.lookup('p', data.member(k))?.value), [0, 3, 4]);
      assert.equal(c.stats().evictions, 2);
      assert.equal(c.size, 3);
    });

    it('keeps finding every live entry under heavy churn (index rebuilt past its removed keys)', () => {
      const churn = clusters(1, 64, 0, 11);
      const c = new SemanticCache<number>({ dimensions: 64, threshold: 0.999, capacity: 300 });
      const vectors: Float32Array[] = [];
      for (let i = 0; i < 3000; i++) {
        vectors.push(churn.far());
        c.insert(i % 2 ? 'odd' : 'even', vectors[i], i);
      }
      let found = 0;
      for (let i = 2700; i < 3000; i++) if (c.lookup(i % 2 ? 'odd' : 'even', vectors[i])?.value === i) found++;
      assert.ok(found >= 297, `found ${found} of 300`);
      for (let i = 0; i < 100; i++) assert.notEqual(c.lookup(i % 2 ? 'odd' : 'even', vectors[i])?.value, i);
      assert.equal(c.stats().evictions, 2700);
    });

    it('counts the bytes held (vectors, sketches, values by sizeOf) through inserts, removals, evictions and clear()', () => {
      const c = new SemanticCache<Uint8Array>({ dimensions: 32, threshold: 0.9, capacity: 3, sizeOf: (v) => v.byteLength });
      const ids = [10, 20, 30].map((n, i) => c.insert('p', data.member(i), new Uint8Array(n)));
      assert.equal(c.stats().bytes, 3 * 32 * 4 + 60);
      c.remove(ids[1]);
      assert.equal(c.stats().bytes, 2 * 32 * 4 + 40);
      c.insert('p', data.member(3), new Uint8Array(5));
      c.insert('p', data.member(4), new Uint8Array(7)); // evicts ids[0] (10 bytes)
      assert.equal(c.stats().bytes, 3 * 32 * 4 + 30 + 5 + 7);
      const long = new SemanticCache<Uint8Array>({ dimensions: 1024, threshold: 0.9, sizeOf: (v) => v.byteLength });
      long.insert('p', Float32Array.from({ length: 1024 }, (_, i) => i + 1), new Uint8Array(3));
      assert.equal(long.stats().bytes, 1024 * 4 + INDEX_DIMENSIONS * 4 + 3, 'a long vector and its sketch');
      c.clear();
      assert.equal(c.stats().bytes, 0);
    });

    it('remove() and clear()', () => {
      const c = cache<number>();
      const a = c.insert('p', data.member(0), 0);
      const b = c.insert('q', data.member(1), 1);
      assert.equal(c.remove(a), true);
      assert.equal(c.remove(a), false);
      assert.equal(c.lookup('p', data.member(0)), undefined);
      assert.equal(c.stats().partitions, 1);
      assert.equal(c.lookup('q', data.member(1))?.id, b);
      c.clear();
      assert.equal(c.size, 0);
      assert.equal(c.lookup('q', data.member(1)), undefined);
      assert.deepEqual({ ...c.stats(), hits: 0, misses: 0 }, { entries: 0, bytes: 0, partitions: 0, hits: 0, misses: 0, evictions: 0, expirations: 0 });
    });

    it('l2 metric: threshold is a maximum distance', () => {
      const c = new SemanticCache<string>({ dimensions: 3, metric: 'l2', threshold: 0.625 });
      c.insert('p', new Float32Array([10, 0, 0]), 'x');
      c.insert('p', new Float32Array([0, 10, 0]), 'y');
      const hit = c.lookup('p', new Float32Array([10, 0.375, 0.5])); // exactly at 0.625
      assert.equal(hit?.value, 'x');
      assert.equal(hit.similarity, 0.625);
      assert.equal(c.lookup('p', new Float32Array([10, 0.5, 0.5])), undefined);
      assert.equal(c.lookup('p', new Float32Array([20, 0, 0])), undefined); // same direction, far: a miss in l2
    });

    it('rejects bad vectors and options with E_INVALID_ARGUMENT', () => {
      const c = cache<number>();
      assertKilnError(thrown(() => c.insert('p', new Float32Array(31), 0)), 'E_INVALID_ARGUMENT', '32 dimensions', 'received 31');
      assertKilnError(thrown(() => c.lookup('p', new Float32Array(33))), 'E_INVALID_ARGUMENT', '32 dimensions');
      assertKilnError(thrown(() => c.insert('p', new Float32Array(32), 0)), 'E_INVALID_ARGUMENT', 'all zeros');
      const nan = data.member(0);
      nan[5] = NaN;
      assertKilnError(thrown(() => c.lookup('p', nan)), 'E_INVALID_ARGUMENT', 'vector[5] is NaN');
      assertKilnError(thrown(() => c.insert('p', [1, 2] as unknown as Float32Array, 0)), 'E_INVALID_ARGUMENT', 'Float32Array');
      assert.equal(new SemanticCache({ dimensions: 2, metric: 'l2', threshold: 1 }).insert('p', new Float32Array(2), 0), 1); // zero is fine for l2
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 0, threshold: 0.9 })), 'E_INVALID_ARGUMENT', 'dimensions');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, threshold: 1.5 })), 'E_INVALID_ARGUMENT', 'threshold');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, metric: 'l2', threshold: -1 })), 'E_INVALID_ARGUMENT', 'threshold');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, threshold: 0.9, capacity: 0 })), 'E_INVALID_ARGUMENT', 'capacity');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, threshold: 0.9, ttlMs: 0 })), 'E_INVALID_ARGUMENT', 'ttlMs');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, threshold: 0.9, expansionSearch: -1 })), 'E_INVALID_ARGUMENT', 'expansionSearch must be an integer >= 0');
      assertKilnError(thrown(() => new SemanticCache({ dimensions: 4, threshold: 0.9, indexDimensions: 0 })), 'E_INVALID_ARGUMENT', 'indexDimensions must be an integer >= 1');
    });

    it('finds perturbed copies among 10 000 entries of 64 dimensions', () => {
      const big = clusters(1, 64, 0, 5);
      const noise = prng(6);
      const c = new SemanticCache<number>({ dimensions: 64, threshold: 0.95 });
      const vectors = Array.from({ length: 10_000 }, () => big.far());
      vectors.forEach((v, i) => c.insert('p', v, i));
      let found = 0;
      for (let i = 0; i < 10_000; i += 50) {
        const q = vectors[i].map((x) => x + 0.01 * noise());
        if (c.lookup('p', q)?.value === i) found++;
      }
      assert.ok(found >= 190, `found ${found} of 200`);
    });

    it('long vectors (indexed by a sketch): hits the exactly nearest entry of a new member\'s own cluster, misses far points', () => {
      const dims = 4096;
      const long = clusters(20, dims, 0.0025, 21);
      const unit = (v: Float32Array) => {
        const n = Math.hypot(...v);
        return v.map((x) => x / n);
      };
      const c = new SemanticCache<number>({ dimensions: dims, threshold: 0.9 });
      const entries: Float32Array[] = [];
      for (let i = 0; i < 5; i++) {
        for (let k = 0; k < 20; k++) {
          const v = long.member(k);
          c.insert('p', v, entries.length);
          entries.push(unit(v));
        }
      }
      for (let k = 0; k < 20; k++) {
        const q = unit(long.member(k));
        const hit = c.lookup('p', q);
        assert.ok(hit, `cluster ${k} missed`);
        assert.equal(hit.value % 20, k);
        // The returned entry is the exactly nearest, and its similarity the exact one, not the sketch's estimate.
        const exact = entries.map((e) => vectorSimilarity(q, e, 'cosine'));
        assert.equal(hit.value, exact.indexOf(Math.max(...exact)));
        assert.ok(Math.abs(hit.similarity - exact[hit.value]) < 1e-6);
      }
      for (let i = 0; i < 20; i++) assert.equal(c.lookup('p', long.far()), undefined);
    });

    it('finds near copies of 69 120-value image-like vectors (a large common component), which a whole-vector int8 index could not', () => {
      // Lines of text on a page look alike: every vector here is 0.4 on average (the
      // background), so all pairs sit at cosine ~0.3 and a query differs from its entry only in
      // small details. Scaled to ±127 as one 69 120-value unit vector, each component rounds to
      // 0 or ±1 and the index could not tell them apart; its sketch can.
      const dims = 3 * 48 * 480;
      const next = prng(31);
      const images = Array.from({ length: 100 }, () => Float32Array.from({ length: dims }, () => (next() > 0 ? 1 : -0.2)));
      const c = new SemanticCache<number>({ dimensions: dims, threshold: 0.95 });
      images.forEach((v, i) => c.insert('p', v, i));
      for (let i = 0; i < 100; i += 7) {
        const q = images[i].map((x, j) => x + 0.05 * ((j % 13) / 13 - 0.5));
        const hit = c.lookup('p', q);
        assert.equal(hit?.value, i, `image ${i}`);
      }
      assert.equal(c.lookup('p', Float32Array.from({ length: dims }, () => (next() > 0 ? 1 : -0.2))), undefined);
    });

    for (const [metric, dims] of [['cosine', 48], ['l2', 48], ['cosine', 2048], ['l2', 2048]] as const) {
      it(`returns the exactly nearest of two near-equal entries, not the quantized index's first (${metric}, ${dims} dims: HNSW path${dims > INDEX_DIMENSIONS ? ' over sketches' : ''})`, () => {
        const data = clusters(1, dims, 0, 11);
        const noise = prng(12);
        const c = new SemanticCache<string>({ dimensions: dims, metric, threshold: metric === 'cosine' ? -1 : 100 });
        for (let i = 0; i < 500; i++) c.insert('p', data.far(), 'far');
        for (let trial = 0; trial < 40; trial++) {
          const q = data.far();
          // Two entries about equally near q: their order is decided in the 4th decimal or beyond.
          const a = q.map((x) => x + (0.032 / Math.sqrt(dims)) * noise());
          const b = q.map((x) => x + (0.032 / Math.sqrt(dims)) * noise());
          const ida = c.insert('p', a, 'a');
          const idb = c.insert('p', b, 'b');
          const unit = (v: Float32Array) => {
            const n = metric === 'cosine' ? Math.hypot(...v) : 1;
            return v.map((x) => x / n);
          };
          const sa = vectorSimilarity(unit(q), unit(a), metric);
          const sb = vectorSimilarity(unit(q), unit(b), metric);
          const better = (metric === 'cosine' ? sa > sb : sa < sb) ? ida : idb;
          const hit = c.lookup('p', q);
          assert.ok(hit);
          assert.equal(hit.id, better, `trial ${trial}: a ${sa}, b ${sb}`);
          assert.ok(Math.abs(hit.similarity - (better === ida ? sa : sb)) < 1e-6);
          c.remove(ida);
          c.remove(idb);
        }
      });
    }
  });

  describe('embeddings', () => {
    it('inputEmbedding flattens float32, int32, uint8, int64 and float16 tensors to the same unit vector, deterministically', () => {
      const expected = [0.2, 0.4, 0.4, 0.8];
      const tensors = [
        new Tensor('float32', new Float32Array([1, 2, 2, 4]), [2, 2]),
        new Tensor('int32', new Int32Array([1, 2, 2, 4]), [2, 2]),
        new Tensor('uint8', new Uint8Array([1, 2, 2, 4]), [1, 4]),
        new Tensor('int64', new BigInt64Array([1n, 2n, 2n, 4n]), [4]),
        new Tensor('float16', Uint16Array.from([1, 2, 2, 4], float16Bits), [4]),
      ];
      for (const t of tensors) {
        const v = inputEmbedding({ x: t });
        assert.ok(v instanceof Float32Array, t.type);
        assert.deepEqual([...v].map((x) => Math.round(x * 1e6) / 1e6), expected, t.type);
        assert.deepEqual(inputEmbedding({ x: t }), v);
      }
      assert.deepEqual([...inputEmbedding({ x: tensors[0] }, 'x', { normalize: false })], [1, 2, 2, 4]);
    });

    it('inputEmbedding errors: which input, zero vector, strings', () => {
      const x = new Tensor('float32', new Float32Array([1, 0]), [2]);
      assertKilnError(thrown(() => inputEmbedding({ x, y: x })), 'E_INVALID_ARGUMENT', 'name the input', 'x, y');
      assertKilnError(thrown(() => inputEmbedding({ x }, 'z')), 'E_INVALID_ARGUMENT', '"z"');
      assertKilnError(thrown(() => inputEmbedding({ x: new Tensor('float32', new Float32Array(2), [2]) })), 'E_INVALID_ARGUMENT', 'all zeros');
      assertKilnError(thrown(() => inputEmbedding({ s: new Tensor('string', ['a'], [1]) })), 'E_DTYPE_MISMATCH', 'numeric');
    });

    it('function and { model, output } sources', async () => {
      const feeds = { x: new Tensor('float32', new Float32Array([3, 4]), [1, 2]) };
      assert.deepEqual([...(await embedder((f) => inputEmbedding(f, 'x', { normalize: false }).map((v) => v * 2))(feeds))].map((v) => +v.toFixed(6)), [0.6, 0.8]);
      assert.deepEqual([...(await embedder({ input: 'x' })(feeds))].map((v) => +v.toFixed(6)), [0.6, 0.8]);
      const model: EmbeddingModel = {
        infer: async (f) => ({ emb: new Tensor('float32', Float32Array.from(inputEmbedding(f, 'x', { normalize: false }), (v) => v * 3), [1, 2]) }),
      };
      assert.deepEqual([...(await embedder({ model, output: 'emb' })(feeds))].map((v) => +v.toFixed(6)), [0.6, 0.8]);
      await assert.rejects(modelEmbedding(model, 'nope', feeds), (e) => !!assertKilnError(e, 'E_NOT_FOUND', '"nope"', 'emb'));
      await assert.rejects(embedder(() => [1, 2] as unknown as Float32Array)(feeds), (e) => !!assertKilnError(e, 'E_INVALID_ARGUMENT', 'Float32Array'));
    });
  });

  describe('verification', () => {
    const logits = (...v: number[]) => ({ y: new Tensor('float32', new Float32Array(v), [v.length / 2, 2]) });

    it('compareResults: top1, cosine, maxError', () => {
      const a = logits(0.9, 0.1, 0.2, 0.8);
      assert.deepEqual(compareResults(a, logits(0.8, 0.2, 0.3, 0.7), { metric: 'top1' }), { same: true, score: 1 });
      assert.deepEqual(compareResults(a, logits(0.8, 0.2, 0.7, 0.3), { metric: 'top1' }), { same: false, score: 0.5 });
      assert.equal(compareResults(a, logits(0.8, 0.2, 0.7, 0.3), { metric: 'top1', tolerance: 0.5 }).same, true);
      const cos = compareResults(a, logits(0.9, 0.1, 0.2, 0.81), { metric: 'cosine' });
      assert.ok(cos.same && cos.score > 0.999 && cos.score < 1);
      assert.equal(compareResults(a, logits(0.1, 0.9, 0.8, 0.2), { metric: 'cosine' }).same, false);
      const err = compareResults(a, logits(0.9, 0.1, 0.2, 0.85), { metric: 'maxError', tolerance: 0.01 });
      assert.equal(err.same, false);
      assert.ok(Math.abs(err.score - 0.05) < 1e-6);
      assert.equal(compareResults(a, logits(0.9, 0.1, 0.2, 0.85), { metric: 'maxError', tolerance: 0.1 }).same, true);
      assert.deepEqual(compareResults(a, { y: new Tensor('float32', new Float32Array(4), [4]) }, { metric: 'maxError' }), { same: false, score: Infinity });
      assert.equal(compareResults(a, { ...a, z: a.y }, { metric: 'top1' }).same, false);
      assertKilnError(thrown(() => compareResults(a, a, { metric: 'nope' as 'top1' })), 'E_INVALID_ARGUMENT', 'metric');
    });

    it('compareResults: ctc compares decoded label sequences (arg max per step, repeats collapsed, blank dropped)', () => {
      // [2 sequences, 5 steps, 3 classes]; class 0 is blank. Arg maxes per step given as labels.
      const ctc = (...labels: number[]): Results => {
        const data = new Float32Array(labels.length * 3);
        labels.forEach((l, t) => (data[t * 3 + l] = 1));
        return { y: new Tensor('float32', data, [2, 5, 3]) };
      };
      const a = ctc(1, 1, 0, 2, 0, /* | */ 2, 0, 0, 2, 2); // "1 2" and "2 2"
      // Same texts, steps moved: blank and repeats where a had characters.
      const b = ctc(0, 1, 0, 0, 2, /* | */ 2, 2, 0, 0, 2);
      assert.deepEqual(compareResults(a, b, { metric: 'ctc' }), { same: true, score: 1 });
      assert.equal(compareResults(a, b, { metric: 'top1' }).same, false, 'top1 sees the moved steps');
      const c = ctc(1, 1, 0, 2, 0, /* | */ 2, 2, 2, 2, 2); // second sequence "2" (repeats collapse), not "2 2"
      assert.deepEqual(compareResults(a, c, { metric: 'ctc' }), { same: false, score: 0.5 });
      assert.equal(compareResults(a, c, { metric: 'ctc', tolerance: 0.5 }).same, true);
      // With class 2 as the blank the first sequences read "1 0 0" against "0 1 0" (different),
      // the second ones "0" and "0".
      assert.deepEqual(compareResults(a, b, { metric: 'ctc', blank: 2 }), { same: false, score: 0.5 });
      assertKilnError(thrown(() => compareResults({ y: new Tensor('float32', new Float32Array(3), [3]) }, { y: new Tensor('float32', new Float32Array(3), [3]) }, { metric: 'ctc' })), 'E_INVALID_ARGUMENT', 'rank >= 2');
      assertKilnError(thrown(() => compareResults(a, a, { metric: 'ctc', blank: -1 })), 'E_INVALID_ARGUMENT', 'blank');
    });

    it('Verifier picks about verifyFraction of the hits (seeded) and counts false hits', async () => {
      const v = new Verifier({ verifyFraction: 0.25, how: { metric: 'top1' }, seed: 3 });
      let picked = 0;
      for (let i = 0; i < 4000; i++) if (v.shouldVerify()) picked++;
      assert.ok(picked > 900 && picked < 1100, `picked ${picked}`);
      const never = new Verifier({ verifyFraction: 0, how: { metric: 'top1' }, random: () => 0 });
      assert.equal(await never.verify(logits(1, 0), async () => logits(0, 1)), undefined);
      assertKilnError(thrown(() => new Verifier({ verifyFraction: 2, how: { metric: 'top1' } })), 'E_INVALID_ARGUMENT', 'verifyFraction');
    });

    it('a threshold set too low makes hits across clusters, which verification finds false', async () => {
      const K = 20;
      const data = clusters(K, 32, 0.03, 9);
      const answer = (k: number): Results => ({ y: new Tensor('float32', Float32Array.from({ length: K }, (_, i) => (i === k ? 1 : 0)), [1, K]) });
      const run = (threshold: number) => {
        const c = cache<Results>({ threshold });
        for (let k = 0; k < K / 2; k++) c.insert('p', data.member(k), answer(k)); // half the clusters cached
        return c;
      };
      for (const [threshold, expectFalse] of [[-1, K / 2], [0.9, 0]] as const) {
        const c = run(threshold);
        const verifier = new Verifier({ verifyFraction: 1, how: { metric: 'top1' }, seed: 1 });
        for (let k = 0; k < K; k++) {
          const hit = c.lookup('p', data.member(k));
          if (hit) await verifier.verify(hit.value, async () => answer(k));
        }
        assert.equal(verifier.checked, threshold < 0 ? K : K / 2);
        assert.equal(verifier.falseHits, expectFalse, `threshold ${threshold}`);
        assert.equal(verifier.falseHitRate, expectFalse / verifier.checked);
      }
    });
  });

  describe('suggestThreshold', () => {
    // Overlapping clusters: noise large enough that some members are nearer another cluster.
    const data = clusters(40, 16, 0.1, 21);
    const sample = (n: number): LabelledSample[] => Array.from({ length: n }, (_, i) => ({ vector: data.member(i % 40), label: String(i % 40) }));
    const heldOutFalseHitRate = (train: LabelledSample[], test: LabelledSample[], threshold: number) => {
      const c = new SemanticCache<string>({ dimensions: 16, threshold });
      for (const s of train) c.insert('p', s.vector, s.label);
      let hits = 0;
      let falseHits = 0;
      for (const s of test) {
        const hit = c.lookup('p', s.vector);
        if (hit) {
          hits++;
          if (hit.value !== s.label) falseHits++;
        }
      }
      return { falseHitRate: falseHits / hits, hitRate: hits / test.length };
    };

    for (const target of [0.01, 0.05]) {
      it(`keeps the held-out false-hit rate at about the target (${target})`, () => {
        const train = sample(800);
        const suggestion = suggestThreshold(train, { targetFalseHitRate: target });
        assert.ok(suggestion.falseHitRate <= target);
        assert.ok(suggestion.hitRate > 0.5, JSON.stringify(suggestion));
        const measured = heldOutFalseHitRate(train, sample(800), suggestion.threshold);
        assert.ok(measured.falseHitRate <= target + 0.02, JSON.stringify({ suggestion, measured }));
        assert.ok(measured.hitRate > 0.5, JSON.stringify({ suggestion, measured }));
      });
    }

    it('is stricter for a lower target, and takes judged pairs too', () => {
      const train = sample(400);
      const loose = suggestThreshold(train, { targetFalseHitRate: 0.2 });
      const strict = suggestThreshold(train, { targetFalseHitRate: 0 });
      assert.ok(strict.threshold >= loose.threshold && strict.hitRate <= loose.hitRate);
      assert.equal(strict.falseHitRate, 0);
      const pairs = [
        { a: new Float32Array([1, 0]), b: new Float32Array([1, 0.1]), same: true },
        { a: new Float32Array([1, 0]), b: new Float32Array([1, 0.5]), same: false },
        { a: new Float32Array([1, 0]), b: new Float32Array([1, 1]), same: true },
      ];
      const p = suggestThreshold(pairs, { targetFalseHitRate: 0 });
      assert.equal(p.hitRate, 1 / 3);
      assert.ok(p.threshold < vectorSimilarity(new Float32Array([1, 0]), new Float32Array([1, 0.1]).map((x) => x / Math.hypot(1, 0.1)), 'cosine'));
      const l2 = suggestThreshold(pairs, { targetFalseHitRate: 0, metric: 'l2' });
      assert.ok(l2.threshold > 0.1 && l2.threshold < 0.5, String(l2.threshold));
      assertKilnError(thrown(() => suggestThreshold(train, { targetFalseHitRate: 1 })), 'E_INVALID_ARGUMENT', 'targetFalseHitRate');
    });
  });
});

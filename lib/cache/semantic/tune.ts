/**
 * Threshold tuning: which threshold keeps the false-hit rate of a semantic cache at or below
 * a target while hitting as often as possible, estimated from a sample of requests.
 *
 * Method. With labelled samples (vector + label, where the same label means "the same answer"),
 * each sample plays a request arriving at a cache that holds all the others: its nearest
 * neighbour among them (exact search, leave one out) is the entry a lookup would return, and
 * the hit is false when the labels differ. With pairs, each pair is one lookup and its entry,
 * judged same or different. Either way every lookup gives (similarity, correct). Sorted from
 * most to least similar, a threshold admits a prefix of them: its hit rate is prefix / all and
 * its false-hit rate is wrong-in-prefix / prefix (the rate verification measures: false hits
 * per hit). The longest prefix whose false-hit rate is <= the target wins (prefixes end only
 * where the similarity changes, so ties are never split), and the threshold is set halfway
 * between its last similarity and the next one, leaving a margin on both sides for unseen
 * requests. When no prefix meets the target, nothing should hit: the threshold is the
 * strictest one (cosine 1, L2 0) and the rates reported are those measured at it.
 *
 * The sample cache holds every other sample, so it is fuller than a real cache warming up:
 * nearest neighbours are closer, which errs towards more hits, of either kind, than seen live.
 */
import { exactSearch, MetricKind, type BatchMatches } from 'usearch';
import { KilnError } from '../../errors';
import { normalizeVector } from './embedding';
import { vectorSimilarity } from './index';

export interface LabelledSample {
  vector: Float32Array;
  /** Requests with the same label have the same answer. */
  label: string;
}

export interface JudgedPair {
  a: Float32Array;
  b: Float32Array;
  /** Whether b's answer is a right answer for a. */
  same: boolean;
}

export interface TuneOptions {
  /** Highest acceptable false hits per hit, in [0, 1). */
  targetFalseHitRate: number;
  /** Default 'cosine'. */
  metric?: 'cosine' | 'l2';
}

export interface ThresholdSuggestion {
  /** For SemanticCacheOptions.threshold. */
  threshold: number;
  /** False hits per hit on the sample at that threshold. */
  falseHitRate: number;
  /** Hits per lookup on the sample at that threshold. */
  hitRate: number;
}

interface Lookup {
  similarity: number;
  correct: boolean;
}

function invalid(message: string): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `suggestThreshold: ${message}`);
}

function prepare(v: Float32Array, dims: number, metric: 'cosine' | 'l2', what: string): Float32Array {
  if (!(v instanceof Float32Array) || v.length !== dims) throw invalid(`${what} must be a Float32Array of ${dims} elements, received ${v instanceof Float32Array ? v.length + ' elements' : String(v)}`);
  if (metric === 'cosine') return normalizeVector(v.slice(), what);
  if (!v.every(Number.isFinite)) throw invalid(`${what} has a non-finite element`);
  return v;
}

function nearestNeighbourLookups(samples: readonly LabelledSample[], metric: 'cosine' | 'l2'): Lookup[] {
  if (samples.length < 2) throw invalid(`needs at least 2 samples, received ${samples.length}`);
  const dims = samples[0].vector?.length;
  const vectors = samples.map((s, i) => prepare(s.vector, dims, metric, `samples[${i}].vector`));
  const matrix = new Float32Array(samples.length * dims);
  vectors.forEach((v, i) => matrix.set(v, i * dims));
  // Each sample's two nearest: itself and its nearest other (either order on exact ties).
  const { keys } = exactSearch(matrix, matrix, dims, 2, metric === 'cosine' ? MetricKind.Cos : MetricKind.L2sq, 0) as BatchMatches;
  return samples.map((s, i) => {
    const pair = [Number(keys[2 * i]), Number(keys[2 * i + 1])];
    const j = pair[0] === i ? pair[1] : pair[0];
    return { similarity: vectorSimilarity(vectors[i], vectors[j], metric), correct: s.label === samples[j].label };
  });
}

function pairLookups(pairs: readonly JudgedPair[], metric: 'cosine' | 'l2'): Lookup[] {
  if (pairs.length < 1) throw invalid('needs at least 1 pair');
  const dims = pairs[0].a?.length;
  return pairs.map((p, i) => ({
    similarity: vectorSimilarity(prepare(p.a, dims, metric, `pairs[${i}].a`), prepare(p.b, dims, metric, `pairs[${i}].b`), metric),
    correct: p.same === true,
  }));
}

/** The threshold that keeps false hits per hit <= targetFalseHitRate on the sample with the most hits; see the method above. */
export function suggestThreshold(samples: readonly LabelledSample[] | readonly JudgedPair[], options: TuneOptions): ThresholdSuggestion {
  const { targetFalseHitRate, metric = 'cosine' } = options;
  if (!(targetFalseHitRate >= 0 && targetFalseHitRate < 1)) throw invalid(`targetFalseHitRate must be in [0, 1), received ${String(targetFalseHitRate)}`);
  if (metric !== 'cosine' && metric !== 'l2') throw invalid(`metric must be "cosine" or "l2", received ${String(metric)}`);
  if (!Array.isArray(samples) || samples.length === 0) throw invalid('needs a non-empty array of samples or pairs');
  const lookups = 'label' in samples[0] ? nearestNeighbourLookups(samples as LabelledSample[], metric) : pairLookups(samples as JudgedPair[], metric);
  const closer = metric === 'cosine' ? -1 : 1;
  lookups.sort((x, y) => closer * (x.similarity - y.similarity));
  const n = lookups.length;
  let wrong = 0;
  let best = 0;
  let bestWrong = 0;
  for (let k = 1; k <= n; k++) {
    if (!lookups[k - 1].correct) wrong++;
    const cut = k === n || lookups[k].similarity !== lookups[k - 1].similarity;
    if (cut && wrong <= targetFalseHitRate * k) {
      best = k;
      bestWrong = wrong;
    }
  }
  if (best === 0) {
    const strictest = metric === 'cosine' ? 1 : 0;
    const hits = lookups.filter((l) => l.similarity === strictest);
    const falseHits = hits.filter((l) => !l.correct).length;
    return { threshold: strictest, falseHitRate: hits.length === 0 ? 0 : falseHits / hits.length, hitRate: hits.length / n };
  }
  const last = lookups[best - 1].similarity;
  let threshold = last;
  if (best < n) {
    const mid = (last + lookups[best].similarity) / 2;
    threshold = mid === lookups[best].similarity ? last : mid;
  }
  return { threshold, falseHitRate: bestWrong / best, hitRate: best / n };
}

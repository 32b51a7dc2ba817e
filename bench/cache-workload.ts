/**
 * The replayed workload of bench/cache: a pool of distinct rendered text lines, requests drawn
 * Zipf-distributed over the pool (seeded), and the repeats among them either byte-identical or
 * perturbed copies of the line (noise, a ±1 px shift, brightness ±5%).
 */
import { prng } from '../lib/samples';
import { recPreprocess, type FloatTensor } from '../support/ppocr';
import { perturb, renderText, type RgbImage } from '../support/text-image';

const WORDS = [
  'apple', 'river', 'stone', 'cloud', 'north', 'table', 'green', 'light', 'paper', 'glass',
  'metal', 'house', 'train', 'water', 'field', 'music', 'plant', 'sugar', 'storm', 'chair',
  'night', 'bread', 'brush', 'coast', 'dance', 'eagle', 'flame', 'grape', 'heart', 'ivory',
  'jelly', 'knife', 'lemon', 'maple', 'noble', 'ocean', 'pearl', 'queen', 'radio', 'salt',
  'tiger', 'urban', 'vivid', 'wheat', 'young', 'zebra', 'amber', 'blaze', 'cedar', 'delta',
];

/** `count` distinct lines of two words and a number (at most 20 characters: they fit the recognizer's fixed width). */
export function distinctLines(count: number, seed: number): string[] {
  const next = prng(seed);
  const pick = (n: number): number => Math.floor(((next() + 1) / 2) * n);
  const lines = new Set<string>();
  while (lines.size < count) {
    const line = `${WORDS[pick(WORDS.length)]} ${WORDS[pick(WORDS.length)]} ${pick(1000)}`;
    if (line.length <= 20) lines.add(line);
  }
  return [...lines];
}


export type RequestKind = 'first' | 'exact' | 'near';

export interface WorkloadRequest {
  /** Index into the pool; `text` is the line rendered. */
  line: number;
  text: string;
  kind: RequestKind;
  /** The recognizer's input [1,3,48,width]. */
  x: FloatTensor;
}

export interface WorkloadOptions {
  pool: number;
  requests: number;
  /** Zipf exponent: the k-th line (from 1) is drawn with weight 1/k^s. */
  zipf: number;
  /** Share of all requests that are perturbed repeats of a line seen before. */
  nearShare: number;
  width: number;
  seed: number;
}

/**
 * Requests in replay order. A draw of a line not seen before is its first (unperturbed)
 * request; draws of seen lines are repeats, and nearShare × requests of them (spread evenly
 * over the repeats, fewer when there are not enough repeats) are perturbed, the rest exact.
 */
export function workload(o: WorkloadOptions): { lines: string[]; requests: WorkloadRequest[] } {
  const lines = distinctLines(o.pool, o.seed);
  const next = prng(o.seed + 1);
  const uniform = (): number => (next() + 1) / 2;
  const cumulative: number[] = [];
  let total = 0;
  for (let k = 1; k <= o.pool; k++) cumulative.push((total += 1 / k ** o.zipf));
  const draw = (): number => {
    const u = uniform() * total;
    let lo = 0;
    let hi = o.pool - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const draws = Array.from({ length: o.requests }, draw);
  const seen = new Set<number>();
  const repeats: number[] = [];
  draws.forEach((line, i) => (seen.has(line) ? repeats.push(i) : seen.add(line)));
  const near = new Set<number>();
  const wanted = Math.min(repeats.length, Math.round(o.nearShare * o.requests));
  for (let j = 0; j < wanted; j++) near.add(repeats[Math.floor((j * repeats.length) / wanted)]);

  const images = new Map<number, RgbImage>();
  const originals = new Map<number, FloatTensor>();
  const requests = draws.map((line, i): WorkloadRequest => {
    let img = images.get(line);
    if (!img) images.set(line, (img = renderText(lines[line])));
    const text = lines[line];
    if (near.has(i)) {
      const p = { dx: Math.round(uniform() * 2) - 1, dy: Math.round(uniform() * 2) - 1, gain: 0.95 + 0.1 * uniform(), noise: 6 * uniform() };
      return { line, text, kind: 'near', x: recPreprocess(perturb(img, o.seed + 7 * i, p), { width: o.width }) };
    }
    const first = !originals.has(line);
    if (first) originals.set(line, recPreprocess(img, { width: o.width }));
    const x = originals.get(line) as FloatTensor;
    // An exact repeat is new bytes with the same values, as a new request would be.
    return { line, text, kind: first ? 'first' : 'exact', x: first ? x : { type: 'float32', data: x.data.slice(), dims: [...x.dims] } };
  });
  return { lines, requests };
}

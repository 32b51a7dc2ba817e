/**
 * Open-loop send times: when each request of a fixed-rate load is due, whatever the answers
 * do. Constant arrivals are evenly spaced; Poisson arrivals have exponential gaps drawn from
 * a seeded PRNG, so a run is reproducible.
 */
import { prng } from '../samples';

/** A sequence of send times in microseconds after the start: each call returns the next. */
export type Schedule = () => number;

export function schedule(rate: number, arrival: 'poisson' | 'constant', seed = 1): Schedule {
  if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`a request rate must be a positive number, received ${rate}`);
  const gapUs = 1e6 / rate;
  if (arrival === 'constant') {
    let i = 0;
    return () => i++ * gapUs;
  }
  const next = prng(seed);
  let t = 0;
  return () => {
    const at = t;
    // prng() is uniform in [-1, 1): u in [0, 1), so 1 - u is in (0, 1] and its log finite.
    const u = (next() + 1) / 2;
    t += -Math.log(1 - u) * gapUs;
    return at;
  };
}

/** The first `count` send times of a schedule (microseconds after the start). */
export function sendTimes(rate: number, arrival: 'poisson' | 'constant', count: number, seed = 1): number[] {
  const s = schedule(rate, arrival, seed);
  return Array.from({ length: count }, s);
}

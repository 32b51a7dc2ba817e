/**
 * Runs the measurement: a step is windows repeated until perf_analyzer's stability rule holds
 * (or the trials run out: reported as unstable, not hidden); targets compared in one run take
 * their windows in turn; a sweep is steps over a list of loads; a latency bound sweeps
 * upward until the latency exceeds it, then bisects between the last load that met it and
 * the first that did not.
 */
import { KilnError } from '../errors';
import { isStable, latencyAt, summarizeStep } from './stats';
import type { Driver, Load, StepResult, TargetReport, WindowLimit, WindowResult } from './types';

export interface RunSettings {
  limit: WindowLimit;
  /** Requests sent (one caller, timings discarded) before a driver's first step. */
  warmupRequests: number;
  stabilityWindows: number;
  stabilityPercentage: number;
  maxWindows: number;
  /**
   * perf_analyzer's `--percentile`: the latency the stability rule and a latency bound judge.
   * 0: none chosen (stability judges the mean latency, a latency bound the p99).
   */
  percentile: number;
}

/** What a run reports as it goes (the command line draws a progress bar from it): windows done of at most `maxWindows`. */
export interface RunProgress {
  (event: { target: string; load: Load; window: number; maxWindows: number }): void;
}

/** Drivers already warmed up: warm-up happens once per driver, before its first step. */
const warmed = new WeakSet<Driver>();

async function warm(driver: Driver, s: RunSettings): Promise<void> {
  if (warmed.has(driver)) return;
  warmed.add(driver);
  if (s.warmupRequests > 0) await driver.warmup(s.warmupRequests);
}

/**
 * Steps of several drivers (each at its own load) measured side by side: windows taken in
 * turn, one per driver a round, the order rotating each round, until every driver's windows
 * are stable or the trials run out. A machine's drift (another process, a clock change)
 * then falls on every target alike, which back-to-back sweeps cannot promise.
 */
export async function measureSteps(pairs: readonly { driver: Driver; load: Load }[], s: RunSettings, progress?: RunProgress): Promise<StepResult[]> {
  for (const { driver } of pairs) await warm(driver, s);
  const windows: WindowResult[][] = pairs.map(() => []);
  const report = (i: number): void => progress?.({ target: pairs[i].driver.name, load: pairs[i].load, window: windows[i].length, maxWindows: s.maxWindows });
  pairs.forEach((_, i) => report(i));
  for (let round = 0; round < s.maxWindows; round++) {
    for (let k = 0; k < pairs.length; k++) {
      const i = (round + k) % pairs.length;
      windows[i].push(await pairs[i].driver.window(pairs[i].load, s.limit));
      report(i);
    }
    if (windows.every((w) => isStable(w, s))) break;
  }
  return pairs.map((p, i) => summarizeStep(p.load, windows[i], s));
}

/** One driver's step at `load`. */
export async function measureStep(driver: Driver, load: Load, s: RunSettings, progress?: RunProgress): Promise<StepResult> {
  return (await measureSteps([{ driver, load }], s, progress))[0];
}

/** The latency a bound is judged on: the chosen percentile, p99 when none was chosen. */
export const boundLatencyUs = (step: StepResult, percentile: number): number => latencyAt(step.latency, percentile === 0 ? 99 : percentile);

/** The number a load varies along a sweep. */
export const loadValue = (load: Load): number => (load.kind === 'concurrency' ? load.concurrency : load.rate);

export interface SweepOptions {
  /** Search for the highest throughput whose latency stays within this bound (ms). */
  latencyBoundMs?: number;
  /** Bisection steps after the sweep crossed the bound (default 3). */
  bisections?: number;
  progress?: RunProgress;
}

/** The load between two of the same kind (concurrency: an integer strictly between, or undefined). */
function midway(good: Load, bad: Load): Load | undefined {
  if (good.kind === 'concurrency' && bad.kind === 'concurrency') {
    const c = Math.floor((good.concurrency + bad.concurrency) / 2);
    return c > good.concurrency && c < bad.concurrency ? { kind: 'concurrency', concurrency: c } : undefined;
  }
  if (good.kind === 'rate' && bad.kind === 'rate') return { kind: 'rate', rate: Math.round(((good.rate + bad.rate) / 2) * 100) / 100, arrival: good.arrival };
  return undefined;
}

/**
 * Every load of `loads` (in order) measured on every driver, the drivers side by side at each
 * load (measureSteps). With a latency bound a driver leaves the sweep at its first step over
 * it, then bisects towards it (drivers still bisecting measured side by side too); `best`
 * names its highest-throughput step within the bound (none when even the first step exceeded
 * it; a step with failed requests does not meet a bound). Steps are ordered by load.
 */
export async function sweepAll(drivers: readonly Driver[], loads: readonly Load[], s: RunSettings, o: SweepOptions = {}): Promise<TargetReport[]> {
  if (!loads.length) throw new KilnError('E_INVALID_ARGUMENT', 'a sweep needs at least one load');
  const boundUs = o.latencyBoundMs === undefined ? undefined : o.latencyBoundMs * 1000;
  const within = (step: StepResult): boolean => boundUs !== undefined && step.errors === 0 && boundLatencyUs(step, s.percentile) <= boundUs;
  const state = drivers.map((driver) => ({ driver, steps: [] as StepResult[], good: undefined as Load | undefined, bad: undefined as Load | undefined }));
  const measure = async (due: { i: number; load: Load }[]): Promise<void> => {
    const steps = await measureSteps(due.map(({ i, load }) => ({ driver: drivers[i], load })), s, o.progress);
    due.forEach(({ i, load }, k) => {
      const t = state[i];
      t.steps.push(steps[k]);
      if (boundUs === undefined) return;
      if (within(steps[k])) t.good = load;
      else t.bad = load;
    });
  };
  for (const load of loads) {
    const due = state.flatMap((t, i) => (t.bad === undefined ? [{ i, load }] : []));
    if (!due.length) break;
    await measure(due);
  }
  for (let b = 0; b < (o.bisections ?? 3); b++) {
    const due = state.flatMap((t, i) => {
      const load = t.good && t.bad && midway(t.good, t.bad);
      return load ? [{ i, load }] : [];
    });
    if (!due.length) break;
    await measure(due);
  }
  return state.map(({ driver, steps }) => {
    steps.sort((a, b) => loadValue(a.load) - loadValue(b.load));
    const report: TargetReport = { name: driver.name, description: driver.description, steps };
    if (o.latencyBoundMs !== undefined) {
      let best = -1;
      steps.forEach((step, i) => {
        if (within(step) && (best < 0 || step.throughput > steps[best].throughput)) best = i;
      });
      if (best >= 0) report.best = { stepIndex: best, boundMs: o.latencyBoundMs };
    }
    return report;
  });
}

/** `sweepAll` for one driver. */
export async function sweep(driver: Driver, loads: readonly Load[], s: RunSettings, o: SweepOptions = {}): Promise<TargetReport> {
  return (await sweepAll([driver], loads, s, o))[0];
}

/**
 * A load list from perf_analyzer's range syntax: `start:end:step` adds `step` (default 1),
 * `start:end:xF` multiplies by F (`1:128:x2` is 1, 2, 4 ... 128), a single value is one step.
 * `integer`: concurrencies (whole numbers >= 1); else request rates (> 0 per second).
 */
export function parseRange(text: string, flag: string, integer: boolean): number[] {
  const what = integer ? 'integers >= 1' : 'numbers > 0';
  const fail = (why: string): never => {
    throw new KilnError('E_INVALID_ARGUMENT', `${flag} takes a value or START:END[:STEP] (STEP may be xFACTOR), with ${what}; ${why}, received ${text}`);
  };
  const parts = text.split(':');
  if (parts.length > 3) fail('too many parts');
  const number = (s: string, name: string): number => {
    const n = Number(s);
    if (s.trim() === '' || !Number.isFinite(n) || (integer ? !Number.isInteger(n) || n < 1 : n <= 0)) fail(`${name} is not one of the ${what}`);
    return n;
  };
  const start = number(parts[0], 'the start');
  if (parts.length === 1) return [start];
  const end = number(parts[1], 'the end');
  if (end < start) fail('the end is below the start');
  const stepText = parts[2] ?? '1';
  const MAX_STEPS = 1000;
  const out: number[] = [];
  if (stepText.startsWith('x')) {
    const factor = Number(stepText.slice(1));
    if (!Number.isFinite(factor) || factor <= 1) fail('a multiplicative step must be x followed by a factor > 1');
    for (let v = start; v <= end * (1 + 1e-9); v = integer ? Math.max(v + 1, Math.round(v * factor)) : Math.round(v * factor * 1e6) / 1e6) {
      if (out.push(v) > MAX_STEPS) fail(`it makes more than ${MAX_STEPS} steps`);
    }
  } else {
    const step = number(stepText, 'the step');
    const count = Math.floor((end - start) / step + 1e-9);
    if (count >= MAX_STEPS) fail(`it makes more than ${MAX_STEPS} steps`);
    for (let i = 0; i <= count; i++) out.push(integer ? start + i * step : Math.round((start + i * step) * 1e6) / 1e6);
  }
  return out;
}

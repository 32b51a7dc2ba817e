/**
 * Judging calls: the watchdog, the expectation of each call, and the outcome it gets
 * (a code, or a finding: hang, non-KilnError, engine error, rejected-valid, ...).
 */
import { KilnError, type KilnErrorCode } from '../../lib';
import { isErrorCode } from '../../lib/errors';
import { Rng } from './random';
import { type CallInfo, type Finding, messageShape, type Note, type TargetName, type TargetReport } from './report';
import { Trace } from './trace';

/** An awaited call that has not answered after this long is a hang. */
export const WATCHDOG_MS = 10_000;

/** Matches messages of JavaScript's own errors (TypeError & co.) that leaked through a KilnError. */
const ENGINE_ERROR = new RegExp([
  'is not a function', 'is not iterable', 'Cannot read propert', 'Cannot set propert', 'Cannot convert', 'is not a constructor',
  'called on incompatible receiver', 'Maximum call stack', 'Invalid array length', 'Invalid typed array length',
  'Cannot create a Buffer larger than', 'Array buffer allocation failed', 'Invalid array buffer length',
].join('|'));

export function describeError(e: unknown): string {
  if (e instanceof Error) return `${e.constructor.name}${(e as { code?: unknown }).code !== undefined ? ` (code ${String((e as { code?: unknown }).code)})` : ''}: ${e.message}`;
  return `${typeof e}: ${String(e)}`;
}

export class Tally {
  iterations = 0;
  calls = 0;
  readonly outcomes = new Map<string, number>();
  readonly findings = new Map<string, Finding>();
  readonly notes = new Map<string, Note>();
  /** The call started last: unhandled rejections are attributed to it. */
  last: CallInfo & { iteration: number } = { family: 'setup', label: 'setup', iteration: -1 };
  done = false;

  constructor(readonly target: TargetName, readonly seed: number, readonly skip: ReadonlySet<string>, readonly verbose: boolean) {}

  count(outcome: string, iteration: number, info: CallInfo): void {
    this.calls++;
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
    if (this.verbose) process.stdout.write(`  [${iteration}] ${info.family}: ${info.label} -> ${outcome}\n`);
  }

  repro(iteration: number): string {
    const skip = this.skip.size > 0 ? ` --skip ${[...this.skip].join(',')}` : '';
    return `node dist/bench/fuzz.js --target ${this.target} --seed ${this.seed} --iteration ${iteration}${skip} --verbose`;
  }

  /** Records a finding; one per kind and message shape (or per `key`), counting repeats. */
  finding(iteration: number, info: CallInfo, kind: string, message: string, key = `${kind}|${messageShape(message)}`): void {
    const known = this.findings.get(key);
    if (known) {
      known.count++;
      return;
    }
    this.findings.set(key, {
      kind, target: this.target, family: info.family, message, label: info.label, iteration, repro: this.repro(iteration), count: 1,
    });
    process.stderr.write(`FINDING [${this.target}/${info.family}] ${kind}: ${message}\n  case: ${info.label}\n  repro: ${this.repro(iteration)}\n`);
  }

  note(iteration: number, info: CallInfo, message: string): void {
    const key = messageShape(message);
    const known = this.notes.get(key);
    if (known) known.count++;
    else this.notes.set(key, { target: this.target, family: info.family, message, label: info.label, iteration, count: 1 });
  }

  report(seconds: number): TargetReport {
    return {
      target: this.target, seconds, iterations: this.iterations, calls: this.calls, restarts: 0,
      outcomes: Object.fromEntries(this.outcomes), findings: [...this.findings.values()], notes: [...this.notes.values()],
      skipped: [...this.skip], done: this.done,
    };
  }
}

export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'object';
  return typeof v;
}

class Hang extends Error {}

/** Rejects with a Hang when `p` has not settled after `ms`. */
export function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const watchdog = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Hang(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, watchdog]).finally(() => clearTimeout(timer));
}

export interface Expect {
  /** 'yes': must succeed (and pass `check`); 'no': must be rejected; 'maybe': either, as long as it is a KilnError. */
  readonly valid: 'yes' | 'no' | 'maybe';
  /** Codes a valid call may still end with (an abort, a dispose, a timeout, a full queue). */
  readonly allow?: readonly string[];
  /** The code Kiln's validation should give when it rejects; another one is noted. */
  readonly want?: KilnErrorCode;
  /** Checks a success; returns what is wrong with it. */
  readonly check?: (value: unknown) => string | undefined;
}

/** One iteration: its PRNG, its number, and where its findings go. */
export class Ctx {
  constructor(readonly tally: Tally, readonly trace: Trace, readonly iteration: number, readonly rng: Rng) {}

  skipped(family: string): boolean {
    return this.tally.skip.has(family);
  }

  step(info: CallInfo): void {
    this.tally.last = { ...info, iteration: this.iteration };
    this.trace.write(this.iteration, info);
  }

  finding(info: CallInfo, kind: string, message: string): void {
    this.tally.finding(this.iteration, info, kind, message);
  }

  /** Judges a settled call against `expect` and counts its outcome. */
  judge(info: CallInfo, expect: Expect, result: { ok: true; value: unknown } | { ok: false; error: unknown }): string {
    const outcome = this.#outcome(info, expect, result);
    this.tally.count(outcome, this.iteration, info);
    return outcome;
  }

  #outcome(info: CallInfo, expect: Expect, result: { ok: true; value: unknown } | { ok: false; error: unknown }): string {
    if (result.ok) {
      if (expect.valid === 'no') {
        this.finding(info, 'accepted-invalid', 'the call is invalid but succeeded');
      } else if (expect.check) {
        let wrong: string | undefined;
        try {
          wrong = expect.check(result.value);
        } catch (e) {
          wrong = `reading the result threw ${describeError(e)}`;
        }
        if (wrong !== undefined) this.finding(info, 'wrong-result', wrong);
      }
      return 'ok';
    }
    const e = result.error;
    if (e instanceof Hang) {
      this.finding(info, 'hang', e.message);
      return 'hang';
    }
    if (!(e instanceof KilnError)) {
      this.finding(info, 'non-KilnError', `failed with ${describeError(e)}`);
      return 'non-KilnError';
    }
    if (!isErrorCode(e.code)) this.finding(info, 'unstable-code', `KilnError code ${String(e.code)} is not one of the stable codes: ${e.message}`);
    if (ENGINE_ERROR.test(e.message)) {
      this.finding(info, 'engine-error', `${e.code} wraps a JavaScript engine error instead of a validation message: ${e.message}`);
    }
    if (expect.valid === 'yes' && !(expect.allow ?? []).includes(e.code)) {
      this.finding(info, 'rejected-valid', `the call is valid but failed: ${e.code}: ${e.message}`);
    } else if (expect.valid !== 'yes' && expect.want !== undefined && e.code !== expect.want && !(expect.allow ?? []).includes(e.code)) {
      this.tally.note(this.iteration, info, `expected ${expect.want}, received ${e.code}: ${e.message.slice(0, 300)}`);
    }
    return e.code;
  }

  /**
   * Starts a call now and judges it when it settles (under the watchdog). `api`: whether the
   * call is asynchronous (must return a promise, never throw) or synchronous.
   */
  begin<T>(info: CallInfo, expect: Expect, api: 'async' | 'sync', start: () => T | Promise<T>): Promise<{ value: T | undefined; outcome: string }> {
    this.step(info);
    let pending: Promise<T>;
    try {
      const v = start();
      if (api === 'async' && !(v instanceof Promise)) {
        this.finding(info, 'not-a-promise', `an asynchronous call returned ${typeof v} instead of a promise`);
      }
      pending = Promise.resolve(v);
    } catch (e) {
      if (api === 'async') this.finding(info, 'sync-throw', `an asynchronous call threw synchronously instead of rejecting: ${describeError(e)}`);
      pending = Promise.reject(e);
    }
    return within(pending, WATCHDOG_MS).then(
      (value) => ({ value, outcome: this.judge(info, expect, { ok: true, value }) }),
      (error: unknown) => ({ value: undefined, outcome: this.judge(info, expect, { ok: false, error }) }),
    );
  }
}

/**
 * The worker side: one target run in this process, iteration after iteration.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KilnError, configure, runtime } from '../../lib';
import { Ctx, describeError, Tally, WATCHDOG_MS, within } from './judge';
import { mixSeed, Rng } from './random';
import { type Cli, type TargetName, type TargetReport, TARGETS } from './report';
import { BatchFuzzer } from './targets/batch';
import { FeedFuzzer } from './targets/feed';
import { HttpFuzzer } from './targets/http';
import { LoadFuzzer } from './targets/load';
import { Trace } from './trace';

interface Fuzzer {
  iteration(ctx: Ctx): Promise<void>;
  teardown(): Promise<void>;
}

async function makeFuzzer(target: TargetName, scratch: string): Promise<Fuzzer> {
  switch (target) {
    case 'load': return new LoadFuzzer(scratch);
    case 'feed': return FeedFuzzer.create();
    case 'batch': return new BatchFuzzer();
    case 'http': return HttpFuzzer.create(scratch);
  }
}

function iterationSeed(seed: number, target: TargetName, iteration: number): number {
  return mixSeed(seed, TARGETS.indexOf(target) + 1, iteration);
}

/** Runs one target in this process: iterations [from, until) or the single --iteration. */
export async function runTarget(cli: Cli, target: TargetName, until: number, from: number, traceFile: string | undefined, resultFile: string | undefined): Promise<TargetReport> {
  configure({ logLevel: 'fatal' });
  const tally = new Tally(target, cli.seed, new Set(cli.skip), cli.verbose);
  const trace = new Trace(traceFile);
  const started = Date.now();
  process.on('unhandledRejection', (e) => {
    const code = (e as { code?: unknown } | null)?.code;
    tally.finding(tally.last.iteration, tally.last, 'unhandled-rejection',
      `a promise Kiln created was rejected with nobody listening (Node's default would end the process); the call started last is named, the promise may belong to an earlier one: ${describeError(e)}`,
      `unhandled-rejection|${String(code)}|${e instanceof Error && !(e instanceof KilnError) ? 'native' : 'js'}`);
  });
  process.on('uncaughtException', (e) => {
    tally.finding(tally.last.iteration, tally.last, 'uncaught-exception', describeError(e));
  });
  const snapshot = (): void => {
    if (resultFile === undefined) return;
    const report = { ...tally.report((Date.now() - started) / 1000), onnxruntime: runtime().version };
    fs.writeFileSync(resultFile, JSON.stringify(report));
  };
  trace.write(from, { family: 'setup', label: `setting up ${target}` });
  const fuzzer = await makeFuzzer(target, traceFile === undefined ? os.tmpdir() : path.dirname(traceFile));
  let written = Date.now();
  const single = cli.iteration;
  for (let i = single ?? from; single !== undefined ? i === single : Date.now() < until; i++) {
    const ctx = new Ctx(tally, trace, i, new Rng(iterationSeed(cli.seed, target, i)));
    trace.write(i, { family: 'iteration', label: 'drawing a case' });
    await fuzzer.iteration(ctx);
    tally.iterations++;
    // Let timers (watchdogs, aborts) and I/O run between iterations.
    await new Promise<void>((done) => setImmediate(done));
    if (Date.now() - written > 250) {
      snapshot();
      written = Date.now();
    }
  }
  trace.write(-1, { family: 'teardown', label: `tearing down ${target}` });
  await within(fuzzer.teardown(), WATCHDOG_MS).catch((e: unknown) => tally.finding(-1, { family: 'teardown', label: 'dispose of the fuzzer sessions' }, 'hang', describeError(e)));
  tally.done = true;
  snapshot();
  return { ...tally.report((Date.now() - started) / 1000), onnxruntime: runtime().version };
}

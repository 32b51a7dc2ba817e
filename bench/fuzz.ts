/**
 * bench/fuzz: a seeded fuzzer over Kiln's public API, for a fixed time per target.
 *
 *   load   bytes and paths -> Session.create: byte mutations of the sample models (bit flips,
 *          inserts, deletes, truncation, splices), random protobuf-shaped bytes, graph edits
 *          made through decodeModel/encodeModel, odd buffers (offset, shared, resizable,
 *          pooled), buffers changed while the load runs, odd paths, random session options
 *   feed   random feeds and options -> run / runSync on sessions of the sample models (every
 *          identityModel dtype among them), alone, concurrently and across a dispose,
 *          checked against JS references
 *   batch  loadModel with a random batching configuration, random concurrent infer() calls
 *          (some invalid; priorities, timeouts, aborts) and dispose at a random point
 *   http   `kiln serve`'s HTTP server (in-process, on 127.0.0.1:0, the example repository):
 *          KServe v2 requests with random mutations, random JSON, random bytes with random
 *          Inference-Header-Content-Length, sent concurrently on every route; checked: never
 *          a 5xx, every error a JSON {error}, valid requests answered as in-process runs
 *
 * The contract checked: every failure is a KilnError with a stable code; a valid call gives
 * the reference answer; an invalid one is rejected; every awaited call answers before a
 * watchdog; nothing crashes. Each target runs in a child process under a supervisor, so a
 * crash or a stall is recorded as a finding with the case that caused it; that case family
 * is then skipped and fuzzing resumes with the next iteration.
 *
 * Iteration i of a target draws everything from a PRNG seeded by (seed, target, i), so a
 * finding replays in-process with --iteration (timing of concurrent calls aside).
 *
 *   node dist/bench/fuzz.js [--seconds 30] [--seed S] [--target load|feed|batch|all] [--json out.json]
 *   node dist/bench/fuzz.js --target feed --seed S --iteration I [--skip f1,f2] --verbose
 */
import * as fs from 'fs';
import * as os from 'os';
import { describeError } from './fuzz/judge';
import { TARGETS, markdown, type Cli, type TargetName, type TargetReport } from './fuzz/report';
import { FUZZER_ERROR, superviseTarget } from './fuzz/supervisor';
import { runTarget } from './fuzz/worker';

function usage(message: string): never {
  process.stderr.write(`fuzz: ${message}\nusage: node dist/bench/fuzz.js [--seconds N] [--seed S] [--target load|feed|batch|all] [--json FILE] [--iteration I] [--skip f1,f2] [--verbose]\n`);
  process.exit(2);
}

function parseCli(argv: readonly string[]): Cli {
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) usage(`unexpected argument ${a}`);
    const name = a.slice(2);
    if (name === 'verbose' || name === 'worker') flags.add(name);
    else if (i + 1 < argv.length) values.set(name, argv[++i]);
    else usage(`${a} needs a value`);
  }
  const known = ['seconds', 'seed', 'target', 'json', 'iteration', 'skip', 'until', 'from', 'trace', 'result'];
  for (const k of values.keys()) if (!known.includes(k)) usage(`unknown option --${k}`);
  const num = (k: string, fallback: number): number => {
    const v = values.get(k);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) usage(`--${k} must be a non-negative number, received ${v}`);
    return n;
  };
  const target = values.get('target') ?? 'all';
  if (target !== 'all' && !(TARGETS as readonly string[]).includes(target)) usage(`--target must be load, feed, batch or all, received ${target}`);
  const cli: Cli = {
    seconds: num('seconds', 30),
    seed: Math.floor(num('seed', Math.floor(Math.random() * 2 ** 31))) >>> 0,
    targets: target === 'all' ? [...TARGETS] : [target as TargetName],
    json: values.get('json'),
    iteration: values.has('iteration') ? Math.floor(num('iteration', 0)) : undefined,
    skip: (values.get('skip') ?? '').split(',').filter((x) => x !== ''),
    verbose: flags.has('verbose'),
  };
  if (flags.has('worker')) {
    const trace = values.get('trace');
    const result = values.get('result');
    if (!trace || !result || cli.targets.length !== 1) usage('--worker needs --target, --trace and --result');
    cli.worker = { until: num('until', 0), from: num('from', 0), trace, result };
  }
  return cli;
}

async function main(): Promise<void> {
  const cli = parseCli(process.argv.slice(2));
  if (cli.worker) {
    await runTarget(cli, cli.targets[0], cli.worker.until, cli.worker.from, cli.worker.trace, cli.worker.result);
    process.exit(0);
  }
  const reports: TargetReport[] = [];
  if (cli.iteration !== undefined) {
    // Replay: one iteration of one target, in this process.
    if (cli.targets.length !== 1) usage('--iteration needs a single --target');
    reports.push(await runTarget(cli, cli.targets[0], 0, cli.iteration, undefined, undefined));
  } else {
    process.stdout.write(`kiln fuzz: seed ${cli.seed}, ${cli.seconds} s per target (${cli.targets.join(', ')})\n`);
    for (const target of cli.targets) {
      const report = await superviseTarget(cli, target, __filename);
      process.stdout.write(`  ${target}: ${report.iterations} iterations, ${report.calls} calls, ${report.findings.length} findings\n`);
      reports.push(report);
    }
  }
  const table = markdown(cli, reports);
  process.stdout.write(`\n${table}\n`);
  if (cli.json) {
    const json = {
      command: `node dist/bench/fuzz.js ${process.argv.slice(2).join(' ')}`, seed: cli.seed, secondsPerTarget: cli.seconds,
      node: process.version, cpus: os.cpus().length, date: new Date().toISOString(), reports, markdown: table,
    };
    fs.writeFileSync(cli.json, `${JSON.stringify(json, null, 2)}\n`);
  }
  process.exit(reports.some((r) => r.findings.length > 0) ? 1 : 0);
}

main().catch((e: unknown) => {
  process.stderr.write(`fuzz: ${describeError(e)}\n${(e as Error).stack ?? ''}\n`);
  process.exit(FUZZER_ERROR);
});

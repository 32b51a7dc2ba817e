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
 *   node dist/bench/fuzz.js [--seconds 30] [--seed S] [--target load|feed|batch|http|all] [--json out.json]
 *   node dist/bench/fuzz.js --target feed --seed S --iteration I [--skip f1,f2] --verbose
 */
import * as fs from 'fs';
import * as os from 'os';
import { Option, type Command } from 'commander';
import { benchCommand, nonNegativeNumber } from './cli';
import { describeError } from './fuzz/judge';
import { TARGETS, markdown, type Cli, type TargetName, type TargetReport } from './fuzz/report';
import { FUZZER_ERROR, superviseTarget } from './fuzz/supervisor';
import { runTarget } from './fuzz/worker';

interface FuzzOptions {
  seconds: number;
  seed?: number;
  target: TargetName | 'all';
  json?: string;
  iteration?: number;
  skip?: string[];
  verbose?: boolean;
  worker?: boolean;
  until: number;
  from: number;
  trace?: string;
  result?: string;
}

function parseCli(argv: readonly string[]): Cli {
  const program: Command = benchCommand('fuzz', 'A seeded fuzzer over Kiln\'s public API, for a fixed time per target (docs/fuzz.md).')
    .addOption(new Option('--seconds <s>', 'fuzzing time per target').argParser(nonNegativeNumber).default(30))
    .addOption(new Option('--seed <n>', 'seed of every draw (default: random, printed)').argParser(nonNegativeNumber))
    .addOption(new Option('--target <name>', 'what to fuzz').choices([...TARGETS, 'all']).default('all'))
    .option('--json <file>', 'also write the report as JSON')
    .addOption(new Option('--iteration <i>', 'replay this one iteration in-process (with --target and --seed)').argParser(nonNegativeNumber))
    .addOption(new Option('--skip <families>', 'comma-separated case families to skip').argParser((v) => v.split(',').filter((x) => x !== '')))
    .option('--verbose', 'print every call and its outcome')
    // Internal: how the supervisor starts a child process that fuzzes one target.
    .addOption(new Option('--worker').hideHelp())
    .addOption(new Option('--until <ms>').hideHelp().argParser(nonNegativeNumber).default(0))
    .addOption(new Option('--from <i>').hideHelp().argParser(nonNegativeNumber).default(0))
    .addOption(new Option('--trace <file>').hideHelp())
    .addOption(new Option('--result <file>').hideHelp())
    .parse(argv, { from: 'user' });
  const o = program.opts<FuzzOptions>();
  const cli: Cli = {
    seconds: o.seconds,
    seed: Math.floor(o.seed ?? Math.floor(Math.random() * 2 ** 31)) >>> 0,
    targets: o.target === 'all' ? [...TARGETS] : [o.target],
    json: o.json,
    iteration: o.iteration === undefined ? undefined : Math.floor(o.iteration),
    skip: o.skip ?? [],
    verbose: o.verbose === true,
  };
  if (o.worker) {
    if (!o.trace || !o.result || cli.targets.length !== 1) program.error('error: --worker needs --target, --trace and --result');
    cli.worker = { until: o.until, from: o.from, trace: o.trace, result: o.result };
  } else if (cli.iteration !== undefined && cli.targets.length !== 1) {
    program.error('error: --iteration needs a single --target');
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

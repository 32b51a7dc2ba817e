// kiln bench: throughput and latency of a model in this process, through onnxruntime-node,
// the native harness or a KServe v2 server, side by side; perf_analyzer's flags where they mean the same.
import { Command, InvalidArgumentError, Option } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runBench, type BenchOptions, type TargetName } from '../../bench/bench';
import { parseShapeFlag } from '../../bench/inputs';
import { renderCsv } from '../../bench/report/csv';
import { renderJson } from '../../bench/report/json';
import { formatLoad, renderTable } from '../../bench/report/table';
import { parseRange, type RunSettings } from '../../bench/runner';
import type { BenchReport, Load } from '../../bench/types';
import { KilnError } from '../../errors';
import type { ProviderName } from '../../options';
import { addModel, bigOutputModel, convModel, mlpModel } from '../../samples';
import { checkOutput } from '../model-command';
import { choiceOption, exclusive, integerOption, numberOption, repeatedOption } from '../options';
import { progressReporter } from '../progress';

const SAMPLES: Record<string, () => Uint8Array> = { mlp: mlpModel, add: addModel, conv: convModel, 'big-output': bigOutputModel };
const COMPARABLE = ['onnxruntime-node', 'native', 'kiln', 'kiln-batcher'] as const;

interface Flags {
  compare?: TargetName[];
  native?: boolean;
  batcher?: boolean;
  config?: string;
  maxBatchSize?: number;
  maxQueueDelayUs?: number;
  provider?: ProviderName;
  intraOpThreads?: number;
  url?: string;
  protocol: 'http' | 'grpc';
  binary?: boolean;
  jsonTensors?: boolean;
  modelName?: string;
  modelVersion?: string;
  batchSize: number;
  concurrency?: string;
  concurrencyRange?: string;
  requestRate?: string;
  requestRateRange?: string;
  requestDistribution: 'poisson' | 'constant';
  latencyBoundMs?: number;
  latencyThreshold?: number;
  measurementInterval: number;
  measurementRequestCount: number;
  measurementMode: 'time_windows' | 'count_windows';
  stabilityPercentage: number;
  maxTrials: number;
  warmupRequestCount: number;
  percentile?: number;
  shape?: Record<string, number[]>;
  inputData?: string;
  seed: number;
  check?: boolean;
  json?: string;
  csv?: string;
  report?: string;
}

/** The loads asked for: a concurrency sweep (default 1) or request rates. */
function loads(f: Flags): Load[] {
  const concurrency = f.concurrency ?? f.concurrencyRange;
  const rate = f.requestRate ?? f.requestRateRange;
  if (concurrency !== undefined && rate !== undefined) throw new KilnError('E_INVALID_ARGUMENT', 'give a concurrency or a request rate, not both');
  if (rate !== undefined) {
    return parseRange(rate, f.requestRate !== undefined ? '--request-rate' : '--request-rate-range', false).map((r) => ({ kind: 'rate', rate: r, arrival: f.requestDistribution }));
  }
  return parseRange(concurrency ?? '1', f.concurrency !== undefined ? '--concurrency' : '--concurrency-range', true).map((c) => ({ kind: 'concurrency', concurrency: c }));
}

/** The targets in order: the base (the server, else Kiln), then --compare's and --native. */
function targets(f: Flags, model: string | undefined): TargetName[] {
  const batcherFlags = f.batcher || f.config !== undefined || f.maxBatchSize !== undefined || f.maxQueueDelayUs !== undefined;
  const base: TargetName = f.url !== undefined ? 'served' : batcherFlags ? 'kiln-batcher' : 'kiln';
  const list = [...new Set<TargetName>([base, ...(f.compare ?? []), ...(f.native ? ['native' as const] : [])])];
  if (batcherFlags && !list.includes('kiln-batcher')) {
    throw new KilnError('E_INVALID_ARGUMENT', '--batcher, --config, --max-batch-size and --max-queue-delay-us set up the kiln-batcher target: add --compare kiln-batcher');
  }
  const local = list.filter((t) => t !== 'served');
  if (model === undefined && local.length) {
    throw new KilnError('E_INVALID_ARGUMENT', `${local.join(', ')} run${local.length > 1 ? '' : 's'} a model file: give one (kiln bench MODEL)`);
  }
  return list;
}

/** The model argument as a file: a sample name is written to a temporary folder (removed by `cleanup`). */
function modelFile(model: string | undefined): { path: string; label: string; cleanup: () => void } | undefined {
  if (model === undefined) return undefined;
  const sample = Object.hasOwn(SAMPLES, model) ? SAMPLES[model] : undefined;
  if (!sample) {
    if (!fs.existsSync(model)) throw new KilnError('E_NOT_FOUND', `no such model file: ${model} (nor a sample: ${Object.keys(SAMPLES).join(', ')})`);
    return { path: model, label: model, cleanup: () => undefined };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-'));
  const file = path.join(dir, `${model}.onnx`);
  fs.writeFileSync(file, sample());
  return { path: file, label: `sample "${model}"`, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

function settings(f: Flags): RunSettings {
  return {
    limit: f.measurementMode === 'count_windows' ? { requests: f.measurementRequestCount } : { ms: f.measurementInterval },
    warmupRequests: f.warmupRequestCount,
    stabilityWindows: 3,
    stabilityPercentage: f.stabilityPercentage,
    maxWindows: f.maxTrials,
    percentile: f.percentile ?? 0,
  };
}

async function bench(model: string | undefined, f: Flags): Promise<void> {
  for (const out of [f.json, f.csv, f.report]) if (out !== undefined) checkOutput(out);
  if (f.url !== undefined && f.modelName === undefined) throw new KilnError('E_INVALID_ARGUMENT', '-u/--url needs the served model\'s name (-m/--model-name)');
  if (f.url === undefined && (f.modelName !== undefined || f.modelVersion !== undefined)) throw new KilnError('E_INVALID_ARGUMENT', '-m and -x name a served model: give its server with -u/--url');
  if (f.protocol === 'grpc' && (f.binary || f.jsonTensors)) throw new KilnError('E_INVALID_ARGUMENT', '--binary and --json-tensors choose the HTTP encoding; gRPC sends raw tensor contents');
  const latencyBoundMs = f.latencyBoundMs ?? f.latencyThreshold;
  const loadList = loads(f);
  const list = targets(f, model);
  const file = modelFile(model);
  const tty = process.stderr.isTTY === true;
  const progress = tty ? progressReporter(process.stderr) : undefined;
  const options: BenchOptions = {
    ...(file ? { model: { path: file.path, label: file.label } } : {}),
    ...(f.url !== undefined ? { served: { url: f.url, protocol: f.protocol, model: f.modelName as string, version: f.modelVersion, binary: f.jsonTensors !== true } } : {}),
    targets: list,
    provider: f.provider,
    intraOpThreads: f.intraOpThreads,
    batcher: { configFile: f.config, maxBatchSize: f.maxBatchSize, maxQueueDelayUs: f.maxQueueDelayUs },
    loads: loadList,
    settings: settings(f),
    latencyBoundMs,
    shapes: f.shape ?? {},
    batchSize: f.batchSize,
    inputData: f.inputData,
    seed: f.seed,
    check: f.check === true,
    command: ['kiln', ...process.argv.slice(2)].map((a) => (/^[\w./:=,@+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' '),
    ...(progress ? {
      progress: (e) => progress.update(`${e.target} ${formatLoad(e.load)}`, e.window, e.maxWindows),
      onTarget: (_name, phase) => phase === 'end' && progress.end(true),
    } : {}),
  };
  let report: BenchReport;
  try {
    report = await runBench(options);
  } finally {
    progress?.end(false);
    file?.cleanup();
  }
  process.stdout.write(renderTable(report, latencyBoundMs));
  if (f.json !== undefined) fs.writeFileSync(f.json, renderJson(report));
  if (f.csv !== undefined) fs.writeFileSync(f.csv, renderCsv(report));
  if (f.report !== undefined) await (await import('../../bench/report/html')).writeHtmlReport(report, f.report);
  const wrong = report.targets.filter((t) => t.check && t.check.mismatches > 0);
  if (wrong.length) {
    throw new KilnError('E_ACCURACY', `--check: the outputs of ${wrong.map((t) => `${t.name} (${t.check?.mismatches} of ${t.check?.compared})`).join(', ')} differ from the reference's`);
  }
}

/** `--compare a b` or `--compare a,b`, repeatable: target names. */
function compareOption(): Option {
  return repeatedOption('--compare <targets...>', `targets measured after the first and compared with it: ${COMPARABLE.join(', ')}`)
    .argParser((v: string, previous: TargetName[] | undefined) => {
      const names = v.split(',').map((s) => s.trim()).filter((s) => s !== '');
      for (const n of names) {
        if (!(COMPARABLE as readonly string[]).includes(n)) throw new InvalidArgumentError(`--compare takes ${COMPARABLE.join(', ')}, received ${n}`);
      }
      return [...(previous ?? []), ...(names as TargetName[])];
    });
}

/** `--shape NAME:1,3,48,320`, repeatable. */
function shapeOption(): Option {
  return repeatedOption('--shape <NAME:DIMS>', 'the full shape of an input with symbolic dims, e.g. x:1,3,48,320 (repeatable)')
    .argParser((v: string, previous: Record<string, number[]> | undefined) => {
      try {
        const [name, dims] = parseShapeFlag(v);
        return { ...(previous ?? {}), [name]: dims };
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    });
}

/** A range flag, checked as commander parses it (the loads are made from it later). */
function rangeOption(flags: string, description: string, integer: boolean): Option {
  const option = new Option(flags, description);
  return option.argParser((v: string) => {
    try {
      parseRange(v, option.long as string, integer);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
    return v;
  });
}

const positive = (flags: string, description: string): Option => numberOption(flags, description, (n) => n > 0, 'a number > 0');

export const benchCommand = (): Command => {
  const command = new Command('bench')
    .description('throughput and latency of a model: in this process through Kiln, onnxruntime-node or the native harness, or served over KServe v2 (HTTP or gRPC); targets side by side')
    .argument('[model]', `a model file, or a sample the package builds (${Object.keys(SAMPLES).join(', ')})`)
    .addOption(compareOption())
    .option('--native', 'add the native harness (no Node in its process: the floor)')
    .option('--batcher', 'run Kiln through the batcher (loadModel) instead of a plain session')
    .option('--config <FILE>', 'the batcher\'s model configuration (config.pbtxt, or config.json with Kiln\'s fields)')
    .addOption(integerOption('--max-batch-size <N>', 'the batcher\'s largest batch', 0))
    .addOption(integerOption('--max-queue-delay-us <US>', 'how long the batcher waits to fill a batch', 0))
    .addOption(choiceOption('--provider <NAME>', 'execution provider of the in-process and native targets', ['cpu', 'cuda', 'tensorrt']))
    .addOption(integerOption('--intra-op-threads <N>', 'intra-op threads of every in-process and native target (0: one per core)', 0))
    .option('-u, --url <HOST:PORT>', 'a KServe v2 server (kiln serve, Triton, MLServer): measure it instead of a model in this process')
    .addOption(choiceOption('-i, --protocol <PROTOCOL>', 'the server\'s protocol', ['http', 'grpc']).default('http'))
    .option('--binary', 'HTTP: binary tensor data (the default)')
    .option('--json-tensors', 'HTTP: tensors as JSON instead of binary data')
    .option('-m, --model-name <NAME>', 'the served model\'s name')
    .option('-x, --model-version <VERSION>', 'the served model\'s version (default: the server\'s choice)')
    .addOption(integerOption('-b, --batch-size <N>', 'the size of a symbolic first dim of random inputs, where no --shape sets it', 1).default(1))
    .addOption(rangeOption('--concurrency <RANGE>', 'closed loop: requests in flight, one value or START:END[:STEP], STEP xF multiplies (1:128:x2); default 1', true))
    .addOption(rangeOption('--concurrency-range <RANGE>', 'perf_analyzer\'s name of --concurrency', true))
    .addOption(rangeOption('--request-rate <RANGE>', 'open loop: requests per second, one value or START:END[:STEP]', false))
    .addOption(rangeOption('--request-rate-range <RANGE>', 'perf_analyzer\'s name of --request-rate', false))
    .addOption(choiceOption('--request-distribution <KIND>', 'open loop arrivals', ['constant', 'poisson']).default('constant'))
    .addOption(positive('--latency-bound-ms <MS>', 'find the highest throughput whose latency (the --percentile, else p99) stays within MS'))
    .addOption(positive('--latency-threshold <MS>', 'perf_analyzer\'s name of --latency-bound-ms'))
    .addOption(integerOption('-p, --measurement-interval <MS>', 'length of a time window', 1).default(2000))
    .addOption(integerOption('--measurement-request-count <N>', 'requests of a count window', 1).default(50))
    .addOption(choiceOption('--measurement-mode <MODE>', 'windows of fixed time or of fixed request count', ['time_windows', 'count_windows']).default('time_windows'))
    .addOption(positive('-s, --stability-percentage <PCT>', 'windows agree when within PCT% of their average').default(10))
    .addOption(integerOption('--max-trials <N>', 'windows per step at most, before it is reported unstable', 1).default(10))
    .addOption(integerOption('--warmup-request-count <N>', 'requests sent before measuring each target', 0).default(10))
    .addOption(numberOption('--percentile <P>', 'the latency percentile stability and --latency-bound-ms judge (default: mean latency and p99)', (n) => Number.isInteger(n) && n >= 1 && n <= 99, 'an integer from 1 to 99'))
    .addOption(shapeOption())
    .option('--input-data <SOURCE>', 'random (default), zero, a .json file in perf_analyzer\'s format, an .npy or raw file, or a folder with a file per input')
    .addOption(integerOption('--seed <N>', 'seed of random inputs and Poisson arrivals', 0).default(1))
    .option('--check', 'compare outputs with a reference run (onnxruntime-node when installed, else a Kiln session); mismatches fail the command')
    .option('--json <PATH>', 'write the report as JSON')
    .option('--csv <PATH>', 'write one CSV row per target and step')
    .option('--report <PATH>', 'write a self-contained HTML report with charts')
    .action(bench);
  for (const [a, b] of [['concurrency', 'concurrency-range'], ['request-rate', 'request-rate-range'], ['latency-bound-ms', 'latency-threshold'], ['binary', 'json-tensors']]) exclusive(command, a, b);
  return command;
};

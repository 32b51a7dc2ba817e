/**
 * Horizontal numbers: throughput and p99 of `kiln serve` replicas behind HAProxy on this
 * machine, with 1, 2 and 3 replicas, against one replica asked directly (what HAProxy costs).
 * Three replicas run for the whole benchmark (an idle one costs only its health checks); one
 * HAProxy per setup (support/haproxy.ts, with HAProxy's default of reused connections to
 * the replicas; and, for one replica, the replica test's configuration: a connection per
 * request).
 * autocannon drives each setup in a closed loop at a fixed number of connections, with
 * Triton's binary tensors, after a warm-up, in rounds whose order rotates; each cell gives
 * the median of the rounds and their range. CPU comes from /proc: each replica's and
 * HAProxy's, over each run, as cores used and as µs per request; rows per model execution
 * (the batches the replicas formed) from their nv_inference_count and nv_inference_exec_count.
 *
 *   node dist/bench/replicas.js [--seconds 4] [--rounds 3] [--connections 32] [--only mlp,rec (default mlp)] [--json FILE]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import autocannon from 'autocannon';
import { Option } from 'commander';
import { encodeHttpRequest } from '../lib/bench/targets/http';
import { mlpModel, prng } from '../lib/samples';
import { Tensor } from '../lib/tensor';
import { OCR_MODELS, recPreprocess } from '../support/ppocr';
import { metric } from '../support/prometheus';
import { writeFiles } from '../support/repository';
import { renderText } from '../support/text-image';
import { startHaproxy, type Haproxy } from '../support/haproxy';
import { freePort, startKiln, type KilnProcess } from '../support/kiln-process';
import { benchCommand, integerAtLeast, onlyOption, positiveNumber } from './cli';
import { procStat } from './load-proc';
import { quantile } from './stats';

interface Target {
  name: string;
  input: { name: string; dims: number[]; data: Float32Array };
}

interface Setup {
  name: string;
  url: string;
  /** The replicas that take its requests. */
  replicas: KilnProcess[];
  haproxy?: Haproxy;
}

interface Run {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  errors: number;
  /** CPU seconds per second of the run: each replica of the setup, HAProxy, this process (autocannon). */
  replicaCores: number[];
  haproxyCores: number;
  clientCores: number;
  /** Server-side CPU µs per request: the replicas' and HAProxy's. */
  replicaUsPerRequest: number;
  haproxyUsPerRequest: number;
  /** Rows per model execution over the run, all replicas of the setup together. */
  rowsPerExecution: number;
}

function targets(only: readonly string[]): Target[] {
  const out: Target[] = [];
  if (only.includes('mlp')) {
    const rand = prng(23);
    out.push({ name: 'mlp', input: { name: 'x', dims: [1, 512], data: Float32Array.from({ length: 512 }, () => rand() * 2 - 1) } });
  }
  if (only.includes('rec')) {
    const t = recPreprocess(renderText('hello world'));
    out.push({ name: 'rec', input: { name: 'x', dims: t.dims, data: t.data } });
  }
  return out;
}

/** A binary-tensor request (Triton's extension): the JSON header, then the input's bytes; outputs asked as binary. */
function binaryRequest(t: Target): { body: Buffer; headers: Record<string, string> } {
  const { name, dims, data } = t.input;
  const { body, headers } = encodeHttpRequest({ [name]: new Tensor('float32', data, dims) }, undefined, true);
  // autocannon sets content-length itself: a second one is a malformed request to Node's parser.
  const { 'content-length': _length, ...rest } = headers;
  return { body, headers: rest };
}

const cpuSeconds = (pid: number): number => procStat(pid)?.cpuS ?? NaN;

/** A replica's inferences (rows) and model executions (batches) of `model` so far, from /metrics. */
async function executions(replica: KilnProcess, model: string): Promise<{ rows: number; batches: number }> {
  const text = await (await fetch(`${replica.url}/metrics`)).text();
  const value = (name: string): number => metric(text, name, `model="${model}",version="1"`) ?? 0;
  return { rows: value('nv_inference_count'), batches: value('nv_inference_exec_count') };
}
const selfCpuSeconds = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function measure(setup: Setup, t: Target, seconds: number, connections: number): Promise<Run> {
  const { body, headers } = binaryRequest(t);
  const pids = setup.replicas.map((r) => r.child.pid as number);
  const executed0 = await Promise.all(setup.replicas.map((r) => executions(r, t.name)));
  const replica0 = pids.map(cpuSeconds);
  const haproxy0 = setup.haproxy ? cpuSeconds(setup.haproxy.pid) : 0;
  const self0 = selfCpuSeconds();
  const t0 = performance.now();
  const r = await autocannon({ url: `${setup.url}/v2/models/${t.name}/infer`, method: 'POST', body, headers, connections, duration: seconds });
  const elapsed = (performance.now() - t0) / 1000;
  const replicaCpu = pids.map((pid, i) => cpuSeconds(pid) - replica0[i]);
  const haproxyCpu = setup.haproxy ? cpuSeconds(setup.haproxy.pid) - haproxy0 : 0;
  const requests = Math.max(1, r.requests.total);
  const executed = await Promise.all(setup.replicas.map((x) => executions(x, t.name)));
  const rows = executed.reduce((n, e, i) => n + e.rows - executed0[i].rows, 0);
  const batches = executed.reduce((n, e, i) => n + e.batches - executed0[i].batches, 0);
  return {
    rps: r.requests.average,
    p50: r.latency.p50,
    p99: r.latency.p99,
    requests: r.requests.total,
    errors: r.errors + r.non2xx + r.timeouts,
    replicaCores: replicaCpu.map((c) => c / elapsed),
    haproxyCores: haproxyCpu / elapsed,
    clientCores: (selfCpuSeconds() - self0) / elapsed,
    replicaUsPerRequest: (replicaCpu.reduce((a, b) => a + b, 0) * 1e6) / requests,
    haproxyUsPerRequest: (haproxyCpu * 1e6) / requests,
    rowsPerExecution: rows / Math.max(1, batches),
  };
}

const median = (xs: readonly number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5);
const range = (xs: readonly number[], digits: number): string => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

async function main(): Promise<void> {
  const o = benchCommand('replicas', 'kiln serve replicas behind HAProxy: 1, 2 and 3 replicas against one asked directly; requests/s, p99, CPU per replica (docs/deploy.md).')
    .addOption(new Option('--seconds <s>', 'per setup, model and round').argParser(positiveNumber).default(4))
    .addOption(new Option('--rounds <n>', 'rounds (the order of the setups rotates)').argParser(integerAtLeast(1)).default(3))
    .addOption(new Option('--connections <n>', 'autocannon connections (requests in flight)').argParser(integerAtLeast(1)).default(32))
    .addOption(onlyOption(['mlp', 'rec'], ['mlp']))
    .option('--json <file>', 'results as JSON')
    .parse()
    .opts<{ seconds: number; rounds: number; connections: number; only: string[]; json?: string }>();
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-replicas-'));
  const batched = 'max_batch_size: 64\ndynamic_batching { }';
  writeFiles(repo, { 'mlp/1/model.onnx': mlpModel(), 'mlp/config.pbtxt': batched, 'rec/1/model.onnx': fs.readFileSync(OCR_MODELS.rec), 'rec/config.pbtxt': batched });
  const replicas: KilnProcess[] = [];
  const proxies: Haproxy[] = [];
  const results: { model: string; setup: string; runs: Run[] }[] = [];
  try {
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      replicas.push(await startKiln(['--model-repository', repo, '--http-port', String(port), '--grpc-port', '-1', '--log-level', 'warn', '--drain-delay-secs', '0']));
    }
    const behind = async (n: number, serverClose = true): Promise<Haproxy> => {
      const h = await startHaproxy({ replicas: ports.slice(0, n).map((port, i) => ({ name: `r${i}`, port })), serverClose });
      for (let i = 0; i < n; i++) await h.waitFor(`r${i}`, 'UP');
      proxies.push(h);
      return h;
    };
    const setups: Setup[] = [{ name: '1 replica, direct (no HAProxy)', url: replicas[0].url, replicas: replicas.slice(0, 1) }];
    for (const n of [1, 2, 3]) {
      const h = await behind(n, false);
      setups.push({ name: `${n} replica${n > 1 ? 's' : ''}, HAProxy`, url: h.url, replicas: replicas.slice(0, n), haproxy: h });
    }
    const perRequest = await behind(1, true);
    setups.push({ name: '1 replica, HAProxy, a connection per request', url: perRequest.url, replicas: replicas.slice(0, 1), haproxy: perRequest });
    for (const t of targets(o.only)) {
      process.stderr.write(`${t.name}: warm-up\n`);
      for (const s of setups) await measure(s, t, 1, o.connections);
      const runs = new Map(setups.map((s) => [s.name, [] as Run[]]));
      for (let round = 0; round < o.rounds; round++) {
        const order = setups.map((_, i) => setups[(i + round) % setups.length]);
        for (const s of order) {
          const r = await measure(s, t, o.seconds, o.connections);
          (runs.get(s.name) as Run[]).push(r);
          process.stderr.write(`${t.name} ${s.name}: ${r.rps.toFixed(0)} req/s, p99 ${r.p99.toFixed(1)} ms, ${r.rowsPerExecution.toFixed(1)} rows/execution, replicas ${r.replicaCores.map((c) => c.toFixed(2)).join('+')} cores, HAProxy ${r.haproxyCores.toFixed(2)}, client ${r.clientCores.toFixed(2)}, ${r.errors} errors\n`);
        }
      }
      for (const s of setups) results.push({ model: t.name, setup: s.name, runs: runs.get(s.name) as Run[] });
    }
  } finally {
    await Promise.all(proxies.map((h) => h.stop()));
    await Promise.all(replicas.map((r) => r.kill()));
    fs.rmSync(repo, { recursive: true, force: true });
  }

  const lines = [
    `${o.connections} connections (closed loop, binary tensors), ${o.rounds} rounds of ${o.seconds} s after a warm-up, the setups' order rotating; medians of the rounds (range)`,
    '',
    '| model | setup | req/s | ÷ 1 replica behind HAProxy | p99 ms | rows per execution | CPU cores: each replica · HAProxy · client | server CPU µs/request: replicas + HAProxy | errors |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const model of [...new Set(results.map((r) => r.model))]) {
    const rows = results.filter((r) => r.model === model);
    const one = median((rows.find((r) => r.setup === '1 replica, HAProxy') as (typeof rows)[number]).runs.map((r) => r.rps));
    for (const { setup, runs } of rows) {
      const rps = runs.map((r) => r.rps);
      const p99 = runs.map((r) => r.p99);
      const cores = runs[0].replicaCores.map((_, i) => median(runs.map((r) => r.replicaCores[i])).toFixed(2)).join(' + ');
      lines.push(`| ${model} | ${setup} | ${median(rps).toFixed(0)} (${range(rps, 0)}) | ${(median(rps) / one).toFixed(2)}× | ${median(p99).toFixed(1)} (${range(p99, 1)}) | ${median(runs.map((r) => r.rowsPerExecution)).toFixed(1)} | ${cores} · ${median(runs.map((r) => r.haproxyCores)).toFixed(2)} · ${median(runs.map((r) => r.clientCores)).toFixed(2)} | ${median(runs.map((r) => r.replicaUsPerRequest)).toFixed(0)} + ${median(runs.map((r) => r.haproxyUsPerRequest)).toFixed(0)} | ${runs.reduce((n, r) => n + r.errors, 0)} |`);
    }
  }
  process.stdout.write(lines.join('\n') + '\n');
  if (o.json) fs.writeFileSync(o.json, JSON.stringify({ options: o, cpus: os.cpus().length, results }, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});

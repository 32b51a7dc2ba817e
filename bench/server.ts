/**
 * `kiln serve` against the server a Node team writes today (bench/server-baseline.ts:
 * fastify + onnxruntime-node, one run per request), side by side in one run: autocannon at
 * 64 connections on the MLP, the PP-OCR direction classifier and the tiny add model, Kiln
 * with JSON and with binary tensors, and Kiln over gRPC (64 calls in flight); rounds
 * interleaved after a warm-up; requests/s, p50/p99 latency, and the server process's CPU
 * time per request (from /proc).
 *
 *   node dist/bench/server.js [--seconds 5] [--rounds 2] [--connections 64] [--only mlp,cls,add] [--json FILE]
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import autocannon from 'autocannon';
import { Option } from 'commander';
import { addModel, mlpModel, prng } from '../lib/samples';
import { inferenceService } from '../lib/server/grpc';
import { OCR_MODELS, clsPreprocess } from '../support/ppocr';
import { writeFiles } from '../support/repository';
import { renderText } from '../support/text-image';
import { benchCommand, integerAtLeast, onlyOption, positiveNumber } from './cli';
import { procStat } from './load-proc';
import { quantile } from './stats';

interface Cell {
  model: string;
  server: string;
  rps: number[];
  p50: number[];
  p99: number[];
  cpuUsPerRequest: number[];
  errors: number;
}

interface Target {
  name: string;
  /** Inputs as [name, shape, data]. */
  inputs: [string, number[], Float32Array][];
}

function targets(only: readonly string[]): Target[] {
  const rand = prng(17);
  const out: Target[] = [];
  if (only.includes('mlp')) out.push({ name: 'mlp', inputs: [['x', [1, 512], Float32Array.from({ length: 512 }, () => rand())]] });
  if (only.includes('cls')) {
    const t = clsPreprocess(renderText('hello world'));
    out.push({ name: 'cls', inputs: [['x', t.dims, t.data]] });
  }
  if (only.includes('add')) out.push({ name: 'add', inputs: [['a', [1, 4], Float32Array.of(1, 2, 3, 4)], ['b', [1, 4], Float32Array.of(5, 6, 7, 8)]] });
  return out;
}

const jsonBody = (t: Target): string => JSON.stringify({ inputs: t.inputs.map(([name, shape, data]) => ({ name, shape, datatype: 'FP32', data: Array.from(data) })) });

function binaryBody(t: Target): { body: Buffer; headerLength: number } {
  const header = Buffer.from(JSON.stringify({
    inputs: t.inputs.map(([name, shape, data]) => ({ name, shape, datatype: 'FP32', parameters: { binary_data_size: data.byteLength } })),
    parameters: { binary_data_output: true },
  }));
  return { body: Buffer.concat([header, ...t.inputs.map(([, , d]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength))]), headerLength: header.length };
}

/** Starts a server process and resolves with its port once it prints where it listens. */
function startProcess(args: string[], pattern: RegExp): Promise<{ child: ChildProcess; ports: number[] }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = pattern.exec(out);
      if (m) resolve({ child, ports: m.slice(1).map(Number) });
    });
    child.on('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${out}${err}`)));
  });
}

const cpuOf = (child: ChildProcess): number => procStat(child.pid as number)?.cpuS ?? NaN;

async function http(url: string, body: string | Buffer, headers: Record<string, string>, seconds: number, connections: number): Promise<{ rps: number; p50: number; p99: number; requests: number; errors: number }> {
  const r = await autocannon({ url, method: 'POST', body, headers, connections, duration: seconds });
  return { rps: r.requests.average, p50: r.latency.p50, p99: r.latency.p99, requests: r.requests.total, errors: r.errors + r.non2xx + r.timeouts };
}

async function grpcLoad(address: string, t: Target, seconds: number, inflight: number): Promise<{ rps: number; p50: number; p99: number; requests: number; errors: number }> {
  const Service = inferenceService();
  const client = new Service(address, grpc.credentials.createInsecure()) as unknown as { ModelInfer(r: unknown, cb: (e: Error | null) => void): void; close(): void };
  const request = { model_name: t.name, inputs: t.inputs.map(([name, shape]) => ({ name, datatype: 'FP32', shape })), raw_input_contents: t.inputs.map(([, , d]) => Buffer.from(d.buffer, d.byteOffset, d.byteLength)) };
  const latencies: number[] = [];
  let errors = 0;
  const end = performance.now() + seconds * 1000;
  const lane = async (): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => client.ModelInfer(request, (e) => {
        if (e) errors++;
        else latencies.push(performance.now() - t0);
        resolve();
      }));
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, lane));
  const elapsed = (performance.now() - t0) / 1000;
  client.close();
  latencies.sort((a, b) => a - b);
  return { rps: latencies.length / elapsed, p50: quantile(latencies, 0.5), p99: quantile(latencies, 0.99), requests: latencies.length, errors };
}

async function main(): Promise<void> {
  const values = benchCommand('server', '`kiln serve` against fastify + onnxruntime-node, side by side: requests/s, latency, CPU per request (docs/serve.md).')
    .addOption(new Option('--seconds <s>', 'per model, server and round').argParser(positiveNumber).default(5))
    .addOption(new Option('--rounds <n>', 'interleaved rounds').argParser(integerAtLeast(1)).default(2))
    .addOption(new Option('--connections <n>', 'autocannon connections (and gRPC calls in flight)').argParser(integerAtLeast(1)).default(64))
    .addOption(onlyOption(['mlp', 'cls', 'add']))
    .option('--json <file>', 'results as JSON')
    .parse()
    .opts<{ seconds: number; rounds: number; connections: number; only: string[]; json?: string }>();
  const { seconds, rounds, connections, only } = values;
  const repo = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-server-'));
  const batched = 'max_batch_size: 64\ndynamic_batching { }';
  writeFiles(repo, {
    'mlp/1/model.onnx': mlpModel(), 'mlp/config.pbtxt': batched,
    'cls/1/model.onnx': fs.readFileSync(OCR_MODELS.cls), 'cls/config.pbtxt': batched,
    'add/1/model.onnx': addModel(), 'add/config.pbtxt': batched,
  });

  const cli = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');
  const kiln = await startProcess([cli, 'serve', '--model-repository', repo, '--port', '0', '--grpc-port', '0', '--log-level', 'warn'], /at http:\/\/127\.0\.0\.1:(\d+) and gRPC at 127\.0\.0\.1:(\d+) /);
  const baseline = await startProcess([path.join(__dirname, 'server-baseline.js'), repo, '0'], /listening (\d+)/);
  const [kilnPort, grpcPort] = kiln.ports;
  const [basePort] = baseline.ports;
  const cells = new Map<string, Cell>();
  try {
    for (const t of targets(only)) {
      const json = jsonBody(t);
      const bin = binaryBody(t);
      const runs: [string, ChildProcess, () => ReturnType<typeof http>][] = [
        ['fastify + onnxruntime-node (JSON)', baseline.child, () => http(`http://127.0.0.1:${basePort}/v2/models/${t.name}/infer`, json, { 'content-type': 'application/json' }, seconds, connections)],
        ['kiln serve (JSON)', kiln.child, () => http(`http://127.0.0.1:${kilnPort}/v2/models/${t.name}/infer`, json, { 'content-type': 'application/json' }, seconds, connections)],
        ['kiln serve (binary)', kiln.child, () => http(`http://127.0.0.1:${kilnPort}/v2/models/${t.name}/infer`, bin.body, { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(bin.headerLength) }, seconds, connections)],
        ['kiln serve (gRPC, raw)', kiln.child, () => grpcLoad(`127.0.0.1:${grpcPort}`, t, seconds, connections)],
      ];
      process.stderr.write(`${t.name}: warm-up\n`);
      for (const [, , run] of runs) await run();
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 ? [...runs].reverse() : runs;
        for (const [server, child, run] of order) {
          const cpu0 = cpuOf(child);
          const r = await run();
          const cpu = cpuOf(child) - cpu0;
          const key = `${t.name}\u0000${server}`;
          const cell = cells.get(key) ?? { model: t.name, server, rps: [], p50: [], p99: [], cpuUsPerRequest: [], errors: 0 };
          cell.rps.push(r.rps);
          cell.p50.push(r.p50);
          cell.p99.push(r.p99);
          cell.cpuUsPerRequest.push((cpu * 1e6) / Math.max(1, r.requests));
          cell.errors += r.errors;
          cells.set(key, cell);
          process.stderr.write(`${t.name} ${server}: ${r.rps.toFixed(0)} req/s p50 ${r.p50.toFixed(1)} ms p99 ${r.p99.toFixed(1)} ms, ${r.errors} errors\n`);
        }
      }
    }
  } finally {
    kiln.child.kill('SIGTERM');
    baseline.child.kill('SIGTERM');
    fs.rmSync(repo, { recursive: true, force: true });
  }
  const med = (xs: number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5);
  const lines = [
    `${connections} connections (gRPC: ${connections} calls in flight), ${rounds} interleaved rounds of ${seconds} s after a warm-up; medians of the rounds (range)`,
    '',
    '| model | server | req/s | ÷ baseline | p50 ms | p99 ms | server CPU µs/request | errors |',
    '|---|---|---|---|---|---|---|---|',
  ];
  const verdicts: string[] = [];
  for (const c of cells.values()) {
    const base = cells.get(`${c.model}\u0000fastify + onnxruntime-node (JSON)`) as Cell;
    const ratio = med(c.rps) / med(base.rps);
    const range = (xs: number[], d: number): string => `${med(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)})`;
    lines.push(`| ${c.model} | ${c.server} | ${range(c.rps, 0)} | ${ratio.toFixed(2)}× | ${range(c.p50, 1)} | ${range(c.p99, 1)} | ${med(c.cpuUsPerRequest).toFixed(0)} | ${c.errors} |`);
  }
  for (const [model, want, p99Max] of [['mlp', 5, 20], ['add', 1.5, undefined]] as const) {
    const base = cells.get(`${model}\u0000fastify + onnxruntime-node (JSON)`);
    if (!base) continue;
    for (const server of ['kiln serve (JSON)', 'kiln serve (binary)']) {
      const c = cells.get(`${model}\u0000${server}`) as Cell;
      const ratio = med(c.rps) / med(base.rps);
      const p99 = med(c.p99);
      verdicts.push(`- ${model}, ${server}: ${ratio.toFixed(2)}× the baseline's req/s (target ≥ ${want}×: ${ratio >= want ? 'met' : 'MISSED'})${p99Max ? `, p99 ${p99.toFixed(1)} ms (target ≤ ${p99Max} ms: ${p99 <= p99Max ? 'met' : 'MISSED'})` : ''}`);
    }
  }
  process.stdout.write(`${[...lines, '', ...verdicts].join('\n')}\n`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify([...cells.values()], null, 2));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

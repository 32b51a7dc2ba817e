/**
 * bench/overhead: what Kiln adds per call over the native floor, side by side with
 * onnxruntime-node. Contenders, interleaved round by round in one run:
 *   ort-node run   onnxruntime-node's InferenceSession.run (same libonnxruntime)
 *   kiln runSync   on the calling thread
 *   kiln run       on Kiln's executor thread, awaited
 *   C++ floor      native/bench/harness.cc through Kiln's core, no Node in the process
 * Each row: >= `rounds * calls` timed calls per contender after warm-up; median, p99 and
 * the spread of the per-round medians. All three run ORT with the same settings: the given
 * intra-op threads, one inter-op thread, pools that do not spin.
 *
 *   node dist/bench/overhead.js [--rounds 10] [--calls 300] [--only tiny,mlp] [--json out.json]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Option } from 'commander';
import * as ort from 'onnxruntime-node';
import { configure, runtime, Session, Tensor } from '../lib';
import { addModel, bigOutputModel, convModel, mlpModel, prng } from '../lib/samples';
import { benchCommand, integerAtLeast, onlyOption } from './cli';
import { Harness } from './harness';
import { fmt, summarize, type Summary } from './stats';

interface Case {
  name: string;
  model: () => Uint8Array;
  feeds: (batch: number) => Record<string, { data: Float32Array; dims: number[] }>;
  batches: number[];
}

function random(n: number, seed: number): Float32Array {
  const next = prng(seed);
  return Float32Array.from({ length: n }, () => next() / 2);
}

const CASES: Case[] = [
  { name: 'tiny', model: addModel, batches: [1, 32], feeds: (b) => ({ a: { data: random(b * 4, 1), dims: [b, 4] }, b: { data: random(b * 4, 2), dims: [b, 4] } }) },
  { name: 'mlp', model: mlpModel, batches: [1, 32], feeds: (b) => ({ x: { data: random(b * 512, 3), dims: [b, 512] } }) },
  { name: 'conv', model: convModel, batches: [1, 32], feeds: (b) => ({ x: { data: random(b * 3 * 32 * 32, 4), dims: [b, 3, 32, 32] } }) },
  { name: '16MiB-out', model: bigOutputModel, batches: [1], feeds: () => ({ x: { data: new Float32Array([0.5]), dims: [1] } }) },
];

const CONTENDERS = ['ort-node run', 'kiln runSync', 'kiln run', 'C++ floor'] as const;
type Contender = (typeof CONTENDERS)[number];

interface Row {
  model: string;
  batch: number;
  intra: number;
  results: Record<Contender, Summary>;
}

async function timeAsync(n: number, fn: () => Promise<unknown>): Promise<number[]> {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out;
}

function timeSync(n: number, fn: () => unknown): number[] {
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    fn();
    out[i] = Number(process.hrtime.bigint() - t0) / 1000;
  }
  return out;
}

async function measureRow(c: Case, batch: number, intra: number, rounds: number, calls: number, dir: string): Promise<Row> {
  const bytes = c.model();
  const file = path.join(dir, `${c.name}.onnx`);
  fs.writeFileSync(file, bytes);
  const raw = c.feeds(batch);
  const kilnFeeds = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, new Tensor('float32', v.data, v.dims)]));
  const ortFeeds = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, new ort.Tensor('float32', v.data, v.dims)]));

  // The same ORT configuration for all three: Kiln's default of pools that do not spin
  // (onnxruntime-node's default spins; a spinning pool as large as the machine leaves no core
  // for the event loop, which hurts any asynchronous API).
  const kiln = await Session.create(file, { intraOpThreads: intra, interOpThreads: 1 });
  const ortSession = await ort.InferenceSession.create(file, {
    intraOpNumThreads: intra, interOpNumThreads: 1, executionMode: 'sequential',
    extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
  });
  const floor = await Harness.start({ model: file, batch, intra });
  const measure: Record<Contender, (n: number) => Promise<number[]>> = {
    'ort-node run': (n) => timeAsync(n, () => ortSession.run(ortFeeds)),
    'kiln runSync': async (n) => timeSync(n, () => kiln.runSync(kilnFeeds)),
    'kiln run': (n) => timeAsync(n, () => kiln.run(kilnFeeds)),
    'C++ floor': (n) => floor.latencies(n),
  };
  const warmup = Math.max(20, Math.round(calls / 5));
  for (const k of CONTENDERS) await measure[k](warmup);
  const samples = Object.fromEntries(CONTENDERS.map((k) => [k, [] as number[][]])) as Record<Contender, number[][]>;
  for (let r = 0; r < rounds; r++) {
    // Rotate the order so no contender always runs right after another one's garbage.
    for (let i = 0; i < CONTENDERS.length; i++) {
      const k = CONTENDERS[(i + r) % CONTENDERS.length];
      samples[k].push(await measure[k](calls));
    }
  }
  floor.close();
  await kiln.dispose();
  await ortSession.release();
  const results = Object.fromEntries(CONTENDERS.map((k) => [k, summarize(samples[k])])) as Record<Contender, Summary>;
  return { model: c.name, batch, intra, results };
}

function table(rows: Row[]): string {
  const head = '| model | batch | intra | ' + CONTENDERS.map((k) => `${k} median / p99`).join(' | ') + ' | run − floor | runSync − floor | best Kiln ÷ ort-node |';
  const sep = '|' + '---|'.repeat(3 + CONTENDERS.length + 3);
  const lines = rows.map((r) => {
    const f = r.results['C++ floor'].median;
    const best = Math.min(r.results['kiln run'].median, r.results['kiln runSync'].median);
    return `| ${r.model} | ${r.batch} | ${r.intra} | ` +
      CONTENDERS.map((k) => `${fmt(r.results[k].median)} / ${fmt(r.results[k].p99)}`).join(' | ') +
      ` | ${fmt(r.results['kiln run'].median - f)} | ${fmt(r.results['kiln runSync'].median - f)} | ${(best / r.results['ort-node run'].median).toFixed(2)} |`;
  });
  return [head, sep, ...lines].join('\n');
}

function spread(rows: Row[]): string {
  const head = '| model | batch | intra | ' + CONTENDERS.join(' | ') + ' |';
  const sep = '|' + '---|'.repeat(3 + CONTENDERS.length);
  const lines = rows.map((r) => `| ${r.model} | ${r.batch} | ${r.intra} | ` +
    CONTENDERS.map((k) => `${fmt(r.results[k].roundMin)} – ${fmt(r.results[k].roundMax)}`).join(' | ') + ' |');
  return [head, sep, ...lines].join('\n');
}

function verdicts(rows: Row[]): string[] {
  const out: string[] = [];
  const find = (m: string, b: number, i: number): Row | undefined => rows.find((r) => r.model === m && r.batch === b && r.intra === i);
  const tiny = find('tiny', 1, 1);
  if (tiny) {
    const f = tiny.results['C++ floor'].median;
    const run = tiny.results['kiln run'].median - f;
    const sync = tiny.results['kiln runSync'].median - f;
    out.push(`tiny b1 intra1: kiln run = floor + ${run.toFixed(1)} µs (target ≤ 6): ${run <= 6 ? 'met' : 'MISSED'}`);
    out.push(`tiny b1 intra1: kiln runSync = floor + ${sync.toFixed(1)} µs (target ≤ 2): ${sync <= 2 ? 'met' : 'MISSED'}`);
  }
  for (const r of rows.filter((x) => x.model === 'tiny')) {
    const ratio = r.results['kiln run'].median / r.results['ort-node run'].median;
    out.push(`tiny b${r.batch} intra${r.intra}: kiln run = ${ratio.toFixed(2)}× onnxruntime-node run (target ≤ 0.6): ${ratio <= 0.6 ? 'met' : 'MISSED'}`);
  }
  for (const r of rows.filter((x) => x.model === '16MiB-out')) {
    const f = r.results['C++ floor'].median;
    for (const k of ['kiln run', 'kiln runSync'] as const) {
      const ratio = r.results[k].median / f;
      out.push(`16 MiB output intra${r.intra}: ${k} = ${ratio.toFixed(2)}× floor (target ≤ 1.2): ${ratio <= 1.2 ? 'met' : 'MISSED'}`);
    }
  }
  const slower = rows.filter((r) => Math.min(r.results['kiln run'].median, r.results['kiln runSync'].median) > r.results['ort-node run'].median);
  const slowerRun = rows.filter((r) => r.results['kiln run'].median > r.results['ort-node run'].median);
  out.push(`Kiln (best of run/runSync) slower than onnxruntime-node on ${slower.length} of ${rows.length} rows: ${slower.length ? 'MISSED ' + slower.map((r) => `${r.model}/b${r.batch}/i${r.intra}`).join(', ') : 'met'}`);
  out.push(`Kiln run (async) slower than onnxruntime-node run on ${slowerRun.length} of ${rows.length} rows (target: none): ` +
    (slowerRun.length ? 'MISSED ' + slowerRun.map((r) => `${r.model}/b${r.batch}/i${r.intra} (${(r.results['kiln run'].median / r.results['ort-node run'].median).toFixed(2)}×)`).join(', ') : 'met'));
  return out;
}

async function main(): Promise<void> {
  const { rounds, calls, only, json: jsonOut } = benchCommand('overhead', 'What Kiln adds per call over the native floor, side by side with onnxruntime-node (docs/overhead.md).')
    .addOption(new Option('--rounds <n>', 'interleaved rounds per row').argParser(integerAtLeast(1)).default(10))
    .addOption(new Option('--calls <n>', 'timed calls per contender per round').argParser(integerAtLeast(1)).default(300))
    .addOption(onlyOption(CASES.map((c) => c.name)))
    .option('--json <file>', 'results as JSON', path.join('bench', 'results', 'overhead.json'))
    .parse()
    .opts<{ rounds: number; calls: number; only: string[]; json: string }>();
  configure(); // Kiln creates the process's OrtEnv (with global pools) before onnxruntime-node does
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-overhead-'));
  const rows: Row[] = [];
  for (const intra of [1, 2]) {
    for (const c of CASES.filter((x) => only.includes(x.name))) {
      for (const b of c.batches) {
        const row = await measureRow(c, b, intra, rounds, calls, dir);
        rows.push(row);
        process.stderr.write(`${c.name} b${b} intra${intra}: ` + CONTENDERS.map((k) => `${k} ${fmt(row.results[k].median)}`).join(', ') + '\n');
      }
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const info = runtime();
  const header = `ONNX Runtime ${info.version} (${path.basename(info.library)}), node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model ?? '?'}; ` +
    `${rounds} rounds × ${calls} calls per contender per row, interleaved`;
  const report = [header, '', table(rows), '', 'Spread (lowest – highest round median):', '', spread(rows), '', ...verdicts(rows).map((v) => `- ${v}`)].join('\n');
  process.stdout.write(report + '\n');
  fs.mkdirSync(path.dirname(jsonOut), { recursive: true });
  fs.writeFileSync(jsonOut, JSON.stringify({ date: new Date().toISOString(), header, rows }, null, 2));
}

main().catch((e: Error) => {
  process.stderr.write(`${e.stack ?? e.message}\n`);
  process.exit(1);
});

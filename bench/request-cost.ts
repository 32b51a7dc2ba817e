/**
 * bench/request-cost: what the dynamic batcher costs per request, against runSync of the
 * same batch. Each round, interleaved after warm-up:
 *   runSync bN     one session.runSync of an [N, ...] batch (the batch's compute on the JS thread)
 *   infer ×N       Promise.all of N batch-1 model.infer() calls (loadModel(file, { maxBatchSize: N }),
 *                  defaults otherwise): the batcher forms one batch of N
 *   infer ×N, plain  the same with plain { type, data, dims } feeds instead of Tensor instances
 * Per contender: the time of a round (median, p99, spread of the per-round medians), rows/s,
 * and its ratio to runSync. For the batcher: the batches' time in the core (gather and run,
 * from model.stats()), the rest of a round per request ((round − core time) ÷ N: the JS work
 * of queueing, batching and answering, and the hand-offs between threads), and the time of
 * the N infer() calls themselves ÷ N (validation and queueing).
 *
 *   node dist/bench/request-cost.js [--rounds 20] [--calls 100] [--batch 64] [--only mlp,tiny]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Session, Tensor, loadModel, runtime, type Feeds, type Model, type TensorLike } from '../lib';
import { addModel, mlpModel, prng } from '../lib/samples';
import { benchCommand, integerAtLeast, onlyOption } from './cli';
import { fmt, summarize, type Summary } from './stats';

interface Case {
  name: string;
  model: () => Uint8Array;
  /** One request's feeds (batch dim 1) from `seed`, and the same rows stacked into one batch. */
  row: (seed: number) => Record<string, { data: Float32Array; dims: number[] }>;
}

function random(n: number, seed: number): Float32Array {
  const next = prng(seed);
  return Float32Array.from({ length: n }, () => next() / 2);
}

const CASES: Case[] = [
  { name: 'mlp', model: mlpModel, row: (s) => ({ x: { data: random(512, s), dims: [1, 512] } }) },
  { name: 'tiny', model: addModel, row: (s) => ({ a: { data: random(4, s), dims: [1, 4] }, b: { data: random(4, s + 1), dims: [1, 4] } }) },
];

const CONTENDERS = ['runSync bN', 'infer ×N', 'infer ×N, plain'] as const;
type Contender = (typeof CONTENDERS)[number];

interface Row {
  model: string;
  batch: number;
  rounds: Record<Contender, Summary>;
  /** Per contender using the batcher: core µs per batch, JS µs per request, queueing µs per request. */
  batcher: Partial<Record<Contender, { coreUs: number; jsUs: number; enqueueUs: number; batches: string }>>;
}

function stack(rows: Record<string, { data: Float32Array; dims: number[] }>[]): Feeds {
  const out: Record<string, TensorLike> = {};
  for (const name of Object.keys(rows[0])) {
    const width = rows[0][name].data.length;
    const data = new Float32Array(rows.length * width);
    rows.forEach((r, i) => data.set(r[name].data, i * width));
    out[name] = new Tensor('float32', data, [rows.length, ...rows[0][name].dims.slice(1)]);
  }
  return out;
}

/** Core time per batch so far: gathering plus compute, from the model's statistics. */
function coreTotals(model: Model): { us: number; batches: number; sizes: Record<string, number> } {
  const s = model.stats();
  let us = 0;
  let batches = 0;
  for (const b of Object.values(s.batchStats)) {
    us += b.computeInputUs + b.computeInferUs;
    batches += b.count;
  }
  return { us, batches, sizes: s.batchSizes as Record<string, number> };
}

async function measureCase(c: Case, batch: number, rounds: number, calls: number, dir: string): Promise<Row> {
  const file = path.join(dir, `${c.name}.onnx`);
  fs.writeFileSync(file, c.model());
  const rows = Array.from({ length: batch }, (_, i) => c.row(1000 + 7 * i));
  const tensors: Feeds[] = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, new Tensor('float32', v.data, v.dims)])));
  const plain: Feeds[] = rows.map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, { type: 'float32' as const, data: v.data, dims: v.dims }])));
  const stacked = stack(rows);

  const session = await Session.create(file);
  const tensorModel = await loadModel(file, { maxBatchSize: batch });
  const plainModel = await loadModel(file, { maxBatchSize: batch });
  const models: Partial<Record<Contender, { model: Model; feeds: Feeds[] }>> = {
    'infer ×N': { model: tensorModel, feeds: tensors },
    'infer ×N, plain': { model: plainModel, feeds: plain },
  };
  const samples = Object.fromEntries(CONTENDERS.map((k) => [k, [] as number[][]])) as Record<Contender, number[][]>;
  const enqueue: Record<string, number> = {};
  const core: Record<string, { us: number; batches: number }> = {};

  async function round(k: Contender, n: number, record: boolean): Promise<number[]> {
    const out = new Array<number>(n);
    const m = models[k];
    if (!m) {
      for (let i = 0; i < n; i++) {
        const t0 = process.hrtime.bigint();
        session.runSync(stacked);
        out[i] = Number(process.hrtime.bigint() - t0) / 1000;
      }
      return out;
    }
    const before = coreTotals(m.model);
    let queued = 0;
    for (let i = 0; i < n; i++) {
      const t0 = process.hrtime.bigint();
      const pending = m.feeds.map((f) => m.model.infer(f));
      const t1 = process.hrtime.bigint();
      await Promise.all(pending);
      out[i] = Number(process.hrtime.bigint() - t0) / 1000;
      queued += Number(t1 - t0) / 1000;
    }
    if (record) {
      const after = coreTotals(m.model);
      enqueue[k] = (enqueue[k] ?? 0) + queued;
      const acc = (core[k] ??= { us: 0, batches: 0 });
      acc.us += after.us - before.us;
      acc.batches += after.batches - before.batches;
    }
    return out;
  }

  for (const k of CONTENDERS) await round(k, Math.max(20, calls / 2), false);
  for (let r = 0; r < rounds; r++) {
    // Rotate the order every round so no contender always follows the same one.
    for (let j = 0; j < CONTENDERS.length; j++) {
      const k = CONTENDERS[(r + j) % CONTENDERS.length];
      samples[k].push(await round(k, calls, true));
    }
  }
  const summaries = Object.fromEntries(CONTENDERS.map((k) => [k, summarize(samples[k])])) as Record<Contender, Summary>;
  const batcher: Row['batcher'] = {};
  for (const [k, m] of Object.entries(models) as [Contender, { model: Model }][]) {
    const n = rounds * calls;
    const coreUs = core[k].us / core[k].batches;
    const sizes = coreTotals(m.model).sizes;
    const total = Object.values(sizes).reduce((a, b) => a + b, 0);
    batcher[k] = {
      coreUs,
      jsUs: (summaries[k].median - coreUs * (core[k].batches / n)) / batch,
      enqueueUs: enqueue[k] / n / batch,
      batches: Object.entries(sizes).map(([size, count]) => `${size}: ${((100 * count) / total).toFixed(0)}%`).join(', '),
    };
  }
  await Promise.all([session.dispose(), tensorModel.dispose(), plainModel.dispose()]);
  return { model: c.name, batch, rounds: summaries, batcher };
}

function report(rows: Row[], rounds: number, calls: number): string {
  const rt = runtime();
  const lines = [
    `ONNX Runtime ${rt.version} (${path.basename(rt.library)}), node ${process.version}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'cpu'}; ` +
      `${rounds} interleaved rounds × ${calls} timed rounds of N requests per contender`,
    '',
    '| model | N | contender | round median / p99 | spread of round medians | rows/s | ÷ runSync bN | core per batch | (round − core) ÷ N | infer() calls ÷ N | batch sizes |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const base = r.rounds['runSync bN'].median;
    for (const k of CONTENDERS) {
      const s = r.rounds[k];
      const b = r.batcher[k];
      lines.push(`| ${r.model} | ${r.batch} | ${k} | ${fmt(s.median)} / ${fmt(s.p99)} | ${fmt(s.roundMin)} – ${fmt(s.roundMax)} | ` +
        `${((r.batch * 1e6) / s.median / 1000).toFixed(1)} k | ${(base / s.median * 100).toFixed(0)}% | ` +
        `${b ? fmt(b.coreUs) : '–'} | ${b ? fmt(b.jsUs) : '–'} | ${b ? fmt(b.enqueueUs) : '–'} | ${b?.batches ?? '–'} |`);
    }
  }
  lines.push('');
  for (const r of rows) {
    const ratio = r.rounds['runSync bN'].median / r.rounds['infer ×N'].median;
    const verdict = r.model === 'mlp' ? ` (target ≥ 85%): ${ratio >= 0.85 ? 'met' : 'MISSED'}` : ' (the batch computes in microseconds: the row shows the per-request cost alone)';
    lines.push(`- ${r.model}: infer ×${r.batch} = ${(ratio * 100).toFixed(1)}% of runSync b${r.batch}${verdict}`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const program = benchCommand('request-cost', 'the batcher\'s cost per request against runSync of the same batch')
    .option('--rounds <n>', 'interleaved rounds per contender', integerAtLeast(1), 20)
    .option('--calls <n>', 'timed rounds of N requests per contender per round', integerAtLeast(1), 100)
    .option('--batch <n>', 'N: requests per round and maxBatchSize', integerAtLeast(1), 64)
    .addOption(onlyOption(CASES.map((c) => c.name)))
    .parse();
  const o = program.opts<{ rounds: number; calls: number; batch: number; only: string[] }>();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-request-cost-'));
  try {
    const rows: Row[] = [];
    for (const c of CASES.filter((x) => o.only.includes(x.name))) rows.push(await measureCase(c, o.batch, o.rounds, o.calls, dir));
    process.stdout.write(`${report(rows, o.rounds, o.calls)}\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});

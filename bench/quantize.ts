/**
 * FP32 vs dynamic INT8 vs static INT8 (QDQ; also with the Muls of two activations quantized,
 * the opt-in --op-types Conv,MatMul,Mul), side by side in one run: latency at batch 1 and 16
 * (interleaved rounds, median and p99), model size, and accuracy against FP32, on the MLP and
 * the PP-OCR classifier, recognizer and detector. Default options otherwise (the output layer
 * kept FP32 where it is small); what each variant left in FP32 goes to stderr.
 *
 *   node dist/bench/quantize.js [--only mlp,cls,rec,det] [--rounds 5] [--seconds 0.5] [--intra 1] [--json FILE]
 */
import * as fs from 'fs';
import { Option } from 'commander';
import { Session, type Feeds, type Results } from '../lib';
import { compareOutputs } from '../lib/optimize/evaluate';
import { quantize, type QuantizeResult } from '../lib/optimize/quantize';
import { mlpModel, prng } from '../lib/samples';
import { OCR_MODELS, clsDecode, clsPreprocess, ctcDecode, detPreprocess, loadKeys, recPreprocess, rotate180 } from '../support/ppocr';
import { renderText } from '../support/text-image';
import { textLines } from './calibration';
import { benchCommand, integerAtLeast, onlyOption, positiveNumber } from './cli';
import { fmt, summarize, type Summary } from './stats';

interface Args {
  only: string[];
  rounds: number;
  seconds: number;
  intra: number;
  json?: string;
}

function parseArgs(): Args {
  return benchCommand('quantize', 'FP32 vs dynamic INT8 vs static INT8: latency, size and accuracy, side by side (docs/quantize.md).')
    .addOption(onlyOption(['mlp', 'cls', 'rec', 'det']))
    .addOption(new Option('--rounds <n>', 'interleaved latency rounds').argParser(integerAtLeast(1)).default(5))
    .addOption(new Option('--seconds <s>', 'per variant, batch size and round').argParser(positiveNumber).default(0.5))
    .addOption(new Option('--intra <n>', 'ORT intra-op threads').argParser(integerAtLeast(1)).default(1))
    .option('--json <file>', 'results as JSON')
    .parse()
    .opts<Args>();
}

/** A model under test: FP32 bytes, calibration and held-out feeds (batch 1), and its accuracy check. */
interface Case {
  name: string;
  fp32: Uint8Array;
  calibration: Feeds[];
  heldOut: Feeds[];
  /** Accuracy of `candidate`'s outputs against `reference`'s on the held-out feeds, as text. */
  accuracy(reference: Results[], candidate: Results[]): { text: string; value: number };
  /** Stack batch-1 feeds into one feed of `n` rows. */
  batch(n: number): Feeds;
}

function stack(feed: Feeds, n: number): Feeds {
  const out: Record<string, { type: 'float32'; data: Float32Array; dims: number[] }> = {};
  for (const [name, t] of Object.entries(feed)) {
    const src = (t as { data: Float32Array }).data;
    const data = new Float32Array(src.length * n);
    for (let i = 0; i < n; i++) data.set(src, i * src.length);
    out[name] = { type: 'float32', data, dims: [n, ...((t as unknown as { dims: number[] }).dims.slice(1))] };
  }
  return out;
}

const WORDS = ['hello world', 'Kiln 2026', 'ONNX Runtime', 'quick brown fox', 'int8 speed', 'node js', 'batching', 'TensorRT',
  'accuracy', 'latency', 'jumps over', 'the lazy dog', 'PaddleOCR', 'inference', 'quantize me', 'model zoo'];

function cases(only: string[]): Case[] {
  const out: Case[] = [];
  if (only.includes('mlp')) {
    const rand = prng(7);
    const row = (): Feeds => ({ x: { type: 'float32', data: Float32Array.from({ length: 512 }, () => rand() * 2 - 1), dims: [1, 512] } });
    out.push({
      name: 'mlp', fp32: mlpModel(),
      calibration: Array.from({ length: 32 }, row), heldOut: Array.from({ length: 1000 }, row),
      accuracy: (r, c) => {
        const v = compareOutputs(r, c, 'top1');
        return { text: `top-1 agreement ${(v * 100).toFixed(1)}%`, value: v };
      },
      batch: (n) => stack(row(), n),
    });
  }
  if (only.includes('cls')) {
    const feed = (text: string, flip: boolean): Feeds => {
      const img = renderText(text);
      return { x: clsPreprocess(flip ? rotate180(img) : img) };
    };
    out.push({
      name: 'cls', fp32: new Uint8Array(fs.readFileSync(OCR_MODELS.cls)),
      calibration: WORDS.slice(0, 8).flatMap((w) => [feed(w, false), feed(w, true)]),
      heldOut: WORDS.slice(8).flatMap((w) => [feed(w, false), feed(w, true)]),
      accuracy: (r, c) => {
        let same = 0;
        for (let i = 0; i < r.length; i++) {
          const k = Object.keys(r[i])[0];
          if (clsDecode(r[i][k].data as Float32Array, r[i][k].dims).angle === clsDecode(c[i][k].data as Float32Array, c[i][k].dims).angle) same++;
        }
        return { text: `orientation agreement ${same}/${r.length}`, value: same / r.length };
      },
      batch: (n) => stack(feed('hello world', false), n),
    });
  }
  if (only.includes('rec')) {
    const keys = loadKeys();
    // As a user would: 24 text lines as calibration samples at their natural widths
    // ([1,3,48,W]), 20 other lines held out; timed at PaddleOCR's width 320.
    const feed = (text: string, width?: number): Feeds => ({ x: recPreprocess(renderText(text), width ? { width } : {}) });
    const calibration = textLines(24, 3);
    out.push({
      name: 'rec', fp32: new Uint8Array(fs.readFileSync(OCR_MODELS.rec)),
      calibration: calibration.map((l) => feed(l)), heldOut: textLines(20, 4).filter((l) => !calibration.includes(l)).map((l) => feed(l)),
      accuracy: (r, c) => {
        let same = 0;
        for (let i = 0; i < r.length; i++) {
          const k = Object.keys(r[i])[0];
          if (ctcDecode(r[i][k].data as Float32Array, r[i][k].dims, keys).text === ctcDecode(c[i][k].data as Float32Array, c[i][k].dims, keys).text) same++;
        }
        return { text: `same text ${same}/${r.length}`, value: same / r.length };
      },
      batch: (n) => stack(feed('hello world', 320), n),
    });
  }
  if (only.includes('det')) {
    const page = (lines: string[]): Feeds => {
      const imgs = lines.map((l) => renderText(l, { fontSize: 28 }));
      const width = Math.max(...imgs.map((i) => i.width)) + 32;
      const height = imgs.reduce((h, i) => h + i.height + 16, 16);
      const data = new Uint8Array(width * height * 3).fill(255);
      let y = 16;
      for (const img of imgs) {
        for (let r = 0; r < img.height; r++) data.set(img.data.subarray(r * img.width * 3, (r + 1) * img.width * 3), ((y + r) * width + 16) * 3);
        y += img.height + 16;
      }
      return { x: detPreprocess({ width, height, data }, { limitSideLen: 320 }).tensor };
    };
    const pages = [0, 1, 2, 3, 4, 5].map((i) => page(WORDS.slice(i * 2, i * 2 + 3)));
    out.push({
      name: 'det', fp32: new Uint8Array(fs.readFileSync(OCR_MODELS.det)),
      calibration: pages.slice(0, 4), heldOut: pages.slice(4),
      accuracy: (r, c) => {
        let agree = 0;
        let n = 0;
        for (let i = 0; i < r.length; i++) {
          const k = Object.keys(r[i])[0];
          const a = r[i][k].data as Float32Array;
          const b = c[i][k].data as Float32Array;
          for (let j = 0; j < a.length; j++) {
            n++;
            if ((a[j] > 0.3) === (b[j] > 0.3)) agree++;
          }
        }
        const v = agree / n;
        return { text: `text-mask agreement ${(v * 100).toFixed(2)}%`, value: v };
      },
      batch: (n) => stack(pages[0], n),
    });
  }
  return out;
}

async function outputs(session: Session, feeds: readonly Feeds[]): Promise<Results[]> {
  const out: Results[] = [];
  for (const f of feeds) out.push(session.runSync(f));
  return out;
}

interface Row {
  model: string;
  variant: string;
  bytes: number;
  b1: Summary;
  b16: Summary;
  accuracy: string;
  accuracyValue: number;
  quantized: number;
  fp32Nodes: number;
}

async function main(): Promise<void> {
  const args = parseArgs();
  const rows: Row[] = [];
  const opts = { intraOpThreads: args.intra, interOpThreads: 1 };
  for (const c of cases(args.only)) {
    process.stderr.write(`${c.name}: quantizing\n`);
    const variants: [string, Uint8Array, QuantizeResult | undefined][] = [['fp32', c.fp32, undefined]];
    // The same preprocessing as the INT8 variants (ORT's basic optimizations, opset upgrade,
    // hard-swish folded) without quantizing: how much of their gain is the rewrites'.
    const rewritten = await quantize(c.fp32, { mode: 'dynamic', opTypes: [] });
    variants.push(['fp32 rewritten', rewritten.model, undefined]);
    const dyn = await quantize(c.fp32, { mode: 'dynamic' });
    variants.push(['dynamic int8', dyn.model, dyn]);
    const stat = await quantize(c.fp32, { mode: 'static', calibration: c.calibration, method: 'percentile' });
    variants.push(['static int8', stat.model, stat]);
    const mul = await quantize(c.fp32, { mode: 'static', calibration: c.calibration, method: 'percentile', opTypes: ['Conv', 'MatMul', 'Mul'] });
    variants.push(['static int8 +Mul', mul.model, mul]);
    for (const [name, , q] of variants) if (q) process.stderr.write(`${c.name} ${name}: ${q.skipped.map((k) => `${k.node} (${k.reason})`).join('; ') || 'nothing left in FP32'}\n`);
    const sessions = await Promise.all(variants.map(([, bytes]) => Session.create(bytes, opts)));
    const reference = await outputs(sessions[0], c.heldOut);
    const acc = await Promise.all(sessions.map(async (s) => c.accuracy(reference, await outputs(s, c.heldOut))));
    const lat: number[][][][] = variants.map(() => [[], []]);
    const feeds = [c.batch(1), c.batch(16)];
    for (const s of sessions) for (const f of feeds) for (let i = 0; i < 3; i++) s.runSync(f); // warm-up
    for (let round = 0; round < args.rounds; round++) {
      for (let b = 0; b < 2; b++) {
        for (let v = 0; v < sessions.length; v++) {
          const samples: number[] = [];
          const end = performance.now() + args.seconds * 1000;
          do {
            const t = performance.now();
            sessions[v].runSync(feeds[b]);
            samples.push((performance.now() - t) * 1000);
          } while (performance.now() < end || samples.length < 3);
          lat[v][b].push(samples);
        }
      }
    }
    variants.forEach(([variant, bytes, q], v) => {
      rows.push({
        model: c.name, variant, bytes: bytes.byteLength, b1: summarize(lat[v][0]), b16: summarize(lat[v][1]),
        accuracy: acc[v].text, accuracyValue: acc[v].value, quantized: q?.quantized.length ?? 0, fp32Nodes: q?.skipped.length ?? 0,
      });
    });
    await Promise.all(sessions.map((s) => s.dispose()));
  }
  const out: string[] = [];
  out.push(`ONNX Runtime via Kiln, intra-op ${args.intra}; ${args.rounds} interleaved rounds of ${args.seconds} s per variant and batch; µs per run (median / p99, round medians' spread)`);
  out.push('');
  out.push('| model | variant | size | size ÷ FP32 | batch 1 median / p99 | ÷ FP32 | batch 16 median / p99 | FP32 ÷ this (b16) | accuracy vs FP32 | nodes int8 / FP32 |');
  out.push('|---|---|---|---|---|---|---|---|---|---|');
  const verdicts: string[] = [];
  for (const r of rows) {
    const base = rows.find((x) => x.model === r.model && x.variant === 'fp32') as Row;
    const speed16 = base.b16.median / r.b16.median;
    out.push(`| ${r.model} | ${r.variant} | ${(r.bytes / 2 ** 20).toFixed(2)} MiB | ${(r.bytes / base.bytes).toFixed(3)} | ${fmt(r.b1.median)} / ${fmt(r.b1.p99)} (${fmt(r.b1.roundMin)}–${fmt(r.b1.roundMax)}) | ${(r.b1.median / base.b1.median).toFixed(2)} | ${fmt(r.b16.median)} / ${fmt(r.b16.p99)} (${fmt(r.b16.roundMin)}–${fmt(r.b16.roundMax)}) | ${speed16.toFixed(2)}× | ${r.accuracy} | ${r.variant === 'fp32' ? '–' : `${r.quantized} / ${r.fp32Nodes}`} |`);
  }
  const target = (model: string, speed: number, size: number): void => {
    const q = rows.filter((r) => r.model === model && r.variant.includes('int8'));
    const base = rows.find((x) => x.model === model && x.variant === 'fp32');
    if (!base || q.length === 0) return;
    const best = q.reduce((a, b) => (base.b16.median / b.b16.median > base.b16.median / a.b16.median ? b : a));
    const s = base.b16.median / best.b16.median;
    const z = best.bytes / base.bytes;
    verdicts.push(`- ${model}: best ${best.variant} is ${s.toFixed(2)}× faster at batch 16 (target ≥ ${speed}×: ${s >= speed ? 'met' : 'MISSED'}) at ${z.toFixed(3)}× the size (target ≤ ${size}: ${z <= size ? 'met' : 'MISSED'}); ${best.accuracy}`);
  };
  target('mlp', 3, 0.27);
  target('cls', 2, 0.3);
  target('rec', 2, 0.3);
  out.push('', ...verdicts);
  process.stdout.write(out.join('\n') + '\n');
  if (args.json) fs.writeFileSync(args.json, JSON.stringify({ args, rows }, null, 2));
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

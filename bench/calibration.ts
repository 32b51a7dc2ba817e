/**
 * Calibration methods side by side on the PP-OCR recognizer: static INT8 with min-max,
 * percentile and entropy ranges, for asymmetric uint8 and symmetric int8 activations, with
 * calibration lines at their natural width ([1,3,48,W]) and padded to 320. Each variant reads
 * held-out lines, compared with what FP32 reads: lines with the same text, and the edit
 * distance in characters. Also how far each method cuts the ranges (tensors whose range is
 * under a quarter / a half of min-max's).
 *
 *   node dist/bench/calibration.js [--calibration 24] [--eval 20] [--json FILE]
 */
import * as fs from 'fs';
import { Option } from 'commander';
import { type Feeds } from '../lib';
import { calibrate, type CalibrationMethod, type Range } from '../lib/optimize/calibrate';
import { outputsOf } from '../lib/optimize/evaluate';
import { quantize } from '../lib/optimize/quantize';
import { readModel } from '../lib/optimize/io';
import { upgradeOpset } from '../lib/optimize/opset';
import { calibratedTensors, staticCandidates } from '../lib/optimize/static';
import { prng } from '../lib/samples';
import { OCR_MODELS, ctcDecode, loadKeys, recPreprocess } from '../support/ppocr';
import { renderText } from '../support/text-image';
import { benchCommand, integerAtLeast } from './cli';

const WORDS = ['hello', 'world', 'Kiln', 'ONNX', 'Runtime', 'quick', 'brown', 'fox', 'jumps', 'over', 'the', 'lazy', 'dog',
  'int8', 'model', 'batch', 'Node.js', 'PaddleOCR', 'latency', 'server', 'Zebra', 'crossing', 'value', 'speed', 'TensorRT',
  'invoice', 'total', 'street', 'Berlin', 'Oslo', 'price', 'order', 'March', 'Friday', 'page', 'chapter', 'North', 'river'];

/** `count` text lines of 2 to 4 words, a number in about every third, from a seeded generator. */
export function textLines(count: number, seed: number): string[] {
  const rand = prng(seed);
  const pick = (n: number): number => Math.min(n - 1, Math.floor(((rand() + 1) / 2) * n));
  return Array.from({ length: count }, () => {
    const words = Array.from({ length: 2 + pick(3) }, () => WORDS[pick(WORDS.length)]);
    if (pick(3) === 0) words.push(String(pick(10000)));
    return words.join(' ');
  });
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row.push(Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1)));
    prev = row;
  }
  return prev[b.length];
}

async function main(): Promise<void> {
  const args = benchCommand('calibration', 'Calibration methods side by side on the PP-OCR recognizer: static INT8 accuracy against FP32 (docs/quantize.md).')
    .addOption(new Option('--calibration <n>', 'calibration lines').argParser(integerAtLeast(1)).default(24))
    .addOption(new Option('--eval <n>', 'held-out lines').argParser(integerAtLeast(1)).default(20))
    .option('--json <file>', 'results as JSON')
    .parse()
    .opts<{ calibration: number; eval: number; json?: string }>();
  const keys = loadKeys();
  const fp32 = new Uint8Array(fs.readFileSync(OCR_MODELS.rec));
  const calibLines = textLines(args.calibration, 3);
  const evalLines = textLines(args.eval, 4).filter((l) => !calibLines.includes(l));
  const heldOut: Feeds[] = evalLines.map((l) => ({ x: recPreprocess(renderText(l)) }));
  const read = async (model: Uint8Array): Promise<string[]> => (await outputsOf(model, heldOut)).map((o) => {
    const v = Object.values(o)[0];
    return ctcDecode(v.data as Float32Array, v.dims, keys).text;
  });
  const reference = await read(fp32);
  const rendered = reference.filter((t, i) => t === evalLines[i]).length;
  process.stderr.write(`FP32 reads ${rendered}/${evalLines.length} held-out lines exactly as rendered\n`);

  const rows: Record<string, unknown>[] = [];
  const out = ['| calibration width | activations | method | same text as FP32 | edit distance (chars) | ranges < 25% / < 50% of min-max | quantize time |', '|---|---|---|---|---|---|---|'];
  for (const width of ['natural', '320'] as const) {
    const calibration: Feeds[] = calibLines.map((l) => ({ x: recPreprocess(renderText(l), width === '320' ? { width: 320 } : {}) }));
    for (const symmetric of [false, true]) {
      // The ranges themselves, on the graph quantize() calibrates (its preprocessing included).
      const prepared = readModel((await quantize(fp32, { mode: 'dynamic', opTypes: [] })).model);
      upgradeOpset(prepared, 10);
      const tensors = [...new Set(staticCandidates(prepared).candidates.flatMap(calibratedTensors))];
      const minmax = await calibrate(prepared, tensors, calibration, { symmetric });
      for (const method of ['minmax', 'percentile', 'entropy'] as CalibrationMethod[]) {
        const t0 = performance.now();
        const r = await quantize(fp32, { calibration, method, symmetricActivations: symmetric });
        const seconds = (performance.now() - t0) / 1000;
        const texts = await read(r.model);
        const same = texts.filter((t, i) => t === reference[i]).length;
        const distance = texts.reduce((d, t, i) => d + editDistance(t, reference[i]), 0);
        const ranges = method === 'minmax' ? minmax : await calibrate(prepared, tensors, calibration, { method, symmetric });
        const share = (t: string): number => {
          const a = minmax.get(t) as Range;
          const b = ranges.get(t) as Range;
          return (b.max - b.min) / (a.max - a.min || 1);
        };
        const quarter = tensors.filter((t) => share(t) < 0.25).length;
        const half = tensors.filter((t) => share(t) < 0.5).length;
        const activations = symmetric ? 'int8 symmetric' : 'uint8';
        out.push(`| ${width} | ${activations} | ${method} | ${same}/${texts.length} | ${distance} | ${quarter} / ${half} of ${tensors.length} | ${seconds.toFixed(1)} s |`);
        rows.push({ width, activations, method, same, lines: texts.length, distance, quarter, half, tensors: tensors.length, seconds, texts });
        process.stderr.write(`${out[out.length - 1]}\n`);
      }
    }
  }
  process.stdout.write(`PP-OCRv4 recognizer, static INT8 (QDQ), ${calibLines.length} calibration lines, ${evalLines.length} held-out lines (FP32 reads ${rendered} of them exactly as rendered)\n\n${out.join('\n')}\n`);
  if (args.json) fs.writeFileSync(args.json, JSON.stringify({ reference, evalLines, rows }, null, 2));
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}

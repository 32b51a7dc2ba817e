// kiln optimize: ONNX Runtime's graph optimizations applied once and saved.
import type { Command } from 'commander';
import { encodeModel } from '../../onnx';
import * as optimize from '../../optimize';
import type { SessionOptions } from '../../options';
import { runtime } from '../../runtime';
import { Session } from '../../session';
import { formatBytes, ratio, table } from '../format';
import { latencySection } from '../latency';
import { checkFiles, inputsOf, modelCommand, writeOptions, type ModelOptions } from '../model-command';
import { choiceOption } from '../options';

const LEVELS = ['basic', 'extended', 'all'] as const;

interface OptimizeOptions extends ModelOptions {
  level: (typeof LEVELS)[number];
}

/** Milliseconds to create a session on `bytes`. */
async function timeLoad(bytes: Uint8Array, options: SessionOptions): Promise<number> {
  const t0 = performance.now();
  const s = await Session.create(bytes, options);
  const ms = performance.now() - t0;
  await s.dispose();
  return ms;
}

async function optimizeModel(input: string, o: OptimizeOptions): Promise<void> {
  const { output, level } = o;
  const dims = o.dim ?? {};
  checkFiles(input, output);
  const original = encodeModel(optimize.readModel(input));
  const optimized = await optimize.optimizeBytes(original, level);
  const model = optimize.readModel(optimized);
  const written = optimize.writeModel(model, output, writeOptions(o));

  const before = optimize.opCounts(optimize.readModel(original));
  const after = optimize.opCounts(model);
  const ops = [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((op) => (before[op] ?? 0) !== (after[op] ?? 0)).sort();
  const total = (c: Record<string, number>): number => Object.values(c).reduce((x, y) => x + y, 0);
  const signed = (n: number): string => (n > 0 ? `+${n}` : String(n));
  const rows: string[][] = [['nodes', 'before', 'after', 'change']];
  for (const op of ops) rows.push([`  ${op}`, String(before[op] ?? 0), String(after[op] ?? 0), signed((after[op] ?? 0) - (before[op] ?? 0))]);
  if (ops.length === 0) rows.push(['  (no op type changed in number)', '', '', '']);
  rows.push(['  total', String(total(before)), String(total(after)), signed(total(after) - total(before))]);

  // Best of two each, alternating: the first load in a process also pays for warming up.
  let loadBefore = Infinity;
  let loadAfter = Infinity;
  for (let i = 0; i < 2; i++) {
    loadBefore = Math.min(loadBefore, await timeLoad(original, {}));
    loadAfter = Math.min(loadAfter, await timeLoad(optimized, { graphOptimizationLevel: 'disabled' }));
  }
  const inputs = await inputsOf(original);
  const lat = await latencySection(original, optimized, () => {
    const f = optimize.randomFeeds(inputs, { dims });
    return [f, f];
  }, { graphOptimizationLevel: 'disabled' }, o.calls);

  const out = [`kiln optimize: ${input} -> ${output}, level ${level} (ONNX Runtime ${runtime().version}, CPU provider)\n`];
  out.push(table(rows));
  out.push(table([
    ['', 'before', 'after', 'ratio'],
    ['size', formatBytes(original.byteLength), formatBytes(written), ratio(written, original.byteLength)],
    ['load', `${loadBefore.toFixed(1)} ms`, `${loadAfter.toFixed(1)} ms`, ratio(loadAfter, loadBefore)],
    ...lat,
  ]));
  out.push('  load: the original as ONNX Runtime loads it by default (optimizing it), the saved model with load-time optimization off.\n');
  if (lat.length) out.push(`  latency: batch-1 runs on random inputs (symbolic dims ${Object.keys(dims).length ? `${Object.entries(dims).map(([k, v]) => `${k}=${v}`).join(', ')}, others 1` : '1'}), both graphs run as saved (load-time optimization off).\n`);
  if (level === 'all') {
    out.push('  note: level "all" adds layout optimizations (NCHWc, kernels for this CPU\'s instruction set): ONNX Runtime warns that\n' +
      '  such a model is specific to the hardware it was saved on. Load it only on this machine type; save at "extended" to ship.\n');
  }
  process.stdout.write(out.join(''));
}

export const optimizeCommand = (): Command =>
  modelCommand('optimize', "ONNX Runtime's graph optimizations, saved; node counts and latency before and after")
    .description("ONNX Runtime's graph optimizations applied once and saved. Prints node counts and load/run latency before and after.")
    .addOption(choiceOption('--level <LEVEL>', 'how far to optimize ("all" is specific to this machine\'s CPU)', LEVELS).default('extended'))
    .action(optimizeModel);

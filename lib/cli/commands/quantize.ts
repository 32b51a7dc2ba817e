// kiln quantize: INT8, dynamic or static (QDQ) with calibration data; accuracy-aware tuning.
import type { Command } from 'commander';
import { KilnError } from '../../errors';
import { formatMicroseconds } from '../../latency';
import { encodeModel } from '../../onnx';
import * as optimize from '../../optimize';
import { accuracyRows, checkedOn, addFloorOptions, floorFailure, floorGate, floorLine, metricOf, metricOption } from '../accuracy';
import { formatBytes, ratio, table } from '../format';
import { latencyFeeds, latencySection, measured } from '../latency';
import { checkFiles, inputsOf, modelCommand, writeOptions, type ModelOptions } from '../model-command';
import { choiceOption, exclusive, listOption, numberOption } from '../options';
import { progressReporter } from '../progress';

const METHODS = ['minmax', 'percentile', 'entropy'] as const;

interface QuantizeOptions extends ModelOptions {
  calibration?: string;
  eval?: string;
  method?: (typeof METHODS)[number];
  percentile?: number;
  perTensor?: true;
  symmetric?: true;
  opTypes?: string[];
  include?: string[];
  exclude?: string[];
  fuse: boolean;
  preprocess: boolean;
  quantizeOutputLayer?: true;
  tolerance?: number;
  toleranceAbsolute?: number;
  metric?: string;
  floor?: number | false;
  trtTable?: string;
}

async function quantize(input: string, o: QuantizeOptions): Promise<void> {
  const { output, calibration, eval: evalSpec, percentile, trtTable } = o;
  const dims = o.dim ?? {};
  checkFiles(input, output);
  const metric = metricOf(o.metric);
  const relative = o.tolerance;
  const absolute = o.toleranceAbsolute;
  const tolerance = relative !== undefined ? { relative } : absolute !== undefined ? { absolute } : undefined;
  if (metric === 'maxError' && relative !== undefined) throw new KilnError('E_INVALID_ARGUMENT', '--metric max-error scores 0 at best, so a relative tolerance means nothing: give --tolerance-absolute (the largest acceptable error)');
  let method = o.method;
  if (percentile !== undefined) {
    if (method !== undefined && method !== 'percentile') throw new KilnError('E_INVALID_ARGUMENT', `--percentile goes with --method percentile, not ${method}`);
    method = 'percentile';
  }
  if (!calibration) {
    for (const [flag, given] of [['method', method], ['trt-table', trtTable], ['symmetric', o.symmetric]] as const) {
      if (given !== undefined) throw new KilnError('E_INVALID_ARGUMENT', `--${flag} is for static quantization: give --calibration DATA`);
    }
    if (tolerance && !evalSpec) throw new KilnError('E_INVALID_ARGUMENT', 'tuning dynamic quantization needs held-out samples to score it on: give --eval DATA (or --calibration DATA for static quantization)');
  }
  const gate = floorGate(o.floor, metric);

  const original = encodeModel(optimize.readModel(input));
  const inputs = await inputsOf(original);
  const calibrationSamples = calibration ? await optimize.loadSamples(calibration, inputs, { dims }) : undefined;
  const evalSamples = evalSpec ? await optimize.loadSamples(evalSpec, inputs, { dims }) : calibrationSamples;
  const progress = progressReporter();
  let result: optimize.QuantizeResult;
  try {
    result = await optimize.quantize(original, {
      calibration: calibrationSamples,
      method,
      percentile,
      opTypes: o.opTypes,
      includeNodes: o.include,
      excludeNodes: o.exclude,
      perChannel: !o.perTensor,
      symmetricActivations: o.symmetric === true,
      preprocess: o.preprocess,
      fuse: o.fuse,
      keepOutputLayer: !o.quantizeOutputLayer,
      tolerance,
      metric: metric ?? 'top1',
      evaluationSamples: evalSamples,
      tensorRtCalibrationTable: trtTable,
      onProgress: (stage, done, total) => progress.update(stage, done, total),
    });
  } catch (e) {
    progress.end(false);
    throw e;
  }
  progress.end(true);

  // The check against FP32, on the samples given (else one random input), before writing.
  const checkSamples = evalSamples?.length ? evalSamples : undefined;
  const source = evalSpec ? 'eval' : 'calibration';
  const timing = latencyFeeds(inputs, checkSamples?.[0], dims, source);
  const on = checkedOn(checkSamples?.length, source, timing);
  const reference = await optimize.outputsOf(original, checkSamples ?? [timing.feeds]);
  const candidate = await optimize.outputsOf(result.model, checkSamples ?? [timing.feeds]);
  const check = gate ? optimize.checkFloor(reference, candidate, gate.metric, gate.floor) : undefined;
  const written = check && !check.passed ? undefined : optimize.writeModel(optimize.readModel(result.model), output, writeOptions(o));

  const rows: string[][] = [
    ['', 'FP32', 'INT8', 'change'],
    ['size', formatBytes(original.byteLength), formatBytes(written ?? result.model.byteLength), ratio(written ?? result.model.byteLength, original.byteLength)],
    ...(written === undefined ? [] : await latencySection(original, result.model, () => [timing.feeds, timing.feeds], {}, o.calls)),
  ];
  rows.push(...accuracyRows(reference, candidate, metric ?? (tolerance ? 'top1' : undefined), checkSamples?.length ?? 1, checkSamples ? source : 'random'));
  const what = result.mode === 'dynamic'
    ? 'dynamic INT8 (weights int8, activations quantized at run time)'
    : `static INT8 in QDQ form, ${method ?? 'minmax'}${method === 'percentile' ? ` ${percentile ?? 99.999}%` : ''} calibration on ${calibrationSamples?.length} samples, ` +
      `${o.symmetric ? 'symmetric int8' : 'uint8'} activations`;
  const out = [`kiln quantize: ${input} -> ${output}, ${what}, ${o.perTensor ? 'per-tensor' : 'per-channel'} weights\n`];
  out.push(table(rows));
  if (measured(rows)) out.push(`  latency: on ${timing.shapes} (${timing.origin}), both models loaded with ONNX Runtime's default optimizations, interleaved\n`);
  out.push(floorLine(check, on, output));
  const t = result.tuning;
  if (t) {
    const how = t.met ? 'met' : 'NOT met, even with every candidate in FP32';
    out.push(metric === 'maxError'
      ? `  tuning: max abs error at most ${(-t.required).toPrecision(4)} required, final ${(-t.score).toPrecision(4)} (${how}) after ${t.evaluations} evaluations\n`
      : `  tuning: ${metric ?? 'top1'} baseline ${t.baseline.toFixed(4)}, required >= ${t.required.toFixed(4)}, final ${t.score.toFixed(4)} (${how}) after ${t.evaluations} evaluations\n`);
    const l = t.latency;
    if (l) {
      const change = (x: number): string => `${x >= l.quantized ? '+' : ''}${((x / l.quantized - 1) * 100).toFixed(1)}%`;
      out.push(`  tuning latency (one intra-op thread, on ${l.input}): everything quantized ${formatMicroseconds(l.quantized)}, the result ${formatMicroseconds(l.result)} (${change(l.result)})` +
        (l.fewestNodes === undefined ? ', the set with the fewest nodes in FP32\n' : `; chosen for speed over the set with the fewest nodes in FP32, which ran ${formatMicroseconds(l.fewestNodes)} (${change(l.fewestNodes)})\n`));
    }
  }
  if (result.fused.hardSwish || result.fused.convAffine) {
    out.push(`  rewrites: ${result.fused.hardSwish} hard-swish folded into HardSigmoid + Mul, ${result.fused.convAffine} Conv(s) absorbed a scale/shift\n`);
  }
  out.push(`  nodes: ${result.quantized.length} quantized, ${result.skipped.length} left in FP32\n`);
  if (result.quantized.length) {
    const shown = result.quantized.slice(0, 50);
    out.push(`  quantized: ${shown.join(', ')}${result.quantized.length > shown.length ? `, ... and ${result.quantized.length - shown.length} more` : ''}\n`);
  }
  if (result.skipped.length) {
    // Tuning's fallbacks first, most sensitive first, then the rest as reported.
    const fallback = new Map((t?.fallback ?? []).map((f, i) => [f.node, i]));
    const listed = [...result.skipped].sort((a, b) => (fallback.get(a.node) ?? Infinity) - (fallback.get(b.node) ?? Infinity));
    const shown = listed.slice(0, 50);
    const width = Math.max(...shown.map((s) => s.node.length));
    out.push('  left in FP32:\n');
    for (const s of shown) out.push(`    ${s.node.padEnd(width)}   ${s.reason}\n`);
    if (listed.length > shown.length) out.push(`    ... and ${listed.length - shown.length} more\n`);
  }
  if (trtTable) out.push(`  TensorRT calibration table: ${trtTable}\n`);
  process.stdout.write(out.join(''));
  if (check && !check.passed) throw floorFailure(check, 'quantized', on, output, result.mode === 'static' ? '--tolerance returns the most sensitive nodes to FP32; min-max calibration clips nothing' : '--tolerance with --eval returns the most sensitive nodes to FP32');
}

export function quantizeCommand(): Command {
  const command = addFloorOptions(modelCommand('quantize', 'INT8: dynamic, or static (QDQ) with calibration data; accuracy-aware tuning')
    .description('INT8 quantization: dynamic without calibration data, static (QDQ) with --calibration. The result is checked against ' +
      'FP32 (--floor) before it is written, and timed against it.')
    .option('--calibration <DATA>', 'samples: a folder of .npy/.raw files (single input) or of sub-folders with <input>.npy/.raw (several inputs), or a .js/.cjs/.mjs module')
    .addOption(choiceOption('--method <METHOD>', 'calibration method; minmax by default', METHODS))
    .addOption(numberOption('--percentile <P>', 'the percentile method\'s percentile (default 99.999); implies --method percentile', (n) => n > 0 && n <= 100, 'a percentage in (0, 100]'))
    .option('--per-tensor', 'one weight scale per tensor (default per channel)')
    .option('--symmetric', 'int8 activations with zero point 0 (TensorRT\'s form; default uint8)')
    .addOption(listOption('--op-types <LIST>', 'op types to quantize; default: dynamic MatMul,Gemm; static Conv,MatMul (Gemms split into MatMul + Add), plus Mul,Add of two activations when listed'))
    .addOption(listOption('--include <NODE,...>', 'only these nodes (names as after preprocessing; the summary lists them)'))
    .addOption(listOption('--exclude <NODE,...>', 'not these nodes'))
    .option('--no-fuse', 'skip the rewrites (hard-swish, scales and shifts around Convs)')
    .option('--quantize-output-layer', 'quantize the output layer too (by default the nodes nearest the outputs, the logits, stay FP32 when dense and at most 5% of the weights)')
    .addOption(numberOption('--tolerance <R>', 'tuning: return the most sensitive nodes to FP32 until the score is within R (relative) of FP32\'s', (n) => n >= 0 && n < 1, 'a share between 0 and 1 (0.01: 1%)'))
    .addOption(numberOption('--tolerance-absolute <A>', 'tuning, as --tolerance, within A (absolute)', (n) => n >= 0, 'a number >= 0'))
    .addOption(metricOption('tuning\'s score (default top1) and the check\'s (default cosine)'))
    .option('--eval <DATA>', 'held-out samples for tuning and the check (default: the calibration samples)'))
    .option('--trt-table <FILE>', 'also write a TensorRT calibration table (static)')
    .option('--no-preprocess', 'skip ONNX Runtime\'s basic optimizations before quantizing')
    .action(quantize);
  return exclusive(command, 'tolerance', 'tolerance-absolute');
}

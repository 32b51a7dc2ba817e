// kiln fp16: float32 -> float16, sensitive ops and (by default) the inputs and outputs kept float32.
import type { Command } from 'commander';
import { KilnError } from '../../errors';
import { encodeModel } from '../../onnx';
import * as optimize from '../../optimize';
import type { Feeds, Results, ValueInfo } from '../../session';
import { Tensor } from '../../tensor';
import { accuracyRows, addFloorOptions, checkedOn, floorFailure, floorGate, floorLine, metricOf, metricOption } from '../accuracy';
import { formatBytes, ratio, table } from '../format';
import { latencyFeeds, latencySection, measured } from '../latency';
import { checkFiles, inputsOf, modelCommand, writeOptions, type ModelOptions } from '../model-command';
import { exclusive, listOption } from '../options';

interface Fp16Options extends ModelOptions {
  keepIo?: true;
  fp16Io?: true;
  block?: string[];
  blockNodes?: string[];
  eval?: string;
  metric?: string;
  floor?: number | false;
}

/** float16 outputs as float32, so that they compare with a float32 model's. */
function widen(results: Results[]): Results[] {
  return results.map((r) => {
    const o: Results = {};
    for (const [k, t] of Object.entries(r)) {
      o[k] = t.type === 'float16' ? new Tensor('float32', Float32Array.from(t.data as Uint16Array, optimize.float16Value), t.dims) : t;
    }
    return o;
  });
}

async function fp16(input: string, o: Fp16Options): Promise<void> {
  const { output, eval: evalSpec } = o;
  const dims = o.dim ?? {};
  checkFiles(input, output);
  const keepIoTypes = !o.fp16Io;
  const gate = floorGate(o.floor, metricOf(o.metric));

  const model = optimize.readModel(input);
  const original = encodeModel(model);
  const inputs = await inputsOf(original);
  const samples = evalSpec ? await optimize.loadSamples(evalSpec, inputs, { dims }) : undefined;
  await optimize.addValueTypes(model);
  const report = optimize.convertFloat16(model, { keepIoTypes, blockOps: o.block, blockNodes: o.blockNodes });
  const converted = encodeModel(model);

  const out = [`kiln fp16: ${input} -> ${output}, ${keepIoTypes ? 'inputs and outputs kept float32' : 'float16 inputs and outputs'}\n`];
  const byOp = new Map<string, number>();
  for (const b of report.blocked) byOp.set(b.opType, (byOp.get(b.opType) ?? 0) + 1);
  out.push(
    `  nodes in float16:   ${report.converted}\n` +
    `  nodes kept float32: ${report.blocked.length}${byOp.size ? ` (${[...byOp].map(([op, n]) => `${op} ${n}`).join(', ')})` : ''}\n` +
    `  weights converted:  ${report.initializers} (${report.clamped} values clamped to ±65504, ${report.underflowed} non-zero values too small for float16 kept at ±2^-24)\n` +
    `  Casts inserted:     ${report.casts}\n`);
  for (const b of report.blocked.slice(0, 30)) out.push(`    ${b.node} (${b.opType}): ${b.reason}\n`);
  if (report.blocked.length > 30) out.push(`    ... and ${report.blocked.length - 30} more\n`);
  for (const w of report.warnings.slice(0, 10)) out.push(`  warning: ${w}\n`);

  // ONNX Runtime checks the types as it loads; its CPU provider runs float16 nodes it has no
  // kernel for through Casts to float32, so this measures agreement more than speed.
  let fp16Inputs: readonly ValueInfo[];
  try {
    fp16Inputs = await inputsOf(converted);
  } catch (e) {
    process.stdout.write(out.join(''));
    throw new KilnError('E_MODEL_LOAD', `ONNX Runtime (CPU) cannot load the converted model, so it cannot be checked: ${(e as Error).message}; ${output} not written`, { cause: e });
  }
  const timing = latencyFeeds(inputs, samples?.[0], dims, 'eval');
  const checked = samples ?? [timing.feeds];
  const on = checkedOn(samples?.length, 'eval', timing);
  const asFp16 = (f: Feeds): Feeds => {
    const converted: Record<string, Tensor> = {};
    for (const i of fp16Inputs) {
      const t = f[i.name] as Tensor;
      converted[i.name] = i.type === 'float16' && t.type === 'float32' ? new Tensor('float16', optimize.toFloat16Array(t.data as Float32Array).data, t.dims) : t;
    }
    return converted;
  };
  const reference = await optimize.outputsOf(original, checked);
  const candidate = widen(await optimize.outputsOf(converted, checked.map(asFp16)));
  const check = gate ? optimize.checkFloor(reference, candidate, gate.metric, gate.floor) : undefined;
  const written = check && !check.passed ? undefined : optimize.writeModel(model, output, writeOptions(o));

  const rows: string[][] = [['', 'FP32', 'FP16', 'change']];
  rows.push(['size', formatBytes(original.byteLength), formatBytes(written ?? converted.byteLength), ratio(written ?? converted.byteLength, original.byteLength)]);
  rows.push(...accuracyRows(reference, candidate, undefined, checked.length, samples ? 'eval' : 'random'));
  if (written !== undefined) rows.push(...(await latencySection(original, converted, () => [timing.feeds, asFp16(timing.feeds)], {}, o.calls)));
  out.push(table(rows));
  if (measured(rows)) out.push(`  latency: on ${timing.shapes} (${timing.origin})\n`);
  out.push(floorLine(check, on, output));
  out.push('  On the CPU provider float16 nodes without a CPU kernel run through inserted Casts, so the CPU latency\n' +
    '  says little: float16 pays off on CUDA and TensorRT.\n');
  process.stdout.write(out.join(''));
  if (check && !check.passed) throw floorFailure(check, 'float16', on, output, '--block and --block-nodes keep ops in float32');
}

export function fp16Command(): Command {
  const command = addFloorOptions(modelCommand('fp16', 'float32 -> float16, sensitive ops and the inputs and outputs kept float32')
    .description('float32 -> float16. Inputs and outputs stay float32 unless --fp16-io; Range, NonMaxSuppression, RoiAlign, TopK, ' +
      'ArgMax/ArgMin, CumSum, Resize/Upsample, random and quantization ops, ops of other domains, nodes with subgraphs, ' +
      'BatchNormalization with statistics beyond ±65504 and arithmetic on integers cast to float stay float32 ' +
      '(plus --block / --block-nodes), behind Casts.')
    .option('--keep-io', 'float32 inputs and outputs (the default)')
    .option('--fp16-io', 'float16 inputs and outputs')
    .addOption(listOption('--block <OP,...>', 'op types kept float32, besides those above'))
    .addOption(listOption('--block-nodes <NODE,...>', 'nodes kept float32'))
    .option('--eval <DATA>', 'samples to check the outputs on and to time (default one random input)')
    .addOption(metricOption('the check\'s metric (default cosine)')))
    .action(fp16);
  return exclusive(command, 'keep-io', 'fp16-io');
}

// What the commands that turn one model file into another share: IN.onnx -o OUT.onnx, the
// options of their inputs, timing and output, and the checks made before any work.
import { Command, Option } from 'commander';
import * as fs from 'fs';
import * as path from 'path';
import { KilnError } from '../errors';
import type { WriteOptions } from '../optimize';
import { Session, type ValueInfo } from '../session';
import { dimOption, integerOption, numberOption } from './options';

/** The options every model command takes. */
export interface ModelOptions {
  output: string;
  dim?: Record<string, number>;
  calls?: number;
  externalData?: number;
}

/** `kiln NAME IN.onnx -o OUT.onnx` with the options every model command takes. */
export function modelCommand(name: string, summary: string): Command {
  return new Command(name)
    .summary(summary)
    .argument('<IN.onnx>', 'the model to read')
    .addOption(new Option('-o, --output <OUT.onnx>', 'the model to write').makeOptionMandatory())
    .addOption(dimOption('size of a symbolic dim, repeatable: for .raw samples and the latency inputs (latency runs on the first sample\'s shapes, else 1 for a dim not given)'))
    .addOption(integerOption('--calls <N>', 'latency runs per model (0: skip; default: about 2 s worth)', 0))
    .addOption(numberOption('--external-data <BYTES>', 'store initializers of at least BYTES in OUT.onnx.data', (n) => Number.isInteger(n) && n >= 0, 'a size in bytes'));
}

/** Refuses, before any work, a model file that is not there and an output that could not be written. */
export function checkFiles(input: string, output: string): void {
  if (!fs.existsSync(input)) throw new KilnError('E_NOT_FOUND', `no such model file: ${input}`);
  checkOutput(output);
}

/** Refuses, before any work, an output file that could not be written. */
export function checkOutput(output: string): void {
  const dir = path.dirname(path.resolve(output));
  if (!fs.existsSync(dir)) throw new KilnError('E_NOT_FOUND', `output ${output}: the folder ${dir} does not exist`);
  if (!fs.statSync(dir).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `output ${output}: ${dir} is not a folder`);
  if (fs.existsSync(output) && fs.statSync(output).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `output ${output} is a folder, expected a file name`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new KilnError('E_INVALID_ARGUMENT', `output ${output}: the folder ${dir} is not writable`);
  }
}

export const writeOptions = (o: ModelOptions): WriteOptions => (o.externalData === undefined ? {} : { externalDataThreshold: o.externalData });

/** The model's inputs (a session on the CPU, disposed at once). */
export async function inputsOf(model: string | Uint8Array): Promise<readonly ValueInfo[]> {
  const session = await Session.create(model, { graphOptimizationLevel: 'disabled' });
  const inputs = session.inputs;
  await session.dispose();
  return inputs;
}

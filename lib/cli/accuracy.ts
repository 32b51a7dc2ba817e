// The model commands' accuracy report and their collapse check against FP32 (--metric, --floor).
import { Option, type Command } from 'commander';
import { KilnError } from '../errors';
import * as optimize from '../optimize';
import type { Results } from '../session';
import { plural } from './format';
import type { TimingInputs } from './latency';
import { choiceOption, exclusive, numberOption } from './options';

const METRICS: Readonly<Record<string, optimize.Metric>> = { top1: 'top1', cosine: 'cosine', 'max-error': 'maxError' };
const METRIC_NAMES: Readonly<Record<optimize.Metric, string>> = { top1: 'top-1 agreement', cosine: 'cosine similarity', maxError: 'max abs error' };

export function metricOption(description: string): Option {
  return choiceOption('--metric <M>', description, Object.keys(METRICS));
}

/** --metric's value as the metric it names. */
export const metricOf = (name: string | undefined): optimize.Metric | undefined => (name === undefined ? undefined : METRICS[name]);

/** Adds --floor X and --no-floor, one or the other (commander keeps either in `floor`: X, or false). */
export function addFloorOptions(command: Command): Command {
  command.addOption(
    numberOption('--floor <X>', 'the check: the model is compared with FP32 on the samples given (else one random input) and not written, ' +
      'exit 1 (E_ACCURACY), when its score is below X (default cosine similarity 0.9; with --metric max-error, the largest acceptable error)', (n) => n >= 0, 'a number >= 0'),
  );
  command.addOption(new Option('--no-floor', 'no check: write the model whatever its accuracy'));
  return exclusive(command, 'floor', 'no-floor');
}

export interface Gate {
  metric: optimize.Metric;
  floor: number;
}

/** The collapse check's metric and floor from --floor (false: --no-floor) and --metric: cosine and 0.9 by default. */
export function floorGate(given: number | false | undefined, metric: optimize.Metric | undefined): Gate | undefined {
  if (given === false) return undefined;
  // Max abs error has no scale to default to: without --floor the check is on cosine similarity.
  const checked = metric === 'maxError' && given === undefined ? 'cosine' : (metric ?? 'cosine');
  if (checked === 'maxError' && given === 0) throw new KilnError('E_INVALID_ARGUMENT', '--floor with --metric max-error is the largest acceptable error: give one > 0');
  if (checked !== 'maxError' && given !== undefined && given > 1) throw new KilnError('E_INVALID_ARGUMENT', `--floor for ${METRIC_NAMES[checked]} is at most 1, received ${given}`);
  return { metric: checked, floor: given ?? 0.9 };
}

/** What the check ran on: "3 eval samples", or the random input when no samples were given. */
export function checkedOn(count: number | undefined, source: string, timing: TimingInputs): string {
  return count ? plural(count, `${source} sample`) : `one random input, ${timing.shapes}: no real data given (--eval DATA)`;
}

/**
 * The collapse check's summary line. A model below the floor is not written, and the command
 * ends with floorFailure's E_ACCURACY after the summary.
 */
export function floorLine(check: optimize.FloorCheck | undefined, on: string, output: string): string {
  if (!check) return '  check: none (--no-floor)\n';
  const name = METRIC_NAMES[check.metric];
  const relation = check.metric === 'maxError' ? `at most ${check.floor}` : `at least ${check.floor}`;
  return `  check: ${name} ${check.value.toPrecision(4)} against FP32 on ${on} (${relation} required): ${check.passed ? `passed, ${output} written` : `FAILED, ${output} not written`}\n`;
}

export function floorFailure(check: optimize.FloorCheck, what: string, on: string, output: string, hint: string): KilnError {
  const name = METRIC_NAMES[check.metric];
  return new KilnError('E_ACCURACY', `the ${what} model's ${name} against FP32 is ${check.value.toPrecision(4)} on ${on}, ` +
    `${check.metric === 'maxError' ? 'above' : 'below'} the floor ${check.floor}: ${output} not written (${hint}; set --floor, or --no-floor to write it anyway)`);
}

/** Top-1 agreement, cosine similarity and max abs error of `candidate` against `reference`. */
export function accuracyRows(reference: Results[], candidate: Results[], chosen: optimize.Metric | undefined, count: number, source: string): string[][] {
  const mark = (m: optimize.Metric): string => (m === chosen ? ' *' : '');
  const top1 = optimize.compareOutputs(reference, candidate, 'top1');
  const cos = optimize.compareOutputs(reference, candidate, 'cosine');
  const err = -optimize.compareOutputs(reference, candidate, 'maxError');
  return [
    [`accuracy against FP32 on ${plural(count, `${source} sample`)}${chosen ? ' (* --metric)' : ''}`, '', '', ''],
    [`  top-1 agreement${mark('top1')}`, '1', top1.toFixed(4), (top1 - 1).toFixed(4)],
    [`  cosine similarity${mark('cosine')}`, '1', cos.toFixed(6), (cos - 1).toExponential(2)],
    [`  max abs error${mark('maxError')}`, '0', err.toPrecision(4), `+${err.toPrecision(4)}`],
  ];
}

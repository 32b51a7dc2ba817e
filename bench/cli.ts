/**
 * The command line of every bench script: one commander program each, the value parsers they
 * share, and one exit code for a bad command line (an unknown option, a value out of range).
 */
import { Command, InvalidArgumentError, Option } from 'commander';

/** Exit code of a bench script given a bad command line. */
export const USAGE_ERROR = 2;

/** The program of `node dist/bench/<script>.js`: help from its options, usage errors exit with USAGE_ERROR. */
export function benchCommand(script: string, description: string): Command {
  return new Command(`node dist/bench/${script}.js`)
    .description(description)
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : USAGE_ERROR));
}

function numberParser(expected: string, ok: (n: number) => boolean): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? NaN : Number(value);
    if (!ok(n)) throw new InvalidArgumentError(`Expected ${expected}.`);
    return n;
  };
}

export const positiveNumber = numberParser('a number > 0', (n) => Number.isFinite(n) && n > 0);

export const nonNegativeNumber = numberParser('a number >= 0', (n) => Number.isFinite(n) && n >= 0);

export function integerAtLeast(min: number): (value: string) => number {
  return numberParser(`an integer >= ${min}`, (n) => Number.isInteger(n) && n >= min);
}

export function integerIn(min: number, max: number): (value: string) => number {
  return numberParser(`an integer from ${min} to ${max}`, (n) => Number.isInteger(n) && n >= min && n <= max);
}

/** A fraction in [0, below). */
export function fractionBelow(below: number): (value: string) => number {
  return numberParser(`a fraction >= 0 and < ${below}`, (n) => n >= 0 && n < below);
}

/** A comma-separated, non-empty list of items, each read by `parse`. */
export function listOf<T>(parse: (item: string) => T): (value: string) => T[] {
  return (value) => {
    const items = value.split(',').filter((s) => s !== '');
    if (items.length === 0) throw new InvalidArgumentError('Expected a comma-separated list.');
    return items.map(parse);
  };
}

export function oneOf(allowed: readonly string[]): (item: string) => string {
  return (item) => {
    if (!allowed.includes(item)) throw new InvalidArgumentError(`"${item}" is not one of ${allowed.join(', ')}.`);
    return item;
  };
}

/** --only: the models (or cases) to run, a subset of `names`; all of `defaults` when not given. */
export function onlyOption(names: readonly string[], defaults: readonly string[] = names): Option {
  return new Option('--only <names>', `comma-separated subset of ${names.join(',')}`)
    .argParser(listOf(oneOf(names)))
    .default([...defaults], defaults.join(','));
}

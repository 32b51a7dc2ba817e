// Option definitions shared by the commands: typed values, checked as commander parses them.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { KilnError } from '../errors';

/** Options that may be given more than once (their values accumulate). */
const repeatable = new WeakSet<Option>();

/** "a, b or c" */
const alternatives = (names: readonly string[]): string => (names.length > 1 ? `${names.slice(0, -1).join(', ')} or ${names[names.length - 1]}` : names.join(''));

/** An option whose value is a number for which `check` holds: `what` says which ("an integer >= 0"). */
export function numberOption(flags: string, description: string, check: (n: number) => boolean, what: string): Option {
  const option = new Option(flags, description);
  return option.argParser((v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`${option.long} must be ${what}, received ${v}`);
    return n;
  });
}

export function integerOption(flags: string, description: string, min: number): Option {
  return numberOption(flags, description, (n) => Number.isInteger(n) && n >= min, `an integer >= ${min}`);
}

/** An option that takes one of `choices` (listed in the help). */
export function choiceOption(flags: string, description: string, choices: readonly string[]): Option {
  const option = new Option(flags, description).choices(choices);
  return option.argParser((v: string) => {
    if (!choices.includes(v)) throw new InvalidArgumentError(`${option.long} must be ${alternatives(choices)}, received ${v}`);
    return v;
  });
}

/** A repeatable option collecting its values. */
export function repeatedOption(flags: string, description: string): Option {
  const option = new Option(flags, description).argParser((v: string, previous: string[] | undefined) => [...(previous ?? []), v]);
  repeatable.add(option);
  return option;
}

/** A repeatable option of comma-separated names: `--include a,b --include c`. */
export function listOption(flags: string, description: string): Option {
  const option = new Option(flags, description).argParser((v: string, previous: string[] | undefined) => [
    ...(previous ?? []),
    ...v.split(',').map((x) => x.trim()).filter((x) => x !== ''),
  ]);
  repeatable.add(option);
  return option;
}

/** `--dim NAME=N`, repeatable: the size of a symbolic dim. */
export function dimOption(description: string): Option {
  const option = new Option('--dim <NAME=N>', description).argParser((d: string, previous: Record<string, number> | undefined) => {
    const eq = d.lastIndexOf('=');
    const n = Number(d.slice(eq + 1));
    if (eq <= 0 || !Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`--dim takes NAME=SIZE (a symbolic dim of an input and its size >= 1), received ${d}`);
    return { ...(previous ?? {}), [d.slice(0, eq)]: n };
  });
  repeatable.add(option);
  return option;
}

/** Refuses, as commander parses, an option given twice (unless it is repeatable). */
export function refuseRepeats(command: Command): void {
  for (const option of command.options) {
    if (repeatable.has(option)) continue;
    let seen = false;
    command.on(`option:${option.name()}`, () => {
      if (seen) throw new KilnError('E_INVALID_ARGUMENT', `${option.long} is given more than once`);
      seen = true;
    });
  }
}

/** Refuses, as commander parses, the two options given together. */
export function exclusive(command: Command, a: string, b: string): Command {
  const given = new Set<string>();
  for (const name of [a, b]) {
    command.on(`option:${name}`, () => {
      given.add(name);
      if (given.size === 2) throw new KilnError('E_INVALID_ARGUMENT', `give --${a} or --${b}, not both`);
    });
  }
  return command;
}

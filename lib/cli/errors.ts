// How the command line reports a failure: `kiln: CODE: message`, with one Kiln code.
import type { Command, CommanderError } from 'commander';
import { KilnError } from '../errors';

/** Commander's preamble to the message of a value an option's parser refused. */
const REFUSED_VALUE = ' is invalid. ';

/**
 * A command line that commander refused, as E_INVALID_ARGUMENT: a value an option's parser
 * refused keeps that parser's message (it names the option); anything else (an unknown option,
 * a missing argument) is told in commander's words, naming the command and where its help is.
 */
export function usageError(e: CommanderError, command: Command): KilnError {
  const text = e.message.replace(/^error: /, '').replace(/\n/g, ' ').replace(/\.$/, '');
  const refused = text.indexOf(REFUSED_VALUE);
  if (e.code === 'commander.invalidArgument' && refused >= 0) {
    // A value read from an option's environment variable says so.
    const env = / from env '([^']+)'$/.exec(text.slice(0, refused))?.[1];
    return new KilnError('E_INVALID_ARGUMENT', text.slice(refused + REFUSED_VALUE.length) + (env ? ` (from the environment variable ${env})` : ''));
  }
  const name = command.parent ? `${command.parent.name()} ${command.name()}` : command.name();
  return new KilnError('E_INVALID_ARGUMENT', `${name}: ${text} (see ${name} --help)`);
}

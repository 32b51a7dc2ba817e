#!/usr/bin/env node
// The `kiln` command line: one command per file in commands/; `kiln help` lists them.
import { Command, CommanderError } from 'commander';
import { benchCommand } from './commands/bench';
import { cacheTuneCommand } from './commands/cache-tune';
import { fp16Command } from './commands/fp16';
import { infoCommand } from './commands/info';
import { optimizeCommand } from './commands/optimize';
import { quantizeCommand } from './commands/quantize';
import { serveCommand } from './commands/serve';
import { toKilnError } from '../errors';
import { usageError } from './errors';
import { refuseRepeats } from './options';

function program(): Command {
  const kiln = new Command('kiln').description('Kiln: low-latency ONNX Runtime inference for Node.js, and tools for models');
  for (const command of [infoCommand(), benchCommand(), optimizeCommand(), quantizeCommand(), fp16Command(), cacheTuneCommand(), serveCommand()]) kiln.addCommand(command);
  for (const command of [kiln, ...kiln.commands]) {
    refuseRepeats(command);
    // Failures are reported once, as `kiln: CODE: message`; help ends with exit code 0.
    command.configureOutput({ outputError: () => undefined });
    command.exitOverride((e) => {
      throw e.exitCode === 0 ? e : usageError(e, command);
    });
  }
  kiln.on('command:*', ([name]: string[]) => {
    process.stderr.write(`kiln: unknown command "${name}"; the commands are ${[...kiln.commands.map((c) => c.name()), 'help'].join(', ')}\n`);
    kiln.outputHelp();
    process.exitCode = 2;
  });
  return kiln;
}

async function main(argv: string[]): Promise<void> {
  const kiln = program();
  if (argv.length === 0) return void kiln.outputHelp();
  try {
    await kiln.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError && e.exitCode === 0)) throw e;
  }
}

main(process.argv.slice(2)).catch((e: unknown) => {
  const error = toKilnError(e); // file system errors told with a Kiln code too
  process.stderr.write(`kiln: ${error.code}: ${error.message}\n`);
  process.exit(1);
});

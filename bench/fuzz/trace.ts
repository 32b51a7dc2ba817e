/**
 * The trace a worker writes before every step, and the supervisor reads after a crash.
 */
import * as fs from 'fs';
import type { CallInfo } from './report';

/** The last step of a worker, in a fixed slot of a file: what the supervisor reports after a crash. */
export class Trace {
  readonly #fd: number | undefined;
  #step = 0;

  constructor(file: string | undefined) {
    this.#fd = file === undefined ? undefined : fs.openSync(file, 'w');
  }

  write(iteration: number, info: CallInfo): void {
    if (this.#fd === undefined) return;
    const line = `${++this.#step}\t${iteration}\t${info.family}\t${info.label.replace(/[\t\n]/g, ' ').slice(0, 900)}\n`;
    fs.writeSync(this.#fd, line.padEnd(1024), 0);
  }
}

export function readTrace(file: string): { step: number; iteration: number; family: string; label: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trimEnd();
  } catch {
    return undefined;
  }
  const [step, iteration, family, label] = text.split('\t');
  if (!label) return undefined;
  return { step: Number(step), iteration: Number(iteration), family, label };
}

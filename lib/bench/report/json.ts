/** The report as JSON: what `--json` writes and what the HTML report draws. */
import * as fs from 'fs';
import type { BenchReport } from '../types';

/** Pretty-printed JSON; numbers that are not finite (a latency of a step without answers) become null. */
export function renderJson(report: BenchReport): string {
  return `${JSON.stringify(report, (_key, value: unknown) => (typeof value === 'number' && !Number.isFinite(value) ? null : value), 2)}\n`;
}

export async function writeJsonReport(report: BenchReport, file: string): Promise<void> {
  await fs.promises.writeFile(file, renderJson(report));
}

/**
 * What a fuzzing run reports: its targets, findings and notes, per-target reports merged
 * across child processes, and the markdown summary.
 */
import * as os from 'os';

export const TARGETS = ['load', 'feed', 'batch', 'http'] as const;
export type TargetName = (typeof TARGETS)[number];

export interface Finding {
  kind: string;
  target: TargetName;
  family: string;
  message: string;
  label: string;
  iteration: number;
  repro: string;
  count: number;
}

/** A rejection with another code than the one Kiln's own validation should give: worth a look, not a failure. */
export interface Note {
  target: TargetName;
  family: string;
  message: string;
  label: string;
  iteration: number;
  count: number;
}

export interface TargetReport {
  target: TargetName;
  seconds: number;
  iterations: number;
  calls: number;
  restarts: number;
  outcomes: Record<string, number>;
  findings: Finding[];
  notes: Note[];
  skipped: string[];
  onnxruntime?: string;
  done?: boolean;
}

/** What a call is, for traces and findings. */
export interface CallInfo {
  readonly family: string;
  readonly label: string;
}

/** Messages with their numbers blanked: one finding per kind of failure, not per size. */
export function messageShape(message: string): string {
  return message
    .replace(/"[^"]*"/g, '"…"')
    .replace(/\[object \w+\]/g, '[object …]')
    .replace(/\b(Big)?(Int|Uint|Float)(8|16|32|64)(Clamped)?Array\b/g, 'TypedArray')
    .replace(/\d+(\.\d+)?/g, '#')
    .slice(0, 240);
}

export interface Cli {
  seconds: number;
  seed: number;
  targets: TargetName[];
  json?: string;
  iteration?: number;
  skip: string[];
  verbose: boolean;
  worker?: { until: number; from: number; trace: string; result: string };
}

export function emptyReport(target: TargetName): TargetReport {
  return { target, seconds: 0, iterations: 0, calls: 0, restarts: 0, outcomes: {}, findings: [], notes: [], skipped: [] };
}

export function merge(into: TargetReport, part: TargetReport): void {
  into.seconds += part.seconds;
  into.iterations += part.iterations;
  into.calls += part.calls;
  into.onnxruntime ??= part.onnxruntime;
  for (const [k, v] of Object.entries(part.outcomes)) into.outcomes[k] = (into.outcomes[k] ?? 0) + v;
  for (const f of part.findings) {
    const codeOf = (m: string): string | undefined => /\(code (\w+)\)/.exec(m)?.[1];
    const same = into.findings.find((x) => x.kind === f.kind &&
      (x.kind === 'unhandled-rejection' ? codeOf(x.message) === codeOf(f.message) : messageShape(x.message) === messageShape(f.message)));
    if (same) same.count += f.count;
    else into.findings.push(f);
  }
  for (const n of part.notes) {
    const same = into.notes.find((x) => messageShape(x.message) === messageShape(n.message));
    if (same) same.count += n.count;
    else into.notes.push(n);
  }
}

export function markdown(cli: Cli, reports: readonly TargetReport[]): string {
  const codes = new Set<string>();
  for (const r of reports) for (const k of Object.keys(r.outcomes)) if (k !== 'ok') codes.add(k);
  const columns = ['ok', ...[...codes].sort()];
  const lines: string[] = [];
  lines.push(`Seed ${cli.seed}, ${cli.seconds} s per target; node ${process.version}, ONNX Runtime ${reports.find((r) => r.onnxruntime)?.onnxruntime ?? '?'}, ${os.cpus().length} × ${os.cpus()[0]?.model.trim() ?? 'CPU'}`);
  lines.push('');
  lines.push(`| target | seconds | iterations | calls | ${columns.join(' | ')} | findings | restarts |`);
  lines.push(`|---|---|---|---|${columns.map(() => '---').join('|')}|---|---|`);
  for (const r of reports) {
    const cells = columns.map((c) => String(r.outcomes[c] ?? 0));
    lines.push(`| ${r.target} | ${r.seconds.toFixed(0)} | ${r.iterations} | ${r.calls} | ${cells.join(' | ')} | ${r.findings.length} | ${r.restarts} |`);
  }
  const findings = reports.flatMap((r) => r.findings);
  lines.push('');
  if (findings.length === 0) {
    lines.push('Findings: none.');
  } else {
    lines.push('Findings:');
    lines.push('');
    findings.forEach((f, i) => {
      lines.push(`${i + 1}. **${f.kind}** (${f.target}/${f.family}, ×${f.count}): ${f.message}`);
      lines.push(`   case: ${f.label}`);
      lines.push(`   repro: \`${f.repro}\``);
    });
  }
  const notes = reports.flatMap((r) => r.notes);
  if (notes.length > 0) {
    lines.push('');
    lines.push('Notes (rejected as they should be, but with another code than Kiln\'s own validation would give):');
    lines.push('');
    for (const n of notes.slice(0, 30)) lines.push(`- ${n.target}/${n.family} (×${n.count}): ${n.message.split('\n')[0].slice(0, 240)}`);
    if (notes.length > 30) lines.push(`- … ${notes.length - 30} more in the JSON report`);
  }
  return lines.join('\n');
}

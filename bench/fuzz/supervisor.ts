/**
 * The supervisor: runs each target in child processes, watches their traces, and turns a
 * crash or a stall into a finding before restarting at the next iteration.
 */
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { type Cli, emptyReport, type Finding, merge, type TargetName, type TargetReport } from './report';
import { readTrace } from './trace';

/** A child whose trace has not moved for this long is stuck (e.g. a blocked event loop). */
const STALL_MS = 30_000;
/** After this many crashes or stalls of one target, the supervisor stops restarting it. */
const MAX_RESTARTS = 30;
/** Exit code of a fuzzer process whose own code threw. */
export const FUZZER_ERROR = 3;

/**
 * Runs a target in child processes until its time is up, restarting after a crash or a stall.
 * `entry`: the fuzzer's script, which each child runs with --worker.
 */
export async function superviseTarget(cli: Cli, target: TargetName, entry: string): Promise<TargetReport> {
  const report = emptyReport(target);
  const until = Date.now() + cli.seconds * 1000;
  const skip = new Set(cli.skip);
  const crashes = new Map<string, number>();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-fuzz-run-'));
  let from = 0;
  try {
    for (;;) {
      const trace = path.join(dir, 'trace');
      const result = path.join(dir, 'result.json');
      fs.rmSync(result, { force: true });
      const args = [
        '--expose-gc', entry, '--worker', '--target', target, '--seed', String(cli.seed), '--until', String(until),
        '--from', String(from), '--trace', trace, '--result', result, ...(skip.size ? ['--skip', [...skip].join(',')] : []),
      ];
      const exit = await runChild(args, trace);
      let part: TargetReport | undefined;
      try {
        part = JSON.parse(fs.readFileSync(result, 'utf8')) as TargetReport;
      } catch {
        part = undefined;
      }
      if (part) merge(report, part);
      if (exit.code === 0 && part?.done) break;
      const last = readTrace(trace);
      const how = exit.stalled ? `no progress for ${STALL_MS / 1000} s (killed)` : exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
      // Exit code 3: the fuzzer's own code threw (see main()), not Kiln.
      const kind = exit.stalled ? 'stall' : exit.code === FUZZER_ERROR ? 'fuzzer-error' : 'crash';
      const family = last?.family ?? 'setup';
      const iteration = last?.iteration ?? from;
      const repro = `node dist/bench/fuzz.js --target ${target} --seed ${cli.seed} --iteration ${iteration}${skip.size ? ` --skip ${[...skip].join(',')}` : ''} --verbose`;
      const finding: Finding = {
        kind, target, family, iteration, repro, count: 1,
        label: last?.label ?? '(before the first iteration)',
        message: `the fuzzing process ended: ${how}${exit.stderr ? `; stderr: ${exit.stderr.trim().split('\n').slice(-4).join(' | ').slice(0, 600)}` : ''}`,
      };
      process.stderr.write(`FINDING [${target}/${family}] ${finding.kind}: ${finding.message}\n  case: ${finding.label}\n  repro: ${repro}\n`);
      const same = report.findings.find((x) => x.kind === finding.kind && x.family === family);
      if (same) same.count++;
      else report.findings.push(finding);
      report.restarts++;
      crashes.set(family, (crashes.get(family) ?? 0) + 1);
      const fatal = kind === 'fuzzer-error' || !last || ['setup', 'teardown', 'iteration'].includes(last.family);
      if (fatal || report.restarts >= MAX_RESTARTS || Date.now() >= until) break;
      // A family that crashed twice is skipped for the rest of the run, so the time goes to the others.
      if ((crashes.get(family) ?? 0) >= 2) skip.add(family);
      from = iteration + 1;
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  report.skipped = [...skip];
  return report;
}

function runChild(args: string[], trace: string): Promise<{ code: number | null; signal: NodeJS.Signals | null; stalled: boolean; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      process.stderr.write(chunk);
      // What the process said besides the fuzzer's own reports: the last words of a crash.
      const own = /^(FINDING |  case: |  repro: )/;
      const text = chunk.toString().split('\n').filter((line) => !own.test(line)).join('\n');
      stderr = (stderr + text).slice(-4000);
    });
    let lastStep = -1;
    let lastMove = Date.now();
    let stalled = false;
    const watch = setInterval(() => {
      const step = readTrace(trace)?.step ?? -1;
      if (step !== lastStep) {
        lastStep = step;
        lastMove = Date.now();
      } else if (Date.now() - lastMove > STALL_MS) {
        stalled = true;
        child.kill('SIGKILL');
      }
    }, 1000);
    child.on('close', (code, signal) => {
      clearInterval(watch);
      resolve({ code, signal, stalled, stderr });
    });
  });
}

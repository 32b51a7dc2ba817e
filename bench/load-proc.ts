/**
 * CPU accounting from /proc (Linux; NaN elsewhere): the harness runs in its own process,
 * which process.cpuUsage() cannot see, and the machine is shared, so each measurement also
 * reports how many cores other processes used meanwhile.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';

const CLOCK_TICKS = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' })) || 100;
  } catch {
    return 100;
  }
})();

interface ProcStat { ppid: number; comm: string; cpuS: number }

export function procStat(pid: number): ProcStat | undefined {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const f = s.slice(close + 2).split(' ');
    return { ppid: Number(f[1]), comm: s.slice(s.indexOf('(') + 1, close), cpuS: (Number(f[11]) + Number(f[12])) / CLOCK_TICKS };
  } catch {
    return undefined;
  }
}

/** Children of this process running `comm`. */
export function childPids(comm: string): Set<number> {
  const out = new Set<number>();
  let entries: string[] = [];
  try {
    entries = fs.readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return out;
  }
  for (const e of entries) {
    const st = procStat(Number(e));
    if (st && st.ppid === process.pid && st.comm === comm) out.add(Number(e));
  }
  return out;
}

/** Busy CPU seconds of the whole machine (all cores, everything but idle and iowait). */
function machineBusyS(): number {
  try {
    const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return (total - f[3] - f[4]) / CLOCK_TICKS;
  } catch {
    return NaN;
  }
}

/** CPU seconds of this process and its kiln-harness children. */
function ownS(): number {
  let s = procStat(process.pid)?.cpuS ?? NaN;
  for (const pid of childPids('kiln-harness')) s += procStat(pid)?.cpuS ?? 0;
  return s;
}

/** Cores used by other processes between start() and the returned function's call. */
export function otherLoad(): () => number {
  const busy0 = machineBusyS();
  const own0 = ownS();
  const t0 = performance.now();
  return () => {
    const seconds = (performance.now() - t0) / 1000;
    return Math.max(0, machineBusyS() - busy0 - (ownS() - own0)) / seconds;
  };
}

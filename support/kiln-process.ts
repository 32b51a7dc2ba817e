/**
 * `kiln serve` as a child process for tests and benchmarks (node dist/lib/cli/kiln.js serve ...), with an
 * environment of the test's choosing: the variables `kiln serve` reads (PORT, GRPC_PORT,
 * MODEL_NAME, KILN_CACHE_CONFIG) are removed from the inherited environment and set only
 * when the test gives them. Its pino log lines are parsed as they come, so a test can wait
 * for a phase of the shutdown.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as path from 'node:path';
export { freePort } from './ports';

export const KILN_CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

/** The environment variables that `kiln serve` reads as stand-ins for its flags. */
const SERVE_ENV = ['PORT', 'GRPC_PORT', 'MODEL_NAME', 'KILN_CACHE_CONFIG'];

export interface LogLine {
  msg: string;
  level: number;
  [key: string]: unknown;
}

export interface KilnProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** http://127.0.0.1:PORT, from the line it prints once listening. */
  readonly url: string;
  readonly port: number;
  /** 127.0.0.1:PORT of gRPC, when served. */
  readonly grpc?: string;
  stdout(): string;
  stderr(): string;
  /** The JSON log lines so far. */
  logs(): LogLine[];
  /** Resolves with the first log line (already written or to come) whose msg is `msg` (or that `msg` accepts). */
  logged(msg: string | ((line: LogLine) => boolean), timeoutMs?: number): Promise<LogLine>;
  /** The exit code (null when ended by a signal). */
  readonly exit: Promise<number | null>;
  /** SIGKILL unless it has exited; resolves once it has. */
  kill(): Promise<void>;
}

function environment(env: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const out = { ...process.env };
  for (const name of SERVE_ENV) delete out[name];
  return { ...out, ...env };
}

/** Runs `kiln serve ARGS` to its end (for command lines that are refused): exit code and stderr. */
export function runKiln(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [KILN_CLI, 'serve', ...args], { env: environment(env) });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

/** Starts `kiln serve ARGS` and waits (at most 30 s) for the line that says where it listens. */
export async function startKiln(args: readonly string[], env: Readonly<Record<string, string>> = {}): Promise<KilnProcess> {
  const child = spawn(process.execPath, [KILN_CLI, 'serve', ...args], { env: environment(env) });
  let out = '';
  let err = '';
  const lines: LogLine[] = [];
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  let partial = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    const text = d.toString();
    err += text;
    const parts = (partial + text).split('\n');
    partial = parts.pop() as string;
    for (const part of parts) {
      let line: LogLine;
      try {
        line = JSON.parse(part) as LogLine;
      } catch {
        continue; // not a log line (a crash's stack, say): kept in stderr()
      }
      lines.push(line);
      for (const w of waiters.filter((x) => x.match(line))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  let exited = false;
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    exited = true;
    resolve(code);
  }));
  const listening = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kiln serve printed no listening line in 30 s: ${out} ${err}`));
    }, 30_000);
    child.stdout.on('data', () => {
      const m = /over HTTP at (http:\/\/127\.0\.0\.1:(\d+))(?: and gRPC at (127\.0\.0\.1:\d+))? /.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    void exit.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kiln serve exited ${code} before listening: ${out} ${err}`));
    });
  });
  return {
    child,
    url: listening[1],
    port: Number(listening[2]),
    grpc: listening[3],
    stdout: () => out,
    stderr: () => err,
    logs: () => [...lines],
    logged(msg, timeoutMs = 30_000) {
      const match = typeof msg === 'string' ? (l: LogLine) => l.msg === msg : msg;
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise<LogLine>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`kiln serve logged no ${typeof msg === 'string' ? `"${msg}"` : 'such line'} in ${timeoutMs} ms: ${err}`)), timeoutMs);
        waiters.push({ match, resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        } });
      });
    },
    exit,
    async kill() {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
  };
}

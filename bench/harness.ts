/**
 * The native floor from Node's side: builds (once) and drives native/bench/harness.cc in its
 * --serve mode, so benchmarks can interleave its rounds with in-process contenders.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import { bundledLibrary } from '../lib/runtime';

const root = path.resolve(__dirname, '..', '..');

/** Path of the harness executable, building it with CMake when it is missing. */
export function harnessPath(): string {
  const dir = path.join(root, process.env.KILN_CMAKE_BUILD_DIR || 'build-cmake');
  const exe = path.join(dir, 'kiln-harness');
  if (!fs.existsSync(exe)) {
    for (const args of [['-S', root, '-B', dir], ['--build', dir, '--target', 'kiln-harness', '-j', '2']]) {
      const r = spawnSync('cmake', args, { stdio: 'inherit' });
      if (r.status !== 0) throw new Error(`cmake ${args.join(' ')} failed`);
    }
  }
  return exe;
}

export interface HarnessOptions {
  model: string;
  batch?: number;
  intra?: number;
  warmup?: number;
  dims?: Record<string, number>;
}

interface Reply { samples_us?: number[]; inferences_per_s?: number; error?: string }

export class Harness {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.#lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  }

  static async start(o: HarnessOptions): Promise<Harness> {
    const args = ['--model', o.model, '--batch', String(o.batch ?? 1), '--intra', String(o.intra ?? 1), '--warmup', String(o.warmup ?? 200), '--serve'];
    for (const [k, v] of Object.entries(o.dims ?? {})) args.push('--dim', `${k}=${v}`);
    const library = process.env.KILN_ORT_LIBRARY || bundledLibrary();
    const child = spawn(harnessPath(), args, { env: { ...process.env, KILN_ORT_LIBRARY: library } });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const h = new Harness(child);
    const first = await h.#next();
    if (!first) throw new Error(`kiln-harness did not start: ${stderr}`);
    return h;
  }

  async #next(): Promise<Reply | undefined> {
    const r = await this.#lines.next();
    return r.done ? undefined : (JSON.parse(r.value) as Reply);
  }

  async #ask(command: string): Promise<Reply> {
    this.#child.stdin.write(command + '\n');
    const reply = await this.#next();
    if (!reply || reply.error) throw new Error(`kiln-harness: ${reply?.error ?? 'exited'}`);
    return reply;
  }

  /** Per-call latencies in microseconds of `calls` back-to-back runs. */
  async latencies(calls: number): Promise<number[]> {
    return (await this.#ask(`run ${calls}`)).samples_us ?? [];
  }

  /** Inferences per second over `calls` back-to-back runs. */
  async throughput(calls: number): Promise<number> {
    return (await this.#ask(`throughput ${calls}`)).inferences_per_s ?? 0;
  }

  close(): void {
    this.#child.stdin.end();
  }
}

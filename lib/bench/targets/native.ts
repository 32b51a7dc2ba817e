/**
 * The native floor as a `kiln bench` target: the model run through Kiln's core by the C++
 * harness (native/bench/harness.cc) in a process of its own, with no Node in it. Its loads are
 * generated in C++ (closed loop threads, open loop through the core's executor), so it is a
 * Driver itself; this file starts it in `--serve` mode and asks it for one window at a time.
 *
 * The harness comes from `harness`, else $KILN_HARNESS, else it is built with CMake from the
 * sources the package carries (CMakeLists.txt, native/core, native/bench): in a source
 * checkout into build-cmake/ (where the native tests build), in an installed package into a
 * cache folder, once per version.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import { KilnError, isErrorCode } from '../../errors';
import { bundledLibrary } from '../../runtime';
import type { Driver, Load, WindowLimit, WindowResult } from '../types';

export interface NativeDriverOptions {
  model: string;
  provider?: 'cpu' | 'cuda' | 'tensorrt';
  /** Whole input shapes by name; other inputs take 1 for each dynamic dim. */
  shapes?: Record<string, number[]>;
  /** The session's own intra-op pool; absent: the global pool, as a Kiln session by default. */
  intraOpThreads?: number;
  /** Path of a built kiln-harness. */
  harness?: string;
}

const root = path.resolve(__dirname, '..', '..', '..', '..');
const PROVIDERS = ['cpu', 'cuda', 'tensorrt'];
/** How much of the harness's stderr is kept for error messages. */
const STDERR_KEPT = 8192;

/** Where the harness is built: $KILN_CMAKE_BUILD_DIR, build-cmake/ in a checkout, else a cache folder. */
export function harnessBuildDir(): string {
  if (process.env.KILN_CMAKE_BUILD_DIR) return path.resolve(root, process.env.KILN_CMAKE_BUILD_DIR);
  // native/test is not packed: its presence means a source checkout.
  if (fs.existsSync(path.join(root, 'native', 'test'))) return path.join(root, 'build-cmake');
  const version = (JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
  const cache = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(cache, 'kiln', `harness-${version}-${process.platform}-${process.arch}`);
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: root, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const output = `${stdout}${stderr}`;
      if (!err) return resolve(output);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        return reject(new KilnError('E_UNAVAILABLE', `${cmd} not found: building kiln-harness needs CMake 3.18 or newer and a C++17 compiler ` +
          '(Debian/Ubuntu: apt-get install cmake g++), or set KILN_HARNESS to a built kiln-harness'));
      }
      const tail = output.trim().split('\n').slice(-15).join('\n');
      if (/No CMAKE_CXX_COMPILER could be found|CMAKE_CXX_COMPILER.*not (set|found)|is not able to compile/.test(output)) {
        return reject(new KilnError('E_UNAVAILABLE', 'building kiln-harness needs a C++17 compiler: install g++ or clang++ ' +
          `(Debian/Ubuntu: apt-get install g++), or set KILN_HARNESS to a built kiln-harness\n${tail}`));
      }
      reject(new KilnError('E_UNAVAILABLE', `${cmd} ${args.join(' ')} failed:\n${tail}`));
    });
  });
}

/**
 * Builds kiln-harness with CMake into `dir` (configuring it the first time; later calls only
 * bring it up to date) and returns its path.
 */
export async function buildHarness(dir = harnessBuildDir()): Promise<string> {
  if (!fs.existsSync(path.join(dir, 'CMakeCache.txt'))) {
    process.stderr.write(`kiln: building the native harness in ${dir} (once; takes a few minutes)\n`);
    try {
      await run('cmake', ['-S', root, '-B', dir, '-DCMAKE_BUILD_TYPE=Release']);
    } catch (e) {
      fs.rmSync(path.join(dir, 'CMakeCache.txt'), { force: true });  // configure again next time
      throw e;
    }
  }
  await run('cmake', ['--build', dir, '--target', 'kiln-harness', '-j', String(Math.max(1, os.availableParallelism()))]);
  return path.join(dir, 'kiln-harness');
}

/** The harness to run: `explicit`, else $KILN_HARNESS, else the one buildHarness() makes. */
export async function resolveHarness(explicit?: string): Promise<string> {
  const given = explicit ?? process.env.KILN_HARNESS;
  if (!given) return buildHarness();
  if (!fs.existsSync(given)) throw new KilnError('E_NOT_FOUND', `kiln-harness not found at ${given}${explicit ? '' : ' (from KILN_HARNESS)'}`);
  return given;
}

interface Reply { ready?: boolean; providers?: string[]; error?: string; code?: string }

/** A kiln-harness in --serve mode: one command line in, one JSON line out, one command at a time. */
export class HarnessProcess {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  readonly #exited: Promise<number | null>;
  #stderr = '';
  #turn: Promise<unknown> = Promise.resolve();
  /** ONNX Runtime's names of the providers the harness's session runs on. */
  providers: string[] = [];

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.#child = child;
    this.#lines = readline.createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    child.stderr.on('data', (d: Buffer) => { this.#stderr = (this.#stderr + d.toString()).slice(-STDERR_KEPT); });
    // A harness that died makes writes fail (EPIPE); the next reply reports its exit instead.
    child.stdin.on('error', () => undefined);
    this.#exited = new Promise((resolve) => child.once('close', (code) => resolve(code)));
  }

  /** Starts `exe` with `args` (--serve added) and waits until its model is loaded. */
  static async start(exe: string, args: string[]): Promise<HarnessProcess> {
    const env = { ...process.env };
    env.KILN_ORT_LIBRARY ||= bundledLibrary();
    const child = spawn(exe, [...args, '--serve'], { env });
    const spawned = new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', (e: NodeJS.ErrnoException) => reject(new KilnError(e.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_UNAVAILABLE', `cannot run ${exe}: ${e.message}`)));
    });
    const h = new HarnessProcess(child);
    try {
      await spawned;
      h.providers = (await h.#reply()).providers ?? [];
    } catch (e) {
      child.kill();
      throw e;
    }
    return h;
  }

  get pid(): number | undefined {
    return this.#child.pid;
  }

  /** The next reply; a KilnError with the harness's code for an error reply or an exit. */
  async #reply(): Promise<Reply & Record<string, unknown>> {
    const r = await this.#lines.next();
    if (r.done) {
      const code = await this.#exited;
      const why = this.#stderr.trim().split('\n').slice(-5).join('\n');
      const m = /^kiln-harness: (E_[A-Z_]+): (.*)$/m.exec(why);
      if (m && isErrorCode(m[1])) throw new KilnError(m[1], m[2]);
      throw new KilnError('E_UNAVAILABLE', `kiln-harness exited (status ${code})${why ? `: ${why}` : ''}`);
    }
    const reply = JSON.parse(r.value) as Reply & Record<string, unknown>;
    if (reply.error !== undefined) throw new KilnError(isErrorCode(reply.code) ? reply.code : 'E_ORT', reply.error);
    return reply;
  }

  /** Sends one command and returns its reply, after any command sent earlier. */
  ask<T>(command: string): Promise<T> {
    const answer = this.#turn.then(() => {
      if (this.#child.exitCode !== null || this.#child.stdin.destroyed) throw new KilnError('E_DISPOSED', 'kiln-harness has exited');
      this.#child.stdin.write(command + '\n');
      return this.#reply() as Promise<T>;
    });
    this.#turn = answer.catch(() => undefined);
    return answer;
  }

  /** Ends the harness (stdin closed; killed if it has not exited within 5 s). */
  async close(): Promise<void> {
    this.#child.stdin.end();
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000);
    await this.#exited;
    clearTimeout(timer);
  }
}

function invalid(what: string): KilnError {
  return new KilnError('E_INVALID_ARGUMENT', `native target: ${what}`);
}

/** The serve-mode words of one window: "concurrency=4 ms=200", "rate=500 arrival=poisson requests=100". */
function windowCommand(load: Load, limit: WindowLimit): string {
  let words: string;
  if (load.kind === 'concurrency') {
    if (!Number.isInteger(load.concurrency) || load.concurrency < 1) throw invalid(`concurrency must be a whole number ≥ 1, received ${load.concurrency}`);
    words = `concurrency=${load.concurrency}`;
  } else {
    if (!(load.rate > 0) || !Number.isFinite(load.rate)) throw invalid(`rate must be a positive number of requests per second, received ${load.rate}`);
    words = `rate=${load.rate} arrival=${load.arrival}`;
  }
  if ('ms' in limit) {
    if (!(limit.ms > 0) || !Number.isFinite(limit.ms)) throw invalid(`a window's ms must be positive, received ${limit.ms}`);
    return `window ${words} ms=${limit.ms}`;
  }
  if (!Number.isInteger(limit.requests) || limit.requests < 1) throw invalid(`a window's requests must be a whole number ≥ 1, received ${limit.requests}`);
  return `window ${words} requests=${limit.requests}`;
}

function harnessArgs(o: NativeDriverOptions, provider: string): string[] {
  const args = ['--model', o.model, '--provider', provider, '--warmup', '0'];
  if (o.intraOpThreads !== undefined) {
    if (!Number.isInteger(o.intraOpThreads) || o.intraOpThreads < 0 || o.intraOpThreads > 1024) {
      throw invalid(`intraOpThreads must be a whole number from 0 to 1024, received ${o.intraOpThreads}`);
    }
    args.push('--intra', String(o.intraOpThreads));
  }
  for (const [name, dims] of Object.entries(o.shapes ?? {})) {
    if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d) && d >= 0)) {
      throw invalid(`the shape of input "${name}" must be whole numbers ≥ 0, received ${JSON.stringify(dims)}`);
    }
    args.push('--shape', `${name}:${dims.join(',')}`);
  }
  return args;
}

/** The native harness as a Driver: windows measured in C++ against Kiln's core. */
export async function createNativeDriver(o: NativeDriverOptions): Promise<Driver> {
  if (typeof o.model !== 'string' || o.model === '') throw invalid('a model file path is required');
  const provider = o.provider ?? 'cpu';
  if (!PROVIDERS.includes(provider)) throw invalid(`provider must be one of ${PROVIDERS.join(', ')}, received ${JSON.stringify(provider)}`);
  const args = harnessArgs(o, provider);
  const proc = await HarnessProcess.start(await resolveHarness(o.harness), args);
  const ran = proc.providers[0] ?? provider;
  return {
    name: 'native',
    description: `${o.model} on ${ran}, Kiln's core in a C++ process (kiln-harness, no Node)`,
    async warmup(requests: number): Promise<void> {
      if (!Number.isInteger(requests) || requests < 0) throw invalid(`warm-up requests must be a whole number ≥ 0, received ${requests}`);
      if (requests > 0) await proc.ask(`warmup ${requests}`);
    },
    async window(load: Load, limit: WindowLimit): Promise<WindowResult> {
      return proc.ask<WindowResult>(windowCommand(load, limit));
    },
    close: () => proc.close(),
  };
}

// The moving parts of test/teardown-stress.test.ts, in one file that plays two roles:
//
// - inside a worker_thread (workerData set): loads a session and a dynamically batched model
//   from bytes, keeps runs in flight on both, checks every result it gets, reports progress,
//   and ends the way the job says (see `End`), usually with runs still in flight and without
//   disposing anything, so that the environment's cleanup hook has native state to free;
// - run as a script (a child process): does the same on its main thread and in several such
//   workers, then leaves with everything in flight, by process.exit() or by the main thread
//   running out of work while unref()'d workers still run. The test expects exit code 0 and
//   no crash output.
import * as path from 'path';
import { isMainThread, parentPort, Worker, workerData } from 'worker_threads';
import { loadModel, Session, Tensor, type Model } from '../../lib';
import { addModel, mlpModel, prng } from '../fixtures/models';

/**
 * How a worker ends:
 * - natural: runs `runs` requests per lane, then fires a last burst it never awaits and
 *   returns, leaving the session and the model undisposed; the worker ends when the event
 *   loop empties and the environment cleanup hook frees the native sessions;
 * - exit: process.exit(0) `at` ms after the worker started (while loading or running);
 * - throw: an uncaught exception `at` ms after the start (the worker's 'error' event, code 1);
 * - dispose-exit: `at` ms after the start, dispose() on the session and the model without
 *   waiting, then process.exit(0) on the next turn (disposal and runs both in flight);
 * - forever: keeps runs in flight until the thread is terminated or the process exits (the
 *   parent terminates it, or the child process exits under it).
 */
export type End = 'natural' | 'exit' | 'throw' | 'dispose-exit' | 'forever';

export interface TeardownJob {
  id: number;
  model: Uint8Array; // the add model's bytes: y = a + b on ['N', 4]
  end: End;
  at: number; // ms after the start, for exit, throw and dispose-exit
  lanes: number; // concurrent callers per target (session and model)
  runs: number; // per lane before a natural end
  seed: number;
}

/** One message from a worker: its counters so far; `final` on the last one of a natural end. */
export interface Progress {
  id: number;
  loaded: boolean;
  verified: number; // results checked and correct
  wrong: number; // results with a wrong value
  disposed: number; // runs rejected with E_DISPOSED (dispose-exit only)
  failures: string[]; // any other rejection or error
  final: boolean;
}

export const DELIBERATE = 'teardown-stress: deliberate uncaught exception';

const ADD_B = [0.25, 0.5, 0.75, 1];

/** Feeds of `rows` rows whose a-values encode (id, seq); y must be a + ADD_B per column. */
function addFeeds(id: number, seq: number, rows: number): { a: Tensor; b: Tensor; base: number } {
  const base = id * 50_000 + (seq % 40_000); // < 2^22: a + 0.25 is exact in float32
  const a = new Float32Array(rows * 4);
  const b = new Float32Array(rows * 4);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < 4; c++) {
      a[r * 4 + c] = base + r;
      b[r * 4 + c] = ADD_B[c];
    }
  }
  return { a: new Tensor('float32', a, [rows, 4]), b: new Tensor('float32', b, [rows, 4]), base };
}

function addIsRight(y: Float32Array, base: number, rows: number): boolean {
  if (y.length !== rows * 4) return false;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < 4; c++) if (y[r * 4 + c] !== base + r + ADD_B[c]) return false;
  }
  return true;
}

/** The model config the workers use: two instances, batches of up to 16 rows. */
export const BATCHING = { maxBatchSize: 16, dynamicBatching: { maxQueueDelayMicroseconds: 300 }, instanceGroup: [{ count: 2 }] };

async function workerMain(job: TeardownJob): Promise<void> {
  const signed = prng(job.seed);
  const rand = (): number => (signed() + 1) / 2; // [0, 1)
  const p: Progress = { id: job.id, loaded: false, verified: 0, wrong: 0, disposed: 0, failures: [], final: false };
  const report = (): void => parentPort?.postMessage({ ...p, failures: [...p.failures] });
  let session: Session | undefined;
  let model: Model | undefined;

  const timed = (): void => {
    if (job.end === 'exit') {
      report();
      process.exit(0);
    } else if (job.end === 'throw') {
      report();
      throw new Error(DELIBERATE);
    } else if (job.end === 'dispose-exit') {
      report();
      void model?.dispose().catch((e: Error) => p.failures.push(`model.dispose: ${e.message}`));
      void session?.dispose().catch((e: Error) => p.failures.push(`session.dispose: ${e.message}`));
      setImmediate(() => process.exit(0));
    }
  };
  // Armed before loading: a small `at` ends the worker while its loads are in flight.
  if (job.end === 'exit' || job.end === 'throw' || job.end === 'dispose-exit') setTimeout(timed, job.at);

  [session, model] = await Promise.all([Session.create(job.model), loadModel(job.model, BATCHING)]);
  p.loaded = true;
  report();

  let seq = 0;
  const fail = (e: unknown): void => {
    const code = (e as { code?: string }).code;
    if (code === 'E_DISPOSED' && job.end === 'dispose-exit') p.disposed++;
    else p.failures.push(`${code ?? ''} ${(e as Error).message}`);
  };
  const one = async (viaModel: boolean): Promise<void> => {
    const rows = viaModel ? 1 + Math.floor(rand() * 3) : 1 + (seq % 2);
    const { a, b, base } = addFeeds(job.id, seq++, rows);
    const out = viaModel ? await model!.infer({ a, b }) : await session!.run({ a, b });
    if (addIsRight(out.y.data as Float32Array, base, rows)) p.verified++;
    else p.wrong++;
    if ((p.verified + p.wrong) % 64 === 0) report();
  };
  const lane = async (viaModel: boolean): Promise<void> => {
    for (let i = 0; job.end !== 'natural' || i < job.runs; i++) {
      try {
        await one(viaModel);
      } catch (e) {
        fail(e);
        return;
      }
    }
  };
  const lanes: Promise<void>[] = [];
  for (let i = 0; i < job.lanes; i++) lanes.push(lane(false), lane(true));
  if (job.end !== 'natural') return; // runs until exit/throw/terminate; the lanes keep it alive

  await Promise.all(lanes);
  // The last burst: never awaited by anything that outlives it, nothing disposed. The final
  // report goes out when the burst's last result was checked; the worker then ends on its own.
  const burst = 2 * job.lanes;
  let settled = 0;
  const settle = (): void => {
    if (++settled === burst) {
      p.final = true;
      report();
    }
  };
  for (let i = 0; i < burst; i++) {
    one(i % 2 === 1).then(settle, (e) => {
      fail(e);
      settle();
    });
  }
}

/** The child process: runs in flight on the main thread and in workers, then leaves. */
async function childMain(mode: 'exit' | 'natural-unref', delayMs: number, seed: number): Promise<void> {
  const add = addModel();
  const workers: Worker[] = [];
  const spawn = (id: number, end: End): void => {
    const job: TeardownJob = { id, model: add, end, at: 0, lanes: 4, runs: 0, seed: seed + id };
    const w = new Worker(__filename, { workerData: job });
    w.on('error', (e: Error) => {
      process.stderr.write(`worker ${id} failed: ${e.message}\n`);
      process.exitCode = 3;
    });
    w.on('message', (m: Progress) => {
      if (m.wrong > 0 || m.failures.length > 0) {
        process.stderr.write(`worker ${id}: ${JSON.stringify(m)}\n`);
        process.exitCode = 4;
      }
    });
    if (mode === 'natural-unref') w.unref();
    workers.push(w);
  };
  for (let id = 0; id < 4; id++) spawn(id, 'forever');
  if (mode === 'exit') setTimeout(() => process.exit(0), delayMs);

  const [mlp, batched] = await Promise.all([Session.create(mlpModel()), loadModel(add, BATCHING)]);
  // One more worker that is still loading when the process leaves.
  spawn(99, 'forever');
  const x = new Tensor('float32', new Float32Array(8 * 512).fill(0.01), [8, 512]);
  const pending: Promise<unknown>[] = [];
  for (let i = 0; i < 12; i++) pending.push(mlp.run({ x }));
  for (let i = 0; i < 24; i++) {
    const { a, b, base } = addFeeds(7, i, 1 + (i % 3));
    pending.push(batched.infer({ a, b }).then((out) => {
      if (!addIsRight(out.y.data as Float32Array, base, 1 + (i % 3))) process.exitCode = 5;
    }));
  }
  if (mode === 'natural-unref') {
    // The main thread's runs finish and its event loop empties while the unref()'d workers
    // still have runs in flight: the process exits under them. The sessions stay undisposed.
    await Promise.all(pending);
    await new Promise((r) => setTimeout(r, delayMs));
  }
}

if (!isMainThread && workerData) {
  workerMain(workerData as TeardownJob).catch((e: Error) => {
    parentPort?.postMessage({ id: (workerData as TeardownJob).id, loaded: false, verified: 0, wrong: 0, disposed: 0, failures: [`worker: ${e.stack ?? e.message}`], final: false });
  });
} else if (isMainThread && require.main === module) {
  const [mode, delay, seed] = process.argv.slice(2);
  childMain(mode === 'natural-unref' ? 'natural-unref' : 'exit', Number(delay ?? 20), Number(seed ?? 1)).catch((e: Error) => {
    process.stderr.write(`child failed: ${e.stack ?? e.message}\n`);
    process.exit(2);
  });
}

export const ENTRY = path.join(__dirname, 'teardown-worker.js');

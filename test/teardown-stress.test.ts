// Teardown under stress: waves of worker_threads that each load a session and a batched
// model from bytes, keep runs in flight on both, and end every way a worker can end —
// naturally with undisposed sessions and a last burst of runs, process.exit() while loading
// or running, an uncaught exception, dispose() racing process.exit(), and terminate() from
// the main thread at random points (before the worker's first line, during its loads, during
// its runs). The main thread keeps its own runs going meanwhile and checks that every result
// anyone received was right, that the process stays healthy afterwards, and that the
// environment cleanup hooks really freed each worker's native state: the process's thread
// count (executor and loader threads are per environment) and memory return to where they
// were. A child process then exits with runs in flight on its main thread and in workers.
//
// test/workers.test.ts covers the basic cases (one end per test, the add model only); this
// one mixes them concurrently with random timing. Set KILN_STRESS_SEED to replay a run.
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import { Worker } from 'worker_threads';
import { loadModel, Session, Tensor } from '../lib';
import { addModel, prng } from './fixtures/models';
import { BATCHING, DELIBERATE, ENTRY, type End, type Progress, type TeardownJob } from './helpers/teardown-worker';

type Ending = End | 'terminate-early' | 'terminate-loaded';

interface Outcome {
  job: TeardownJob;
  ending: Ending;
  exitCode: number;
  error?: Error;
  messages: Progress[];
}

const SEED = Number(process.env.KILN_STRESS_SEED ?? Date.now() % 1_000_000);
const WAVES = 4;
const VERBOSE = !!process.env.KILN_STRESS_VERBOSE;
// Each wave holds every ending once; with 2 cores, 8 workers at a time is plenty of overlap.
const ENDINGS: Ending[] = ['natural', 'natural', 'exit', 'throw', 'dispose-exit', 'terminate-early', 'terminate-loaded', 'exit'];

function threads(): number | undefined {
  try {
    const m = /^Threads:\s+(\d+)/m.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // not Linux
  }
}

function launch(job: TeardownJob, ending: Ending, terminateAfterMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const w = new Worker(ENTRY, { workerData: job });
    const out: Outcome = { job, ending, exitCode: -1, messages: [] };
    const terminate = (): void => void w.terminate();
    if (ending === 'terminate-early') setTimeout(terminate, terminateAfterMs);
    w.on('message', (m: Progress) => {
      out.messages.push(m);
      if (ending === 'terminate-loaded' && m.loaded && out.messages.filter((x) => x.loaded).length === 1) {
        setTimeout(terminate, terminateAfterMs);
      }
    });
    w.on('error', (e: Error) => (out.error = e));
    w.on('exit', (code) => {
      out.exitCode = code;
      resolve(out);
    });
  });
}

function check(o: Outcome): void {
  const what = `worker ${o.job.id} (${o.ending}, at ${o.job.at} ms, seed ${SEED})`;
  for (const m of o.messages) {
    assert.deepEqual(m.failures, [], `${what}: ${m.failures.join('; ')}`);
    assert.equal(m.wrong, 0, `${what}: ${m.wrong} wrong results`);
  }
  switch (o.ending) {
    case 'natural': {
      assert.equal(o.error, undefined, `${what}: ${o.error?.stack}`);
      assert.equal(o.exitCode, 0, what);
      const last = o.messages[o.messages.length - 1];
      assert.ok(last?.final, `${what}: no final report`);
      // Every lane's runs plus the last burst, each checked.
      assert.equal(last.verified, 2 * o.job.lanes * o.job.runs + 2 * o.job.lanes, what);
      break;
    }
    case 'exit':
    case 'dispose-exit':
      assert.equal(o.error, undefined, `${what}: ${o.error?.stack}`);
      assert.equal(o.exitCode, 0, what);
      break;
    case 'throw':
      assert.equal(o.error?.message, DELIBERATE, `${what}: ${o.error?.stack}`);
      assert.equal(o.exitCode, 1, what);
      break;
    case 'terminate-early':
      // Terminated before its first line ran, a worker reports code 0; later, 1.
      assert.equal(o.error, undefined, `${what}: ${o.error?.stack}`);
      assert.ok(o.exitCode === 0 || o.exitCode === 1, `${what}: exit code ${o.exitCode}`);
      break;
    default: // terminate-loaded
      assert.equal(o.error, undefined, `${what}: ${o.error?.stack}`);
      assert.equal(o.exitCode, 1, what);
  }
}

function addFeeds(v: number): { a: Tensor; b: Tensor } {
  return {
    a: new Tensor('float32', new Float32Array(4).fill(v), [1, 4]),
    b: new Tensor('float32', new Float32Array(4).fill(0.5), [1, 4]),
  };
}

describe('teardown under stress', function () {
  this.timeout(60_000);
  const model = addModel();

  it(`waves of workers ending every way, with runs in flight, leave the process healthy (seed ${SEED})`, async () => {
    const signed = prng(SEED);
    const rand = (): number => (signed() + 1) / 2; // [0, 1)
    const main = await Session.create(model);
    const batched = await loadModel(model, BATCHING);
    // The main thread's own traffic while workers come and go.
    let mainRuns = 0;
    let mainWrong = 0;
    let stop = false;
    const mainLane = async (viaModel: boolean): Promise<void> => {
      for (let i = 0; !stop; i++) {
        const out = viaModel ? await batched.infer(addFeeds(i)) : await main.run(addFeeds(i));
        if ((out.y.data as Float32Array)[3] !== i + 0.5) mainWrong++;
        mainRuns++;
        await new Promise((r) => setImmediate(r));
      }
    };
    const traffic = Promise.all([mainLane(false), mainLane(true)]);

    let baseline: { threads?: number; rss: number } | undefined;
    let id = 0;
    let verified = 0;
    try {
      for (let wave = 0; wave < WAVES; wave++) {
        const order = [...ENDINGS];
        for (let i = order.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [order[i], order[j]] = [order[j], order[i]];
        }
        const outcomes = await Promise.all(order.map((ending) => {
          const job: TeardownJob = {
            id: id++,
            model,
            end: ending === 'terminate-early' || ending === 'terminate-loaded' ? 'forever' : ending,
            at: Math.floor(rand() * 80), // often while loading, often while running
            lanes: 2 + Math.floor(rand() * 4),
            runs: 20 + Math.floor(rand() * 40),
            seed: SEED + id,
          };
          return launch(job, ending, Math.floor(rand() * (ending === 'terminate-early' ? 40 : 30)));
        }));
        for (const o of outcomes) {
          if (VERBOSE) {
            const last = o.messages[o.messages.length - 1];
            console.log(`  wave ${wave} worker ${o.job.id} ${o.ending} at ${o.job.at}: code ${o.exitCode}, loaded ${!!last?.loaded}, verified ${last?.verified ?? 0}${o.error ? `, error ${o.error.message}` : ''}`);
          }
          check(o);
          verified += o.messages.length ? o.messages[o.messages.length - 1].verified : 0;
        }
        if (wave === 0) {
          // After the first wave everything lazily created once per process exists (ORT's
          // global pools, V8's worker platform threads): later waves must come back to this.
          await new Promise((r) => setTimeout(r, 50));
          baseline = { threads: threads(), rss: process.memoryUsage().rss };
        }
        if (VERBOSE) console.log(`  after wave ${wave}: threads ${threads()}, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB, main runs ${mainRuns}`);
      }
    } finally {
      // Also on failure: the main thread's lanes would otherwise keep mocha's process alive.
      stop = true;
      await traffic;
    }
    assert.equal(mainWrong, 0);
    assert.ok(mainRuns > 0);
    assert.ok(verified > 0, 'no worker result was checked');

    // Each worker had a loader (2 threads), a session (1) and a two-instance model (2): a
    // cleanup hook that failed to stop them would leave ~5 threads per worker behind.
    await new Promise((r) => setTimeout(r, 50));
    const now = threads();
    if (baseline?.threads !== undefined && now !== undefined) {
      assert.ok(now <= baseline.threads + 4, `threads: ${baseline.threads} after the first wave, ${now} after ${WAVES} (seed ${SEED})`);
    }
    // ~15 MiB over three waves on a 2-core VM; ASan's quarantine (node-asan in scripts/memcheck.sh)
    // holds up to 256 MiB of freed memory on top.
    const grown = (process.memoryUsage().rss - baseline!.rss) / 2 ** 20;
    const limit = /asan/.test(process.env.LD_PRELOAD ?? '') ? 512 : 128;
    assert.ok(grown < limit, `rss grew by ${grown.toFixed(0)} MiB over ${WAVES - 1} waves (seed ${SEED})`);

    // The main thread's session and model still work, and dispose cleanly.
    const out = await main.run(addFeeds(41));
    assert.deepEqual(Array.from(out.y.data as Float32Array), [41.5, 41.5, 41.5, 41.5]);
    const outs = await Promise.all([1, 2, 3].map((v) => batched.infer(addFeeds(v))));
    assert.deepEqual(outs.map((o) => (o.y.data as Float32Array)[0]), [1.5, 2.5, 3.5]);
    await batched.dispose();
    await main.dispose();
  });

  it('child processes that exit with runs in flight on the main thread and in workers exit 0 with no crash output', async () => {
    // exit at 0 ms: the main thread's loads and every worker's are in flight; at 60 ms: runs
    // everywhere; natural-unref: the main thread runs out of work while unref()'d workers
    // still run, so the process tears them down.
    const cases: [string, number][] = [['exit', 0], ['exit', 60], ['natural-unref', 30]];
    const results = await Promise.all(cases.map(([mode, delay]) => new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string; stdout: string }>((resolve) => {
      const child = spawn(process.execPath, [ENTRY, mode, String(delay), String(SEED)], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      let stdout = '';
      child.stderr.on('data', (d) => (stderr += d));
      child.stdout.on('data', (d) => (stdout += d));
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stderr, stdout });
      });
    })));
    results.forEach((r, i) => {
      const what = `${cases[i].join(' ')} (seed ${SEED})`;
      assert.equal(r.signal, null, `${what}: killed by ${r.signal}\n${r.stderr}`);
      assert.equal(r.code, 0, `${what}: exit code ${r.code}\n${r.stderr}`);
      assert.doesNotMatch(r.stderr, /Segmentation|Aborted|core dumped|FATAL|Sanitizer|terminate called|Assertion|failed|Error/i, `${what}\n${r.stderr}`);
    });
  });
});

// `kiln bench --native`: the C++ harness as a Driver (closed and open loop windows measured
// in its own process), its failures as KilnErrors, its standalone sweep with --json in the
// StepResult shape and percentiles by the same nearest rank as lib/latency.ts, and the
// back-to-back rounds bench/ uses.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Harness } from '../bench/harness';
import { buildHarness, createNativeDriver, resolveHarness } from '../lib/bench/targets/native';
import type { Driver, StepResult, TargetReport, WindowResult } from '../lib/bench/types';
import { KilnError } from '../lib/errors';
import { quantile } from '../lib/latency';
import { bundledLibrary } from '../lib/runtime';
import { mlpModel } from '../lib/samples';

const WINDOW_KEYS = ['durationUs', 'latenciesUs', 'errors', 'errorMessages', 'cpuUs', 'peakRssBytes'];
const STEP_KEYS = ['load', 'stable', 'windows', 'throughput', 'latency', 'spread', 'errors', 'cpuUsPerRequest', 'peakRssBytes'];

function checkWindow(w: WindowResult, openLoop: boolean): void {
  assert.deepEqual(Object.keys(w).sort(), [...WINDOW_KEYS, ...(openLoop ? ['lateSends', 'maxSendLagUs'] : [])].sort());
  assert.ok(w.durationUs > 0);
  assert.ok(w.latenciesUs.every((l) => l > 0 && l <= w.durationUs), 'every latency is positive and within the window');
  assert.ok(w.cpuUs! >= 0 && w.peakRssBytes! > 0);
}

async function rejectsWith(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof KilnError, `a KilnError, received ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, message);
    return true;
  });
}

describe('kiln bench: the native harness', function () {
  this.timeout(600_000);  // the first run may build the harness with CMake
  let dir: string;
  let model: string;
  let exe: string;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-native-'));
    model = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(model, mlpModel());
    exe = await resolveHarness();
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('as a Driver', () => {
    let driver: Driver;
    before(async () => {
      driver = await createNativeDriver({ model, harness: exe, intraOpThreads: 1 });
    });
    after(() => driver.close());

    it('is named native and says what it runs', () => {
      assert.equal(driver.name, 'native');
      assert.match(driver.description, new RegExp(`^${model.replace(/[.]/g, '\\.')} on CPUExecutionProvider, Kiln's core in a C\\+\\+ process`));
    });

    it('a closed-loop window of K requests answers exactly K latencies, no errors', async () => {
      await driver.warmup(5);
      const w = await driver.window({ kind: 'concurrency', concurrency: 3 }, { requests: 41 });
      checkWindow(w, false);
      assert.equal(w.latenciesUs.length, 41);
      assert.equal(w.errors, 0);
      assert.deepEqual(w.errorMessages, []);
    });

    it('a constant-rate window sends its whole schedule: 200 ms at 500/s is 100 requests', async () => {
      const w = await driver.window({ kind: 'rate', rate: 500, arrival: 'constant' }, { ms: 200 });
      checkWindow(w, true);
      assert.equal(w.latenciesUs.length + w.errors, 100);
      assert.equal(w.errors, 0);
      assert.ok(Number.isInteger(w.lateSends) && w.lateSends! >= 0 && w.lateSends! <= 100);
      assert.ok(w.durationUs >= 200_000, 'a timed open-loop window spans its schedule');
    });

    it('a Poisson window by count sends that many requests', async () => {
      const w = await driver.window({ kind: 'rate', rate: 2000, arrival: 'poisson' }, { requests: 25 });
      checkWindow(w, true);
      assert.equal(w.latenciesUs.length, 25);
    });

    it('refuses bad loads and limits with E_INVALID_ARGUMENT, and keeps working', async () => {
      await rejectsWith(driver.window({ kind: 'concurrency', concurrency: 0 }, { requests: 5 }), 'E_INVALID_ARGUMENT', /concurrency must be a whole number ≥ 1, received 0/);
      await rejectsWith(driver.window({ kind: 'rate', rate: -5, arrival: 'constant' }, { ms: 10 }), 'E_INVALID_ARGUMENT', /rate must be a positive number/);
      await rejectsWith(driver.window({ kind: 'concurrency', concurrency: 1 }, { requests: 1.5 }), 'E_INVALID_ARGUMENT', /requests must be a whole number/);
      assert.equal((await driver.window({ kind: 'concurrency', concurrency: 1 }, { requests: 3 })).latenciesUs.length, 3);
    });
  });

  it('a missing model is E_NOT_FOUND naming the file, as the core reports it', async () => {
    const missing = path.join(dir, 'missing.onnx');
    await rejectsWith(createNativeDriver({ model: missing, harness: exe }), 'E_NOT_FOUND', new RegExp(`model file not found: ${missing}`));
  });

  it('a file that is not a model is E_MODEL_LOAD; a missing harness is E_NOT_FOUND', async () => {
    const bad = path.join(dir, 'bad.onnx');
    fs.writeFileSync(bad, 'not a model');
    await rejectsWith(createNativeDriver({ model: bad, harness: exe }), 'E_MODEL_LOAD', /cannot load model .*bad\.onnx/);
    await rejectsWith(createNativeDriver({ model, harness: path.join(dir, 'no-harness') }), 'E_NOT_FOUND', /kiln-harness not found at/);
    await rejectsWith(createNativeDriver({ model, harness: exe, provider: 'tpu' as 'cpu' }), 'E_INVALID_ARGUMENT', /provider must be one of cpu, cuda, tensorrt/);
  });

  it('building without CMake or without a compiler is E_UNAVAILABLE saying what to install', async () => {
    const saved = { PATH: process.env.PATH, CXX: process.env.CXX };
    try {
      process.env.PATH = path.join(dir, 'empty-bin');
      await rejectsWith(buildHarness(path.join(dir, 'build-a')), 'E_UNAVAILABLE', /cmake not found: building kiln-harness needs CMake 3\.18 or newer and a C\+\+17 compiler \(Debian\/Ubuntu: apt-get install cmake g\+\+\)/);
      process.env.PATH = saved.PATH;
      process.env.CXX = '/bin/false';
      await rejectsWith(buildHarness(path.join(dir, 'build-b')), 'E_UNAVAILABLE', /building kiln-harness needs a C\+\+17 compiler: install g\+\+ or clang\+\+/);
    } finally {
      process.env.PATH = saved.PATH;
      if (saved.CXX === undefined) delete process.env.CXX;
      else process.env.CXX = saved.CXX;
    }
  });

  it('a wrong --shape fails every request of a window as counted errors, not the window', async () => {
    const driver = await createNativeDriver({ model, harness: exe, shapes: { x: [2, 3] } });
    try {
      const w = await driver.window({ kind: 'concurrency', concurrency: 2 }, { requests: 4 });
      assert.equal(w.latenciesUs.length, 0);
      assert.equal(w.errors, 4);
      assert.equal(w.errorMessages.length, 1);
      assert.match(w.errorMessages[0], /^E_[A-Z_]+: /);
    } finally {
      await driver.close();
    }
  });

  it('standalone: a concurrency sweep writes steps in the StepResult shape, percentiles by nearest rank', () => {
    const out = path.join(dir, 'steps.json');
    const r = spawnSync(exe, ['--model', model, '--intra', '1', '--warmup', '5', '--concurrency-range', '1:2:x2', '--measurement-request-count', '40',
      '--max-trials', '4', '--stability-percentage', '50', '--percentile', '75', '--json', out],
    { encoding: 'utf8', timeout: 60_000, env: { ...process.env, KILN_ORT_LIBRARY: process.env.KILN_ORT_LIBRARY || bundledLibrary() } });
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^load +req\/s +p50 +p90 +p95 +p99 +max +cpu\/req +errors +windows +stable$/);
    assert.match(lines[1], /^concurrency 1 .* (yes|no)$/);
    assert.match(lines[2], /^concurrency 2 .* (yes|no)$/);

    const report = JSON.parse(fs.readFileSync(out, 'utf8')) as TargetReport;
    assert.equal(report.name, 'native');
    assert.match(report.description, /mlp\.onnx on CPUExecutionProvider/);
    assert.deepEqual(report.steps.map((s) => s.load), [{ kind: 'concurrency', concurrency: 1 }, { kind: 'concurrency', concurrency: 2 }]);
    for (const step of report.steps) {
      assert.deepEqual(Object.keys(step), STEP_KEYS);
      assert.ok(step.windows.length >= 1 && step.windows.length <= 4);
      if (!step.stable) assert.equal(step.windows.length, 4, 'an unstable step used all its trials');
      for (const w of step.windows) {
        checkWindow(w, false);
        assert.equal(w.latenciesUs.length, 40);
      }
      checkSummary(step, 3, 75);
    }
  });

  it('bench/harness.ts still runs back-to-back rounds', async () => {
    const h = await Harness.start({ model, warmup: 2 });
    try {
      const samples = await h.latencies(7);
      assert.equal(samples.length, 7);
      assert.ok(samples.every((s) => s > 0));
      assert.ok((await h.throughput(5)) > 0);
      assert.ok(h.pid! > 0);
    } finally {
      h.close();
    }
  });
});

/** The step's summary recomputed from its accepted windows (the last `accepted`). */
function checkSummary(step: StepResult, accepted: number, percentile: number): void {
  const windows = step.windows.slice(-accepted);
  const all = windows.flatMap((w) => w.latenciesUs).sort((a, b) => a - b);
  const l = step.latency;
  assert.equal(l.count, all.length);
  assert.equal(l.p50, quantile(all, 0.5));
  assert.equal(l.p90, quantile(all, 0.9));
  assert.equal(l.p95, quantile(all, 0.95));
  assert.equal(l.p99, quantile(all, 0.99));
  assert.equal(l.max, all[all.length - 1]);
  assert.ok(Math.abs(l.mean - all.reduce((a, b) => a + b, 0) / all.length) < 1e-9 * l.mean);
  assert.deepEqual(l.chosen, { percentile, value: quantile(all, percentile / 100) });
  const duration = windows.reduce((a, w) => a + w.durationUs, 0);
  assert.ok(Math.abs(step.throughput - (all.length * 1e6) / duration) < 1e-9 * step.throughput);
  const rates = windows.map((w) => (w.latenciesUs.length * 1e6) / w.durationUs);
  assert.ok(Math.abs(step.spread.throughput[0] - Math.min(...rates)) < 1e-9 * step.spread.throughput[0]);
  assert.ok(Math.abs(step.spread.throughput[1] - Math.max(...rates)) < 1e-9 * step.spread.throughput[1]);
  const p50s = windows.map((w) => quantile([...w.latenciesUs].sort((a, b) => a - b), 0.5));
  assert.deepEqual(step.spread.p50, [Math.min(...p50s), Math.max(...p50s)]);
  assert.equal(step.errors, 0);
  assert.ok(step.cpuUsPerRequest! > 0 && step.peakRssBytes! > 0);
}

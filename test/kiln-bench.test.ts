// `kiln bench` end to end in this process on the mlp sample: the command line (Kiln, its
// batcher and onnxruntime-node side by side, a concurrency sweep, --check, JSON/CSV/HTML
// written and consistent), a batcher config file, and the API (an open-loop rate step, real
// data through the batcher, the latency-bound search). Short windows: these check the
// reports' shape and consistency, never timings.
import { strict as assert } from 'assert';
import { execFile, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { runBench, type BenchOptions } from '../lib/bench/bench';
import { CSV_COLUMNS } from '../lib/bench/report/csv';
import type { BenchReport, StepResult } from '../lib/bench/types';
import { writeNpy } from '../lib/optimize';
import { mlpModel } from '../lib/samples';
import { startServer } from '../lib/server/serve';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

function kiln(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, 'bench', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** RFC 4180 rows (quoted fields may hold commas, doubled quotes and line breaks). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      (row = []), (field = ''), i++;
    } else field += c;
  }
  assert.equal(field + row.join(''), '', 'the CSV ends with a line break');
  return rows;
}

const SHORT = ['-p', '200', '--max-trials', '3', '--warmup-request-count', '5'];

/** What every measured step must satisfy, whatever the machine's speed (`inProcess`: the target's process is this one). */
function wellFormed(step: StepResult, windows: number, inProcess = true): void {
  assert.equal(step.windows.length, windows, 'at most --max-trials windows; 3 needed for stability');
  assert.ok(step.throughput > 0);
  assert.equal(step.errors, 0, JSON.stringify(step.windows.flatMap((w) => w.errorMessages)));
  const l = step.latency;
  assert.ok(l.count > 0 && l.p50 > 0 && l.p50 <= l.p90 && l.p90 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max);
  assert.ok(step.spread.throughput[0] <= step.throughput && step.throughput <= step.spread.throughput[1]);
  if (inProcess) {
    assert.ok(step.cpuUsPerRequest !== undefined && step.cpuUsPerRequest > 0);
    assert.ok(step.peakRssBytes !== undefined && step.peakRssBytes > 0);
  } else {
    assert.equal(step.cpuUsPerRequest, undefined, 'the client\'s CPU time is not the server\'s');
    assert.equal(step.peakRssBytes, undefined);
  }
}

describe('kiln bench', function () {
  this.timeout(180_000);
  let dir: string;
  let mlp: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-'));
    mlp = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(mlp, mlpModel());
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('the batcher, a plain session and onnxruntime-node over a concurrency sweep: table, --check, JSON, CSV and HTML agree', () => {
    const json = path.join(dir, 'r.json');
    const csv = path.join(dir, 'r.csv');
    const html = path.join(dir, 'r.html');
    const r = kiln('mlp', '--batcher', '--compare', 'kiln', 'onnxruntime-node', '--concurrency', '1:2', ...SHORT, '--check', '--json', json, '--csv', csv, '--report', html);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '', 'no progress bar when stderr is not a terminal');
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
    assert.equal(report.tool, 'kiln bench');
    assert.equal(report.version, 1);
    assert.match(report.command, /^kiln bench mlp --batcher --compare kiln onnxruntime-node --concurrency 1:2 /);
    assert.deepEqual(report.settings, { windowMs: 200, warmupRequests: 5, stabilityWindows: 3, stabilityPercentage: 10, maxWindows: 3, percentile: 0 });
    assert.deepEqual(report.model, { path: 'sample "mlp"', inputs: [{ name: 'x', type: 'float32', shape: ['N', 512] }] });
    assert.deepEqual(report.targets.map((t) => t.name), ['kiln-batcher', 'kiln', 'onnxruntime-node']);
    for (const t of report.targets) {
      assert.deepEqual(t.steps.map((s) => s.load), [{ kind: 'concurrency', concurrency: 1 }, { kind: 'concurrency', concurrency: 2 }]);
      for (const s of t.steps) wellFormed(s, 3);
      assert.deepEqual(t.check, { compared: 4, mismatches: 0, maxAbsError: 0 }, `${t.name}: 4 input sets, one output each, equal to onnxruntime-node's`);
      assert.ok(r.stdout.includes(`\n${t.name}: ${t.description}\n`));
    }
    // The batcher's own counters: batches of at most the concurrency, and every request's server-side time.
    for (const s of report.targets[0].steps) {
      const c = (s.load as { concurrency: number }).concurrency;
      assert.ok(Object.keys(s.batchSizes ?? {}).length > 0 && Object.keys(s.batchSizes ?? {}).every((b) => Number(b) >= 1 && Number(b) <= c));
      assert.ok(s.breakdown !== undefined && s.breakdown.computeInferUs > 0);
    }
    assert.equal(report.targets[1].steps[0].batchSizes, undefined, 'a plain session has no batcher counters');
    // Comparisons: each other target against the base at both loads, from the steps' own numbers.
    assert.equal(report.comparisons.length, 4);
    for (const c of report.comparisons) {
      const step = (name: string): StepResult => report.targets.find((t) => t.name === name)?.steps.find((s) => JSON.stringify(s.load) === JSON.stringify(c.load)) as StepResult;
      assert.equal(c.base, 'kiln-batcher');
      assert.equal(c.p50Ratio, step(c.other).latency.p50 / step(c.base).latency.p50);
      assert.equal(c.p99Ratio, step(c.other).latency.p99 / step(c.base).latency.p99);
      assert.equal(c.throughputRatio, step(c.other).throughput / step(c.base).throughput);
    }
    assert.match(r.stdout, /\nkiln ÷ kiln-batcher \(latency above 1x, throughput below 1x: kiln-batcher did better\)\n/);
    assert.match(r.stdout, /\nonnxruntime-node ÷ kiln-batcher /);
    // The CSV: a row per target and step, the JSON's numbers exactly.
    const rows = parseCsv(fs.readFileSync(csv, 'utf8'));
    assert.deepEqual(rows[0], [...CSV_COLUMNS]);
    assert.equal(rows.length, 1 + 6);
    const col = (name: string): number => rows[0].indexOf(name);
    report.targets.flatMap((t) => t.steps.map((s) => ({ t, s }))).forEach(({ t, s }, i) => {
      const row = rows[i + 1];
      assert.equal(row.length, CSV_COLUMNS.length);
      assert.equal(row[col('target')], t.name);
      assert.equal(row[col('description')], t.description);
      assert.equal(Number(row[col('concurrency')]), (s.load as { concurrency: number }).concurrency);
      assert.equal(Number(row[col('throughput')]), s.throughput);
      assert.equal(Number(row[col('latency_p99_us')]), s.latency.p99);
      assert.equal(Number(row[col('requests')]), s.latency.count);
      assert.equal(row[col('stable')], String(s.stable));
      assert.equal(row[col('windows')], '3');
    });
    assert.match(fs.readFileSync(html, 'utf8'), /^<!doctype html>/i, 'the HTML report was written');
  });

  it('--native beside Kiln, open loop (Poisson): the harness measured the same way, in its own process, into the same reports', () => {
    const json = path.join(dir, 'n.json');
    const csv = path.join(dir, 'n.csv');
    const html = path.join(dir, 'n.html');
    const r = kiln(mlp, '--native', '--request-rate', '200', '--request-distribution', 'poisson', ...SHORT, '--json', json, '--csv', csv, '--report', html);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
    assert.deepEqual(report.targets.map((t) => t.name), ['kiln', 'native']);
    assert.match(report.targets[1].description, /kiln-harness, no Node/);
    for (const t of report.targets) {
      assert.equal(t.steps.length, 1);
      assert.deepEqual(t.steps[0].load, { kind: 'rate', rate: 200, arrival: 'poisson' });
      wellFormed(t.steps[0], 3);
    }
    assert.deepEqual(report.comparisons.map((c) => [c.base, c.other]), [['kiln', 'native']]);
    assert.equal(parseCsv(fs.readFileSync(csv, 'utf8')).length, 1 + 2);
    assert.match(fs.readFileSync(html, 'utf8'), /^<!doctype html>/i);
  });

  it('a Triton config file sets up the batcher', () => {
    const config = path.join(dir, 'config.pbtxt');
    fs.writeFileSync(config, 'max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n');
    const json = path.join(dir, 'config.json');
    const r = kiln(mlp, '--config', config, '--concurrency', '8', ...SHORT, '--json', json);
    assert.equal(r.status, 0, r.stderr);
    const [target] = (JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport).targets;
    assert.equal(target.name, 'kiln-batcher');
    assert.equal(target.description, `${mlp}: Kiln model.infer (max batch 4, queue delay 2000 µs, 1 instance), CPUExecutionProvider`);
    const sizes = Object.keys(target.steps[0].batchSizes ?? {}).map(Number);
    assert.ok(sizes.length > 0 && sizes.every((b) => b >= 1 && b <= 4), `batch sizes ${sizes}`);
  });

  it('through the API: an open-loop Poisson step in count windows, with .npy data of two rows through the batcher', async () => {
    const data = path.join(dir, 'x.npy');
    writeNpy(data, { type: 'float32', data: Float32Array.from({ length: 1024 }, (_, i) => (i % 7) / 7), dims: [2, 512] });
    const options: BenchOptions = {
      model: { path: mlp }, targets: ['kiln-batcher', 'kiln'], loads: [{ kind: 'rate', rate: 200, arrival: 'poisson' }],
      settings: { limit: { requests: 30 }, warmupRequests: 2, stabilityWindows: 3, stabilityPercentage: 10, maxWindows: 3, percentile: 95 },
      shapes: {}, batchSize: 1, inputData: data, seed: 3, check: true, command: 'test',
    };
    const report = await runBench(options);
    for (const t of report.targets) {
      const [step] = t.steps;
      wellFormed(step, 3);
      for (const w of step.windows) {
        assert.equal(w.latenciesUs.length + w.errors, 30, 'each window sends its 30 requests');
        assert.equal(typeof w.lateSends, 'number');
        assert.ok((w.maxSendLagUs as number) >= 0);
      }
      assert.equal(step.latency.chosen, undefined, 'p95 is among the reported percentiles');
      assert.equal(t.check?.mismatches, 0);
    }
    const batcher = report.targets[0].steps[0];
    assert.ok(Object.keys(batcher.batchSizes ?? {}).every((b) => Number(b) % 2 === 0), 'every request brings two rows');
    assert.equal(batcher.windows.slice(-3).reduce((a, w) => a + (w.server?.inferenceCount ?? 0), 0), 2 * 90);
    assert.deepEqual(report.comparisons.map((c) => [c.base, c.other, c.load]), [['kiln-batcher', 'kiln', { kind: 'rate', rate: 200, arrival: 'poisson' }]]);
  });

  it('--latency-bound-ms picks the highest-throughput step within the bound, or none', async () => {
    const base: BenchOptions = {
      model: { path: mlp }, targets: ['kiln'], loads: [1, 2, 4].map((c) => ({ kind: 'concurrency' as const, concurrency: c })),
      settings: { limit: { requests: 40 }, warmupRequests: 2, stabilityWindows: 3, stabilityPercentage: 10, maxWindows: 3, percentile: 0 },
      shapes: {}, batchSize: 1, seed: 1, check: false, command: 'test',
    };
    const generous = (await runBench({ ...base, latencyBoundMs: 60_000 })).targets[0];
    assert.equal(generous.steps.length, 3);
    const top = generous.steps.reduce((best, s, i) => (s.throughput > generous.steps[best].throughput ? i : best), 0);
    assert.deepEqual(generous.best, { stepIndex: top, boundMs: 60_000 });
    const impossible = (await runBench({ ...base, latencyBoundMs: 0.001 })).targets[0];
    assert.equal(impossible.best, undefined);
    assert.equal(impossible.steps.length, 1, 'the sweep stops at the first step over the bound');
  });

  it('without onnxruntime-node installed, comparing with it says how to install it, before measuring', () => {
    // Resolving 'onnxruntime-node' fails as it does where the package is absent (Kiln finds its library by other names).
    const hide = path.join(dir, 'hide-ort.js');
    fs.writeFileSync(hide, `const Module = require('module');
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if (request === 'onnxruntime-node') throw Object.assign(new Error("Cannot find module 'onnxruntime-node'"), { code: 'MODULE_NOT_FOUND' });
  return resolve.call(this, request, ...rest);
};
`);
    const r = spawnSync(process.execPath, ['--require', hide, CLI, 'bench', 'mlp', '--compare', 'onnxruntime-node', ...SHORT], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'kiln: E_NOT_FOUND: onnxruntime-node is not installed (npm install onnxruntime-node)\n');
    assert.equal(r.stdout, '');
  });

  it('a kiln serve over HTTP (binary tensors) and gRPC beside Kiln in-process: the server\'s counters, --check', async () => {
    // The server lives in this process: the command runs asynchronously so that it can answer.
    const server = await startServer({ model: mlp, httpPort: 0, grpcPort: 0, logLevel: 'silent' });
    const bench = (...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> => new Promise((resolve) => {
      execFile(process.execPath, [CLI, 'bench', ...args], { encoding: 'utf8', timeout: 120_000 }, (e, stdout, stderr) => resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr }));
    });
    try {
      const runs: [string, string[]][] = [
        ['http', ['-u', server.url, '--concurrency', '2']],
        ['grpc', ['-i', 'grpc', '-u', server.grpc as string, '--request-rate', '100']],
      ];
      for (const [protocol, args] of runs) {
        const json = path.join(dir, `served-${protocol}.json`);
        const r = await bench(mlp, ...args, '-m', 'mlp', '--compare', 'kiln', ...SHORT, '--check', '--json', json);
        assert.equal(r.code, 0, r.stderr);
        const report = JSON.parse(fs.readFileSync(json, 'utf8')) as BenchReport;
        assert.deepEqual(report.targets.map((t) => t.name), [protocol, 'kiln']);
        assert.deepEqual(report.model?.inputs.map((i) => i.name), ['x']);
        for (const t of report.targets) {
          wellFormed(t.steps[0], 3, t.name === 'kiln');
          assert.deepEqual(t.check, { compared: 4, mismatches: 0, maxAbsError: 0 }, `${t.name} answers as onnxruntime-node does`);
        }
        const served = report.targets[0].steps[0];
        assert.ok(served.breakdown !== undefined && served.breakdown.computeInferUs > 0, 'the server\'s statistics give the breakdown');
        assert.equal(report.comparisons.length, 1);
      }
    } finally {
      await server.close();
    }
  });

  it('refuses bad command lines before any work, with one Kiln code', () => {
    const refused = (args: string[], code: string, message: string): void => {
      const r = kiln(...args);
      assert.equal(r.status, 1, r.stdout);
      assert.equal(r.stderr, `kiln: ${code}: ${message}\n`);
      assert.equal(r.stdout, '');
    };
    refused(['mlp', '--concurrency', '0'], 'E_INVALID_ARGUMENT', '--concurrency takes a value or START:END[:STEP] (STEP may be xFACTOR), with integers >= 1; the start is not one of the integers >= 1, received 0');
    refused(['mlp', '--concurrency', '1:8:x1'], 'E_INVALID_ARGUMENT', '--concurrency takes a value or START:END[:STEP] (STEP may be xFACTOR), with integers >= 1; a multiplicative step must be x followed by a factor > 1, received 1:8:x1');
    refused(['mlp', '--compare', 'tensorflow'], 'E_INVALID_ARGUMENT', '--compare takes onnxruntime-node, native, kiln, kiln-batcher, received tensorflow');
    refused(['mlp', '--concurrency', '2', '--request-rate', '10'], 'E_INVALID_ARGUMENT', 'give a concurrency or a request rate, not both');
    refused(['mlp', '--concurrency', '2', '--concurrency-range', '1:4'], 'E_INVALID_ARGUMENT', 'give --concurrency or --concurrency-range, not both');
    refused(['mlp', '--percentile', '100'], 'E_INVALID_ARGUMENT', '--percentile must be an integer from 1 to 99, received 100');
    refused(['mlp', '--shape', 'x'], 'E_INVALID_ARGUMENT', '--shape takes NAME:d1,d2,... (an input\'s name and its dims, integers >= 0), received x');
    refused(['mlp', '--request-distribution', 'bursty'], 'E_INVALID_ARGUMENT', '--request-distribution must be constant or poisson, received bursty');
    refused(['-u', '127.0.0.1:8000'], 'E_INVALID_ARGUMENT', '-u/--url needs the served model\'s name (-m/--model-name)');
    refused([], 'E_INVALID_ARGUMENT', 'kiln runs a model file: give one (kiln bench MODEL)');
    refused([path.join(dir, 'none.onnx')], 'E_NOT_FOUND', `no such model file: ${path.join(dir, 'none.onnx')} (nor a sample: mlp, add, conv, big-output)`);
    refused(['mlp', '--json', path.join(dir, 'nowhere', 'r.json')], 'E_NOT_FOUND', `output ${path.join(dir, 'nowhere', 'r.json')}: the folder ${path.join(dir, 'nowhere')} does not exist`);
    refused(['mlp', '--max-batch-size', '8', '--compare', 'kiln', '-u', '127.0.0.1:8000', '-m', 'mlp'], 'E_INVALID_ARGUMENT',
      '--batcher, --config, --max-batch-size and --max-queue-delay-us set up the kiln-batcher target: add --compare kiln-batcher');
    refused(['mlp', '--shape', 'y:1,512', ...SHORT], 'E_INVALID_ARGUMENT', '--shape names "y", not one of the model\'s inputs (x)');
  });
});

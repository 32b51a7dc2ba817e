// kiln bench's HTML report, rendered by Debian's headless Chromium through puppeteer-core: the
// page fetches nothing but itself, logs no errors, its charts carry the report's numbers and
// drew them (the pixel under a data point has the dataset's colour), strings are escaped,
// and a screenshot is a real PNG. The histogram bins are checked on known samples.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { latencyHistogram, renderHtmlReport, writeHtmlReport } from '../lib/bench/report/html';
import type { BenchReport, StepResult, TargetReport } from '../lib/bench/types';
import { prng } from '../lib/samples';

const CHROMIUM = '/usr/bin/chromium';

// The page's globals as the functions given to page.evaluate use them (the project's
// TypeScript has no DOM library).
interface PageChart {
  config: { type: string };
  chartArea: { bottom: number };
  data: { labels?: string[]; datasets: { label: string; data: unknown[]; backgroundColor: string }[] };
  getDatasetMeta(i: number): { data: { x: number; y: number }[] };
}
interface PageCanvas {
  id: string;
  width: number;
  height: number;
  clientWidth: number;
  dataset: Record<string, string>;
  getContext(kind: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } };
}
declare const document: {
  title: string;
  querySelector(selector: string): { textContent: string } | null;
  querySelectorAll(selector: string): ArrayLike<PageCanvas>;
  getElementById(id: string): { textContent: string };
};
declare const Chart: { getChart(canvas: PageCanvas): PageChart | undefined };

const INJECTED = '/models/mlp</script><b>bold.onnx';

/** A step at concurrency `c` whose windows hold `n` seeded latencies around `baseUs`. */
function step(c: number, throughput: number, baseUs: number, seed: number, errors = 0): StepResult {
  const rand = prng(seed);
  const windows = [0, 1, 2].map(() => ({ durationUs: 500_000, latenciesUs: Array.from({ length: 100 }, () => baseUs * (0.8 + rand() * 0.6)), errors, errorMessages: errors ? ['input "x": expected </script><b>512</b>'] : [] }));
  return {
    load: { kind: 'concurrency', concurrency: c },
    stable: c !== 4,
    windows,
    throughput,
    latency: { count: 300, mean: baseUs * 1.1, p50: baseUs * 1.1, p90: baseUs * 1.3, p95: baseUs * 1.35, p99: baseUs * 1.39, max: baseUs * 1.4 },
    spread: { throughput: [throughput * 0.98, throughput * 1.02], p50: [baseUs * 1.05, baseUs * 1.15], p99: [baseUs * 1.3, baseUs * 1.45] },
    errors: errors * 3,
    breakdown: { queueUs: 12.5, computeInputUs: 3, computeInferUs: 80, computeOutputUs: 2 },
    batchSizes: { 1: 10, 2: 5 },
  };
}

function report(): BenchReport {
  const kiln: TargetReport = { name: 'kiln', description: `${INJECTED} in-process, cpu`, steps: [step(1, 1000, 900, 1), step(2, 1800, 1000, 2), step(4, 2500, 1500, 3)], best: { stepIndex: 1, boundMs: 2 } };
  // Listed out of load order: the throughput chart sorts by load.
  const http: TargetReport = { name: 'http', description: 'model "mlp" at http://127.0.0.1:8000 over HTTP (JSON tensors)', steps: [step(2, 700, 2600, 5), step(1, 400, 2400, 4), step(4, 900, 4200, 6, 2)] };
  return {
    tool: 'kiln bench',
    version: 1,
    command: `kiln bench ${INJECTED} --compare onnxruntime-node`,
    startedAt: '2026-01-02T03:04:05.000Z',
    machine: { cpus: 2, cpuModel: 'Test CPU <i>', memoryBytes: 8 * 2 ** 30, os: 'linux 6.1', node: 'v22.0.0', onnxRuntime: '1.22.0' },
    model: { path: INJECTED, inputs: [{ name: 'x', type: 'float32', shape: ['N', 512] }] },
    settings: { windowMs: 500, warmupRequests: 10, stabilityWindows: 3, stabilityPercentage: 10, maxWindows: 10, percentile: 99 },
    targets: [kiln, http],
    comparisons: [1, 2, 4].map((c, i) => ({ base: 'kiln', other: 'http', load: { kind: 'concurrency', concurrency: c }, p50Ratio: [2.67, 2.6, 2.8][i], p99Ratio: 2.5, throughputRatio: [0.4, 0.39, 0.36][i] })),
  };
}

describe('kiln bench: the HTML report', function () {
  this.timeout(60_000);
  let dir: string;
  let browser: Browser | undefined;
  before(async () => {
    if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install --no-install-recommends chromium), as .ci/run does`);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-html-'));
    browser = await puppeteer.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
  });
  after(async () => {
    await browser?.close();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('bins latencies geometrically, equally when one is 0, and all in one bin when equal', () => {
    const h = latencyHistogram([1.5, 3, 3, 6, 8], 3);
    assert.deepEqual(h.counts, [1, 2, 2]);
    // Edges of equal ratio from the least latency to the greatest: 1.5 × (8 / 1.5)^(i/3).
    [1.5, 2.6207, 4.5789, 8].forEach((edge, i) => assert.ok(Math.abs(h.edgesUs[i] - edge) < 1e-4, `edge ${i}: ${h.edgesUs[i]}`));
    assert.deepEqual(latencyHistogram([0, 1, 2, 3, 4], 4).counts, [1, 1, 1, 2]);
    assert.deepEqual(latencyHistogram([7, 7, 7]), { edgesUs: [7, 7], counts: [3] });
    assert.deepEqual(latencyHistogram([]), { edgesUs: [], counts: [] });
  });

  it('is one file that names no other resource, with its data inlined and escaped', () => {
    const html = renderHtmlReport(report());
    assert.doesNotMatch(html, /\s(src|href)\s*=/i);
    assert.equal(html.split(INJECTED).length, 1, 'the raw model path appears nowhere');
    assert.match(html, /<title>kiln bench: script&#62;&#60;b&#62;bold\.onnx<\/title>/);
    assert.match(html, /Chart\.js v4/);
    assert.doesNotMatch(html, /sourceMappingURL/);
  });

  it('renders in headless Chromium: charts drawn from the report, nothing fetched, no errors', async () => {
    const r = report();
    const file = path.join(dir, 'report.html');
    await writeHtmlReport(r, file);
    const url = `file://${file}`;
    const page: Page = await browser!.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    const requests: string[] = [];
    const problems: string[] = [];
    await page.setRequestInterception(true);
    page.on('request', (q) => {
      requests.push(q.url());
      void (q.url() === url ? q.continue() : q.abort());
    });
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warn') problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`page error: ${String(e)}`));
    await page.goto(url, { waitUntil: 'load' });
    await page.waitForSelector('html[data-charts-drawn="4"]', { timeout: 10_000 });
    // The page's own messages: no warnings either (the readbacks below earn Chromium's warnings).
    assert.deepEqual(problems.splice(0), []);

    const drawn = await page.evaluate(() => {
      const out: Record<string, { target?: string; labels?: string[]; datasets: { label: string; data: unknown[] }[]; inked: number; dataInk: boolean[] }> = {};
      const canvases = document.querySelectorAll('canvas[data-chart]');
      for (let i = 0; i < canvases.length; i++) {
        const canvas = canvases[i];
        const chart = Chart.getChart(canvas);
        if (!chart) continue;
        const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let inked = 0;
        for (let k = 3; k < pixels.length; k += 4) if (pixels[k] > 0) inked++;
        // The pixel under each dataset's first point, or in the middle of its tallest bar, has that dataset's colour.
        const ratio = canvas.width / canvas.clientWidth;
        const bars = chart.config.type === 'bar';
        const dataInk = chart.data.datasets.map((d, j) => {
          const points = chart.getDatasetMeta(j).data;
          const e = bars ? points.reduce((a, b) => (b.y < a.y ? b : a)) : points[0];
          const y = bars ? (e.y + chart.chartArea.bottom) / 2 : e.y;
          const p = canvas.getContext('2d').getImageData(Math.round(e.x * ratio), Math.round(y * ratio), 1, 1).data;
          const hex = `#${[p[0], p[1], p[2]].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
          return p[3] === 255 && hex === d.backgroundColor;
        });
        out[`${canvas.dataset.chart}${canvas.dataset.target ? `:${canvas.dataset.target}` : ''}`] = {
          target: canvas.dataset.target,
          labels: chart.data.labels,
          datasets: chart.data.datasets.map((d) => ({ label: d.label, data: d.data })),
          inked,
          dataInk,
        };
      }
      return out;
    });
    assert.deepEqual(Object.keys(drawn).sort(), ['histogram:http', 'histogram:kiln', 'latency', 'throughput']);

    const [kiln, http] = r.targets;
    const byLoad = (t: TargetReport): StepResult[] => [...t.steps].sort((a, b) => (a.load as { concurrency: number }).concurrency - (b.load as { concurrency: number }).concurrency);
    assert.deepEqual(drawn.throughput.datasets, [kiln, http].map((t) => ({ label: t.name, data: byLoad(t).map((s) => ({ x: (s.load as { concurrency: number }).concurrency, y: s.throughput })) })));
    assert.deepEqual(drawn.throughput.datasets[0].data.map((p) => (p as { y: number }).y), [1000, 1800, 2500]);
    assert.deepEqual(drawn.latency.datasets.map((d) => d.label), ['kiln p50', 'kiln p99', 'http p50', 'http p99']);
    assert.deepEqual(drawn.latency.datasets[3].data, byLoad(http).map((s) => ({ x: s.throughput, y: Math.round(s.latency.p99) / 1000 })));
    assert.deepEqual(drawn.latency.datasets[1].data, kiln.steps.map((s) => ({ x: s.throughput, y: Math.round(s.latency.p99) / 1000 })));
    // Each histogram counts every latency of its target's highest-throughput step (concurrency 4).
    for (const [key, t] of [['histogram:kiln', kiln], ['histogram:http', http]] as const) {
      const top = t.steps.find((s) => (s.load as { concurrency: number }).concurrency === 4)!;
      const counts = drawn[key].datasets[0].data as number[];
      assert.equal(counts.length, 40);
      assert.equal(counts.reduce((a, b) => a + b, 0), top.windows.reduce((n, w) => n + w.latenciesUs.length, 0));
      assert.equal(drawn[key].labels?.length, 40);
    }
    for (const [key, c] of Object.entries(drawn)) {
      assert.ok(c.inked > 1000, `${key}: ${c.inked} pixels drawn`);
      assert.deepEqual(c.dataInk, c.datasets.map(() => true), `${key}: the data points are drawn in their colours`);
    }

    assert.deepEqual(requests, [url]);
    assert.deepEqual(problems.filter((p) => !p.startsWith('console warn')), []);

    // Escaping: the strings are text, the data survives the round trip through the page.
    const page_ = await page.evaluate(() => ({
      title: document.title,
      bold: document.querySelectorAll('b').length,
      italic: document.querySelectorAll('i').length,
      codes: Array.from(document.querySelectorAll('dd code') as unknown as ArrayLike<{ textContent: string }>, (c) => c.textContent),
      errors: Array.from(document.querySelectorAll('li code') as unknown as ArrayLike<{ textContent: string }>, (c) => c.textContent),
      data: JSON.parse(document.getElementById('kiln-bench-report').textContent) as BenchReport,
    }));
    assert.equal(page_.title, 'kiln bench: script><b>bold.onnx');
    assert.equal(page_.bold, 0);
    assert.equal(page_.italic, 0);
    assert.deepEqual(page_.codes, [r.command, INJECTED]);
    assert.deepEqual(page_.errors, ['input "x": expected </script><b>512</b>']);
    assert.deepEqual(page_.data, r);

    const shot = path.join(dir, 'report.png');
    await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
    const png = fs.readFileSync(shot);
    assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    assert.equal(png.toString('latin1', 12, 16), 'IHDR');
    assert.equal(png.readUInt32BE(16), 1280);
    assert.ok(png.readUInt32BE(20) > 900, 'the full page is taller than the viewport');
    assert.ok(png.length > 50_000, `screenshot of ${png.length} bytes`);
    await page.close();
  });
});

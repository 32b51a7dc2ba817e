/**
 * The HTML report of `kiln bench --report PATH`: one self-contained file that opens in a
 * browser with no network. Chart.js (its UMD build) and the report's data are inlined, and a
 * Content-Security-Policy forbids every fetch. Charts: throughput against concurrency (or
 * offered request rate) per target, latency (p50 and p99) against throughput per target, and
 * the latency histogram of each target's highest-throughput step; tables: every target and
 * step, and the comparisons with their ratios.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ChartConfiguration } from 'chart.js';
import { toKilnError } from '../../errors';
import type { BenchReport, Load, StepResult, TargetReport } from '../types';
import { RESOURCE_NOTE } from './table';

/** One chart of the page: its canvas's id and `data-chart` kind, the target it draws (histograms), and its Chart.js configuration. */
export interface ReportChart {
  id: string;
  kind: 'throughput' | 'latency' | 'histogram';
  target?: string;
  title: string;
  config: ChartConfiguration;
}

/** Latencies counted into `bins` bins of equal ratio (latencies spread over orders of magnitude); equal widths when one is 0. */
export function latencyHistogram(latenciesUs: readonly number[], bins = 40): { edgesUs: number[]; counts: number[] } {
  if (latenciesUs.length === 0) return { edgesUs: [], counts: [] };
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of latenciesUs) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  if (hi === lo) return { edgesUs: [lo, hi], counts: [latenciesUs.length] };
  const geometric = lo > 0;
  const step = geometric ? Math.log(hi / lo) / bins : (hi - lo) / bins;
  const edgesUs = Array.from({ length: bins + 1 }, (_, i) => (i === bins ? hi : geometric ? lo * Math.exp(step * i) : lo + step * i));
  const counts = new Array<number>(bins).fill(0);
  for (const v of latenciesUs) {
    const i = Math.floor(geometric ? Math.log(v / lo) / step : (v - lo) / step);
    counts[Math.min(bins - 1, Math.max(0, i))]++;
  }
  return { edgesUs, counts };
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

const loadX = (load: Load): number => (load.kind === 'concurrency' ? load.concurrency : load.rate);
const loadText = (load: Load): string => (load.kind === 'concurrency' ? `concurrency ${load.concurrency}` : `${load.rate} req/s (${load.arrival})`);
const ms = (us: number): number => Math.round(us) / 1000;

/** Names that tell targets apart: the target's name, numbered where two share it. */
function targetLabels(targets: readonly TargetReport[]): string[] {
  const counts = new Map<string, number>();
  for (const t of targets) counts.set(t.name, (counts.get(t.name) ?? 0) + 1);
  const seen = new Map<string, number>();
  return targets.map((t) => {
    if (counts.get(t.name) === 1) return t.name;
    const n = (seen.get(t.name) ?? 0) + 1;
    seen.set(t.name, n);
    return `${t.name} #${n}`;
  });
}

/** The windows a step's figures come from: the last `stabilityWindows`, as the stability rule accepted them. */
const acceptedWindows = (step: StepResult, stabilityWindows: number): StepResult['windows'] => step.windows.slice(-Math.max(1, stabilityWindows));

const common = (xTitle: string, yTitle: string, xLog: boolean): ChartConfiguration['options'] => ({
  animation: false,
  responsive: true,
  maintainAspectRatio: false,
  scales: {
    x: { type: xLog ? 'logarithmic' : 'linear', title: { display: true, text: xTitle } },
    y: { type: 'linear', beginAtZero: true, title: { display: true, text: yTitle } },
  },
});

/** The charts of a report, in page order. */
export function reportCharts(report: BenchReport): ReportChart[] {
  const labels = targetLabels(report.targets);
  const color = (i: number): string => PALETTE[i % PALETTE.length];
  const kinds = new Set(report.targets.flatMap((t) => t.steps.map((s) => s.load.kind)));
  const xTitle = kinds.size > 1 ? 'concurrency, or offered request rate (req/s)' : kinds.has('rate') ? 'offered request rate (req/s)' : 'concurrency';
  const xs = report.targets.flatMap((t) => t.steps.map((s) => loadX(s.load)));
  const xLog = xs.length > 0 && Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) >= 8;
  const byLoad = (t: TargetReport): StepResult[] => [...t.steps].sort((a, b) => loadX(a.load) - loadX(b.load));
  const charts: ReportChart[] = [
    {
      id: 'chart-throughput',
      kind: 'throughput',
      title: `Throughput against ${kinds.has('rate') && kinds.size === 1 ? 'offered request rate' : 'concurrency'}`,
      config: {
        type: 'line',
        data: {
          datasets: report.targets.map((t, i) => ({
            label: labels[i],
            data: byLoad(t).map((s) => ({ x: loadX(s.load), y: s.throughput })),
            borderColor: color(i),
            backgroundColor: color(i),
          })),
        },
        options: common(xTitle, 'throughput (req/s)', xLog),
      },
    },
    {
      id: 'chart-latency',
      kind: 'latency',
      title: 'Latency against throughput (p50 solid, p99 dashed)',
      config: {
        type: 'line',
        data: {
          datasets: report.targets.flatMap((t, i) => (['p50', 'p99'] as const).map((p) => ({
            label: `${labels[i]} ${p}`,
            data: byLoad(t).map((s) => ({ x: s.throughput, y: ms(s.latency[p]) })),
            borderColor: color(i),
            backgroundColor: color(i),
            borderDash: p === 'p99' ? [6, 4] : [],
          }))),
        },
        options: common('throughput (req/s)', 'latency (ms)', false),
      },
    },
  ];
  report.targets.forEach((t, i) => {
    if (t.steps.length === 0) return;
    const top = t.steps.reduce((best, s) => (s.throughput > best.throughput ? s : best));
    const latencies = acceptedWindows(top, report.settings.stabilityWindows).flatMap((w) => w.latenciesUs);
    const h = latencyHistogram(latencies);
    charts.push({
      id: `chart-histogram-${i}`,
      kind: 'histogram',
      target: labels[i],
      title: `${labels[i]}: latency histogram at ${loadText(top.load)} (${top.throughput.toFixed(1)} req/s, ${latencies.length} requests)`,
      config: {
        type: 'bar',
        data: {
          labels: h.counts.map((_, k) => `${ms(h.edgesUs[k]).toFixed(3)}–${ms(h.edgesUs[k + 1]).toFixed(3)}`),
          datasets: [{ label: `${labels[i]} requests`, data: h.counts, backgroundColor: color(i), barPercentage: 1, categoryPercentage: 1 }],
        },
        options: {
          animation: false,
          responsive: true,
          maintainAspectRatio: false,
          scales: {
            x: { title: { display: true, text: 'latency (ms)' } },
            y: { beginAtZero: true, title: { display: true, text: 'requests' } },
          },
        },
      },
    });
  });
  return charts;
}

const esc = (s: unknown): string => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** JSON that can sit inside a <script> element: no `</script>`, no HTML-significant characters, no JS line separators. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

let chartSource: string | undefined;
/** Chart.js's UMD build, without its source map reference (the page fetches nothing). */
function chartJs(): string {
  if (chartSource === undefined) {
    const file = path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js');
    chartSource = fs.readFileSync(file, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/gm, '').replace(/<\/script/gi, '<\\/script');
  }
  return chartSource;
}

const fixed = (x: number | undefined, digits: number): string => (x === undefined || !Number.isFinite(x) ? '–' : x.toFixed(digits));
const msText = (us: number | undefined): string => (us === undefined ? '–' : (us / 1000).toFixed(us < 10_000 ? 3 : 1));

function stepRows(report: BenchReport, t: TargetReport, label: string): string {
  return t.steps.map((s, k) => {
    const best = t.best?.stepIndex === k ? ` <span class="best" title="highest throughput with p${report.settings.percentile || 99} within ${t.best.boundMs} ms">best</span>` : '';
    const b = s.breakdown;
    const sizes = s.batchSizes ? Object.entries(s.batchSizes).map(([size, n]) => `${size}×${n}`).join(' ') : '–';
    const cells = [
      esc(label), esc(loadText(s.load)) + best, fixed(s.throughput, 1),
      msText(s.latency.p50), msText(s.latency.p90), msText(s.latency.p95), msText(s.latency.p99), msText(s.latency.max),
      s.latency.chosen ? `p${esc(s.latency.chosen.percentile)} ${msText(s.latency.chosen.value)}` : '–',
      String(s.errors), s.stable ? 'yes' : 'no', String(s.windows.length), `${fixed(s.spread.throughput[0], 1)}–${fixed(s.spread.throughput[1], 1)}`,
      fixed(s.cpuUsPerRequest, 1), s.peakRssBytes === undefined ? '–' : (s.peakRssBytes / 2 ** 20).toFixed(1),
      b ? [b.queueUs, b.computeInputUs, b.computeInferUs, b.computeOutputUs].map((x) => x.toFixed(1)).join(' / ') : '–',
      esc(sizes),
    ];
    return `<tr${s.stable ? '' : ' class="unstable"'}>${cells.map((c, i) => (i < 2 ? `<td>${c}</td>` : `<td class="num">${c}</td>`)).join('')}</tr>`;
  }).join('\n');
}

function errorList(t: TargetReport, label: string): string {
  const items = t.steps.filter((s) => s.errors > 0).map((s) => {
    const messages = [...new Set(s.windows.flatMap((w) => w.errorMessages))];
    return `<li>${esc(label)}, ${esc(loadText(s.load))}: ${s.errors} failed${messages.length ? `: ${messages.map((m) => `<code>${esc(m)}</code>`).join('; ')}` : ''}</li>`;
  });
  return items.join('\n');
}

/** One self-contained HTML document for `report`. */
export function renderHtmlReport(report: BenchReport): string {
  const labels = targetLabels(report.targets);
  const charts = reportCharts(report);
  const m = report.machine;
  const model = report.model ? path.basename(report.model.path) : report.targets.map((t) => t.description).join(', ');
  const s = report.settings;
  const window = s.windowMs !== undefined ? `${s.windowMs} ms` : `${s.windowRequests} requests`;
  const targets = report.targets.map((t, i) => {
    const check = t.check ? ` — outputs checked: ${t.check.compared} compared, ${t.check.mismatches} mismatched, largest difference ${t.check.maxAbsError}` : '';
    return `<li><strong>${esc(labels[i])}</strong>: ${esc(t.description)}${esc(check)}</li>`;
  }).join('\n');
  const errors = report.targets.map((t, i) => errorList(t, labels[i])).filter(Boolean).join('\n');
  const comparisons = report.comparisons.map((c) => `<tr><td>${esc(c.base)}</td><td>${esc(c.other)}</td><td>${esc(loadText(c.load))}</td><td class="num">${fixed(c.throughputRatio, 2)}×</td><td class="num">${fixed(c.p50Ratio, 2)}×</td><td class="num">${fixed(c.p99Ratio, 2)}×</td></tr>`).join('\n');
  const inputs = report.model?.inputs.map((x) => `${esc(x.name)}: ${esc(x.type)} [${x.shape.map(esc).join(', ')}]`).join('; ');
  const canvases = charts.map((c) => `<figure><figcaption>${esc(c.title)}</figcaption><div class="chart"><canvas id="${c.id}" data-chart="${c.kind}"${c.target !== undefined ? ` data-target="${esc(c.target)}"` : ''} role="img" aria-label="${esc(c.title)}"></canvas></div></figure>`).join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>kiln bench: ${esc(model)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2em 1em; } dt { font-weight: bold; } dd { margin: 0; }
code { background: #f3f3f3; padding: 0 .2em; word-break: break-all; }
figure { margin: 1.5em 0; } figcaption { font-weight: bold; margin-bottom: .5em; }
.chart { position: relative; height: 340px; }
table { border-collapse: collapse; font-size: 13px; } th, td { border: 1px solid #ddd; padding: .25em .5em; white-space: nowrap; }
.scroll { overflow-x: auto; } th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.unstable td { color: #a60; }
.best { background: #2ca02c; color: #fff; border-radius: 3px; padding: 0 .3em; font-size: 11px; }
</style>
</head>
<body>
<h1>kiln bench: ${esc(model)}</h1>
<dl>
<dt>Command</dt><dd><code>${esc(report.command)}</code></dd>
<dt>Started</dt><dd>${esc(report.startedAt)}</dd>
<dt>Machine</dt><dd>${esc(`${m.cpus} × ${m.cpuModel}, ${(m.memoryBytes / 2 ** 30).toFixed(1)} GiB, ${m.os}, Node ${m.node}${m.onnxRuntime ? `, ONNX Runtime ${m.onnxRuntime}` : ''}`)}</dd>
${report.model ? `<dt>Model</dt><dd><code>${esc(report.model.path)}</code>${inputs ? ` (${inputs})` : ''}</dd>\n` : ''}<dt>Settings</dt><dd>${esc(`windows of ${window} after ${s.warmupRequests} warm-up requests; stable when ${s.stabilityWindows} consecutive windows agree within ${s.stabilityPercentage}% (at most ${s.maxWindows} windows); ${s.percentile ? `judged on p${s.percentile}` : 'judged on the mean latency (a latency bound on p99)'}`)}</dd>
</dl>
<h2>Targets</h2>
<ul>
${targets}
</ul>
<h2>Charts</h2>
${canvases}
<h2>Steps</h2>
<p>Latencies in milliseconds over the windows the stability rule accepted; server times in microseconds per request (queue / compute input / infer / output).</p>
<div class="scroll">
<table data-table="steps">
<thead><tr><th>Target</th><th>Load</th><th>Throughput (req/s)</th><th>p50</th><th>p90</th><th>p95</th><th>p99</th><th>max</th><th>Chosen</th><th>Errors</th><th>Stable</th><th>Windows</th><th>Throughput spread</th><th>CPU µs/req</th><th>Peak RSS (MiB)</th><th>Server µs</th><th>Batch sizes</th></tr></thead>
<tbody>
${report.targets.map((t, i) => stepRows(report, t, labels[i])).join('\n')}
</tbody>
</table>
</div>
<p class="note">${esc(RESOURCE_NOTE)}</p>
${errors ? `<h2>Errors</h2>\n<ul>\n${errors}\n</ul>\n` : ''}${comparisons ? `<h2>Comparisons</h2>
<p>At equal load: throughput of the other over the base's, latency of the other over the base's.</p>
<table data-table="comparisons">
<thead><tr><th>Base</th><th>Other</th><th>Load</th><th>Throughput</th><th>p50</th><th>p99</th></tr></thead>
<tbody>
${comparisons}
</tbody>
</table>
` : ''}<script type="application/json" id="kiln-bench-report">${scriptJson(report)}</script>
<script type="application/json" id="kiln-bench-charts">${scriptJson(Object.fromEntries(charts.map((c) => [c.id, c.config])))}</script>
<script>
${chartJs()}
</script>
<script>
(function () {
  var configs = JSON.parse(document.getElementById('kiln-bench-charts').textContent);
  var canvases = document.querySelectorAll('canvas[data-chart]');
  for (var i = 0; i < canvases.length; i++) new Chart(canvases[i], configs[canvases[i].id]);
  document.documentElement.setAttribute('data-charts-drawn', String(canvases.length));
})();
</script>
</body>
</html>
`;
}

/** Writes the report's HTML to `file`. */
export async function writeHtmlReport(report: BenchReport, file: string): Promise<void> {
  const html = renderHtmlReport(report);
  try {
    await fs.promises.writeFile(file, html);
  } catch (e) {
    throw toKilnError(e);
  }
}

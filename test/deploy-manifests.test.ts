// The deployment files under deploy/: every manifest parses and carries the fields KServe and
// Kubernetes require; what they ask of `kiln serve` (flags, environment variables, probe
// paths, metric names) is what a running `kiln serve` offers; and the Dockerfiles name only
// files that the packed npm tarball contains. Nothing here builds an image or talks to a
// cluster: the files are checked as text and against a real server on 127.0.0.1.
import { strict as assert } from 'assert';
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { parse, parseAllDocuments } from 'yaml';
import { startKiln, type KilnProcess } from '../support/kiln-process';

const ROOT = path.resolve(__dirname, '..', '..');
const DEPLOY = path.join(ROOT, 'deploy');
const CLI = path.join(ROOT, 'dist', 'lib', 'cli', 'kiln.js');
const NPM_CLI = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');
const TARGET = `${process.platform}-${process.arch}`;
/** Where the package lives inside the images (deploy/Dockerfile's install stage). */
const INSTALLED = '/opt/kiln/node_modules/kiln/';
/** Environment variables that manifests may set for Kiln, and the sources that read them. */
const KILN_ENV = /^(KILN_[A-Z0-9_]+|MODEL_NAME|PORT|GRPC_PORT)$/;
const ENV_READERS = ['lib/cli/commands/serve.ts', 'lib/runtime.ts'];

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
interface Manifest { file: string; doc: Obj }

const API_VERSIONS: Record<string, string> = {
  ClusterServingRuntime: 'serving.kserve.io/v1alpha1',
  InferenceService: 'serving.kserve.io/v1beta1',
  Deployment: 'apps/v1',
  Service: 'v1',
  ConfigMap: 'v1',
  HorizontalPodAutoscaler: 'autoscaling/v2',
  ScaledObject: 'keda.sh/v1alpha1',
};

function yamlFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(e.name) ? [p] : [];
  });
}

/** Every document of every manifest under deploy/, parse errors failing the test. */
function loadManifests(): Manifest[] {
  const out: Manifest[] = [];
  for (const file of yamlFiles(DEPLOY)) {
    const rel = path.relative(ROOT, file);
    for (const d of parseAllDocuments(fs.readFileSync(file, 'utf8'))) {
      assert.deepEqual(d.errors.map((e) => e.message), [], `${rel} does not parse`);
      const doc = d.toJS() as Obj | null;
      if (doc !== null) out.push({ file: rel, doc });
    }
  }
  return out;
}

/** `--name=value` and `--name value` arguments as a map (a bare flag maps to ''). */
function flags(args: string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(0, eq), a.slice(eq + 1));
    else if (i + 1 < args.length && !args[i + 1].startsWith('--')) out.set(a, args[++i]);
    else out.set(a, '');
  }
  return out;
}

/** The JSON array form of a Dockerfile instruction (ENTRYPOINT, CMD). */
const execForm = (line: string, instruction: string): string[] => JSON.parse(line.slice(instruction.length).trim()) as string[];

/** A Dockerfile's instructions, continuation lines joined and comments dropped. */
function instructions(file: string): string[] {
  const lines: string[] = [];
  let current = '';
  for (const raw of fs.readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*#/.test(raw)) continue;
    current += raw.replace(/\\$/, ' ');
    if (!raw.endsWith('\\')) {
      if (current.trim()) lines.push(current.trim().replace(/\s+/g, ' '));
      current = '';
    }
  }
  return lines;
}

/** The instructions of the last stage (the image itself). */
function finalStage(lines: string[]): string[] {
  let last = 0;
  lines.forEach((l, i) => { if (/^FROM /i.test(l)) last = i; });
  return lines.slice(last);
}

/** Metric names (Kiln's and Triton's prefixes) a PromQL text refers to. */
const metricNames = (promql: string): string[] => [...new Set(promql.match(/\b(?:nv|kiln)_[a-z_]+\b/g) ?? [])];

/** Series names in a Prometheus text exposition (histograms as their _bucket, _sum, _count). */
function exportedSeries(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{| )/.exec(line);
    if (m) out.add(m[1]);
  }
  return out;
}

function containerOf(doc: Obj): Obj {
  if (doc.kind === 'ClusterServingRuntime') return doc.spec.containers[0];
  return doc.spec.template.spec.containers[0];
}

describe('deploy/: manifests and images', function () {
  this.timeout(180_000);
  let manifests: Manifest[];
  const ofKind = (kind: string): Manifest[] => manifests.filter((m) => m.doc.kind === kind);
  let help: string;
  let serverUrl: string;
  let metricsText: string;
  let server: KilnProcess | undefined;
  let tarballFiles: Set<string>;
  let packageVersion: string;

  before(async () => {
    manifests = loadManifests();
    const h = spawnSync(process.execPath, [CLI, 'serve', '--help'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(h.status, 0, h.stderr);
    help = h.stdout;

    // No drain delay: the test stops it when done, nothing routes to it.
    server = await startKiln(['--example', '--host', '127.0.0.1', '--port', '0', '--grpc-port', '-1', '--log-level', 'silent', '--drain-delay-secs', '0']);
    serverUrl = server.url;
    // One inference, so that the per-model series (batch sizes, durations) exist.
    const body = { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] };
    const r = await fetch(`${serverUrl}/v2/models/add/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(r.status, 200, await r.text());
    const m = await fetch(`${serverUrl}/metrics`);
    assert.equal(m.status, 200);
    metricsText = await m.text();

    // The packed tarball's file list, as `npm pack` would write it; with the prebuilds for
    // this platform, made as `npm run prebuild` makes them when missing (as test/pack does).
    const prebuilds = path.join(ROOT, 'prebuilds', TARGET);
    if (!fs.existsSync(prebuilds) || !fs.readdirSync(prebuilds).some((f) => f.endsWith('.node'))) {
      execFileSync(process.execPath, [NPM_CLI, 'run', 'prebuild'], { cwd: ROOT, stdio: 'pipe' });
    }
    const pack = JSON.parse(execFileSync(process.execPath, [NPM_CLI, 'pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as { files: { path: string }[] }[];
    tarballFiles = new Set(pack[0].files.map((f) => f.path));
    packageVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  });

  after(async () => {
    if (server) {
      server.child.kill('SIGTERM');
      assert.equal(await server.exit, 0, 'kiln serve did not exit cleanly on SIGTERM');
    }
  });

  it('every document parses, has apiVersion, kind and metadata.name, and is of a kind checked here with its apiVersion', () => {
    assert.ok(manifests.length >= 10, `only ${manifests.length} manifests found under deploy/`);
    for (const { file, doc } of manifests) {
      assert.equal(typeof doc.kind, 'string', `${file}: a document without kind`);
      assert.ok(doc.kind in API_VERSIONS, `${file}: ${doc.kind} is not a kind this test checks`);
      assert.equal(doc.apiVersion, API_VERSIONS[doc.kind], `${file}: ${doc.kind}'s apiVersion`);
      assert.match(String(doc.metadata?.name ?? ''), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, `${file}: metadata.name must be a DNS-1123 label`);
    }
    for (const kind of ['ClusterServingRuntime', 'InferenceService', 'Deployment', 'Service', 'HorizontalPodAutoscaler', 'ScaledObject', 'ConfigMap']) {
      assert.ok(ofKind(kind).length > 0, `no ${kind} under deploy/`);
    }
  });

  it('ClusterServingRuntimes: ONNX, v2 and grpc-v2, `kiln serve` on /mnt/models with HTTP 8080 and gRPC 8081, v2 health probes on the HTTP port, Prometheus annotations, resources', () => {
    for (const { file, doc } of ofKind('ClusterServingRuntime')) {
      const formats = doc.spec.supportedModelFormats as Obj[];
      assert.ok(formats.some((f) => f.name === 'onnx' && typeof f.version === 'string'), `${file}: no onnx format with a version string`);
      assert.ok(doc.spec.protocolVersions.includes('v2') && doc.spec.protocolVersions.includes('grpc-v2'), `${file}: protocolVersions ${doc.spec.protocolVersions}`);
      const c = containerOf(doc);
      assert.equal(c.name, 'kserve-container', `${file}: KServe merges the predictor into the container named kserve-container`);
      assert.ok(typeof c.image === 'string' && c.image.length > 0, `${file}: no image`);
      const f = flags(c.args);
      assert.equal(f.get('--model-repository'), '/mnt/models', `${file}: the model mount`);
      assert.equal(f.get('--host'), '0.0.0.0', `${file}: must listen beyond loopback`);
      assert.equal(f.get('--http-port'), '8080', `${file}: HTTP port`);
      assert.equal(f.get('--grpc-port'), '8081', `${file}: gRPC port`);
      // Knative: at most one port, named h2c (gRPC) or http1; KServe merges the
      // InferenceService's ports into these, so a runtime declaring one fixes the protocol.
      const ports = (c.ports ?? []) as Obj[];
      assert.ok(ports.length <= 1, `${file}: Knative accepts one container port`);
      for (const p of ports) assert.ok((p.name === 'h2c' && p.containerPort === 8081) || (p.name === 'http1' && p.containerPort === 8080), `${file}: port ${JSON.stringify(p)}`);
      assert.equal(c.readinessProbe.httpGet.path, '/v2/health/ready', `${file}: readiness path`);
      assert.equal(c.livenessProbe.httpGet.path, '/v2/health/live', `${file}: liveness path`);
      assert.equal(String(c.readinessProbe.httpGet.port), '8080', `${file}: readiness probe on the HTTP port`);
      assert.equal(String(c.livenessProbe.httpGet.port), '8080', `${file}: liveness probe on the HTTP port`);
      assert.equal(doc.spec.annotations['prometheus.kserve.io/port'], '8080', `${file}: metrics port`);
      assert.equal(doc.spec.annotations['prometheus.kserve.io/path'], '/metrics', `${file}: metrics path`);
      for (const r of ['cpu', 'memory']) assert.ok(c.resources.requests[r] !== undefined, `${file}: no ${r} request`);
      assert.ok(c.resources.limits.memory !== undefined, `${file}: no memory limit`);
      assert.equal(c.securityContext?.runAsNonRoot, true, `${file}: runAsNonRoot`);
      const gpu = c.resources.limits['nvidia.com/gpu'];
      if (gpu !== undefined) {
        assert.ok(Number(gpu) >= 1, `${file}: GPU limit ${gpu}`);
        const lib = (c.env as Obj[]).find((e) => e.name === 'KILN_ORT_LIBRARY');
        assert.ok(lib, `${file}: a GPU runtime must point KILN_ORT_LIBRARY at a GPU build of ONNX Runtime`);
        const image = finalStage(instructions(path.join(DEPLOY, 'Dockerfile.gpu'))).find((l) => /^ENV /.test(l) && l.includes('KILN_ORT_LIBRARY='));
        assert.ok(image?.includes(`KILN_ORT_LIBRARY=${lib.value}`), `${file}: KILN_ORT_LIBRARY ${lib.value} is not where deploy/Dockerfile.gpu puts the library`);
      }
    }
    assert.ok(ofKind('ClusterServingRuntime').some(({ doc }) => containerOf(doc).resources.limits['nvidia.com/gpu'] !== undefined), 'no GPU runtime');
    assert.ok(ofKind('ClusterServingRuntime').some(({ doc }) => doc.spec.supportedModelFormats.some((f: Obj) => f.name === 'onnx' && f.autoSelect === true)), 'no runtime auto-selected for onnx');
  });

  it('InferenceServices: onnx format, a runtime defined in deploy/ that speaks their protocol, a storageUri, and autoscaling fit for their deployment mode', () => {
    const runtimes = new Map(ofKind('ClusterServingRuntime').map(({ doc }) => [doc.metadata.name as string, doc]));
    const services = ofKind('InferenceService');
    assert.ok(services.length >= 3, 'the examples: one ONNX file, a Triton repository, a GPU model');
    for (const { file, doc } of services) {
      const p = doc.spec.predictor;
      const model = p.model;
      assert.equal(model.modelFormat.name, 'onnx', `${file}: modelFormat`);
      const runtime = runtimes.get(model.runtime);
      assert.ok(runtime, `${file}: runtime ${model.runtime} is not a ClusterServingRuntime in deploy/`);
      assert.equal(model.protocolVersion, 'v2', `${file}: protocolVersion`);
      assert.ok(runtime.spec.protocolVersions.includes(model.protocolVersion), `${file}: ${model.runtime} does not speak ${model.protocolVersion}`);
      assert.match(model.storageUri, /^(gs|s3|pvc):\/\/[a-z0-9][-a-z0-9.]*(\/[^\s]*)?$/, `${file}: storageUri`);
      const annotations = (doc.metadata.annotations ?? {}) as Record<string, string>;
      assert.equal(annotations['serving.kserve.io/enable-prometheus-scraping'], 'true', `${file}: Prometheus scraping`);
      const args = flags(containerOf(runtime).args);
      const drain = Number(args.get('--drain-delay-secs')) + Number(args.get('--exit-timeout-secs'));
      if (annotations['serving.kserve.io/deploymentMode'] === 'RawDeployment') {
        assert.ok(p.terminationGracePeriodSeconds > drain, `${file}: terminationGracePeriodSeconds ${p.terminationGracePeriodSeconds} must exceed the drain (${drain} s)`);
        assert.equal(annotations['serving.kserve.io/autoscalerClass'], 'keda', `${file}: raw mode scales on Kiln's metric through KEDA`);
        const metrics = p.autoScaling.metrics as Obj[];
        assert.ok(metrics.some((m) => m.type === 'External' && m.external.metric.backend === 'prometheus' && metricNames(m.external.metric.query).includes('nv_inference_pending_request_count') && Number(m.external.target.value) > 0), `${file}: no External Prometheus metric on nv_inference_pending_request_count`);
        for (const m of metrics) if (m.type === 'External') assert.match(m.external.metric.serverAddress, /^https?:\/\/[^\s/]+/, `${file}: serverAddress`);
      } else {
        // Knative: one port, named as Knative requires, and a concurrency target; the grace
        // period is Knative's own (its webhook refuses the field).
        assert.equal(p.terminationGracePeriodSeconds, undefined, `${file}: Knative refuses terminationGracePeriodSeconds`);
        const ports = (model.ports ?? []) as Obj[];
        assert.ok(ports.length <= 1, `${file}: Knative routes one port`);
        for (const port of ports) assert.ok((port.name === 'h2c' && port.containerPort === Number(args.get('--grpc-port'))) || (port.name === 'http1' && port.containerPort === Number(args.get('--http-port'))), `${file}: port ${JSON.stringify(port)}`);
        assert.equal(annotations['autoscaling.knative.dev/metric'], 'concurrency', `${file}: Knative metric`);
        assert.ok(Number(annotations['autoscaling.knative.dev/target']) > 0, `${file}: Knative target`);
      }
      if (containerOf(runtime).resources.limits['nvidia.com/gpu'] !== undefined) {
        assert.ok(model.resources?.limits?.['nvidia.com/gpu'] !== undefined, `${file}: a GPU runtime's InferenceService asks for the GPU`);
      }
    }
    assert.ok(services.some(({ doc }) => doc.spec.predictor.model.ports?.some((p: Obj) => p.name === 'h2c')), 'no gRPC example');
    assert.ok(services.some(({ doc }) => containerOf(runtimes.get(doc.spec.predictor.model.runtime) as Obj).resources.limits['nvidia.com/gpu'] !== undefined), 'no GPU example');
  });

  it('Deployment and Service: `kiln serve` with Redis as the shared cache, named ports, v2 health probes, a grace period longer than the drain; Services select Deployments in deploy/ and target their ports', () => {
    const deployments = ofKind('Deployment');
    for (const { file, doc } of deployments) {
      const labels = doc.spec.template.metadata.labels as Record<string, string>;
      for (const [k, v] of Object.entries(doc.spec.selector.matchLabels as Record<string, string>)) assert.equal(labels[k], v, `${file}: the selector does not match the pod labels`);
      const c = containerOf(doc);
      assert.ok(typeof c.image === 'string' && c.image.length > 0, `${file}: no image`);
    }
    const kiln = deployments.filter(({ doc }) => flags(containerOf(doc).args ?? []).has('--model-repository'));
    assert.equal(kiln.length, 1, 'one Deployment of kiln serve');
    for (const { file, doc } of kiln) {
      const c = containerOf(doc);
      const f = flags(c.args);
      assert.equal(f.get('--host'), '0.0.0.0', `${file}: must listen beyond loopback`);
      const ports = new Map((c.ports as Obj[]).map((p) => [p.name as string, p.containerPort as number]));
      assert.equal(ports.get('http'), Number(f.get('--http-port')), `${file}: the http port is the one kiln serves HTTP on`);
      assert.equal(ports.get('grpc'), Number(f.get('--grpc-port')), `${file}: the grpc port is the one kiln serves gRPC on`);
      for (const [probe, route] of [['readinessProbe', '/v2/health/ready'], ['livenessProbe', '/v2/health/live']] as const) {
        assert.equal(c[probe].httpGet.path, route, `${file}: ${probe} path`);
        assert.equal(c[probe].httpGet.port, 'http', `${file}: ${probe} port`);
      }
      const cache = (c.env as Obj[]).find((e) => e.name === 'KILN_CACHE_CONFIG');
      assert.match(cache?.value ?? '', /^redis,url=redis:\/\/[a-z0-9-]+:\d+/, `${file}: KILN_CACHE_CONFIG`);
      const redisHost = /redis:\/\/([a-z0-9-]+):(\d+)/.exec(cache?.value ?? '') as RegExpExecArray;
      const redisService = ofKind('Service').find(({ doc: s }) => s.metadata.name === redisHost[1]);
      assert.ok(redisService?.doc.spec.ports.some((p: Obj) => p.port === Number(redisHost[2])), `${file}: no Service ${redisHost[1]} on port ${redisHost[2]} in deploy/`);
      const drain = Number(f.get('--drain-delay-secs')) + Number(f.get('--exit-timeout-secs'));
      assert.ok(Number.isFinite(drain), `${file}: --drain-delay-secs and --exit-timeout-secs are set`);
      assert.ok(doc.spec.template.spec.terminationGracePeriodSeconds > drain, `${file}: terminationGracePeriodSeconds must exceed the drain (${drain} s)`);
      assert.equal(doc.spec.strategy.rollingUpdate.maxUnavailable, 0, `${file}: a rollout keeps every replica until its successor is ready`);
      assert.equal(doc.spec.template.spec.securityContext.runAsNonRoot, true, `${file}: runAsNonRoot`);
    }
    for (const { file, doc } of ofKind('Service')) {
      const target = deployments.find(({ doc: d }) => Object.entries(doc.spec.selector as Record<string, string>).every(([k, v]) => d.spec.template.metadata.labels[k] === v));
      assert.ok(target, `${file}: Service ${doc.metadata.name} selects no Deployment in deploy/`);
      const named = new Map((containerOf(target.doc).ports as Obj[]).map((p) => [p.name as string, p.containerPort as number]));
      for (const p of doc.spec.ports as Obj[]) {
        assert.ok(typeof p.targetPort === 'string' ? named.has(p.targetPort) : [...named.values()].includes(p.targetPort), `${file}: targetPort ${p.targetPort} is no port of ${target.doc.metadata.name}`);
      }
    }
  });

  it('autoscaling: the HPA (through the adapter rules) and the KEDA ScaledObject scale a Deployment of deploy/ on nv_inference_pending_request_count, and every metric they query is one kiln serve exports', () => {
    const exported = exportedSeries(metricsText);
    const deployments = new Set(ofKind('Deployment').map(({ doc }) => doc.metadata.name as string));
    const adapter = ofKind('ConfigMap').find(({ doc }) => typeof doc.data?.['config.yaml'] === 'string');
    assert.ok(adapter, 'no Prometheus adapter configuration');
    const rules = (parse(adapter.doc.data['config.yaml']) as { rules: Obj[] }).rules;
    const served = new Map<string, Obj>();
    for (const rule of rules) {
      assert.ok(rule.resources?.overrides?.pod?.resource === 'pod' && rule.resources.overrides.namespace?.resource === 'namespace', `${adapter.file}: a rule must map the pod and namespace labels`);
      assert.match(rule.metricsQuery, /<<\.LabelMatchers>>/, `${adapter.file}: metricsQuery without <<.LabelMatchers>>`);
      assert.match(rule.metricsQuery, /by \(<<\.GroupBy>>\)/, `${adapter.file}: metricsQuery without by (<<.GroupBy>>)`);
      const names = [...metricNames(rule.seriesQuery), ...metricNames(rule.metricsQuery)];
      assert.ok(names.length > 0, `${adapter.file}: a rule that names no Kiln metric`);
      for (const n of names) assert.ok(exported.has(n), `${adapter.file}: ${n} is not in kiln serve's /metrics`);
      served.set(rule.name.as, rule);
    }
    const hpas = ofKind('HorizontalPodAutoscaler');
    for (const { file, doc } of hpas) {
      assert.equal(doc.spec.scaleTargetRef.kind, 'Deployment');
      assert.ok(deployments.has(doc.spec.scaleTargetRef.name), `${file}: scales ${doc.spec.scaleTargetRef.name}, not a Deployment in deploy/`);
      assert.ok(doc.spec.minReplicas >= 1 && doc.spec.maxReplicas >= doc.spec.minReplicas, `${file}: replica bounds`);
      const metrics = doc.spec.metrics as Obj[];
      assert.ok(metrics.some((m) => m.type === 'Pods' && m.pods.metric.name === 'nv_inference_pending_request_count'), `${file}: no Pods metric nv_inference_pending_request_count`);
      for (const m of metrics) {
        assert.equal(m.type, 'Pods', `${file}: scales on Kiln's pod metrics only`);
        assert.ok(served.has(m.pods.metric.name), `${file}: ${m.pods.metric.name} is served by no adapter rule`);
        assert.equal(m.pods.target.type, 'AverageValue', `${file}: Pods metrics take an AverageValue target`);
        assert.ok(Number(m.pods.target.averageValue) > 0, `${file}: target`);
      }
    }
    for (const { file, doc } of ofKind('ScaledObject')) {
      assert.ok(deployments.has(doc.spec.scaleTargetRef.name), `${file}: scales ${doc.spec.scaleTargetRef.name}, not a Deployment in deploy/`);
      assert.ok(doc.spec.minReplicaCount >= 1 && doc.spec.maxReplicaCount >= doc.spec.minReplicaCount, `${file}: replica bounds`);
      for (const t of doc.spec.triggers as Obj[]) {
        assert.equal(t.type, 'prometheus', `${file}: trigger type`);
        assert.match(t.metadata.serverAddress, /^https?:\/\/[^\s/]+/, `${file}: serverAddress`);
        assert.ok(Number(t.metadata.threshold) > 0, `${file}: threshold`);
        assert.ok(metricNames(t.metadata.query).includes('nv_inference_pending_request_count'), `${file}: the query is not on nv_inference_pending_request_count`);
        for (const n of metricNames(t.metadata.query)) assert.ok(exported.has(n), `${file}: ${n} is not in kiln serve's /metrics`);
      }
    }
    for (const { file, doc } of ofKind('InferenceService')) {
      for (const m of (doc.spec.predictor.autoScaling?.metrics ?? []) as Obj[]) {
        if (m.type !== 'External') continue;
        for (const n of metricNames(m.external.metric.query)) assert.ok(exported.has(n), `${file}: ${n} is not in kiln serve's /metrics`);
      }
    }
    // The HPA and KEDA examples agree on the per-replica number.
    const hpaTarget = hpas.flatMap(({ doc }) => doc.spec.metrics as Obj[]).find((m) => m.pods.metric.name === 'nv_inference_pending_request_count')?.pods.target.averageValue;
    for (const { doc } of ofKind('ScaledObject')) assert.equal(String(doc.spec.triggers[0].metadata.threshold), String(hpaTarget), 'the KEDA threshold and the HPA target differ');
  });

  it('the probes\' paths answer 200 on a running kiln serve', async () => {
    const paths = new Set<string>();
    for (const { doc } of [...ofKind('ClusterServingRuntime'), ...ofKind('Deployment')]) {
      const c = containerOf(doc);
      for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) if (c[probe]?.httpGet) paths.add(c[probe].httpGet.path);
    }
    assert.deepEqual([...paths].sort(), ['/v2/health/live', '/v2/health/ready']);
    for (const p of paths) {
      const r = await fetch(`${serverUrl}${p}`);
      assert.equal(r.status, 200, `${p} answered ${r.status}`);
    }
  });

  it('every flag the manifests and images pass to kiln serve is in `kiln serve --help`, and every Kiln environment variable they set is one Kiln reads', () => {
    const given = new Map<string, string>();
    for (const { file, doc } of [...ofKind('ClusterServingRuntime'), ...ofKind('Deployment')]) {
      const c = containerOf(doc);
      if (!flags(c.args ?? []).has('--model-repository')) continue;
      for (const f of flags(c.args).keys()) given.set(f, file);
    }
    for (const name of ['Dockerfile', 'Dockerfile.gpu']) {
      const cmd = finalStage(instructions(path.join(DEPLOY, name))).find((l) => l.startsWith('CMD '));
      for (const f of flags(execForm(cmd as string, 'CMD')).keys()) given.set(f, `deploy/${name}`);
    }
    assert.ok(given.size >= 4);
    const missing: string[] = [];
    for (const [f, file] of given) {
      if (!new RegExp(`(^|[\\s,])${f}[\\s,=<]`, 'm').test(help)) missing.push(`${file}: ${f} is not an option of kiln serve (--help)`);
    }
    const sources = ENV_READERS.map((f) => fs.readFileSync(path.join(ROOT, f), 'utf8')).join('\n');
    const set: [string, string][] = [];
    for (const { file, doc } of manifests) {
      const containers = doc.kind === 'ClusterServingRuntime' ? doc.spec.containers : doc.kind === 'Deployment' ? doc.spec.template.spec.containers : [];
      for (const c of containers as Obj[]) for (const e of (c.env ?? []) as Obj[]) if (KILN_ENV.test(e.name)) set.push([e.name, file]);
    }
    for (const name of ['Dockerfile', 'Dockerfile.gpu']) {
      for (const l of instructions(path.join(DEPLOY, name)).filter((x) => x.startsWith('ENV '))) {
        for (const m of l.matchAll(/([A-Z_][A-Z0-9_]*)=/g)) if (KILN_ENV.test(m[1])) set.push([m[1], `deploy/${name}`]);
      }
    }
    assert.ok(set.some(([n]) => n === 'KILN_CACHE_CONFIG') && set.some(([n]) => n === 'KILN_ORT_LIBRARY'));
    for (const [name, file] of set) {
      const read = help.includes(name) || sources.includes(`process.env.${name}`) || sources.includes(`process.env['${name}']`) || sources.includes(`.env('${name}')`);
      if (!read) missing.push(`${file}: ${name} is read neither as documented in kiln serve --help nor in ${ENV_READERS.join(', ')}`);
    }
    assert.deepEqual([...new Set(missing)], []);
  });

  for (const name of ['Dockerfile', 'Dockerfile.gpu']) {
    it(`deploy/${name}: installs the packed tarball of this version, names only files the tarball holds, runs kiln serve as a non-root user with a health check and ports 8080 and 8081`, () => {
      const lines = instructions(path.join(DEPLOY, name));
      const text = lines.join('\n');
      // The tarball npm pack writes, under the name the Dockerfile copies.
      const version = /^ARG KILN_VERSION=(\S+)$/m.exec(text);
      assert.equal(version?.[1], packageVersion, `deploy/${name}: KILN_VERSION is not package.json's version`);
      assert.match(text, /^COPY kiln-\$\{KILN_VERSION\}\.tgz /m, `deploy/${name}: does not copy the packed tarball`);
      assert.match(text, /npm install --omit=dev [^\n]*kiln-\$\{KILN_VERSION\}\.tgz/, `deploy/${name}: does not install the tarball without dev dependencies`);
      const ignore = fs.readFileSync(path.join(DEPLOY, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
      assert.ok(ignore.includes('!kiln-*.tgz'), 'deploy/.dockerignore leaves the tarball out of the build context');
      // Every path inside the installed package must be in the tarball, except those the
      // build checks are absent (`test ! -e`), which must not be.
      const used = new Set<string>();
      const absent = new Set<string>();
      for (const m of text.matchAll(/(test ! -e )?node_modules\/kiln\/([^\s"',\]]+)/g)) (m[1] ? absent : used).add(m[2]);
      for (const p of absent) assert.ok(![...tarballFiles].some((f) => f === p || f.startsWith(`${p}/`)), `deploy/${name}: checks that ${p} is absent, but the tarball holds it`);
      assert.ok(used.has('dist/lib/cli/kiln.js'), `deploy/${name}: the entrypoint is not the package's kiln.js`);
      assert.ok(used.has(`prebuilds/${TARGET}/kiln.node`), `deploy/${name}: does not check the prebuilt addon`);
      for (const p of used) {
        const isFile = tarballFiles.has(p);
        const isDir = [...tarballFiles].some((f) => f.startsWith(p.endsWith('/') ? p : `${p}/`));
        assert.ok(isFile || isDir, `deploy/${name}: ${p} is not in the packed tarball`);
      }
      const image = finalStage(lines);
      const entry = image.find((l) => l.startsWith('ENTRYPOINT '));
      assert.deepEqual(execForm(entry as string, 'ENTRYPOINT'), ['node', `${INSTALLED}dist/lib/cli/kiln.js`, 'serve'], `deploy/${name}: ENTRYPOINT`);
      const cmd = flags(execForm(image.find((l) => l.startsWith('CMD ')) as string, 'CMD'));
      assert.equal(cmd.get('--model-repository'), '/mnt/models');
      assert.equal(cmd.get('--host'), '0.0.0.0');
      assert.equal(cmd.get('--http-port'), '8080');
      assert.equal(cmd.get('--grpc-port'), '8081');
      const users = image.filter((l) => l.startsWith('USER '));
      assert.ok(users.length > 0, `deploy/${name}: no USER`);
      const user = users[users.length - 1].slice(5).trim();
      assert.ok(!/^(root|0)(:|$)/.test(user), `deploy/${name}: runs as ${user}`);
      const health = image.find((l) => l.startsWith('HEALTHCHECK '));
      assert.ok(health?.includes(`http://127.0.0.1:${cmd.get('--http-port')}/v2/health/ready`), `deploy/${name}: no HEALTHCHECK on the readiness endpoint of the HTTP port`);
      assert.ok(!/\bcurl\b|\bwget\b/.test(health as string), `deploy/${name}: the slim images have no curl or wget`);
      const exposed = image.filter((l) => l.startsWith('EXPOSE ')).flatMap((l) => l.slice(7).trim().split(' '));
      assert.ok(exposed.includes('8080') && exposed.includes('8081'), `deploy/${name}: EXPOSE ${exposed.join(' ')}`);
      if (name === 'Dockerfile.gpu') {
        assert.match(text, /onnxruntime-linux-x64-gpu_cuda12-\$\{ORT_VERSION\}\.tgz/, 'the GPU image takes ONNX Runtime\'s CUDA 12 release artifact');
        assert.match(text, /sha256sum -c/, 'the GPU image checks the download');
        assert.ok(image.some((l) => /^ENV .*KILN_ORT_LIBRARY=\/opt\/onnxruntime-gpu\/lib\/libonnxruntime\.so\.1/.test(l)), 'KILN_ORT_LIBRARY');
      }
    });
  }
});

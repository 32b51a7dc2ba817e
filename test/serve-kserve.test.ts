// `kiln serve` in KServe's and Knative's conventions, as a process: the model mount as it
// comes (a folder holding one model file, the path of one .onnx file), the name from
// MODEL_NAME or --model-name, the ports from PORT and GRPC_PORT, flags winning over the
// environment; and draining on SIGTERM: readiness 503 at once while requests are still
// served, then the requests accepted answered before exiting 0.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { addModel, mlpModel, mlpReference, prng } from '../lib/samples';
import { inferenceService } from '../lib/server/grpc';
import { workModel } from './helpers/batching-models';
import { freePort, runKiln, startKiln, type KilnProcess } from '../support/kiln-process';
import { writeFiles } from '../support/repository';

type GrpcClient = grpc.Client & Record<string, (request: unknown, callback: (e: grpc.ServiceError | null, r: unknown) => void) => void>;

/** A unary call of the inference service at `address`. */
async function grpcCall<T>(address: string, method: string, request: unknown = {}): Promise<T> {
  const client = new (inferenceService())(address, grpc.credentials.createInsecure()) as unknown as GrpcClient;
  try {
    return await new Promise<T>((resolve, reject) => client[method](request, (e, r) => (e ? reject(e) : resolve(r as T))));
  } finally {
    client.close();
  }
}

/** The MLP's answer over HTTP JSON for a seeded input, checked against the reference. */
async function inferMlp(url: string, model: string, seed: number): Promise<void> {
  const rand = prng(seed);
  const x = Array.from({ length: 512 }, () => Math.fround(rand() * 2 - 1));
  const r = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: x }] }) });
  assert.equal(r.status, 200, await r.clone().text());
  const y = ((await r.json()) as { outputs: { data: number[] }[] }).outputs[0].data;
  const want = mlpReference(Float32Array.from(x), 1);
  y.forEach((v, i) => assert.ok(Math.abs(v - want[i]) <= 1e-4 * Math.max(1, Math.abs(want[i])), `y[${i}]: ${v} vs ${want[i]}`));
}

const status = async (url: string): Promise<number> => (await fetch(url)).status;

/** The body of a request to the work model: x = [base, base+1, base+2, base+3], `work` loop steps. */
const workBody = (base: number, work = 1): string => JSON.stringify({ inputs: [
  { name: 'x', shape: [1, 4], datatype: 'FP32', data: [base, base + 1, base + 2, base + 3] },
  { name: 'work', shape: [1], datatype: 'INT64', data: [work] },
  { name: 'fail', shape: [1], datatype: 'INT64', data: [0] },
] });

describe('kiln serve: KServe conventions and draining', function () {
  this.timeout(120_000);
  let dir: string;
  const started: KilnProcess[] = [];
  const start = async (args: readonly string[], env: Record<string, string> = {}): Promise<KilnProcess> => {
    const k = await startKiln(args, env);
    started.push(k);
    return k;
  };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-kserve-'));
    writeFiles(dir, {
      // KServe's mount of a storageUri naming a folder that holds model.onnx (and more).
      'mnt-model/model.onnx': mlpModel(),
      'mnt-model/README.txt': 'not a model',
      // A folder holding one model file under another name.
      'digits-v2/weights.onnx': mlpModel(),
      // Two model files, none named model.onnx: which one is meant is not known.
      'two/a.onnx': mlpModel(),
      'two/b.onnx': addModel(),
      // KServe's mount of a storageUri naming one file.
      'file/adder.onnx': addModel(),
      'work/model.onnx': workModel(),
    });
  });
  afterEach(async () => {
    await Promise.all(started.splice(0).map((k) => k.kill()));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('a folder holding one model file is served under MODEL_NAME, else under the folder\'s name; several files without model.onnx are refused', async () => {
    const [named, unnamed, two] = await Promise.all([
      start(['--model-repository', path.join(dir, 'mnt-model'), '--http-port', '0', '--grpc-port', '-1', '--log-level', 'warn'], { MODEL_NAME: 'digits' }),
      start(['--model-repository', path.join(dir, 'digits-v2'), '--http-port', '0', '--grpc-port', '-1', '--log-level', 'warn']),
      runKiln(['--model-repository', path.join(dir, 'two'), '--http-port', '0', '--grpc-port', '-1']),
    ]);
    await inferMlp(named.url, 'digits', 1);
    assert.equal(await status(`${named.url}/v2/models/mnt-model`), 404);
    assert.match(named.stdout(), /models: digits v1\n/);
    await inferMlp(unnamed.url, 'digits-v2', 2);
    assert.equal(await status(`${unnamed.url}/v2/models/weights`), 404);
    assert.equal(two.code, 1);
    assert.equal(two.stderr, `kiln: E_INVALID_ARGUMENT: model repository ${path.join(dir, 'two')} holds 2 model files (a.onnx, b.onnx) and no model.onnx: a folder of one model holds one .onnx file (or names it model.onnx); a repository holds one folder per model\n`);
  });

  it('the path of one .onnx file is served under MODEL_NAME, else under the file\'s name; a bad name is refused', async () => {
    const file = path.join(dir, 'file', 'adder.onnx');
    const [named, unnamed, bad] = await Promise.all([
      start(['--model-repository', file, '--http-port', '0', '--grpc-port', '-1', '--log-level', 'warn'], { MODEL_NAME: 'sum' }),
      start(['--model-repository', file, '--http-port', '0', '--grpc-port', '-1', '--log-level', 'warn']),
      runKiln(['--model-repository', file, '--http-port', '0', '--grpc-port', '-1'], { MODEL_NAME: '../up' }),
    ]);
    const body = JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] });
    for (const [k, name] of [[named, 'sum'], [unnamed, 'adder']] as const) {
      const r = await fetch(`${k.url}/v2/models/${name}/infer`, { method: 'POST', body });
      assert.equal(r.status, 200);
      assert.deepEqual(((await r.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [11, 22, 33, 44]);
    }
    assert.equal(await status(`${named.url}/v2/models/adder`), 404);
    assert.deepEqual(bad, { code: 1, stderr: 'kiln: E_INVALID_ARGUMENT: model name "../up" is not a model name (letters, digits, \'_\', \'-\', \'.\', not starting with \'.\' or \'-\')\n' });
  });

  it('PORT and GRPC_PORT set the ports; --http-port (or --port), --grpc-port, --model-name and --cache-config win over the environment', async () => {
    const [p1, g1, p2, g2, p3] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]);
    const model = path.join(dir, 'mnt-model');
    const fromEnv = await start(['--model-repository', model, '--log-level', 'warn'], { PORT: String(p1), GRPC_PORT: String(g1), MODEL_NAME: 'from-env' });
    assert.equal(fromEnv.url, `http://127.0.0.1:${p1}`);
    assert.equal(fromEnv.grpc, `127.0.0.1:${g1}`);
    assert.deepEqual(await grpcCall(fromEnv.grpc as string, 'ServerReady'), { ready: true });
    await inferMlp(fromEnv.url, 'from-env', 3);
    await fromEnv.kill();
    // KILN_CACHE_CONFIG is read (a bad value stops the server, saying where it came from) ...
    const refused = await runKiln(['--model-repository', model, '--http-port', '0', '--grpc-port', '-1'], { KILN_CACHE_CONFIG: 'memcached,size=1' });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^kiln: E_INVALID_ARGUMENT: --cache-config "memcached,size=1": .* \(from the environment variable KILN_CACHE_CONFIG\)\n$/);
    // ... and so is PORT.
    assert.deepEqual(await runKiln(['--model-repository', model, '--grpc-port', '-1'], { PORT: 'eighty' }), {
      code: 1, stderr: 'kiln: E_INVALID_ARGUMENT: --http-port must be a port number (0: any free port), received eighty (from the environment variable PORT)\n',
    });
    // Flags given win over every one of them.
    const env = { PORT: String(p1), GRPC_PORT: String(g1), MODEL_NAME: 'from-env', KILN_CACHE_CONFIG: 'memcached,size=1' };
    const [flags, oldFlag] = await Promise.all([
      start(['--model-repository', model, '--http-port', String(p2), '--grpc-port', String(g2), '--model-name', 'from-flag', '--cache-config', 'local,size=1048576', '--log-level', 'warn'], env),
      start(['--model-repository', model, '--port', String(p3), '--grpc-port', '-1', '--model-name', 'old-flag', '--cache-config', 'local,size=1048576', '--log-level', 'warn'], env),
    ]);
    assert.equal(flags.url, `http://127.0.0.1:${p2}`);
    assert.equal(flags.grpc, `127.0.0.1:${g2}`);
    await inferMlp(flags.url, 'from-flag', 4);
    assert.equal(await status(`${flags.url}/v2/models/from-env`), 404);
    assert.equal(oldFlag.url, `http://127.0.0.1:${p3}`);
    await inferMlp(oldFlag.url, 'old-flag', 5);
    // --port is --http-port's old name: not both.
    assert.deepEqual(await runKiln(['--model-repository', model, '--port', '0', '--http-port', '0']), { code: 1, stderr: 'kiln: E_INVALID_ARGUMENT: give --port or --http-port, not both\n' });
  });

  it('SIGTERM drains: readiness 503 (gRPC ServerReady false) at once, live 200, requests served; a second SIGTERM ends the delay; a request accepted before the close is answered; exit 0', async () => {
    const k = await start(['--model-repository', path.join(dir, 'work'), '--model-name', 'work', '--http-port', '0', '--grpc-port', '0', '--drain-delay-secs', '600']);
    const grpcAddress = k.grpc as string;
    assert.equal(await status(`${k.url}/v2/health/ready`), 200);
    // A request the server has accepted, whose body it is still reading: held open by the
    // test across the close, so that it is in flight there whatever the machine's speed.
    const body = workBody(100, 20);
    const held = http.request(`${k.url}/v2/models/work/infer`, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } });
    const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
      held.on('response', (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode as number, body: text }));
      });
      held.on('error', reject);
    });
    held.write(body.slice(0, 10));
    await k.logged((l) => l.msg === 'incoming request' && (l.req as { url?: string } | undefined)?.url === '/v2/models/work/infer');

    k.child.kill('SIGTERM');
    await k.logged('draining: readiness answers 503, requests are still served');
    assert.equal(await status(`${k.url}/v2/health/ready`), 503);
    assert.equal(await status(`${k.url}/v2/health/live`), 200);
    assert.deepEqual(await grpcCall(grpcAddress, 'ServerReady'), { ready: false });
    assert.deepEqual(await grpcCall(grpcAddress, 'ServerLive'), { live: true });
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${k.url}/v2/models/work/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: workBody(i) });
      assert.equal(r.status, 200, 'requests are served while draining');
      assert.deepEqual(((await r.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [2 * i, 2 * i + 2, 2 * i + 4, 2 * i + 6]);
    }

    k.child.kill('SIGTERM');
    await k.logged('closing: no new connections, answering the requests accepted');
    // A new connection is not served now (agent: false: not one kept alive from before): refused,
    // or reset when it reached the listening socket's queue as it closed.
    const refused = await new Promise<string>((resolve) => http.get(`${k.url}/v2/health/live`, { agent: false }, (res) => resolve(`answered ${res.statusCode}`)).on('error', (e: NodeJS.ErrnoException) => resolve(e.code as string)));
    assert.ok(refused === 'ECONNREFUSED' || refused === 'ECONNRESET', refused);
    held.end(body.slice(10));
    const got = await answer;
    assert.equal(got.status, 200, got.body);
    assert.deepEqual((JSON.parse(got.body) as { outputs: { data: number[] }[] }).outputs[0].data, [200, 202, 204, 206]);
    assert.equal(await k.exit, 0, k.stderr());
    const phases = k.logs().map((l) => l.msg).filter((m) => /^(shutting down|draining|drain delay skipped|closing|stopped)/.test(m));
    assert.deepEqual(phases, ['shutting down', 'draining: readiness answers 503, requests are still served', 'drain delay skipped', 'closing: no new connections, answering the requests accepted', 'stopped']);
    const shutdown = k.logs().find((l) => l.msg === 'shutting down');
    assert.deepEqual([shutdown?.signal, shutdown?.drainDelaySecs], ['SIGTERM', 600]);
  });

  it('--drain-delay-secs 1: the delay ends by itself, then it closes and exits 0', async () => {
    // What happens during the delay is the test above's (with a delay long enough to look);
    // here only that the delay ends without a second signal.
    const k = await start(['--model-repository', path.join(dir, 'mnt-model'), '--http-port', '0', '--grpc-port', '-1', '--drain-delay-secs', '1']);
    k.child.kill('SIGTERM');
    assert.equal(await k.exit, 0, k.stderr());
    const phases = k.logs().map((l) => l.msg).filter((m) => /^(shutting down|draining|drain delay skipped|closing|stopped)/.test(m));
    assert.deepEqual(phases, ['shutting down', 'draining: readiness answers 503, requests are still served', 'closing: no new connections, answering the requests accepted', 'stopped']);
  });
});

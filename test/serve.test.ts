// `kiln serve` as a process: the example repository (README's main command), one model file,
// bearer-token auth, structured logs with request ids, and SIGTERM answering the requests in
// flight before exiting 0.
import { strict as assert } from 'assert';
import { spawn, type ChildProcessWithoutNullStreams } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { addModel } from '../lib/samples';
import { inferenceService } from '../lib/server/grpc';
import { msPerStep, workModel } from './helpers/batching-models';
import { writeFiles } from '../support/repository';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

interface Served {
  child: ChildProcessWithoutNullStreams;
  url: string;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
}

/** Starts `kiln serve ARGS --port 0` and waits for the line that says where it listens. */
async function serve(...args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--grpc-port', '0', ...args]);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listening line in 30 s: ${out} ${err}`)), 30_000);
    const check = (): void => {
      const m = /at (http:\/\/127\.0\.0\.1:\d+) and gRPC at 127\.0\.0\.1:\d+ /.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on('data', check);
    void exit.then((code) => reject(new Error(`kiln serve exited ${code}: ${out} ${err}`)));
  });
  return { child, url, stdout: () => out, stderr: () => err, exit };
}

describe('kiln serve (the process)', function () {
  this.timeout(120_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-test-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('--example serves the repository it writes; the printed curl line works; SIGTERM exits 0 and removes it', async () => {
    const s = await serve('--example', '--drain-delay-secs', '0');
    try {
      const curl = /^try: curl -s -X POST (\S+) -H 'content-type: application\/json' -d '(.+)'$/m.exec(s.stdout());
      assert.ok(curl, s.stdout());
      const res = await fetch(curl[1], { method: 'POST', headers: { 'content-type': 'application/json' }, body: curl[2] });
      assert.deepEqual(await res.json(), { model_name: 'add', model_version: '1', outputs: [{ name: 'y', shape: [1, 4], datatype: 'FP32', data: [11, 22, 33, 44] }] });
      const mlp = await (await fetch(`${s.url}/v2/models/mlp`)).json();
      assert.deepEqual(mlp, { name: 'mlp', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 512] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }] });
      // The same over gRPC, on the port printed.
      const address = /and gRPC at (127\.0\.0\.1:\d+) /.exec(s.stdout())?.[1] as string;
      const client = new (inferenceService())(address, grpc.credentials.createInsecure()) as unknown as { ModelInfer(r: unknown, cb: (e: Error | null, r: { raw_output_contents: Buffer[] }) => void): void; close(): void };
      const answer = await new Promise<{ raw_output_contents: Buffer[] }>((resolve, reject) => client.ModelInfer({
        model_name: 'add', inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }, { name: 'b', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [10, 20, 30, 40] } }],
      }, (e, r) => (e ? reject(e) : resolve(r))));
      client.close();
      const y = answer.raw_output_contents[0];
      assert.deepEqual(Array.from(new Float32Array(y.buffer.slice(y.byteOffset, y.byteOffset + 16))), [11, 22, 33, 44]);
      const repository = /\(model repository (\S+)\)/.exec(s.stdout())?.[1] as string;
      assert.ok(fs.existsSync(path.join(repository, 'mlp', 'config.pbtxt')));
      s.child.kill('SIGTERM');
      assert.equal(await s.exit, 0);
      assert.equal(fs.existsSync(repository), false, 'the example repository is removed');
      // Structured logs: JSON lines, the request with its id.
      const logs = s.stderr().trim().split('\n').map((l) => JSON.parse(l) as { msg: string; reqId?: string; req?: { url: string } });
      assert.ok(logs.some((l) => l.msg === 'incoming request' && l.reqId && l.req?.url === '/v2/models/add/infer'), s.stderr());
      assert.ok(logs.some((l) => l.msg === 'shutting down'));
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('SIGTERM with requests in flight: each is answered, then the process exits 0', async () => {
    const ms = await msPerStep();
    const steps = Math.max(20, Math.round(400 / ms)); // ~400 ms a request
    fs.mkdirSync(path.join(dir, 'slow', 'work', '1'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'slow', 'work', '1', 'model.onnx'), workModel());
    fs.writeFileSync(path.join(dir, 'slow', 'work', 'config.pbtxt'), 'max_batch_size: 4\ndynamic_batching { }\ninstance_group [ { count: 2 } ]');
    // No drain delay: the close itself, with requests in flight (test/serve-kserve.test.ts drains).
    const s = await serve('--model-repository', path.join(dir, 'slow'), '--log-level', 'warn', '--drain-delay-secs', '0');
    try {
      const body = (i: number): string => JSON.stringify({ inputs: [
        { name: 'x', shape: [1, 4], datatype: 'FP32', data: [i, i, i, i] },
        { name: 'work', shape: [1], datatype: 'INT64', data: [steps] },
        { name: 'fail', shape: [1], datatype: 'INT64', data: [0] },
      ] });
      const answers = Array.from({ length: 4 }, (_, i) => fetch(`${s.url}/v2/models/work/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: body(i) })
        .then(async (r) => ({ status: r.status, body: (await r.json()) as { outputs: { data: number[] }[] } })));
      await new Promise((r) => setTimeout(r, Math.min(150, 0.3 * steps * ms)));
      s.child.kill('SIGTERM');
      const got = await Promise.all(answers);
      got.forEach((a, i) => {
        assert.equal(a.status, 200, JSON.stringify(a.body));
        assert.deepEqual(a.body.outputs[0].data, [2 * i, 2 * i, 2 * i, 2 * i]);
      });
      assert.equal(await s.exit, 0);
      await assert.rejects(fetch(`${s.url}/v2/health/live`), 'no longer listening');
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('one model file is served under its name; --auth-token guards all but health', async () => {
    fs.writeFileSync(path.join(dir, 'adder.onnx'), addModel());
    const s = await serve(path.join(dir, 'adder.onnx'), '--auth-token', 's3cret', '--log-level', 'silent');
    try {
      const req = { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 1, 1, 1] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] };
      const post = (headers: Record<string, string>): Promise<Response> => fetch(`${s.url}/v2/models/adder/infer`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(req) });
      const denied = await post({});
      assert.equal(denied.status, 401);
      assert.equal(denied.headers.get('www-authenticate'), 'Bearer');
      assert.deepEqual(await denied.json(), { error: 'missing or wrong bearer token (Authorization: Bearer <token>)' });
      assert.equal((await post({ authorization: 'Bearer wrong' })).status, 401);
      const ok = await post({ authorization: 'Bearer s3cret' });
      assert.equal(ok.status, 200);
      assert.deepEqual(((await ok.json()) as { outputs: { data: number[] }[] }).outputs[0].data, [2, 3, 4, 5]);
      assert.equal((await fetch(`${s.url}/v2/health/ready`)).status, 200, 'health without a token');
      assert.equal((await fetch(`${s.url}/v2/models/adder`)).status, 401);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('a full queue answers 429 with --queue-full-http-status 429; poll mode picks up a new model', async () => {
    const ms = await msPerStep();
    const steps = Math.max(20, Math.round(300 / ms));
    writeFiles(path.join(dir, 'queue'), { 'work/1/model.onnx': workModel(), 'work/config.pbtxt': 'max_batch_size: 1\ndynamic_batching { default_queue_policy { max_queue_size: 1 } }' });
    const s = await serve('--model-repository', path.join(dir, 'queue'), '--queue-full-http-status', '429', '--model-control-mode', 'poll', '--repository-poll-secs', '0.2', '--log-level', 'silent');
    try {
      const body = JSON.stringify({ inputs: [
        { name: 'x', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] },
        { name: 'work', shape: [1], datatype: 'INT64', data: [steps] },
        { name: 'fail', shape: [1], datatype: 'INT64', data: [0] },
      ] });
      const statuses = await Promise.all(Array.from({ length: 5 }, () => fetch(`${s.url}/v2/models/work/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(async (r) => [r.status, ((await r.json()) as { error?: string }).error ?? ''] as const)));
      assert.ok(statuses.filter(([st]) => st === 200).length >= 1, JSON.stringify(statuses));
      const refused = statuses.filter(([st]) => st !== 200);
      assert.ok(refused.length >= 1 && refused.every(([st, e]) => st === 429 && /queue/i.test(e)), JSON.stringify(statuses));
      // A model added to the repository is served within a poll or two.
      writeFiles(path.join(dir, 'queue'), { 'adder/1/model.onnx': addModel() });
      const deadline = Date.now() + 10_000;
      let status = 0;
      while (Date.now() < deadline && (status = (await fetch(`${s.url}/v2/models/adder/ready`)).status) !== 200) await new Promise((r) => setTimeout(r, 100));
      assert.equal(status, 200);
    } finally {
      s.child.kill('SIGKILL');
    }
  });

  it('bad options are refused with a Kiln code before serving', async () => {
    const run = (...args: string[]): Promise<{ code: number | null; err: string }> => new Promise((resolve) => {
      const child = spawn(process.execPath, [CLI, 'serve', ...args]);
      let err = '';
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (code) => resolve({ code, err }));
    });
    assert.deepEqual(await run('--example', '--model-control-mode', 'sometimes'), { code: 1, err: 'kiln: E_INVALID_ARGUMENT: --model-control-mode must be none, explicit or poll, received sometimes\n' });
    assert.deepEqual(await run('--model-repository', path.join(dir, 'nowhere')), { code: 1, err: `kiln: E_NOT_FOUND: model repository ${path.join(dir, 'nowhere')} does not exist\n` });
    assert.deepEqual(await run(), { code: 1, err: 'kiln: E_INVALID_ARGUMENT: serve one of: a model repository, a model file, or the example\n' });
  });
});

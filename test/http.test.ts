// `kiln serve`'s KServe v2 HTTP/REST endpoints, exercised with fetch over loopback: health,
// metadata, readiness, infer with JSON tensors of every datatype (answers equal to an
// in-process session's), the repository extension, and bad requests answered with 4xx in
// Triton's shape while the server keeps serving.
import { strict as assert } from 'assert';
import * as net from 'net';
import * as fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { AddressInfo } from 'net';
import type { FastifyInstance } from 'fastify';
import { Session, type Feeds } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';
import { addModel, mlpModel, prng } from '../lib/samples';
import { createHttpServer } from '../lib/server/http';
import { fromJson } from '../lib/server/tensors';
import { ModelManager } from '../lib/server/models';
import type { TensorType } from '../lib/tensor';
import { writeFiles } from '../support/repository';

/** One Identity per datatype: every type goes in and comes back. */
const IDENTITY_TYPES: [string, TensorType, unknown[]][] = [
  ['BOOL', 'bool', [true, false, true]],
  ['UINT8', 'uint8', [0, 7, 255]], ['UINT16', 'uint16', [0, 7, 65535]], ['UINT32', 'uint32', [0, 7, 4294967295]], ['UINT64', 'uint64', [0, 7, 2 ** 53 - 1]],
  ['INT8', 'int8', [-128, 0, 127]], ['INT16', 'int16', [-32768, 0, 32767]], ['INT32', 'int32', [-2147483648, 0, 2147483647]], ['INT64', 'int64', [-(2 ** 53) + 1, 0, 2 ** 53 - 1]],
  ['FP16', 'float16', [-2.5, 0, 65504]], ['FP32', 'float32', [-2.5, 0.125, 3e38]], ['FP64', 'float64', [-2.5, 1e-300, 1e300]], ['BF16', 'bfloat16', [-2.5, 0, 2 ** 100]],
  ['BYTES', 'string', ['héllo', '', 'kiln']],
];

function identities(): Uint8Array {
  const g = new GraphBuilder('identities');
  for (const [dt, type] of IDENTITY_TYPES) {
    const x = g.input(`in_${dt}`, type, [3]);
    g.output(g.node('Identity', [x], { outputs: `out_${dt}` }), type, [3]);
  }
  return g.build({ opset: 17 });
}

describe('kiln serve: KServe v2 over HTTP', function () {
  this.timeout(60_000);
  let dir: string;
  let manager: ModelManager;
  let app: FastifyInstance;
  let base: string;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-http-'));
    const files: Record<string, string | Uint8Array> = {
      'mlp/config.pbtxt': 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500 }', 'mlp/1/model.onnx': mlpModel(),
      'types/config.pbtxt': 'max_batch_size: 0', 'types/1/model.onnx': identities(),
      'flat/config.pbtxt': 'max_batch_size: 8\ninput [ { name: "a" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } }, { name: "b" data_type: TYPE_FP32 dims: [ 4 ] } ]\noutput [ { name: "y" data_type: TYPE_FP32 dims: [ 2, 2 ] reshape: { shape: [ 4 ] } } ]',
      'flat/1/model.onnx': addModel(),
    };
    writeFiles(dir, files);
    manager = await ModelManager.open(dir, { controlMode: 'explicit', loadModels: ['*'] });
    app = createHttpServer(manager, { bodyLimit: 4 * 2 ** 20, maxElements: 2 ** 20 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app?.close();
    await manager?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const get = (url: string): Promise<Response> => fetch(base + url);
  const post = (url: string, body: unknown): Promise<Response> => fetch(base + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  async function error(r: Response | Promise<Response>, status: number, fragment: string): Promise<void> {
    const res = await r;
    const body = (await res.json()) as { error?: string };
    assert.equal(res.status, status, JSON.stringify(body));
    assert.ok(typeof body.error === 'string' && body.error.includes(fragment), `${JSON.stringify(body)} lacks ${JSON.stringify(fragment)}`);
  }

  it('health, server metadata, model metadata and readiness', async () => {
    assert.equal((await get('/v2/health/live')).status, 200);
    assert.equal((await get('/v2/health/ready')).status, 200);
    assert.deepEqual(await (await get('/v2')).json(), { name: 'kiln', version: '0.1.0', extensions: ['binary_tensor_data', 'model_repository', 'statistics'] });
    const meta = { name: 'mlp', versions: ['1'], platform: 'onnxruntime_onnx', inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 512] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }] };
    assert.deepEqual(await (await get('/v2/models/mlp')).json(), meta);
    assert.deepEqual(await (await get('/v2/models/mlp/versions/1')).json(), meta);
    assert.equal((await get('/v2/models/mlp/ready')).status, 200);
    assert.equal((await get('/v2/models/mlp/versions/1/ready')).status, 200);
    assert.equal((await get('/v2/models/mlp/versions/2/ready')).status, 400);
    await error(get('/v2/models/nope'), 404, 'unknown model "nope"');
    await error(get('/v2/models/mlp/versions/7'), 404, 'model "mlp" has no version 7');
    await error(get('/v2/nothing/here'), 404, 'no route GET /v2/nothing/here');
  });

  it('infer with JSON tensors: answers equal to an in-process session, flat or nested data, requested outputs, id echoed', async () => {
    const session = await Session.create(mlpModel());
    try {
      const rand = prng(8);
      const rows = Array.from({ length: 3 }, () => Array.from({ length: 512 }, () => rand()));
      const want = (await session.run({ x: { type: 'float32', data: Float32Array.from(rows.flat()), dims: [3, 512] } } as Feeds)).y.data as Float32Array;
      for (const data of [rows.flat(), rows]) {
        const res = await post('/v2/models/mlp/infer', { id: 'r1', inputs: [{ name: 'x', shape: [3, 512], datatype: 'FP32', data }], outputs: [{ name: 'y' }] });
        assert.equal(res.status, 200);
        const body = (await res.json()) as { model_name: string; model_version: string; id: string; outputs: { name: string; shape: number[]; datatype: string; data: number[] }[] };
        assert.equal(body.model_name, 'mlp');
        assert.equal(body.model_version, '1');
        assert.equal(body.id, 'r1');
        assert.deepEqual(body.outputs.map((o) => [o.name, o.shape, o.datatype]), [['y', [3, 10], 'FP32']]);
        assert.deepEqual(body.outputs[0].data, Array.from(want), 'JSON carries float32 exactly');
      }
      // Many at once are batched and each gets its own rows.
      const answers = await Promise.all(rows.map((r) => post('/v2/models/mlp/versions/1/infer', { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: r }] }).then((x) => x.json() as Promise<{ outputs: { data: number[] }[] }>)));
      answers.forEach((a, i) => assert.deepEqual(a.outputs[0].data, Array.from(want.subarray(i * 10, i * 10 + 10))));
    } finally {
      await session.dispose();
    }
  });

  it("Triton's reshape: inputs and outputs in the config's dims, the model's shapes behind them", async () => {
    const res = await post('/v2/models/flat/infer', { inputs: [{ name: 'a', shape: [1, 2, 2], datatype: 'FP32', data: [[[1, 2], [3, 4]]] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] });
    assert.deepEqual(await res.json(), { model_name: 'flat', model_version: '1', outputs: [{ name: 'y', shape: [1, 2, 2], datatype: 'FP32', data: [11, 22, 33, 44] }] });
    assert.deepEqual(((await (await get('/v2/models/flat')).json()) as { inputs: unknown[] }).inputs, [{ name: 'a', datatype: 'FP32', shape: [-1, 2, 2] }, { name: 'b', datatype: 'FP32', shape: [-1, 4] }]);
    await error(post('/v2/models/flat/infer', { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }] }), 400, 'input "a": shape [1,4] does not match the config\'s dims [-1,2,2]');
  });

  it('every datatype goes in and comes back', async () => {
    const res = await post('/v2/models/types/infer', { inputs: IDENTITY_TYPES.map(([dt, , data]) => ({ name: `in_${dt}`, shape: [3], datatype: dt, data })) });
    const body = (await res.json()) as { outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[] };
    assert.equal(res.status, 200, JSON.stringify(body));
    const got = new Map(body.outputs.map((o) => [o.name, o]));
    for (const [dt, , data] of IDENTITY_TYPES) {
      const o = got.get(`out_${dt}`);
      assert.ok(o, dt);
      assert.equal(o.datatype, dt);
      assert.deepEqual(o.shape, [3]);
      // The values are exact in their types (float32's 3e38 as float32 rounds it).
      const expected = dt === 'FP32' ? data.map((v) => Math.fround(v as number)) : data;
      assert.deepEqual(o.data, expected, dt);
    }
  });

  /** A binary infer request: the JSON header, then the raw bytes. */
  function binaryRequest(url: string, header: unknown, ...chunks: Buffer[]): Promise<Response> {
    const json = Buffer.from(JSON.stringify(header));
    return fetch(base + url, { method: 'POST', headers: { 'inference-header-content-length': String(json.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([json, ...chunks]) });
  }

  /** A binary response's JSON header and the bytes of each binary output, in order. */
  async function binaryResponse(res: Response): Promise<{ header: { outputs: { name: string; datatype: string; shape: number[]; parameters?: { binary_data_size?: number }; data?: unknown[] }[] }; parts: Buffer[] }> {
    const body = Buffer.from(await res.arrayBuffer());
    const length = Number(res.headers.get('inference-header-content-length'));
    const header = JSON.parse(body.toString('utf8', 0, length));
    const parts: Buffer[] = [];
    let at = length;
    for (const o of header.outputs) {
      const size = o.parameters?.binary_data_size;
      if (size === undefined) continue;
      parts.push(body.subarray(at, at + size));
      at += size;
    }
    assert.equal(at, body.length, 'the binary parts fill the body');
    return { header, parts };
  }

  it("Triton's binary tensor extension: raw inputs after a JSON header, outputs as binary on request", async () => {
    const session = await Session.create(mlpModel());
    try {
      const rand = prng(9);
      const x = Float32Array.from({ length: 2 * 512 }, () => rand());
      const want = (await session.run({ x: { type: 'float32', data: x, dims: [2, 512] } } as Feeds)).y.data as Float32Array;
      const raw = Buffer.from(x.buffer);
      // Binary in, binary out (binary_data_output), then binary in, JSON out.
      const res = await binaryRequest('/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [2, 512], datatype: 'FP32', parameters: { binary_data_size: raw.length } }], parameters: { binary_data_output: true } }, raw);
      assert.equal(res.status, 200);
      const { header, parts } = await binaryResponse(res);
      assert.deepEqual(header.outputs.map((o) => [o.name, o.datatype, o.shape, o.parameters?.binary_data_size, o.data]), [['y', 'FP32', [2, 10], 80, undefined]]);
      assert.deepEqual(Array.from(new Float32Array(parts[0].buffer.slice(parts[0].byteOffset, parts[0].byteOffset + 80))), Array.from(want));
      const json = await binaryRequest('/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [2, 512], datatype: 'FP32', parameters: { binary_data_size: raw.length } }], outputs: [{ name: 'y', parameters: { binary_data: false } }] }, raw);
      assert.equal(json.headers.get('inference-header-content-length'), null);
      assert.deepEqual(((await json.json()) as { outputs: { data: number[] }[] }).outputs[0].data, Array.from(want));
    } finally {
      await session.dispose();
    }
    // BYTES (length-prefixed), BOOL and INT64 in binary, mixed with JSON inputs.
    const strings = ['héllo', '', 'kiln'];
    const bytes = Buffer.concat(strings.flatMap((t) => {
      const b = Buffer.from(t);
      const len = Buffer.alloc(4);
      len.writeUInt32LE(b.length);
      return [len, b];
    }));
    const bools = Buffer.from([1, 0, 1]);
    const ints = Buffer.from(BigInt64Array.of(-5n, 0n, 7n).buffer);
    const inputs = IDENTITY_TYPES.map(([dt, , data]) => ({ name: `in_${dt}`, shape: [3], datatype: dt, data }));
    const asBinary = (dt: string, size: number): void => {
      const i = inputs.find((x) => x.datatype === dt) as Record<string, unknown>;
      delete i.data;
      i.parameters = { binary_data_size: size };
    };
    asBinary('BOOL', 3);
    asBinary('INT64', 24);
    asBinary('BYTES', bytes.length);
    const res = await binaryRequest('/v2/models/types/infer', {
      inputs, outputs: IDENTITY_TYPES.map(([dt]) => ({ name: `out_${dt}`, parameters: { binary_data: ['BOOL', 'INT64', 'BYTES'].includes(dt) } })),
    }, bools, ints, bytes);
    assert.equal(res.status, 200);
    const { header, parts } = await binaryResponse(res);
    assert.deepEqual(header.outputs.filter((o) => o.parameters).map((o) => o.name), ['out_BOOL', 'out_INT64', 'out_BYTES']);
    assert.deepEqual([...parts[0]], [1, 0, 1]);
    assert.deepEqual(Array.from(new BigInt64Array(parts[1].buffer.slice(parts[1].byteOffset, parts[1].byteOffset + 24))), [-5n, 0n, 7n]);
    assert.ok(parts[2].equals(bytes), 'BYTES come back length-prefixed');
    assert.deepEqual(header.outputs.find((o) => o.name === 'out_UINT8')?.data, [0, 7, 255], 'the others as JSON');
  });

  it('binary requests that lie about their sizes get 400, and the server keeps serving', async () => {
    const raw = Buffer.alloc(512 * 4);
    const x = (size: number): Record<string, unknown> => ({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', parameters: { binary_data_size: size } }] });
    const json = Buffer.from(JSON.stringify(x(raw.length)));
    const lying = await fetch(`${base}/v2/models/mlp/infer`, { method: 'POST', headers: { 'inference-header-content-length': String(json.length + raw.length + 10) }, body: Buffer.concat([json, raw]) });
    await error(lying, 400, 'Inference-Header-Content-Length');
    await error(fetch(`${base}/v2/models/mlp/infer`, { method: 'POST', headers: { 'inference-header-content-length': '-3' }, body: json }), 400, 'Inference-Header-Content-Length "-3"');
    await error(binaryRequest('/v2/models/mlp/infer', x(raw.length + 4), raw), 400, 'binary_data_size 2052 goes past the end of the binary data (2048 bytes left)');
    await error(binaryRequest('/v2/models/mlp/infer', x(1000), raw), 400, 'needs 2048 bytes, binary_data_size is 1000');
    await error(binaryRequest('/v2/models/mlp/infer', x(raw.length), raw, Buffer.alloc(8)), 400, 'the body holds 8 bytes after the inputs\' binary data');
    await error(post('/v2/models/mlp/infer', x(raw.length)), 400, 'no Inference-Header-Content-Length');
    await error(binaryRequest('/v2/models/types/infer', { inputs: [{ name: 'in_BYTES', shape: [3], datatype: 'BYTES', parameters: { binary_data_size: 6 } }] }, Buffer.from([5, 0, 0, 0, 65, 66])), 400, 'BYTES element 0 claims 5 bytes, 2 remain');
    await error(binaryRequest('/v2/models/types/infer', { inputs: [{ name: 'in_BOOL', shape: [3], datatype: 'BOOL', parameters: { binary_data_size: 3 } }] }, Buffer.from([1, 2, 0])), 400, 'BOOL element 1 is 2');
    await error(binaryRequest('/v2/models/mlp/infer', { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: [], parameters: { binary_data_size: 2048 } }] }, raw), 400, 'has both "data" and binary_data_size');
    assert.equal((await binaryRequest('/v2/models/mlp/infer', x(raw.length), raw)).status, 200, 'still serving');
  });

  it('FP16 and BF16 values round to the nearest (ties to even)', () => {
    const bf16 = fromJson({ name: 'a', shape: [4], datatype: 'BF16', data: [1 + 2 ** -8, 1 + 3 * 2 ** -8, -0, 1e-45] }, 'bfloat16', 10);
    assert.deepEqual(Array.from(bf16.data as Uint16Array), [0x3f80, 0x3f82, 0x8000, 0x0000]);
    const fp16 = fromJson({ name: 'a', shape: [3], datatype: 'FP16', data: [1 + 2 ** -11, 1 + 3 * 2 ** -11, 65520] }, 'float16', 10);
    assert.deepEqual(Array.from(fp16.data as Uint16Array), [0x3c00, 0x3c02, 0x7c00]);
  });

  it('bad requests get 4xx with an error message, and the server keeps serving', async () => {
    const x = (over: Record<string, unknown> = {}): Record<string, unknown> => ({ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0), ...over });
    await error(post('/v2/models/mlp/infer', '{"inputs": [ {'), 400, 'JSON');
    await error(post('/v2/models/mlp/infer', { inputs: [] }), 400, '"inputs" must be a non-empty array');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ data: [1, 2, 3] })] }), 400, 'input "x": shape [1,512] needs 512 values, "data" holds 3');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ datatype: 'FP8' })] }), 400, 'unknown datatype "FP8"');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ datatype: 'INT32' })] }), 400, 'the model expects FP32, received INT32');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ shape: [100000, 100000, 512] })] }), 400, 'has more than 1048576 elements');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ shape: [2, 256] })] }), 400, 'input "x"');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ name: 'z' })] }), 400, 'unexpected inference input "z" for model "mlp"');
    await error(post('/v2/models/mlp/infer', { inputs: [x()], outputs: [{ name: 'nope' }] }), 400, 'unexpected inference output "nope"');
    await error(post('/v2/models/mlp/infer', { inputs: [x({ data: new Array(512).fill('a') })] }), 400, 'FP32 data must be numbers');
    await error(post('/v2/models/types/infer', { inputs: [{ name: 'in_UINT8', shape: [3], datatype: 'UINT8', data: [1, 2, 256] }] }), 400, 'UINT8 value 256 at 2 is out of range [0, 255]');
    await error(post('/v2/models/mlp/versions/x1/infer', { inputs: [x()] }), 400, 'version "x1" is not a number');
    await error(post('/v2/models/..%2F..%2Fetc/infer', { inputs: [x()] }), 404, 'unknown model "../../etc"');
    await error(post('/v2/models/mlp/infer', { inputs: [x()], parameters: { priority: -1 } }), 400, 'parameter "priority"');
    await error(fetch(`${base}/v2/models/mlp/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(5 * 2 ** 20) }), 413, 'larger than 4194304 bytes');
    const ok = await post('/v2/models/mlp/infer', { inputs: [x()] });
    assert.equal(ok.status, 200, 'still serving');
  });

  it("the statistics extension and Prometheus metrics count what was served, in Triton's names", async () => {
    type Stat = { name: string; version: string; inference_count: number; execution_count: number; last_inference: number; inference_stats: Record<string, { count: number; ns: number }>; batch_stats: { batch_size: number; compute_infer: { count: number; ns: number } }[] };
    const stats = async (url: string): Promise<Stat[]> => ((await (await get(url)).json()) as { model_stats: Stat[] }).model_stats;
    const metric = (text: string, line: string): number => Number(new RegExp(`^${line.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);
    const scrape = async (): Promise<string> => {
      const r = await get('/metrics');
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
      return r.text();
    };
    const [before] = await stats('/v2/models/mlp/versions/1/stats');
    const text0 = await scrape();
    const x = { name: 'x', shape: [2, 512], datatype: 'FP32', data: new Array(1024).fill(0.5) };
    await Promise.all(Array.from({ length: 5 }, () => post('/v2/models/mlp/infer', { inputs: [x] })));
    await error(post('/v2/models/mlp/infer', { inputs: [{ ...x, shape: [2, 256], data: new Array(512).fill(0) }] }), 400, 'input "x"');
    const [after] = await stats('/v2/models/mlp/stats');
    assert.equal(after.name, 'mlp');
    assert.equal(after.version, '1');
    assert.equal(after.inference_count - before.inference_count, 10, 'rows');
    assert.equal(after.inference_stats.success.count - before.inference_stats.success.count, 5);
    assert.equal(after.inference_stats.fail.count - before.inference_stats.fail.count, 1);
    assert.ok(after.inference_stats.success.ns > before.inference_stats.success.ns && after.inference_stats.compute_infer.ns > before.inference_stats.compute_infer.ns);
    assert.ok(after.last_inference >= Date.now() - 60_000);
    assert.equal(after.batch_stats.reduce((n, b) => n + b.compute_infer.count, 0), after.execution_count, 'every execution in one batch size');
    assert.deepEqual((await stats('/v2/models/stats')).map((m) => m.name), ['flat', 'mlp', 'types']);
    await error(get('/v2/models/nope/stats'), 404, 'unknown model "nope"');
    const text = await scrape();
    const labels = '{model="mlp",version="1"}';
    assert.equal(metric(text, `nv_inference_request_success${labels}`) - metric(text0, `nv_inference_request_success${labels}`), 5);
    assert.equal(metric(text, `nv_inference_count${labels}`) - metric(text0, `nv_inference_count${labels}`), 10);
    assert.equal(metric(text, 'nv_inference_request_failure{model="mlp",version="1",reason="OTHER"}') - metric(text0, 'nv_inference_request_failure{model="mlp",version="1",reason="OTHER"}'), 1);
    assert.equal(metric(text, `nv_inference_exec_count${labels}`), after.execution_count);
    assert.equal(metric(text, `kiln_batch_size_count${labels}`), after.execution_count);
    assert.equal(metric(text, `nv_inference_pending_request_count${labels}`), 0);
    for (const name of ['nv_inference_request_duration_us', 'nv_inference_queue_duration_us', 'nv_inference_compute_input_duration_us', 'nv_inference_compute_infer_duration_us', 'nv_inference_compute_output_duration_us']) {
      assert.ok(metric(text, `${name}${labels}`) > 0, name);
    }
    assert.match(text, /^process_cpu_user_seconds_total /m);
  });

  // The HTTP fuzz target: random and broken requests on every route. The contract: never a
  // 5xx, every error a JSON {error}, and the server answers a valid request afterwards.
  it('random and broken requests get answers below 500 with {error}, and the server keeps serving', async () => {
    const valid = { inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(0.25) }] };
    const routes = ['/v2/models/mlp/infer', '/v2/models/types/infer', '/v2/models/mlp/versions/1/infer', '/v2/models/mlp/versions/0x/infer', '/v2/models/..%2Fmlp/infer', '/v2/repository/index', '/v2/repository/models/mlp%00/load'];
    const mutated = fc.record({
      field: fc.constantFrom('inputs', 'name', 'shape', 'datatype', 'data', 'parameters', 'outputs', 'binary_data_size'),
      value: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constantFrom(-1, 1e300, 2 ** 31, 'FP16', 'BYTES', [], [[]], [1e9, 1e9], null)),
    }).map(({ field, value }) => {
      const body = structuredClone(valid) as unknown as Record<string, unknown> & { inputs: Record<string, unknown>[] };
      if (field === 'inputs' || field === 'parameters' || field === 'outputs') (body as Record<string, unknown>)[field] = value;
      else if (field === 'binary_data_size') body.inputs[0].parameters = { binary_data_size: value };
      else body.inputs[0][field] = value;
      return { body: JSON.stringify(body), header: undefined as string | undefined };
    });
    const raw = fc.record({ bytes: fc.uint8Array({ maxLength: 300 }), header: fc.option(fc.oneof(fc.nat({ max: 400 }).map(String), fc.constantFrom('-1', 'abc', '1e3', '')), { nil: undefined }) })
      .map(({ bytes, header }) => ({ body: Buffer.from(bytes), header }));
    const json = fc.jsonValue({ maxDepth: 4 }).map((v) => ({ body: JSON.stringify(v), header: undefined as string | undefined }));
    await fc.assert(fc.asyncProperty(fc.constantFrom(...routes), fc.oneof(mutated, raw, json), async (route, { body, header }) => {
      const res = await fetch(base + route, { method: 'POST', headers: { 'content-type': 'application/json', ...(header === undefined ? {} : { 'inference-header-content-length': header }) }, body });
      const text = await res.text();
      assert.ok(res.status < 500, `${route} ${res.status} ${text.slice(0, 200)}`);
      if (res.status >= 400) assert.equal(typeof (JSON.parse(text) as { error?: unknown }).error, 'string', text);
    }), { numRuns: 400, seed: 20261202 });
    assert.equal((await post('/v2/models/mlp/infer', valid)).status, 200);
  });

  it('a client that stalls or truncates its body does not hold up others', async () => {
    const { port } = new URL(base);
    const stalled = net.connect(Number(port), '127.0.0.1');
    await new Promise((r) => stalled.once('connect', r));
    stalled.write('POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"inputs": [');
    const truncated = net.connect(Number(port), '127.0.0.1');
    await new Promise((r) => truncated.once('connect', r));
    truncated.end('POST /v2/models/mlp/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"inputs"');
    const x = { name: 'x', shape: [1, 512], datatype: 'FP32', data: new Array(512).fill(1) };
    const answers = await Promise.all(Array.from({ length: 8 }, () => post('/v2/models/mlp/infer', { inputs: [x] }).then((r) => r.status)));
    assert.deepEqual(answers, new Array(8).fill(200));
    stalled.destroy();
    truncated.destroy();
    assert.equal((await get('/v2/health/live')).status, 200);
  });

  it('the repository extension: index, unload (then 503), load', async () => {
    const index = async (): Promise<unknown> => (await post('/v2/repository/index', {})).json();
    assert.deepEqual(await index(), [{ name: 'flat', version: '1', state: 'READY', reason: '' }, { name: 'mlp', version: '1', state: 'READY', reason: '' }, { name: 'types', version: '1', state: 'READY', reason: '' }]);
    assert.equal((await post('/v2/repository/models/types/unload', {})).status, 200);
    assert.deepEqual(await index(), [{ name: 'flat', version: '1', state: 'READY', reason: '' }, { name: 'mlp', version: '1', state: 'READY', reason: '' }, { name: 'types', state: 'UNAVAILABLE', reason: 'unloaded' }]);
    assert.deepEqual(await (await post('/v2/repository/index', { ready: true })).json(), [{ name: 'flat', version: '1', state: 'READY', reason: '' }, { name: 'mlp', version: '1', state: 'READY', reason: '' }]);
    await error(post('/v2/models/types/infer', { inputs: [{ name: 'in_BOOL', shape: [3], datatype: 'BOOL', data: [true, true, true] }] }), 503, 'model "types" is not loaded');
    assert.equal((await post('/v2/repository/models/types/load', {})).status, 200);
    assert.equal((await get('/v2/models/types/ready')).status, 200);
    await error(post('/v2/repository/models/nope/load', {}), 404, 'no model "nope"');
  });
});

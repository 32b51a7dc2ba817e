// `kiln serve`'s KServe v2 gRPC service, exercised with @grpc/grpc-js clients over loopback:
// health, metadata, ModelInfer with typed and raw contents (answers equal to an in-process
// session's), every datatype, streaming, statistics, the repository extension, auth, and
// Triton's status codes for bad requests.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import { Session, type Feeds } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';
import { mlpModel, prng } from '../lib/samples';
import { createGrpcServer, inferenceService } from '../lib/server/grpc';
import { ModelManager } from '../lib/server/models';
import type { TensorType } from '../lib/tensor';
import { writeFiles } from '../support/repository';

type Client = grpc.Client & Record<string, (request: unknown, metadata: grpc.Metadata | ((e: grpc.ServiceError | null, r: unknown) => void), callback?: (e: grpc.ServiceError | null, r: unknown) => void) => void>;

const TYPES: [string, TensorType, string, unknown[]][] = [
  ['BOOL', 'bool', 'bool_contents', [true, false, true]],
  ['INT8', 'int8', 'int_contents', [-128, 0, 127]], ['INT32', 'int32', 'int_contents', [-5, 0, 2147483647]], ['INT64', 'int64', 'int64_contents', [-7, 0, 2 ** 40]],
  ['UINT8', 'uint8', 'uint_contents', [0, 9, 255]], ['UINT64', 'uint64', 'uint64_contents', [0, 1, 2 ** 40]],
  ['FP32', 'float32', 'fp32_contents', [-1.5, 0, 2.25]], ['FP64', 'float64', 'fp64_contents', [-1e300, 0, 1e-300]],
  ['BYTES', 'string', 'bytes_contents', ['héllo', '', 'kiln']],
];

function identities(types: readonly (readonly [string, TensorType, ...unknown[]])[]): Uint8Array {
  const g = new GraphBuilder('identities');
  for (const [dt, type] of types) g.output(g.node('Identity', [g.input(`in_${dt}`, type, [3])], { outputs: `out_${dt}` }), type, [3]);
  return g.build({ opset: 17 });
}

describe('kiln serve: KServe v2 over gRPC', function () {
  this.timeout(60_000);
  let dir: string;
  let manager: ModelManager;
  let server: grpc.Server;
  let client: Client;
  let guarded: grpc.Server;
  let port: number;
  let guardedPort: number;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-grpc-'));
    const files: Record<string, string | Uint8Array> = {
      'mlp/config.pbtxt': 'max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 500 }', 'mlp/1/model.onnx': mlpModel(),
      'types/config.pbtxt': 'max_batch_size: 0', 'types/1/model.onnx': identities(TYPES),
      'half/config.pbtxt': 'max_batch_size: 0', 'half/1/model.onnx': identities([['FP16', 'float16']]),
    };
    writeFiles(dir, files);
    manager = await ModelManager.open(dir, { controlMode: 'explicit', loadModels: ['*'] });
    const bind = (s: grpc.Server): Promise<number> => new Promise((resolve, reject) => s.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
    server = createGrpcServer(manager);
    port = await bind(server);
    guarded = createGrpcServer(manager, { authToken: 't0ken' });
    guardedPort = await bind(guarded);
    const Service = inferenceService();
    client = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as Client;
  });
  after(async () => {
    client?.close();
    await new Promise<void>((r) => (server ? server.tryShutdown(() => r()) : r()));
    await new Promise<void>((r) => (guarded ? guarded.tryShutdown(() => r()) : r()));
    await manager?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const call = <T>(method: string, request: unknown, c: Client = client, metadata = new grpc.Metadata()): Promise<T> => new Promise((resolve, reject) => {
    c[method](request, metadata, (e, r) => (e ? reject(e) : resolve(r as T)));
  });
  async function status(p: Promise<unknown>, code: grpc.status, fragment: string): Promise<void> {
    try {
      await p;
    } catch (e) {
      const err = e as grpc.ServiceError;
      assert.equal(err.code, code, err.details);
      assert.ok(err.details.includes(fragment), `${err.details} lacks ${fragment}`);
      return;
    }
    assert.fail('expected an error status');
  }

  it('health, server and model metadata, model readiness', async () => {
    assert.deepEqual(await call('ServerLive', {}), { live: true });
    assert.deepEqual(await call('ServerReady', {}), { ready: true });
    assert.deepEqual(await call('ModelReady', { name: 'mlp', version: '' }), { ready: true });
    const meta = await call<{ name: string; version: string; extensions: string[] }>('ServerMetadata', {});
    assert.equal(meta.name, 'kiln');
    assert.deepEqual(meta.extensions, ['binary_tensor_data', 'model_repository', 'statistics']);
    assert.deepEqual(await call('ModelMetadata', { name: 'mlp', version: '1' }), {
      name: 'mlp', versions: ['1'], platform: 'onnxruntime_onnx',
      inputs: [{ name: 'x', datatype: 'FP32', shape: [-1, 512] }], outputs: [{ name: 'y', datatype: 'FP32', shape: [-1, 10] }],
    });
    await status(call('ModelMetadata', { name: 'nope' }), grpc.status.NOT_FOUND, 'unknown model "nope"');
    await status(call('ModelReady', { name: 'mlp', version: '4' }), grpc.status.NOT_FOUND, 'no version 4');
  });

  it('ModelInfer with typed and with raw contents: raw outputs equal to an in-process session', async () => {
    const session = await Session.create(mlpModel());
    try {
      const rand = prng(4);
      const x = Float32Array.from({ length: 3 * 512 }, () => rand());
      const want = (await session.run({ x: { type: 'float32', data: x, dims: [3, 512] } } as Feeds)).y.data as Float32Array;
      type Answer = { model_name: string; model_version: string; id: string; outputs: { name: string; datatype: string; shape: number[] }[]; raw_output_contents: Buffer[] };
      const typed = await call<Answer>('ModelInfer', { model_name: 'mlp', id: 'g1', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 512], contents: { fp32_contents: Array.from(x) } }] });
      const raw = await call<Answer>('ModelInfer', { model_name: 'mlp', model_version: '1', inputs: [{ name: 'x', datatype: 'FP32', shape: [3, 512] }], raw_input_contents: [Buffer.from(x.buffer)], outputs: [{ name: 'y' }] });
      for (const a of [typed, raw]) {
        assert.equal(a.model_name, 'mlp');
        assert.equal(a.model_version, '1');
        assert.deepEqual(a.outputs, [{ name: 'y', datatype: 'FP32', shape: [3, 10], parameters: {}, contents: null }]);
        const b = a.raw_output_contents[0];
        assert.deepEqual(Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length))), Array.from(want));
      }
      assert.equal(typed.id, 'g1');
    } finally {
      await session.dispose();
    }
  });

  it('every datatype through its typed contents field or as raw, back as raw (FP16: raw only)', async () => {
    type Answer = { outputs: { name: string; datatype: string }[]; raw_output_contents: Buffer[] };
    // The raw bytes of each type's values: what both ways must give back.
    const raw = TYPES.map(([, type, , values]) => {
      if (type === 'string') return Buffer.concat((values as string[]).flatMap((v) => [Buffer.from(Uint32Array.of(Buffer.byteLength(v)).buffer), Buffer.from(v)]));
      if (type === 'bool') return Buffer.from((values as boolean[]).map((v) => (v ? 1 : 0)));
      const ctor = { int8: Int8Array, int32: Int32Array, uint8: Uint8Array, float32: Float32Array, float64: Float64Array }[type as string];
      if (ctor) return Buffer.from(ctor.from(values as number[]).buffer);
      return Buffer.from((type === 'int64' ? BigInt64Array : BigUint64Array).from((values as number[]).map(BigInt)).buffer);
    });
    const typed = TYPES.map(([dt, , field, values]) => ({ name: `in_${dt}`, datatype: dt, shape: [3], contents: { [field]: dt === 'BYTES' ? (values as string[]).map((v) => Buffer.from(v)) : values } }));
    const asRaw = TYPES.map(([dt]) => ({ name: `in_${dt}`, datatype: dt, shape: [3] }));
    for (const request of [{ model_name: 'types', inputs: typed }, { model_name: 'types', inputs: asRaw, raw_input_contents: raw }]) {
      const a = await call<Answer>('ModelInfer', request);
      const byName = new Map(a.outputs.map((o, i) => [o.name, { datatype: o.datatype, bytes: a.raw_output_contents[i] }]));
      TYPES.forEach(([dt], i) => {
        assert.equal(byName.get(`out_${dt}`)?.datatype, dt);
        assert.ok(byName.get(`out_${dt}`)?.bytes.equals(raw[i]), `${dt} ${request.raw_input_contents ? 'raw' : 'typed'}`);
      });
    }
    const half = Buffer.from(Uint16Array.of(0x3c00, 0xc000, 0x7bff).buffer);
    const h = await call<Answer>('ModelInfer', { model_name: 'half', inputs: [{ name: 'in_FP16', datatype: 'FP16', shape: [3] }], raw_input_contents: [half] });
    assert.ok(h.raw_output_contents[0].equals(half));
    await status(call('ModelInfer', { model_name: 'half', inputs: [{ name: 'in_FP16', datatype: 'FP16', shape: [3], contents: {} }] }), grpc.status.INVALID_ARGUMENT, 'FP16 has no typed contents field: send it in raw_input_contents');
    await status(call('ModelInfer', { model_name: 'types', inputs: asRaw, raw_input_contents: raw.slice(1) }), grpc.status.INVALID_ARGUMENT, 'raw_input_contents holds 8 entries for 9 inputs');
  });

  it('bad requests get INVALID_ARGUMENT, NOT_FOUND or UNAVAILABLE, and the server keeps serving', async () => {
    const x = { name: 'x', datatype: 'FP32', shape: [1, 512], contents: { fp32_contents: new Array(512).fill(0) } };
    await status(call('ModelInfer', { model_name: 'nope', inputs: [x] }), grpc.status.NOT_FOUND, 'unknown model "nope"');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [] }), grpc.status.INVALID_ARGUMENT, 'the request has no inputs');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [{ ...x, contents: { fp32_contents: [1, 2] } }] }), grpc.status.INVALID_ARGUMENT, 'needs 512 values, "data" holds 2');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [{ ...x, datatype: 'FP64' }] }), grpc.status.INVALID_ARGUMENT, 'the model expects FP32, received FP64');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [x, x] }), grpc.status.INVALID_ARGUMENT, 'input "x" is given twice');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [{ ...x, shape: [1e6, 1e6] }] }), grpc.status.INVALID_ARGUMENT, 'has more than');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [x], raw_input_contents: [Buffer.alloc(12)] }), grpc.status.INVALID_ARGUMENT, 'needs 2048 bytes, binary_data_size is 12');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [x], outputs: [{ name: 'z' }] }), grpc.status.INVALID_ARGUMENT, 'unexpected inference output "z"');
    await status(call('ModelInfer', { model_name: 'mlp', inputs: [x], parameters: { priority: { int64_param: -2 } } }), grpc.status.INVALID_ARGUMENT, 'parameter "priority"');
    const ok = await call<{ outputs: unknown[] }>('ModelInfer', { model_name: 'mlp', inputs: [x], parameters: { priority: { int64_param: 0 } } });
    assert.equal(ok.outputs.length, 1, 'still serving');
  });

  it('ModelStreamInfer answers each request on the stream, failures as error_message', async () => {
    const stream = (client as unknown as { ModelStreamInfer(): grpc.ClientDuplexStream<unknown, { error_message: string; infer_response: { id: string; raw_output_contents: Buffer[] } | null }> }).ModelStreamInfer();
    const got: { error_message: string; infer_response: { id: string } | null }[] = [];
    const done = new Promise<void>((resolve, reject) => {
      stream.on('data', (m) => got.push(m));
      stream.on('end', resolve);
      stream.on('error', reject);
    });
    const x = (id: string, n: number): unknown => ({ model_name: 'mlp', id, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512], contents: { fp32_contents: new Array(n).fill(0.5) } }] });
    stream.write(x('a', 512));
    stream.write(x('bad', 3));
    stream.write(x('b', 512));
    stream.end();
    await done;
    assert.equal(got.length, 3);
    assert.deepEqual(got.filter((m) => m.infer_response).map((m) => m.infer_response?.id).sort(), ['a', 'b']);
    assert.deepEqual(got.filter((m) => !m.infer_response).map((m) => m.error_message), ['input "x": shape [1,512] needs 512 values, "data" holds 3']);
  });

  it('statistics and the repository extension', async () => {
    const stats = await call<{ model_stats: { name: string; version: string; inference_count: number; inference_stats: { success: { count: number } } }[] }>('ModelStatistics', { name: 'mlp' });
    assert.equal(stats.model_stats[0].name, 'mlp');
    assert.ok(stats.model_stats[0].inference_count >= 4 && stats.model_stats[0].inference_stats.success.count >= 3, JSON.stringify(stats));
    await status(call('ModelStatistics', { name: 'nope' }), grpc.status.NOT_FOUND, 'unknown model');
    const index = async (ready = false): Promise<unknown> => (await call<{ models: unknown[] }>('RepositoryIndex', { ready })).models;
    assert.deepEqual(await index(), [{ name: 'half', version: '1', state: 'READY', reason: '' }, { name: 'mlp', version: '1', state: 'READY', reason: '' }, { name: 'types', version: '1', state: 'READY', reason: '' }]);
    await call('RepositoryModelUnload', { model_name: 'types' });
    assert.deepEqual(await index(true), [{ name: 'half', version: '1', state: 'READY', reason: '' }, { name: 'mlp', version: '1', state: 'READY', reason: '' }]);
    assert.deepEqual(await call('ModelReady', { name: 'types' }), { ready: false });
    await status(call('ModelInfer', { model_name: 'types', inputs: [{ name: 'in_BOOL', datatype: 'BOOL', shape: [3], contents: { bool_contents: [true, true, true] } }] }), grpc.status.UNAVAILABLE, 'not loaded');
    await call('RepositoryModelLoad', { model_name: 'types' });
    assert.deepEqual(await call('ModelReady', { name: 'types' }), { ready: true });
    await status(call('RepositoryModelLoad', { model_name: '../etc' }), grpc.status.INVALID_ARGUMENT, 'is not a model name');
  });

  it('with an auth token: UNAUTHENTICATED without it, served with it, health open', async () => {
    const Service = inferenceService();
    const c = new Service(`127.0.0.1:${guardedPort}`, grpc.credentials.createInsecure()) as unknown as Client;
    try {
      await status(call('ModelMetadata', { name: 'mlp' }, c), grpc.status.UNAUTHENTICATED, 'bearer token');
      const md = new grpc.Metadata();
      md.set('authorization', 'Bearer t0ken');
      assert.equal((await call<{ name: string }>('ModelMetadata', { name: 'mlp' }, c, md)).name, 'mlp');
      assert.deepEqual(await call('ServerLive', {}, c), { live: true });
    } finally {
      c.close();
    }
  });
});

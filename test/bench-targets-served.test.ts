// kiln bench's served targets against a `kiln serve` started here on loopback (the example
// repository's MLP): KServe v2 over HTTP with JSON and binary tensors, and over gRPC. Their
// outputs equal an in-process session's, their statistics counters move by exactly the
// requests sent, and unknown models, closed ports and bad inputs fail with Kiln's codes and
// the server's own message.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { Session } from '../lib';
import { createGrpcTarget, grpcModelMetadata } from '../lib/bench/targets/grpc';
import { createHttpTarget, encodeHttpRequest, httpModelMetadata, type ServedTargetOptions } from '../lib/bench/targets/http';
import { countersFromStatistics } from '../lib/bench/targets/server-counters';
import type { InputSet, ServerCounters, Target } from '../lib/bench/types';
import { mlpModel, prng } from '../lib/samples';
import { writeExampleRepository } from '../lib/server/serve';
import { Tensor } from '../lib/tensor';
import { assertKilnError, thrown } from './helpers/assert-error';
import { serveRepository, type ServedRepository } from './helpers/serve';

/** An [rows, 512] float32 input of seeded values in [-1, 1). */
function inputSet(rows: number, seed: number): InputSet {
  const rand = prng(seed);
  return { x: new Tensor('float32', Float32Array.from({ length: rows * 512 }, () => rand() * 2 - 1), [rows, 512]) };
}

/** A port nothing listens on: one the system handed out, then closed. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return assert.fail('expected a rejection');
}

const diff = (a: ServerCounters, b: ServerCounters): Record<string, unknown> => ({
  requests: b.requests - a.requests,
  inferenceCount: b.inferenceCount - a.inferenceCount,
  executionCount: b.executionCount - a.executionCount,
  batchSizes: Object.fromEntries(Object.entries(b.batchSizes ?? {}).map(([size, n]) => [size, n - (a.batchSizes?.[Number(size)] ?? 0)]).filter(([, n]) => n !== 0)),
});

describe('kiln bench: served targets (KServe v2 over HTTP and gRPC)', function () {
  this.timeout(60_000);
  let served: ServedRepository;
  let session: Session;
  const sets = [inputSet(2, 11), inputSet(1, 12)];
  const wrongShape: InputSet = { x: new Tensor('float32', new Float32Array(100), [1, 100]) };

  before(async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-served-'));
    writeExampleRepository(dir);
    served = await serveRepository(dir);
    session = await Session.create(mlpModel());
  });
  after(async () => {
    await session?.dispose();
    await served?.close();
  });

  const variants: [string, (o: Omit<ServedTargetOptions, 'url'>) => Promise<Target>, string][] = [
    ['HTTP with JSON tensors', (o) => createHttpTarget({ ...o, url: served.server.url }), 'http'],
    ['HTTP with binary tensors', (o) => createHttpTarget({ ...o, url: served.server.url.replace(/^http:\/\//, ''), binary: true, outputs: ['y'] }), 'http'],
    ['gRPC', (o) => createGrpcTarget({ ...o, url: served.server.grpc as string }), 'grpc'],
  ];
  for (const [label, create, name] of variants) {
    describe(label, () => {
      let target: Target;
      before(async () => {
        target = await create({ model: 'mlp', inputs: sets });
      });
      after(async () => {
        await target?.close();
      });

      it('answers each input set with what an in-process session computes', async () => {
        assert.equal(target.name, name);
        assert.match(target.description, /model "mlp" at .*127\.0\.0\.1/);
        for (const i of [0, 1, 2, 3]) {
          const set = sets[i % sets.length];
          const expected = session.runSync(set).y;
          const got = (await target.outputs!(i)).y;
          assert.equal(got.type, 'float32');
          assert.deepEqual(got.dims, [set.x.dims[0], 10]);
          assert.equal(got.data.length, expected.data.length);
          const worst = Math.max(...Array.from(expected.data as Float32Array, (v, k) => Math.abs(v - (got.data[k] as number))));
          assert.ok(worst <= 1e-6, `largest difference ${worst} at request ${i}`);
        }
      });

      it('reads the server counters, which move by exactly the requests sent', async () => {
        const before = await target.counters!();
        for (let i = 0; i < 6; i++) await target.infer();
        const after = await target.counters!();
        // Sent one at a time, each request is its own batch: rows 2, 1, 2, 1, 2, 1.
        assert.deepEqual(diff(before, after), { requests: 6, inferenceCount: 9, executionCount: 6, batchSizes: { 1: 3, 2: 3 } });
        assert.ok(after.computeInferUs > before.computeInferUs);
        assert.ok(after.queueUs >= before.queueUs);
      });

      it('rejects a request the server refuses with its 400 message', async () => {
        const bad = await create({ model: 'mlp', inputs: [wrongShape] });
        try {
          const e = await rejection(bad.infer());
          let serverMessage: string;
          if (name === 'grpc') {
            const g = (await rejection(served.call('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 100] }], raw_input_contents: [Buffer.alloc(400)] }))) as { details: string };
            serverMessage = g.details;
          } else {
            const r = await fetch(`${served.server.url}/v2/models/mlp/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 100], datatype: 'FP32', data: new Array(100).fill(0) }] }) });
            assert.equal(r.status, 400);
            serverMessage = ((await r.json()) as { error: string }).error;
          }
          assert.match(serverMessage, /input "x"/);
          assertKilnError(e, 'E_INVALID_ARGUMENT', serverMessage, name === 'grpc' ? 'gRPC INVALID_ARGUMENT' : 'HTTP 400');
        } finally {
          await bad.close();
        }
      });

      it('refuses an unknown model with E_NOT_FOUND', async () => {
        assertKilnError(await rejection(create({ model: 'no-such-model', inputs: sets })), 'E_NOT_FOUND', 'no-such-model');
      });
    });
  }

  it('reads the model metadata over both protocols, -1 dims named', async () => {
    const expected = {
      inputs: [{ name: 'x', type: 'float32', shape: ['dim0', 512] }],
      outputs: [{ name: 'y', type: 'float32', shape: ['dim0', 10] }],
    };
    assert.deepEqual(await httpModelMetadata(served.server.url, 'mlp'), expected);
    assert.deepEqual(await httpModelMetadata(served.server.url, 'mlp', '1'), expected);
    assert.deepEqual(await grpcModelMetadata(served.server.grpc as string, 'mlp'), expected);
    assertKilnError(await rejection(httpModelMetadata(served.server.url, 'mlp', '7')), 'E_NOT_FOUND', 'HTTP 404');
    assertKilnError(await rejection(grpcModelMetadata(served.server.grpc as string, 'absent')), 'E_NOT_FOUND', 'gRPC NOT_FOUND');
  });

  it('encodes a binary request as a JSON header followed by the raw tensor bytes', () => {
    const e = encodeHttpRequest(sets[0], undefined, true);
    const headerLength = Number(e.headers['inference-header-content-length']);
    assert.equal(e.body.length, headerLength + 2 * 512 * 4);
    assert.equal(e.headers['content-length'], String(e.body.length));
    assert.deepEqual(JSON.parse(e.body.toString('utf8', 0, headerLength)), {
      inputs: [{ name: 'x', shape: [2, 512], datatype: 'FP32', parameters: { binary_data_size: 4096 } }],
      parameters: { binary_data_output: true },
    });
    assert.deepEqual(new Float32Array(e.body.buffer.slice(e.body.byteOffset + headerLength, e.body.byteOffset + e.body.length)), sets[0].x.data);
  });

  it("sums a Triton statistics answer's versions, its uint64s given as numbers or strings", () => {
    const version = (v: string, scale: number, asString: boolean) => {
      const n = (x: number): number | string => (asString ? String(x * scale) : x * scale);
      const d = (count: number, ns: number) => ({ count: n(count), ns: n(ns) });
      return {
        name: 'resnet', version: v, last_inference: n(1), inference_count: n(12), execution_count: n(5),
        inference_stats: { success: d(10, 9_000_000), fail: d(1, 5000), queue: d(10, 2_000_000), compute_input: d(10, 500_000), compute_infer: d(10, 6_000_000), compute_output: d(10, 250_000) },
        batch_stats: [{ batch_size: n(1), compute_input: d(4, 1), compute_infer: d(4, 1), compute_output: d(4, 1) }, { batch_size: 4, compute_infer: d(1, 1) }],
      };
    };
    const answer = { model_stats: [version('1', 1, false), version('2', 2, true), { ...version('9', 100, false), name: 'other' }] };
    assert.deepEqual(countersFromStatistics(answer, 'resnet'), {
      requests: 30, inferenceCount: 36, executionCount: 15,
      queueUs: 6000, computeInputUs: 1500, computeInferUs: 18000, computeOutputUs: 750,
      batchSizes: { 1: 4, 2: 8, 4: 3 },
    });
    assertKilnError(thrown(() => countersFromStatistics({ model_stats: [] }, 'resnet')), 'E_NOT_FOUND', 'resnet');
    assertKilnError(thrown(() => countersFromStatistics({ error: 'x' }, 'resnet')), 'E_UNAVAILABLE', 'model_stats');
  });

  it('fails with E_UNAVAILABLE when nothing listens at the address', async () => {
    const port = await closedPort();
    assertKilnError(await rejection(createHttpTarget({ url: `127.0.0.1:${port}`, model: 'mlp', inputs: sets })), 'E_UNAVAILABLE', `cannot reach the server at http://127.0.0.1:${port}`);
    assertKilnError(await rejection(createGrpcTarget({ url: `127.0.0.1:${port}`, model: 'mlp', inputs: sets })), 'E_UNAVAILABLE', 'gRPC UNAVAILABLE');
    assertKilnError(await rejection(httpModelMetadata(`http://127.0.0.1:${port}`, 'mlp')), 'E_UNAVAILABLE');
  });

  it('refuses an address that is not one', async () => {
    assertKilnError(await rejection(createHttpTarget({ url: 'ftp://127.0.0.1:1', model: 'mlp', inputs: sets })), 'E_INVALID_ARGUMENT', 'http:// or https://');
    assertKilnError(await rejection(createGrpcTarget({ url: '127.0.0.1', model: 'mlp', inputs: sets })), 'E_INVALID_ARGUMENT', 'host:port');
  });
});

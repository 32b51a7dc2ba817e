// The semantic cache in `kiln serve`: a model opts in through config.json's semanticCache; a
// near request is answered with `kiln_cache: semantic_hit` and `kiln_similarity` (HTTP JSON
// and gRPC); the `partition` parameter keeps tenants apart; an embedding can come from another
// served model; the kiln_semantic_cache_* metrics count it.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mlpModel, prng } from '../lib/samples';
import type { RunningServer } from '../lib/server/serve';
import { writeFiles } from '../support/repository';
import { inferX, metric, serveRepository, type ServedRepository } from './helpers/serve';

interface HttpAnswer {
  parameters?: Record<string, unknown>;
  outputs: { name: string; data: number[] }[];
}

const centre = (seed: number): number[] => {
  const next = prng(seed);
  return Array.from({ length: 512 }, () => next());
};
/** `x` with noise of ±0.05 per element (cosine to x ≈ 0.998). */
const near = (x: number[], seed: number): number[] => {
  const next = prng(seed);
  return x.map((v) => Math.fround(v + 0.05 * next()));
};

const inferJson = (url: string, model: string, x: number[], parameters?: Record<string, unknown>): Promise<HttpAnswer> => inferX<HttpAnswer>(url, model, x, parameters);

describe('kiln serve: the semantic cache', function () {
  this.timeout(60_000);
  let dir: string;
  let served: ServedRepository;
  let server: RunningServer;
  const call = <T>(method: string, request: unknown): Promise<T> => served.call<T>(method, request);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-semantic-'));
    writeFiles(dir, {
      'mlp/1/model.onnx': mlpModel(),
      'mlp_semantic/config.json': JSON.stringify({ semanticCache: { threshold: 0.99 } }),
      'mlp_semantic/1/model.onnx': mlpModel(),
      // The vector is mlp's output y for the request: an embedding model served beside it.
      'mlp_embedded/config.json': JSON.stringify({ semanticCache: { threshold: 0.999, embedding: { model: 'mlp', output: 'y' } } }),
      'mlp_embedded/1/model.onnx': mlpModel(),
    });
    served = await serveRepository(dir);
    server = served.server;
  });
  after(async () => {
    await served?.close();
  });

  it('answers a slightly different request from the cache, with kiln_similarity, over HTTP and gRPC', async () => {
    const x = centre(1);
    const first = await inferJson(server.url, 'mlp_semantic', near(x, 2));
    assert.deepEqual(first.parameters, { kiln_cache: 'miss' });
    const second = await inferJson(server.url, 'mlp_semantic', near(x, 3));
    assert.equal(second.parameters?.kiln_cache, 'semantic_hit');
    const similarity = second.parameters?.kiln_similarity as number;
    assert.ok(typeof similarity === 'number' && similarity >= 0.99 && similarity < 1, `kiln_similarity ${similarity}`);
    assert.deepEqual(second.outputs, first.outputs, 'the cached answer');
    const raw = await call<{ parameters: Record<string, { string_param?: string; double_param?: number }> }>('ModelInfer', {
      model_name: 'mlp_semantic', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512] }], raw_input_contents: [Buffer.from(Float32Array.from(near(x, 4)).buffer)],
    });
    assert.equal(raw.parameters.kiln_cache.string_param, 'semantic_hit');
    assert.ok(raw.parameters.kiln_similarity.double_param! >= 0.99);
    assert.equal((await inferJson(server.url, 'mlp_semantic', centre(5))).parameters?.kiln_cache, 'miss', 'a far request runs');
  });

  it('keeps partitions apart (the partition parameter, over HTTP and gRPC)', async () => {
    const x = centre(10);
    assert.equal((await inferJson(server.url, 'mlp_semantic', near(x, 11), { partition: 'tenant-a' })).parameters?.kiln_cache, 'miss');
    assert.equal((await inferJson(server.url, 'mlp_semantic', near(x, 12), { partition: 'tenant-b' })).parameters?.kiln_cache, 'miss');
    assert.equal((await inferJson(server.url, 'mlp_semantic', near(x, 13), { partition: 'tenant-a' })).parameters?.kiln_cache, 'semantic_hit');
    const g = await call<{ parameters: Record<string, { string_param?: string }> }>('ModelInfer', {
      model_name: 'mlp_semantic', parameters: { partition: { string_param: 'tenant-c' } }, inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512] }], raw_input_contents: [Buffer.from(Float32Array.from(near(x, 14)).buffer)],
    });
    assert.equal(g.parameters.kiln_cache.string_param, 'miss');
    const r = await fetch(`${server.url}/v2/models/mlp_semantic/infer`, { method: 'POST', body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: x }], parameters: { partition: 3 } }) });
    assert.equal(r.status, 400);
    assert.match(await r.text(), /partition.{1,4} must be a string/);
  });

  it('takes the vector from another served model', async () => {
    const runsBefore = server.manager.statistics('mlp')[0].model.success;
    const x = centre(20);
    assert.equal((await inferJson(server.url, 'mlp_embedded', near(x, 21))).parameters?.kiln_cache, 'miss');
    assert.equal((await inferJson(server.url, 'mlp_embedded', near(x, 22))).parameters?.kiln_cache, 'semantic_hit');
    assert.equal(server.manager.statistics('mlp')[0].model.success - runsBefore, 2, 'mlp computed both vectors');
  });

  it('counts hits, misses and false hits in the metrics', async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const l = 'model="mlp_semantic",version="1"';
    assert.equal(metric(text, 'kiln_semantic_cache_hits_total', l), 3);
    assert.equal(metric(text, 'kiln_semantic_cache_misses_total', l), 5);
    assert.equal(metric(text, 'kiln_semantic_cache_false_hits_total', l), 0);
    assert.equal(metric(text, 'kiln_semantic_cache_hits_total', 'model="mlp_embedded",version="1"'), 1);
    assert.equal(metric(text, 'kiln_semantic_cache_hits_total', 'model="mlp",version="1"'), undefined, 'a model without the cache has no such series');
  });
});

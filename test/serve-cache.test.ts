// The exact response cache in `kiln serve`: a model opts in through its config, every answer
// says how it was served (`kiln_cache` over HTTP JSON, HTTP binary and gRPC), the nv_cache_*
// metrics and the statistics extension count it, --cache-config is checked, and two server
// processes share a Redis cache — and keep answering, uncached, when Redis goes away.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addModel, mlpModel, mlpReference, prng } from '../lib/samples';
import { parseCacheConfig } from '../lib/server/cache-config';
import { startServer, writeExampleRepository, type RunningServer } from '../lib/server/serve';
import { assertKilnError } from './helpers/assert-error';
import { runKiln, startKiln, type KilnProcess } from '../support/kiln-process';
import { startRedis, type RedisServer } from './helpers/redis';
import { inferX, metric, serveRepository, type ServedRepository } from './helpers/serve';
import { writeFiles } from '../support/repository';


interface HttpAnswer {
  parameters?: Record<string, unknown>;
  outputs: { name: string; shape: number[]; data?: number[]; parameters?: { binary_data_size?: number } }[];
}
interface GrpcAnswer {
  parameters: Record<string, { parameter_choice?: string; string_param?: string }>;
  raw_output_contents: Buffer[];
}

/** The example repository with the response cache enabled for mlp (config.pbtxt) and for a copy of add (config.json). */
function cachedRepository(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-cache-'));
  writeExampleRepository(dir);
  fs.appendFileSync(path.join(dir, 'mlp', 'config.pbtxt'), 'response_cache { enable: true }\n');
  writeFiles(dir, { 'add_cached/config.json': JSON.stringify({ response_cache: { enable: true } }), 'add_cached/1/model.onnx': addModel() });
  return dir;
}

const rows = (seed: number, n = 1): number[] => {
  const rand = prng(seed);
  return Array.from({ length: n * 512 }, () => Math.fround(rand() * 2 - 1));
};

const inferJson = (url: string, model: string, x: number[]): Promise<HttpAnswer> => inferX<HttpAnswer>(url, model, x);

/** Binary in, binary out: the answer's JSON header and y's values. */
async function inferBinary(url: string, x: number[]): Promise<{ header: HttpAnswer; y: number[] }> {
  const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'x', shape: [x.length / 512, 512], datatype: 'FP32', parameters: { binary_data_size: x.length * 4 } }], parameters: { binary_data_output: true } }));
  const r = await fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', headers: { 'inference-header-content-length': String(header.length), 'content-type': 'application/octet-stream' }, body: Buffer.concat([header, Buffer.from(Float32Array.from(x).buffer)]) });
  assert.equal(r.status, 200, await r.clone().text());
  const body = Buffer.from(await r.arrayBuffer());
  const length = Number(r.headers.get('inference-header-content-length'));
  const bytes = body.subarray(length);
  return { header: JSON.parse(body.toString('utf8', 0, length)) as HttpAnswer, y: Array.from(new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length))) };
}

const reference = (x: number[]): number[] => Array.from(mlpReference(Float32Array.from(x), x.length / 512));
const close = (got: readonly number[], want: readonly number[]): void => {
  assert.equal(got.length, want.length);
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) <= 1e-4 * Math.max(1, Math.abs(want[i])), `y[${i}]: ${g} vs ${want[i]}`));
};

describe('kiln serve: the exact response cache', function () {
  this.timeout(60_000);

  describe('in one server (local cache)', () => {
    let served: ServedRepository;
    let server: RunningServer;
    const call = <T>(method: string, request: unknown): Promise<T> => served.call<T>(method, request);
    before(async () => {
      served = await serveRepository(cachedRepository());
      server = served.server;
    });
    after(async () => {
      await served?.close();
    });

    it('the same request is a miss, then a hit with the same outputs, over HTTP JSON, HTTP binary and gRPC; another input misses', async () => {
      const x = rows(1);
      const first = await inferJson(server.url, 'mlp', x);
      assert.deepEqual(first.parameters, { kiln_cache: 'miss' });
      close(first.outputs[0].data as number[], reference(x));
      const second = await inferJson(server.url, 'mlp', x);
      assert.deepEqual(second.parameters, { kiln_cache: 'hit' });
      assert.deepEqual(second.outputs, first.outputs);
      // The same tensor sent as binary is the same request: a hit, the same bytes back.
      const binary = await inferBinary(server.url, x);
      assert.deepEqual(binary.header.parameters, { kiln_cache: 'hit' });
      assert.deepEqual(binary.y, first.outputs[0].data);
      const raw = await call<GrpcAnswer>('ModelInfer', { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [1, 512] }], raw_input_contents: [Buffer.from(Float32Array.from(x).buffer)] });
      assert.deepEqual(raw.parameters, { kiln_cache: { parameter_choice: 'string_param', string_param: 'hit' } });
      assert.deepEqual(Array.from(new Float32Array(Uint8Array.from(raw.raw_output_contents[0]).buffer)), first.outputs[0].data);
      // Another input (and the same values in another batch) miss, first over binary and gRPC.
      const y = rows(2);
      const b1 = await inferBinary(server.url, y);
      assert.deepEqual(b1.header.parameters, { kiln_cache: 'miss' });
      close(b1.y, reference(y));
      assert.deepEqual((await inferBinary(server.url, y)).header.parameters, { kiln_cache: 'hit' });
      const z = rows(3, 2);
      const typed = { model_name: 'mlp', inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 512], contents: { fp32_contents: z } }] };
      const g1 = await call<GrpcAnswer>('ModelInfer', typed);
      const g2 = await call<GrpcAnswer>('ModelInfer', typed);
      assert.equal(g1.parameters.kiln_cache.string_param, 'miss');
      assert.equal(g2.parameters.kiln_cache.string_param, 'hit');
      assert.ok(g1.raw_output_contents[0].equals(g2.raw_output_contents[0]));
      close(Array.from(new Float32Array(Uint8Array.from(g2.raw_output_contents[0]).buffer)), reference(z));
    });

    it('a model enabling it in config.json is cached; a model without it answers without kiln_cache', async () => {
      const body = JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] });
      const post = async (model: string): Promise<HttpAnswer> => (await (await fetch(`${server.url}/v2/models/${model}/infer`, { method: 'POST', body })).json()) as HttpAnswer;
      assert.deepEqual((await post('add_cached')).parameters, { kiln_cache: 'miss' });
      const hit = await post('add_cached');
      assert.deepEqual(hit.parameters, { kiln_cache: 'hit' });
      assert.deepEqual(hit.outputs[0].data, [11, 22, 33, 44]);
      for (let i = 0; i < 2; i++) {
        const plain = await post('add');
        assert.equal(plain.parameters, undefined);
        assert.deepEqual(plain.outputs[0].data, [11, 22, 33, 44]);
      }
      const g = await call<GrpcAnswer>('ModelInfer', { model_name: 'add', inputs: [{ name: 'a', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 2, 3, 4] } }, { name: 'b', datatype: 'FP32', shape: [1, 4], contents: { fp32_contents: [1, 1, 1, 1] } }] });
      assert.deepEqual(g.parameters, {});
    });

    it('metrics and the statistics extension count hits and misses per model', async () => {
      const text = await (await fetch(`${server.url}/metrics`)).text();
      const mlp = 'model="mlp",version="1"';
      // mlp: misses for x, y, z; hits: JSON, binary, gRPC for x, binary for y, gRPC for z.
      assert.equal(metric(text, 'nv_cache_num_misses_per_model', mlp), 3);
      assert.equal(metric(text, 'nv_cache_num_hits_per_model', mlp), 5);
      assert.equal(metric(text, 'nv_cache_num_hits_per_model', 'model="add_cached",version="1"'), 1);
      assert.ok((metric(text, 'nv_cache_hit_duration_per_model', mlp) as number) > 0);
      assert.ok((metric(text, 'nv_cache_miss_duration_per_model', mlp) as number) > 0);
      assert.equal(metric(text, 'kiln_cache_errors_total', mlp), 0);
      assert.equal(metric(text, 'nv_cache_num_hits_per_model', 'model="add",version="1"'), undefined);
      // One local store shared by both cached models; entries and bytes are counted per model.
      assert.equal(metric(text, 'kiln_cache_entries', `${mlp},cache="response"`), 3);
      assert.equal(metric(text, 'kiln_cache_entries', 'model="add_cached",version="1",cache="response"'), 1);
      assert.ok((metric(text, 'kiln_cache_bytes', `${mlp},cache="response"`) as number) > 3 * 10 * 4);
      assert.ok((metric(text, 'kiln_cache_bytes', 'model="add_cached",version="1",cache="response"') as number) > 4 * 4);
      assert.equal(metric(text, 'nv_inference_request_success', mlp), 8);
      const stats = (await (await fetch(`${server.url}/v2/models/mlp/stats`)).json()) as { model_stats: { inference_stats: Record<string, { count: number; ns: number }> }[] };
      const s = stats.model_stats[0].inference_stats;
      assert.equal(s.cache_hit.count, 5);
      assert.equal(s.cache_miss.count, 3);
      assert.ok(s.cache_hit.ns > 0 && s.cache_miss.ns > 0);
      const grpcStats = await call<{ model_stats: { inference_stats: { cache_hit: { count: number } } }[] }>('ModelStatistics', { name: 'add', version: '' });
      assert.equal(grpcStats.model_stats[0].inference_stats.cache_hit.count, 0);
    });
  });

  it('--cache-config: Triton\'s flag form, checked with E_INVALID_ARGUMENT', async () => {
    assert.deepEqual(parseCacheConfig('local,size=1048576'), { local: { maxBytes: 1048576 } });
    assert.deepEqual(parseCacheConfig(['redis,url=redis://127.0.0.1:6379,ttl=60000', 'redis,timeout=20']), { redis: { url: 'redis://127.0.0.1:6379', ttlMs: 60000, timeoutMs: 20 } });
    assert.deepEqual(parseCacheConfig(['redis,host=cache.local', 'redis,port=6380']), { redis: { url: 'redis://cache.local:6380' } });
    const cases: [string | string[], string][] = [
      ['memcached,size=1', 'the cache kind must be local or redis, received "memcached"'],
      ['local', "give the local cache's settings after the kind"],
      ['local,size=12kb', 'size must be a size in bytes >= 1, received "12kb"'],
      ['local,size=0', 'size must be a size in bytes >= 1, received "0"'],
      ['local,ttl=5', 'the local cache needs size=BYTES'],
      ['local,url=redis://x', 'the local cache takes size, ttl, not "url"'],
      ['local,size', 'settings are KEY=VALUE, received "size"'],
      [['local,size=1', 'redis,url=redis://x'], 'a server has one cache, and an earlier --cache-config named local'],
      [['local,size=1', 'local,size=2'], 'size is given more than once'],
      ['redis,url=http://x:1', 'url must be a redis:// or rediss:// URL, received "http://x:1"'],
      ['redis,timeout=10', 'the redis cache needs url=redis://HOST:PORT'],
      ['redis,url=redis://x,timeout=-1', 'timeout must be a time in milliseconds >= 1, received "-1"'],
    ];
    for (const [flags, message] of cases) {
      assert.throws(() => parseCacheConfig(flags), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', message) !== undefined, String(flags));
    }
    await assert.rejects(startServer({ example: true, httpPort: 0, grpcPort: -1, logLevel: 'silent', cache: { local: { maxBytes: 0 } } }), (e) => assertKilnError(e, 'E_INVALID_ARGUMENT', 'option "responseCache.local.maxBytes"') !== undefined);
    // The command line says it as `kiln: CODE: message`, exit code 1, before serving anything.
    const { code, stderr } = await runKiln(['--example', '--port', '0', '--grpc-port', '-1', '--cache-config', 'redis,url=localhost:6379']);
    assert.equal(code, 1);
    assert.equal(stderr.trim(), 'kiln: E_INVALID_ARGUMENT: --cache-config "redis,url=localhost:6379": url must be a redis:// or rediss:// URL, received "localhost:6379"');
  });

  describe('two server processes sharing Redis', () => {
    type Served = KilnProcess;
    let dir: string;
    let redis: RedisServer;
    const servers: Served[] = [];

    /** `kiln serve` of the cached repository on a free port, once it has printed where it listens. */
    async function serve(...args: string[]): Promise<Served> {
      const served = await startKiln(['--model-repository', dir, '--port', '0', '--grpc-port', '-1', '--drain-delay-secs', '0', ...args]);
      servers.push(served);
      return served;
    }

    before(async () => {
      dir = cachedRepository();
      redis = await startRedis();
    });
    after(async () => {
      for (const s of servers) {
        s.child.kill('SIGTERM');
        assert.equal(await s.exit, 0, s.stderr());
      }
      await redis?.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    it('an answer of A is a hit on B; with Redis stopped both answer, uncached, count the errors and log once; with Redis back both cache again', async () => {
      const flags = ['--cache-config', `redis,url=${redis.url}`, '--cache-config', 'redis,timeout=200'];
      const [a, b] = await Promise.all([serve(...flags), serve(...flags)]);
      const x = rows(7);
      const fromA = await inferJson(a.url, 'mlp', x);
      assert.deepEqual(fromA.parameters, { kiln_cache: 'miss' });
      close(fromA.outputs[0].data as number[], reference(x));
      await new Promise((r) => setTimeout(r, 100)); // A stores its answer after sending it
      const fromB = await inferJson(b.url, 'mlp', x);
      assert.deepEqual(fromB.parameters, { kiln_cache: 'hit' });
      assert.deepEqual(fromB.outputs, fromA.outputs);

      await redis.stop();
      const y = rows(8);
      for (let i = 0; i < 3; i++) {
        for (const s of [a, b]) {
          for (const [input, want] of [[x, fromA.outputs[0].data as number[]], [y, reference(y)]] as const) {
            const answer = await inferJson(s.url, 'mlp', input);
            assert.deepEqual(answer.parameters, { kiln_cache: 'miss' });
            close(answer.outputs[0].data as number[], want);
          }
        }
      }
      for (const s of [a, b]) {
        const text = await (await fetch(`${s.url}/metrics`)).text();
        // Each request's lookup failed, and so did each miss's store.
        assert.ok((metric(text, 'kiln_cache_errors_total', 'model="mlp",version="1"') as number) >= 6, text);
        assert.equal(metric(text, 'nv_cache_num_misses_per_model', 'model="mlp",version="1"'), s === a ? 7 : 6);
        const warnings = s.stderr().split('\n').filter((l) => l.includes('response cache failed'));
        assert.equal(warnings.length, 1, s.stderr());
        assert.equal(JSON.parse(warnings[0]).level, 40);
      }

      // Redis back (empty, on the same port): both reconnect on their own and share answers again.
      await redis.restart();
      const z = rows(9);
      const outcome = async (s: Served): Promise<unknown> => {
        const answer = await inferJson(s.url, 'mlp', z);
        close(answer.outputs[0].data as number[], reference(z));
        return answer.parameters?.kiln_cache;
      };
      const deadline = Date.now() + 20_000;
      // A's answer is stored once A has reconnected; A's next lookup then hits it.
      while ((await outcome(a)) !== 'hit') {
        assert.ok(Date.now() < deadline, 'A did not cache again within 20 s of Redis coming back');
        await new Promise((r) => setTimeout(r, 100));
      }
      while ((await outcome(b)) !== 'hit') {
        assert.ok(Date.now() < deadline, 'B did not reach the cache again within 20 s of Redis coming back');
        await new Promise((r) => setTimeout(r, 100));
      }
    });
  });
});

// Three `kiln serve` replicas behind HAProxy (Debian's haproxy, checking KServe v2's readiness
// endpoint), sharing one Redis as their response cache, all on loopback and started by the
// test: under a steady load through HAProxy, a rolling restart loses nothing, a replica killed
// with SIGKILL loses at most the requests it held, an answer cached through one replica is a
// hit on another, and Redis going away and coming back costs no request.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addModel, mlpReference, prng } from '../lib/samples';
import { writeExampleRepository } from '../lib/server/serve';
import { writeFiles } from '../support/repository';
import { REPLICA_HEADER, startHaproxy, type Haproxy } from '../support/haproxy';
import { freePort, startKiln, type KilnProcess } from '../support/kiln-process';
import { startRedis, type RedisServer } from './helpers/redis';

/** Concurrent clients of the steady load (each sends its next request THINK_MS after its last is answered). */
const CONCURRENCY = 8;
/**
 * A client's pause between an answer and its next request: the load stays steady without
 * taking the two cores of this machine from the replicas that start again under it.
 */
const THINK_MS = 10;
/** Seconds a draining replica keeps serving: HAProxy's checks (every 100 ms, down after 2) notice it well within. */
const DRAIN_DELAY_SECS = 2;

interface Outcome {
  /** performance.now() when sent and when settled. */
  start: number;
  end: number;
  ok: boolean;
  /** The HTTP status, or the client's error. */
  status: number | string;
  /** The replica that answered (HAProxy's header). */
  replica?: string;
}

/**
 * A closed loop of CONCURRENCY clients sending requests through HAProxy until stopped (or
 * for at most `maxMs` / `maxRequests`: bounded whatever the test does). Requests alternate
 * between the add model and a copy of it with the response cache (so that each also looks
 * Redis up and stores into it), each with its own inputs; an answer counts as a success only
 * when it is a 200 carrying exactly a + b.
 */
class SteadyLoad {
  readonly outcomes: Outcome[] = [];
  #inFlight = 0;
  #sent = 0;
  #stopped = false;
  readonly #clients: Promise<void>[];

  constructor(private readonly url: string, private readonly maxMs = 60_000, private readonly maxRequests = 200_000) {
    const until = performance.now() + maxMs;
    this.#clients = Array.from({ length: CONCURRENCY }, async () => {
      while (!this.#stopped && performance.now() < until && this.#sent < this.maxRequests) {
        await this.#one(this.#sent++);
        await new Promise((r) => setTimeout(r, THINK_MS));
      }
    });
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  async #one(i: number): Promise<void> {
    const a = [4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3];
    const model = i % 2 ? 'add' : 'add_cached';
    const body = JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: a }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [0.5, 0.5, 0.5, 0.5] }] });
    const start = performance.now();
    this.#inFlight++;
    let outcome: Outcome;
    try {
      const r = await fetch(`${this.url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      const text = await r.text();
      let ok = false;
      if (r.status === 200) {
        const y = (JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0].data;
        ok = y.length === 4 && y.every((v, k) => v === a[k] + 0.5);
      }
      outcome = { start, end: performance.now(), ok, status: r.status, replica: r.headers.get(REPLICA_HEADER) ?? undefined };
    } catch (e) {
      outcome = { start, end: performance.now(), ok: false, status: String((e as Error & { cause?: Error }).cause?.message ?? e) };
    }
    this.#inFlight--;
    this.outcomes.push(outcome);
  }

  /** Stops sending; resolves once every request sent is settled. */
  async stop(): Promise<Outcome[]> {
    this.#stopped = true;
    await Promise.all(this.#clients);
    return this.outcomes;
  }
}

/** "N requests, M failed (statuses)" */
function summary(outcomes: readonly Outcome[]): string {
  const failed = outcomes.filter((o) => !o.ok);
  const why = new Map<string, number>();
  for (const f of failed) why.set(String(f.status), (why.get(String(f.status)) ?? 0) + 1);
  return `${outcomes.length} requests, ${failed.length} failed${failed.length ? ` (${[...why].map(([s, n]) => `${n} × ${s}`).join(', ')})` : ''}`;
}

interface MlpAnswer {
  parameters?: { kiln_cache?: string };
  outputs: { data: number[] }[];
}

describe('replicas behind HAProxy with a shared Redis cache', function () {
  this.timeout(60_000);
  let dir: string;
  let redis: RedisServer;
  let haproxy: Haproxy;
  const replicas: { name: string; port: number; process?: KilnProcess }[] = [];
  let load: SteadyLoad | undefined;

  /** Starts (or starts again) replica i on its port. */
  async function startReplica(i: number): Promise<KilnProcess> {
    const r = replicas[i];
    r.process = await startKiln(['--model-repository', dir, '--http-port', String(r.port), '--grpc-port', '-1',
      '--cache-config', `redis,url=${redis.url},timeout=1000`, '--drain-delay-secs', String(DRAIN_DELAY_SECS), '--log-level', 'warn']);
    return r.process;
  }

  /** The sample MLP's answer, for a seeded input, from `url` (a replica or HAProxy), checked against the reference. */
  async function mlp(url: string, seed: number): Promise<MlpAnswer> {
    const rand = prng(seed);
    const x = Array.from({ length: 512 }, () => Math.fround(rand() * 2 - 1));
    const r = await fetch(`${url}/v2/models/mlp/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 512], datatype: 'FP32', data: x }] }) });
    assert.equal(r.status, 200, await r.clone().text());
    const answer = (await r.json()) as MlpAnswer;
    const want = mlpReference(Float32Array.from(x), 1);
    answer.outputs[0].data.forEach((v, k) => assert.ok(Math.abs(v - want[k]) <= 1e-4 * Math.max(1, Math.abs(want[k])), `y[${k}]: ${v} vs ${want[k]}`));
    return answer;
  }

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-replicas-'));
    writeExampleRepository(dir);
    fs.appendFileSync(path.join(dir, 'mlp', 'config.pbtxt'), 'response_cache { enable: true }\n');
    writeFiles(dir, { 'add_cached/config.json': JSON.stringify({ response_cache: { enable: true } }), 'add_cached/1/model.onnx': addModel() });
    redis = await startRedis();
    for (let i = 0; i < 3; i++) replicas.push({ name: `r${i}`, port: await freePort() });
    await Promise.all(replicas.map((_, i) => startReplica(i)));
    haproxy = await startHaproxy({ replicas, interMs: 100, fall: 2, rise: 2 });
    for (const r of replicas) await haproxy.waitFor(r.name, 'UP');
  });
  afterEach(async () => {
    await load?.stop();
    load = undefined;
  });
  after(async () => {
    await Promise.all(replicas.map((r) => r.process?.kill()));
    await haproxy?.stop();
    await redis?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('an answer cached through one replica is a hit on another', async () => {
    load = new SteadyLoad(haproxy.url);
    const [a, b] = [replicas[0].process as KilnProcess, replicas[1].process as KilnProcess];
    const first = await mlp(a.url, 1001);
    assert.deepEqual(first.parameters, { kiln_cache: 'miss' });
    const second = await mlp(b.url, 1001);
    assert.deepEqual(second.parameters, { kiln_cache: 'hit' });
    assert.deepEqual(second.outputs, first.outputs);
    const outcomes = await load.stop();
    assert.equal(outcomes.filter((o) => !o.ok).length, 0, summary(outcomes));
  });

  it('Redis stopped: every request is answered, uncached (miss); Redis back: answers are cached again (hit)', async () => {
    load = new SteadyLoad(haproxy.url);
    await mlp(haproxy.url, 2002);
    assert.deepEqual((await mlp(haproxy.url, 2002)).parameters, { kiln_cache: 'hit' });
    await redis.stop();
    // Through HAProxy, so that every replica is asked: the same request is now a miss, answered.
    for (let i = 0; i < 6; i++) assert.deepEqual((await mlp(haproxy.url, 2002)).parameters, { kiln_cache: 'miss' });
    await redis.restart();
    // Each replica reconnects in the background (at most a second between attempts): the
    // answer is stored again and then found, within a bounded number of tries.
    let hits = 0;
    for (let tries = 0; tries < 100 && hits < 3; tries++) {
      if ((await mlp(haproxy.url, 2002)).parameters?.kiln_cache === 'hit') hits++;
      else await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(hits, 3, 'cached again once Redis is back');
    const outcomes = await load.stop();
    assert.equal(outcomes.filter((o) => !o.ok).length, 0, summary(outcomes));
    assert.ok(outcomes.length > CONCURRENCY, summary(outcomes));
  });

  it('a rolling restart under load (SIGTERM each replica, start it again) fails no request', async () => {
    load = new SteadyLoad(haproxy.url);
    const counted = await haproxy.counters();
    const restarted: number[] = [];
    for (let i = 0; i < replicas.length; i++) {
      const r = replicas[i];
      const old = r.process as KilnProcess;
      old.child.kill('SIGTERM');
      assert.equal(await old.exit, 0, old.stderr());
      await startReplica(i);
      await haproxy.waitFor(r.name, 'UP');
      restarted.push(performance.now());
    }
    // Each restarted replica is back in the rotation: it answers some of the load.
    const until = performance.now();
    while (load.outcomes.filter((o) => o.start > restarted[2]).length < 50 && performance.now() - until < 10_000) await new Promise((r) => setTimeout(r, 20));
    const outcomes = await load.stop();
    const after = await haproxy.counters();
    const resent = replicas.reduce((n, r) => n + after[r.name].retries - counted[r.name].retries + after[r.name].redispatches - counted[r.name].redispatches, 0);
    console.log(`      rolling restart: ${summary(outcomes)}; HAProxy retried ${resent} connections`);
    assert.equal(outcomes.filter((o) => !o.ok).length, 0, summary(outcomes));
    // Nothing was saved by HAProxy's retries either: every replica left the rotation (readiness
    // 503) before it stopped taking connections, so no connection to one was ever refused.
    assert.equal(resent, 0, 'no connection refused: each replica was out of the rotation before it closed');
    replicas.forEach((r, i) => assert.ok(outcomes.some((o) => o.ok && o.replica === r.name && o.start > restarted[i]), `${r.name} answers after its restart`));
  });

  it('a replica killed with SIGKILL under load loses at most the requests in flight; the others keep answering', async () => {
    load = new SteadyLoad(haproxy.url);
    while (load.outcomes.length < 100) await new Promise((r) => setTimeout(r, 10));
    const victim = replicas[2];
    const counted = (await haproxy.counters())[victim.name];
    const killed = performance.now();
    await (victim.process as KilnProcess).kill();
    // From here on the replica is gone: a connection to it is refused, and HAProxy sends the
    // request to another one (retries, redispatch) even before its checks mark it down.
    const dead = performance.now();
    await haproxy.waitFor(victim.name, 'DOWN');
    const down = performance.now();
    // The load goes on after HAProxy has taken it out: a bounded number of further requests.
    const before = load.outcomes.length;
    while (load.outcomes.filter((o) => o.start > down).length < 100 && load.outcomes.length - before < 10_000) await new Promise((r) => setTimeout(r, 10));
    const outcomes = await load.stop();
    const failed = outcomes.filter((o) => !o.ok);
    const counters = (await haproxy.counters())[victim.name];
    // In flight while it was killed (through HAProxy, to any of the three): sent before it had
    // exited, answered (or failed) after the signal.
    const inFlight = outcomes.filter((o) => o.start <= dead && o.end >= killed).length;
    console.log(`      SIGKILL under load: ${inFlight} requests in flight (to all three replicas) while a replica was killed, ${failed.length} of them failed; ` +
      `${counters.redispatches - counted.redispatches} sent to it before HAProxy marked it down went to another replica; ${summary(outcomes)}`);
    assert.ok(failed.length <= CONCURRENCY, `at most the requests in flight fail: ${summary(outcomes)}`);
    assert.equal(failed.filter((o) => o.start > dead || o.end < killed).length, 0, 'only requests in flight while it was killed fail');
    for (const r of replicas.slice(0, 2)) assert.ok(outcomes.some((o) => o.ok && o.replica === r.name && o.start > dead), `${r.name} kept answering`);
    assert.equal(outcomes.some((o) => o.replica === victim.name && o.start > dead), false, 'no request is answered by the killed replica');
    await startReplica(2);
    await haproxy.waitFor(victim.name, 'UP');
  });
});

// Adaptive batching (dynamicBatching.maxLatencyMs): what it accepts, how long batches wait,
// and that no cold start, pause or burst locks a model out. The work model's batch cost is
// set per request (loop steps) and hardly depends on the batch size, so costs are chosen,
// not guessed; the MLP is the model the lockout was first seen on.
import { strict as assert } from 'assert';
import { KilnError, loadModel, Session, type Model, type ModelConfig, type Results } from '../lib';
import { mlpModel, prng } from './fixtures/models';
import { checkDoubled, msPerStep, workModel, workRequest, type WorkRequest } from './helpers/batching-models';

const WORK = workModel();
const MLP = mlpModel();
const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));

interface Outcome {
  q: WorkRequest;
  ms: number;
  result?: Results;
  error?: KilnError;
}

/** Sends `q` and records its latency and how it ended (never rejects). */
async function send(model: Model, q: WorkRequest, options?: Parameters<Model['infer']>[1]): Promise<Outcome> {
  const t = performance.now();
  try {
    const result = await model.infer(q.feeds, options);
    return { q, ms: performance.now() - t, result };
  } catch (e) {
    if (!(e instanceof KilnError)) throw e;
    return { q, ms: performance.now() - t, error: e };
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Every outcome is its own correct answer or an E_OVERLOADED with a measured retry hint. */
function checkOutcomes(outcomes: Outcome[], target: number): { served: Outcome[]; refused: Outcome[] } {
  const served: Outcome[] = [];
  const refused: Outcome[] = [];
  outcomes.forEach((o, i) => {
    if (o.result) {
      checkDoubled(o.result, o.q, `request ${i}`);
      served.push(o);
      return;
    }
    const e = o.error as KilnError;
    assert.equal(e.code, 'E_OVERLOADED', `request ${i}: ${e.message}`);
    assert.match(e.message, new RegExp(`maxLatencyMs = ${target}\\b`));
    assert.ok(typeof e.retryAfterMs === 'number' && e.retryAfterMs >= 1 && Number.isFinite(e.retryAfterMs), `request ${i}: retryAfterMs ${String(e.retryAfterMs)}`);
    refused.push(o);
  });
  return { served, refused };
}

describe('adaptive batching (maxLatencyMs)', function () {
  this.timeout(120_000);
  let stepMs = 0;
  const steps = (ms: number): number => Math.max(1, Math.round(ms / stepMs));
  const models: Model[] = [];
  async function load(model: Uint8Array, config: ModelConfig): Promise<Model> {
    const m = await loadModel(model, config);
    models.push(m);
    return m;
  }

  before(async () => {
    stepMs = await msPerStep();
  });
  afterEach(async () => {
    await Promise.all(models.splice(0).map((m) => m.dispose()));
  });

  it('a slow first batch is not a cost sample: the model is not locked out after a cold start', async () => {
    const target = 10;
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: target } });
    // The first batch ever costs 5x the target; had it been learned as the batch cost, every
    // later request would be refused.
    const cold = await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(i * 10, 1, { work: steps(5 * target) }))));
    assert.equal(checkOutcomes(cold, target).served.length, 8, 'an unmeasured model refuses nothing');
    await sleep(200);
    let served = 0;
    for (let round = 0; round < 10; round++) {
      const burst = await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(round * 100 + i * 10, 1))));
      served += checkOutcomes(burst, target).served.length;
    }
    assert.equal(served, 80, 'cheap bursts after the cold batch are all served');
  });

  it('the MLP with maxLatencyMs = 3 serves after its cold 64-row batch (the lockout seen before)', async () => {
    const model = await load(MLP, { maxBatchSize: 64, dynamicBatching: { maxLatencyMs: 3 } });
    const rand = prng(7);
    const x = (rows: number): Float32Array => Float32Array.from({ length: rows * 512 }, rand);
    const infer = (data: Float32Array, rows: number): Promise<Results | KilnError> =>
      model.infer({ x: { type: 'float32', data, dims: [rows, 512] } }).catch((e: KilnError) => e);
    const cold = await Promise.all(Array.from({ length: 64 }, () => infer(x(1), 1)));
    assert.ok(cold.every((r) => !(r instanceof KilnError)), 'the cold burst is served');
    await sleep(500);
    const reference = await Session.create(MLP);
    try {
      for (let i = 0; i < 30; i++) {
        const data = x(1);
        const r = await infer(data, 1);
        assert.ok(!(r instanceof KilnError), `single request ${i} on an idle model: ${String((r as KilnError).message)}`);
        const own = reference.runSync({ x: { type: 'float32', data, dims: [1, 512] } }).y.data as Float32Array;
        assert.deepEqual(Array.from(r.y.data as Float32Array).map((v) => v.toFixed(4)), Array.from(own).map((v) => v.toFixed(4)));
      }
    } finally {
      await reference.dispose();
    }
    let served = 0;
    for (let round = 0; round < 20; round++) {
      const burst = await Promise.all(Array.from({ length: 4 }, () => infer(x(1), 1)));
      served += burst.filter((r) => !(r instanceof KilnError)).length;
    }
    assert.ok(served >= 76, `${served} of 80 requests in bursts of 4 served (a 4-row MLP batch costs a fraction of 3 ms)`);
  });

  it('after a long pause, stale costs do not refuse: a model that became cheap is served again', async () => {
    const target = 20;
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: target } });
    // Batches that cost 1.5x the target: learned, and a flood is refused.
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(i, 1, { work: steps(1.5 * target) }))));
    }
    const flood = await Promise.all(Array.from({ length: 40 }, (_, i) => send(model, workRequest(i * 10, 1, { work: steps(1.5 * target) }))));
    assert.ok(checkOutcomes(flood, target).refused.length > 0, 'an expensive flood is refused in part');
    await sleep(1500);
    const outcomes: Outcome[] = [];
    for (let round = 0; round < 10; round++) {
      outcomes.push(...await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(round * 100 + i * 10, 1)))));
    }
    const { served } = checkOutcomes(outcomes, target);
    assert.equal(served.length, outcomes.length, 'every cheap request after the pause is served');
  });

  it('a request an idle instance can take is never refused, even under an unreachable target', async () => {
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: 1 } });
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 20; i++) outcomes.push(await send(model, workRequest(i * 10, 1, { work: steps(4) })));
    assert.equal(checkOutcomes(outcomes, 1).served.length, 20);
  });

  it('a caller that waits for each answer is not held back waiting for companions', async () => {
    const target = 60;
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: target } });
    const outcomes: Outcome[] = [];
    for (let i = 0; i < 60; i++) outcomes.push(await send(model, workRequest(i * 10, 1, { work: steps(2) })));
    const { served } = checkOutcomes(outcomes, target);
    assert.equal(served.length, 60);
    // Waiting out the target would put the median near 50 ms; the run itself takes ~2 ms.
    const p50 = median(served.slice(10).map((o) => o.ms));
    assert.ok(p50 < target / 4, `median latency ${p50.toFixed(1)} ms with maxLatencyMs ${target}`);
  });

  it('under overload, refuses with E_OVERLOADED and a retry hint; served requests stay near the target', async () => {
    const target = 60;
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: target } });
    const work = steps(10);
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(i, 1, { work }))));
      await send(model, workRequest(0, 1, { work }));
    }
    // 240 rows at once: 30 batches of 10 ms on one instance, 300 ms of work for a 60 ms target.
    const flood = await Promise.all(Array.from({ length: 240 }, (_, i) => send(model, workRequest(i * 10, 1, { work }))));
    const { served, refused } = checkOutcomes(flood, target);
    assert.ok(refused.length > 120, `${refused.length} of 240 refused`);
    assert.ok(served.length >= 24, `${served.length} served`);
    // Refused on arrival with the prediction, or (when the prediction fell short) once the wait passed the target.
    for (const o of refused) {
      assert.match((o.error as KilnError).message, /would take about [\d.]+ ms \(\d+ rows queued ahead, \d of 1 instances busy\)|waited [\d.]+ ms in the queue/);
    }
    const onArrival = refused.filter((o) => /would take about/.test((o.error as KilnError).message));
    assert.ok(onArrival.length > refused.length / 2, `${onArrival.length} of ${refused.length} refused on arrival`);
    const worst = Math.max(...served.map((o) => o.ms));
    assert.ok(worst <= 2 * target, `slowest served request ${worst.toFixed(1)} ms, target ${target} ms`);
    const s = model.stats();
    assert.equal(s.success + (s.failure.E_OVERLOADED ?? 0), s.requests);
  });

  it('at a sustainable rate, refuses nothing and batches what arrives together', async () => {
    const target = 60;
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: target } });
    const work = steps(6);
    await Promise.all(Array.from({ length: 8 }, (_, i) => send(model, workRequest(i, 1, { work }))));
    // One request every 2 ms against batches of up to 8 that cost ~6 ms: about 40% of capacity.
    const pending: Promise<Outcome>[] = [];
    for (let i = 0; i < 150; i++) {
      pending.push(send(model, workRequest(i * 10, 1, { work })));
      await sleep(2);
    }
    const { served, refused } = checkOutcomes(await Promise.all(pending), target);
    assert.equal(refused.length, 0, `refused: ${refused.map((o) => o.error?.message).join('; ')}`);
    assert.equal(served.length, 150);
    const s = model.stats();
    assert.ok(s.inferenceCount / s.executionCount > 1.5, `mean batch ${(s.inferenceCount / s.executionCount).toFixed(2)}`);
  });

  it('a burst after warm-up on single requests only is served when the target allows it', async () => {
    const model = await load(MLP, { maxBatchSize: 64, dynamicBatching: { maxLatencyMs: 2000 } });
    const rand = prng(11);
    const x = (): Float32Array => Float32Array.from({ length: 512 }, rand);
    for (let i = 0; i < 20; i++) await model.infer({ x: { type: 'float32', data: x(), dims: [1, 512] } });
    const burst = await Promise.all(Array.from({ length: 2000 }, () =>
      model.infer({ x: { type: 'float32', data: x(), dims: [1, 512] } }).then(() => true, (e: KilnError) => e)));
    const refused = burst.filter((r) => r !== true) as KilnError[];
    assert.equal(refused.length, 0, `${refused.length} of 2000 refused, e.g. ${refused[0]?.message}`);
  });

  it('when every request of a running batch is aborted, the run stops', async () => {
    const model = await load(WORK, { maxBatchSize: 8, dynamicBatching: { maxLatencyMs: 5000 } });
    await send(model, workRequest(0, 1, { work: 1 }));
    const long = steps(1500);
    const controllers = [new AbortController(), new AbortController()];
    const running = controllers.map((c, i) => send(model, workRequest(i * 10, 1, { work: long }), { signal: c.signal }));
    await sleep(100);
    for (const c of controllers) c.abort();
    for (const o of await Promise.all(running)) {
      assert.equal(o.error?.code, 'E_ABORTED');
      assert.match((o.error as KilnError).message, /aborted while its batch ran/);
    }
    // Had the batch run on, this request would wait ~1.4 s for the instance.
    const next = await send(model, workRequest(100, 1, { work: 1 }));
    checkDoubled(next.result as Results, next.q, 'next');
    assert.ok(next.ms < 700, `the next request took ${next.ms.toFixed(0)} ms: the aborted batch kept the instance`);
    assert.equal(model.stats().pending, 0);
  });
});

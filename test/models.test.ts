// Serving a Triton repository's models (lib/server/models.ts): control modes none, explicit and
// poll; versions; auto-completed configs; unload and reload under traffic with no request lost
// or answered twice, and every answer equal to a plain session's.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KilnError, Session, type Feeds } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';
import { addModel, mlpModel, prng } from '../lib/samples';
import { ModelManager } from '../lib/server/models';
import { assertKilnError } from './helpers/assert-error';
import { writeFiles } from '../support/repository';

/** y = a + b + k, ['N', 4]: versions of one model told apart by k. */
function addK(k: number): Uint8Array {
  const g = new GraphBuilder('add_k');
  const a = g.input('a', 'float32', ['N', 4]);
  const b = g.input('b', 'float32', ['N', 4]);
  const c = g.initializer('k', 'float32', [1], Float32Array.of(k));
  g.output(g.node('Add', [g.node('Add', [a, b]), c], { outputs: 'y' }), 'float32', ['N', 4]);
  return g.build({ opset: 17 });
}

const row = (v: number): Feeds => ({
  a: { type: 'float32', data: Float32Array.of(v, v + 1, v + 2, v + 3), dims: [1, 4] },
  b: { type: 'float32', data: Float32Array.of(1, 1, 1, 1), dims: [1, 4] },
});

async function failure(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return assert.fail('expected a rejection');
}

describe('serving a model repository', function () {
  this.timeout(60_000);
  let dir: string;
  let count = 0;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-models-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  function repo(files: Record<string, string | Uint8Array>): string {
    const root = path.join(dir, `r${count++}`);
    fs.mkdirSync(root);
    writeFiles(root, files);
    return root;
  }

  it('mode none: every model loaded at start, a broken one UNAVAILABLE with its reason, the others served', async () => {
    const root = repo({
      'mlp/config.pbtxt': 'max_batch_size: 8\ndynamic_batching { }', 'mlp/1/model.onnx': mlpModel(),
      'add/1/model.onnx': addModel(),
      'broken/config.pbtxt': 'max_batch_size: "x"', 'broken/1/model.onnx': addModel(),
    });
    const m = await ModelManager.open(root);
    try {
      assert.deepEqual(m.index(), [
        { name: 'add', version: 1, state: 'READY', reason: '' },
        { name: 'broken', state: 'UNAVAILABLE', reason: `${path.join(fs.realpathSync(root), 'broken', 'config.pbtxt')}:1: max_batch_size: expected an integer, found "x"` },
        { name: 'mlp', version: 1, state: 'READY', reason: '' },
      ]);
      assert.equal(m.ready(), false, 'a model failed to load');
      // The config-less model was completed from the ONNX model.
      const add = m.resolve('add');
      assert.deepEqual([add.config.maxBatchSize, add.config.input?.map((i) => [i.name, i.dataType, i.dims])], [64, [['a', 'TYPE_FP32', [4]], ['b', 'TYPE_FP32', [4]]]]);
      const y = await m.infer('add', undefined, row(1));
      assert.deepEqual(Array.from(y.y.data as Float32Array), [2, 3, 4, 5]);
      // The MLP as a plain session answers.
      const session = await Session.create(mlpModel());
      const rand = prng(3);
      const x: Feeds = { x: { type: 'float32', data: Float32Array.from({ length: 512 }, rand), dims: [1, 512] } };
      assert.deepEqual(Array.from((await m.infer('mlp', '1', x)).y.data as Float32Array), Array.from((await session.run(x)).y.data as Float32Array));
      await session.dispose();
      assertKilnError(await failure(m.infer('nope', undefined, row(1))), 'E_NOT_FOUND', 'unknown model "nope"');
      assertKilnError(await failure(m.infer('add', '2', row(1))), 'E_NOT_FOUND', 'model "add" has no version 2 being served (1)');
      assertKilnError(await failure(m.infer('add', 'x1', row(1))), 'E_INVALID_ARGUMENT', 'version "x1" is not a number');
      assertKilnError(await failure(m.infer('broken', undefined, row(1))), 'E_UNAVAILABLE', 'model "broken" is not ready: ');
      assertKilnError(await failure(m.load('add')), 'E_INVALID_ARGUMENT', 'explicit');
    } finally {
      await m.close();
    }
  });

  it('mode explicit: only the models named at start; load and unload by name', async () => {
    const root = repo({ 'one/1/model.onnx': addK(1), 'two/1/model.onnx': addK(2) });
    const m = await ModelManager.open(root, { controlMode: 'explicit', loadModels: ['one'] });
    try {
      assert.deepEqual(m.index().map((s) => [s.name, s.state, s.reason]), [['one', 'READY', ''], ['two', 'UNAVAILABLE', 'unloaded']]);
      assertKilnError(await failure(m.infer('two', undefined, row(0))), 'E_UNAVAILABLE', 'model "two" is not loaded');
      await m.load('two');
      assert.deepEqual(Array.from((await m.infer('two', undefined, row(0))).y.data as Float32Array), [3, 4, 5, 6]);
      await m.unload('one');
      assertKilnError(await failure(m.infer('one', undefined, row(0))), 'E_UNAVAILABLE', 'model "one" is not loaded');
      assertKilnError(await failure(m.load('../one')), 'E_INVALID_ARGUMENT', 'is not a model name');
      assertKilnError(await failure(m.load('three')), 'E_NOT_FOUND', 'no model "three"');
      assert.deepEqual(m.index().map((s) => s.name), ['one', 'two'], 'a failed load of no model lists nothing');
    } finally {
      await m.close();
    }
  });

  // 300 requests in flight over a model that is unloaded, or reloaded with a new version, in
  // the middle: each is answered once, by the version that took it, or refused with
  // E_UNAVAILABLE when it came after the unload began. None is lost.
  for (const action of ['unload', 'reload'] as const) {
    it(`${action} under traffic: no request lost or answered twice, each answered by the version that took it`, async () => {
      const root = repo({ 'm/config.pbtxt': 'max_batch_size: 16\ndynamic_batching { max_queue_delay_microseconds: 2000 }', 'm/1/model.onnx': addK(100) });
      const m = await ModelManager.open(root, { controlMode: 'explicit', loadModels: ['m'] });
      try {
        const settled: ('ok' | 'unavailable')[] = [];
        const sent: Promise<void>[] = [];
        let changed: Promise<void> | undefined;
        for (let i = 0; i < 300; i++) {
          if (i === 150) {
            if (action === 'reload') {
              fs.mkdirSync(path.join(root, 'm', '2'));
              fs.writeFileSync(path.join(root, 'm', '2', 'model.onnx'), addK(200));
            }
            changed = action === 'unload' ? m.unload('m') : m.load('m');
          }
          const v = i % 7;
          sent.push(m.infer('m', undefined, row(v)).then((r) => {
            const y = Array.from(r.y.data as Float32Array);
            const k = y[0] - v - 1;
            assert.ok(k === 100 || k === 200, `request ${i}: ${y}`);
            assert.deepEqual(y, [v + 1 + k, v + 2 + k, v + 3 + k, v + 4 + k], `request ${i}`);
            if (i < 150 || action === 'unload') assert.equal(k, 100, `request ${i} was taken by version 1`);
            settled.push('ok');
          }, (e: unknown) => {
            assert.ok(e instanceof KilnError && e.code === 'E_UNAVAILABLE' && action === 'unload' && i >= 150, `request ${i}: ${String(e)}`);
            settled.push('unavailable');
          }));
          if (i % 10 === 0) await new Promise((r) => setImmediate(r));
        }
        await Promise.all(sent);
        await changed;
        assert.equal(settled.length, 300);
        if (action === 'unload') {
          assert.ok(settled.filter((s) => s === 'ok').length >= 150, 'every request taken before the unload was answered');
          assertKilnError(await failure(m.infer('m', undefined, row(0))), 'E_UNAVAILABLE');
        } else {
          assert.deepEqual(settled.filter((s) => s !== 'ok'), []);
          assert.deepEqual(m.index().map((s) => [s.version, s.state]), [[2, 'READY']]);
          assert.deepEqual(Array.from((await m.infer('m', undefined, row(0))).y.data as Float32Array), [201, 202, 203, 204]);
        }
      } finally {
        await m.close();
      }
    });
  }

  it("model_warmup runs before a version takes requests (zeros, random, a file of the model's warmup folder); a failing one fails the load", async () => {
    const warm = `max_batch_size: 8
model_warmup [
  { name: "zeros" batch_size: 2 inputs { key: "a" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } inputs { key: "b" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } },
  { name: "random" batch_size: 1 count: 3 inputs { key: "a" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } inputs { key: "b" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } },
  { name: "file" batch_size: 1 inputs { key: "a" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "a.raw" } } inputs { key: "b" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "a.raw" } } }
]`;
    const root = repo({
      'warm/config.pbtxt': warm, 'warm/1/model.onnx': addK(0), 'warm/warmup/a.raw': new Uint8Array(Float32Array.of(1, 2, 3, 4).buffer),
      'cold/config.pbtxt': 'max_batch_size: 8\nmodel_warmup [ { name: "bad" batch_size: 1 inputs { key: "a" value: { data_type: TYPE_FP32 dims: [ 5 ] zero_data: true } } inputs { key: "b" value: { data_type: TYPE_FP32 dims: [ 5 ] zero_data: true } } } ]', 'cold/1/model.onnx': addK(0),
      'escape/config.pbtxt': 'max_batch_size: 8\nmodel_warmup [ { batch_size: 1 inputs { key: "a" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "../../warm/warmup/a.raw" } } } ]', 'escape/1/model.onnx': addK(0),
    });
    const m = await ModelManager.open(root);
    try {
      const stats = m.statistics('warm')[0].model;
      assert.equal(stats.success, 5, 'one zeros run, three random, one from the file');
      assert.equal(stats.inferenceCount, 2 + 3 + 1);
      const states = Object.fromEntries(m.index().map((s) => [s.name, s]));
      assert.equal(states.warm.state, 'READY');
      assert.equal(states.cold.state, 'UNAVAILABLE');
      assert.match(states.cold.reason, /config\.pbtxt: model_warmup\[0\] "bad" failed: /);
      assert.match(states.escape.reason, /model_warmup\[0\]: input_data_file "\.\.\/\.\.\/warm\/warmup\/a\.raw" must be a file name in the model's warmup folder/);
    } finally {
      await m.close();
    }
  });

  it('mode poll: new models loaded, changed ones reloaded, removed ones unloaded when the repository is polled', async () => {
    const root = repo({ 'a/1/model.onnx': addK(1) });
    const m = await ModelManager.open(root, { controlMode: 'poll' });
    try {
      assert.deepEqual(m.index().map((s) => [s.name, s.version, s.state]), [['a', 1, 'READY']]);
      assertKilnError(await failure(m.load('a')), 'E_INVALID_ARGUMENT', "only in the explicit model control mode (this server's is poll)");
      fs.mkdirSync(path.join(root, 'b', '1'), { recursive: true });
      fs.writeFileSync(path.join(root, 'b', '1', 'model.onnx'), addK(2));
      fs.writeFileSync(path.join(root, 'a', 'config.pbtxt'), 'version_policy { all { } }');
      fs.mkdirSync(path.join(root, 'a', '2'));
      fs.writeFileSync(path.join(root, 'a', '2', 'model.onnx'), addK(5));
      await m.poll();
      assert.deepEqual(m.index().map((s) => [s.name, s.version, s.state]), [['a', 1, 'READY'], ['a', 2, 'READY'], ['b', 1, 'READY']]);
      assert.deepEqual(Array.from((await m.infer('a', '1', row(0))).y.data as Float32Array), [2, 3, 4, 5]);
      assert.deepEqual(Array.from((await m.infer('a', undefined, row(0))).y.data as Float32Array), [6, 7, 8, 9], 'the highest version by default');
      fs.rmSync(path.join(root, 'b'), { recursive: true });
      await m.poll();
      assert.deepEqual(m.index().map((s) => [s.name, s.version]), [['a', 1], ['a', 2]]);
      assertKilnError(await failure(m.infer('b', undefined, row(0))), 'E_NOT_FOUND', 'unknown model "b"');
    } finally {
      await m.close();
    }
  });
});

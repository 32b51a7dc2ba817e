// Ragged batching: requests whose padded dims differ share a batch, each caller gets
// outputs cut back to its own length, values equal to its own unbatched run.
import { strict as assert } from 'assert';
import { KilnError, loadModel, Session, Tensor } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';

/** x float32 ['N','L'] -> y = 2x ['N','L'], s = row sums ['N'] (zero padding keeps sums). */
function raggedModel(): Uint8Array {
  const g = new GraphBuilder('ragged');
  const x = g.input('x', 'float32', ['N', 'L']);
  const two = g.initializer('two', 'float32', [], new Float32Array([2]));
  const axes = g.initializer('axes', 'int64', [1], new BigInt64Array([1n]));
  g.output(g.node('Mul', [x, two], { outputs: 'y' }), 'float32', ['N', 'L']);
  g.output(g.node('ReduceSum', [x, axes], { attrs: { keepdims: 0 }, outputs: 's' }), 'float32', ['N']);
  return g.build({ opset: 17 });
}

function row(len: number, start: number): Float32Array {
  return Float32Array.from({ length: len }, (_, i) => start + i);
}

describe('ragged batching with padding', function () {
  this.timeout(30000);

  it('pads requests of different lengths into one batch and cuts each output back', async () => {
    const model = await loadModel(raggedModel(), {
      maxBatchSize: 16,
      dynamicBatching: { maxQueueDelayMicroseconds: 20000 },
      input: [{ name: 'x', allowPadding: true, padValue: 0, lengthBuckets: [4, 8] }],
    });
    const reference = await Session.create(raggedModel());
    try {
      const lengths = [3, 5, 1, 8, 5];
      const inputs = lengths.map((len, i) => row(len, i * 10));
      const results = await Promise.all(inputs.map((x) => model.infer({ x: new Tensor('float32', x, [1, x.length]) })));
      const stats = model.stats();
      assert.equal(stats.executionCount, 1, 'all five ran as one padded batch');
      assert.deepEqual(stats.batchSizes, { 5: 1 });
      for (let i = 0; i < inputs.length; i++) {
        const own = reference.runSync({ x: new Tensor('float32', inputs[i], [1, inputs[i].length]) });
        assert.deepEqual(results[i].y.dims, [1, lengths[i]]);
        assert.deepEqual(Array.from(results[i].y.data as Float32Array), Array.from(own.y.data as Float32Array));
        assert.deepEqual(Array.from(results[i].s.data as Float32Array), Array.from(own.s.data as Float32Array));
      }
    } finally {
      await model.dispose();
      await reference.dispose();
    }
  });

  it('without allowPadding, requests of different lengths run in separate batches', async () => {
    const model = await loadModel(raggedModel(), { maxBatchSize: 16, dynamicBatching: { maxQueueDelayMicroseconds: 20000 } });
    try {
      const results = await Promise.all([3, 5, 3].map((len) => model.infer({ x: new Tensor('float32', row(len, 1), [1, len]) })));
      assert.deepEqual(results.map((r) => r.y.dims), [[1, 3], [1, 5], [1, 3]]);
      assert.ok(model.stats().executionCount >= 2);
    } finally {
      await model.dispose();
    }
  });

  it('rejects padding settings that name no input, naming the field', async () => {
    await assert.rejects(loadModel(raggedModel(), { input: [{ name: 'nope', allowPadding: true }] }),
      (e: unknown) => e instanceof KilnError && e.code === 'E_INVALID_ARGUMENT' && /option "input\[0\]\.name"/.test(e.message));
    await assert.rejects(loadModel(raggedModel(), { input: [{ name: 'x', allowPadding: true, lengthBuckets: [0] }] }),
      (e: unknown) => e instanceof KilnError && e.code === 'E_INVALID_ARGUMENT' && /input\[0\]\.lengthBuckets/.test(e.message));
  });
});

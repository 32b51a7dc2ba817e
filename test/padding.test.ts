// Ragged batching: requests whose padded dims differ share a batch, each caller gets
// outputs cut back to its own length, values equal to its own unbatched run; configurations
// that cannot be cut back, and models that padding changes, are refused at load.
import { strict as assert } from 'assert';
import { KilnError, loadModel, Session, Tensor, type ModelConfig } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';
import { assertKilnError } from './helpers/assert-error';
import { OCR_MODELS, ctcDecode, loadKeys, recPreprocess } from '../support/ppocr';
import { renderText } from '../support/text-image';

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

/** x float32 ['N', 'C', 'L'] -> y = 2x, and shape = Shape(x) [3] (the batch's own shape, whole to every caller). */
function twoAxesModel(): Uint8Array {
  const g = new GraphBuilder('two_axes');
  const x = g.input('x', 'float32', ['N', 'C', 'L']);
  const two = g.initializer('two', 'float32', [], new Float32Array([2]));
  g.output(g.node('Mul', [x, two], { outputs: 'y' }), 'float32', ['N', 'C', 'L']);
  g.output(g.node('Shape', [x], { outputs: 'shape' }), 'int64', [3]);
  return g.build({ opset: 17 });
}

/** x float32 ['N', 3, 'W'] (a fixed axis between, like an image's channels) -> y = 2x. */
function fixedAxisModel(): Uint8Array {
  const g = new GraphBuilder('fixed_axis');
  const x = g.input('x', 'float32', ['N', 3, 'W']);
  const two = g.initializer('two', 'float32', [], new Float32Array([2]));
  g.output(g.node('Mul', [x, two], { outputs: 'y' }), 'float32', ['N', 3, 'W']);
  return g.build({ opset: 17 });
}

/** x float32 ['N','L'] -> y = x[:, ::2] ['N','H']: the output is ceil(L / 2) long and its dim is named differently. */
function stridedModel(): Uint8Array {
  const g = new GraphBuilder('strided');
  const x = g.input('x', 'float32', ['N', 'L']);
  const starts = g.initializer('starts', 'int64', [1], new BigInt64Array([0n]));
  const ends = g.initializer('ends', 'int64', [1], new BigInt64Array([1n << 40n]));
  const axes = g.initializer('axes', 'int64', [1], new BigInt64Array([1n]));
  const steps = g.initializer('steps', 'int64', [1], new BigInt64Array([2n]));
  g.output(g.node('Slice', [x, starts, ends, axes, steps], { outputs: 'y' }), 'float32', ['N', 'H']);
  return g.build({ opset: 17 });
}

/** x float32 ['N','L'] -> y = Softmax(x) over L: every position depends on the padding. */
function softmaxModel(): Uint8Array {
  const g = new GraphBuilder('softmax');
  const x = g.input('x', 'float32', ['N', 'L']);
  g.output(g.node('Softmax', [x], { attrs: { axis: 1 }, outputs: 'y' }), 'float32', ['N', 'L']);
  return g.build({ opset: 17 });
}

/** x float32 ['N','L'] + b float32 ['N','M'] -> y ['N','L']: only runs when L and M agree (or broadcast). */
function addModel(): Uint8Array {
  const g = new GraphBuilder('add_lengths');
  const x = g.input('x', 'float32', ['N', 'L']);
  const b = g.input('b', 'float32', ['N', 'M']);
  g.output(g.node('Add', [x, b], { outputs: 'y' }), 'float32', ['N', 'L']);
  return g.build({ opset: 17 });
}

function row(len: number, start: number): Float32Array {
  return Float32Array.from({ length: len }, (_, i) => start + i);
}

const BATCH: ModelConfig = { maxBatchSize: 16, dynamicBatching: { maxQueueDelayMicroseconds: 20000 } };

/** Waits for the warnings emitted while `fn` runs. */
async function warningsOf(fn: () => Promise<void>): Promise<Error[]> {
  const seen: Error[] = [];
  const listener = (w: Error): void => {
    seen.push(w);
  };
  process.on('warning', listener);
  try {
    await fn();
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.off('warning', listener);
  }
  return seen.filter((w) => (w as { code?: string }).code === 'KILN_PADDING');
}

describe('ragged batching with padding', function () {
  this.timeout(60000);

  it('pads requests of different lengths into one batch and cuts each output back', async () => {
    const model = await loadModel(raggedModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true, padValue: 0, lengthBuckets: [4, 8] }] });
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
    const model = await loadModel(raggedModel(), BATCH);
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

  describe('padAxes', () => {
    it('pads only the named axes: requests whose other axes differ run in separate batches', async () => {
      // The check is off: `shape` shows the padded shape, so the model is not padding-invariant by design.
      const model = await loadModel(twoAxesModel(), {
        ...BATCH, input: [{ name: 'x', allowPadding: true, padAxes: [2] }], output: [{ name: 'y', keepAxes: [1] }], paddingCheck: { action: 'off' },
      });
      try {
        const shapes = [[1, 2, 3], [1, 2, 5], [1, 4, 3]];
        const results = await Promise.all(shapes.map((dims) => model.infer({ x: new Tensor('float32', row(dims[1] * dims[2], 1), dims) })));
        assert.deepEqual(results.map((r) => r.y.dims), shapes, 'every caller has its own shape');
        assert.equal(model.stats().executionCount, 2, 'C = 2 ran as one padded batch, C = 4 on its own');
        assert.deepEqual(Array.from(results[0].shape.data as BigInt64Array), [2n, 2n, 5n], 'the first two padded on L only');
        assert.deepEqual(Array.from(results[2].shape.data as BigInt64Array), [1n, 4n, 3n]);
        assert.deepEqual(Array.from(results[0].y.data as Float32Array), [2, 4, 6, 8, 10, 12]);
      } finally {
        await model.dispose();
      }
    });

    it('rounds only padded axes up to a length bucket, never a fixed axis', async () => {
      // Before padAxes, buckets applied to every non-batch dim: 3 became 4 and every run failed.
      const model = await loadModel(fixedAxisModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true, lengthBuckets: [4, 8] }] });
      const reference = await Session.create(fixedAxisModel());
      try {
        const widths = [2, 5, 3];
        const inputs = widths.map((w, i) => new Tensor('float32', row(3 * w, 100 * i), [1, 3, w]));
        const results = await Promise.all(inputs.map((x) => model.infer({ x })));
        assert.equal(model.stats().executionCount, 1);
        for (let i = 0; i < inputs.length; i++) {
          assert.deepEqual(results[i].y.dims, [1, 3, widths[i]]);
          assert.deepEqual(Array.from(results[i].y.data as Float32Array), Array.from(reference.runSync({ x: inputs[i] }).y.data as Float32Array));
        }
      } finally {
        await model.dispose();
        await reference.dispose();
      }
    });

    it('the shape key keeps axes outside padAxes apart even with buckets', async () => {
      const model = await loadModel(twoAxesModel(), {
        ...BATCH, input: [{ name: 'x', allowPadding: true, padAxes: [2], lengthBuckets: [8] }], output: [{ name: 'y', keepAxes: [1] }],
        paddingCheck: { action: 'off' },
      });
      try {
        const results = await Promise.all([[1, 3, 2], [1, 3, 5]].map((dims) => model.infer({ x: new Tensor('float32', row(dims[1] * dims[2], 0), dims) })));
        assert.deepEqual(Array.from(results[0].shape.data as BigInt64Array), [2n, 3n, 8n], 'L padded to the bucket, C left at 3');
      } finally {
        await model.dispose();
      }
    });

    it('refuses axes the model cannot pad, naming the field', async () => {
      const cases: [unknown, RegExp][] = [
        [[0], /option "input\[0\]\.padAxes": expected an array of distinct non-batch axes/],
        [[], /option "input\[0\]\.padAxes": expected at least one axis/],
        [[1, 1], /option "input\[0\]\.padAxes"/],
        [[3], /option "input\[0\]\.padAxes": expected non-batch axes of input "x" \[N,3,W\] \(1\.\.2\)/],
        [[1], /option "input\[0\]\.padAxes": expected axes of dynamic length: input "x" \[N,3,W\] has axis 1 fixed at 3/],
      ];
      for (const [padAxes, message] of cases) {
        await assert.rejects(loadModel(fixedAxisModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true, padAxes: padAxes as number[] }] }),
          (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', message)));
      }
    });
  });

  describe('cutting outputs back', () => {
    const ratio: ModelConfig = { output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, ratio: 0.5 }] }] };

    it('cuts an output tied by a ratio rule back to each caller\'s own length', async () => {
      const model = await loadModel(stridedModel(), { ...BATCH, ...ratio, input: [{ name: 'x', allowPadding: true, lengthBuckets: [8, 16] }] });
      const reference = await Session.create(stridedModel());
      try {
        const lengths = [3, 8, 1, 6, 11];
        const inputs = lengths.map((len, i) => new Tensor('float32', row(len, 10 * i), [1, len]));
        const results = await Promise.all(inputs.map((x) => model.infer({ x })));
        assert.equal(model.stats().executionCount, 1);
        for (let i = 0; i < inputs.length; i++) {
          const own = reference.runSync({ x: inputs[i] });
          assert.deepEqual(results[i].y.dims, own.y.dims);
          assert.deepEqual(results[i].y.dims, [1, Math.ceil(lengths[i] / 2)]);
          assert.deepEqual(Array.from(results[i].y.data as Float32Array), Array.from(own.y.data as Float32Array));
        }
      } finally {
        await model.dispose();
        await reference.dispose();
      }
    });

    it('refuses an output axis that padding may lengthen and no rule cuts back', async () => {
      await assert.rejects(loadModel(stridedModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true }] }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
          'output "y" [N,H]: axis 1 ("H") may depend on the padded length of input "x" [N,L]',
          'output: [{ name: "y", cropAxes: [{ axis: 1, input: "x", inputAxis: 1, ratio: <output length / input length> }] }]')));
    });

    it('refuses a rule whose rounding the model does not follow, measured on consecutive lengths', async () => {
      const floor: ModelConfig = { output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, ratio: 0.5, rounding: 'floor' }] }] };
      await assert.rejects(loadModel(stridedModel(), { ...BATCH, ...floor, input: [{ name: 'x', allowPadding: true }] }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
          'padding check: output "y" axis 1: its rule predicts length 6 for input "x" axis 1 of length 13, the model gives 7', 'fix the output\'s cropAxes rule')));
    });

    it('validates output rules, naming the field', async () => {
      const input = [{ name: 'x', allowPadding: true }];
      const cases: [ModelConfig, RegExp][] = [
        [{ output: [{ name: 'nope' }] }, /option "output\[0\]\.name": expected one of the model's outputs \(y\)/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, ratio: 0 }] }] }, /option "output\[0\]\.cropAxes\[0\]\.ratio": expected a positive number/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 2, input: 'x', inputAxis: 1 }] }] }, /option "output\[0\]\.cropAxes\[0\]\.axis": expected a non-batch axis of output "y" \[N,H\]/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'z', inputAxis: 1 }] }] }, /option "output\[0\]\.cropAxes\[0\]\.input": expected an input with allowPadding \(x\)/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, rounding: 'up' as 'ceil' }] }] }, /option "output\[0\]\.cropAxes\[0\]\.rounding": expected one of ceil, floor/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, ratio: 1, steps: [{ ratio: 1 }] }] }] }, /option "output\[0\]\.cropAxes\[0\]\.steps": expected steps, or ratio and rounding, not both/],
        [{ output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1 }], keepAxes: [1] }] }, /option "output\[0\]\.keepAxes": expected an axis that no other rule/],
        [{ paddingCheck: { action: 'maybe' as 'warn' } }, /option "paddingCheck\.action": expected one of refuse, warn, off/],
        [{ paddingCheck: { sampleLengths: [4, 4] } }, /option "paddingCheck\.sampleLengths": expected \[unpadded, padded\]/],
      ];
      for (const [config, message] of cases) {
        await assert.rejects(loadModel(stridedModel(), { ...BATCH, input, ...config }), (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', message)));
      }
      await assert.rejects(loadModel(stridedModel(), { ...BATCH, ...ratio }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', /option "output\[0\]": expected cut-back rules only with an input that has allowPadding: true/)));
    });
  });

  describe('the padding check', () => {
    const padded: ModelConfig = { ...BATCH, input: [{ name: 'x', allowPadding: true }] };

    it('refuses a model that is not padding-invariant, saying what it measured', async () => {
      await assert.rejects(loadModel(softmaxModel(), padded), (e: unknown) => {
        const err = assertKilnError(e, 'E_INVALID_ARGUMENT',
          /^padding check: output "y" of Kiln's generated sample \("x" float32 \[1,12\], pseudo-random values\) with input "x" \[1,12\] padded with 0 to \[1,24\], cut back to \[1,12\], differs from the unpadded run by up to [0-9.e-]+ at \[0,\d+\]/,
          'the model is not padding-invariant', 'Keep allowPadding off for this input, or accept the difference with paddingCheck: { action: "warn" }');
        assert.ok(!err.message.includes('\n'));
        return true;
      });
    });

    it('uses the given sample lengths, and the first length bucket by default', async () => {
      await assert.rejects(loadModel(softmaxModel(), { ...padded, paddingCheck: { sampleLengths: [5, 7] } }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "x" [1,5] padded with 0 to [1,7]')));
      await assert.rejects(loadModel(softmaxModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true, lengthBuckets: [16, 32] }] }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "x" [1,12] padded with 0 to [1,16]')));
    });

    it('runs a given sample', async () => {
      const sample = { x: new Tensor('float32', new Float32Array([1, 2, 3]), [1, 3]) };
      await assert.rejects(loadModel(softmaxModel(), { ...padded, paddingCheck: { sample } }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', 'output "y" of the given sample ("x" float32 [1,3]) with input "x" [1,3] padded with 0 to [1,24]')));
      // A sample the model rejects: the refusal says the sample failed and how to give another.
      const wrong = { x: new Tensor('float32', new Float32Array([1, 2, 3]), [1, 1, 3]) };
      await assert.rejects(loadModel(softmaxModel(), { ...padded, paddingCheck: { sample: wrong } }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', 'padding check: the model failed on the given sample', 'paddingCheck: { sample:')));
    });

    it('refuses a model that fails once padded', async () => {
      await assert.rejects(loadModel(addModel(), padded), (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
        'padding check: the model failed on Kiln\'s generated sample ("x" float32 [1,12], "b" float32 [1,12], pseudo-random values) with input "x" [1,12] padded with 0 to [1,24], though it ran unpadded',
        'padding these axes breaks the model')));
    });

    it("'warn' loads the model with one warning; 'off' checks nothing", async () => {
      let warned = await warningsOf(async () => {
        const model = await loadModel(softmaxModel(), { ...padded, paddingCheck: { action: 'warn' } });
        await model.dispose();
      });
      assert.equal(warned.length, 1);
      assert.match(warned[0].message, /^Kiln padding check: output "y" .* differs from the unpadded run by up to .* padding-invariant, so a padded batch would change callers' results \(see docs\/padding\.md\); loading anyway \(paddingCheck\.action is 'warn'\)$/);
      warned = await warningsOf(async () => {
        const model = await loadModel(softmaxModel(), { ...padded, paddingCheck: { action: 'off' } });
        await model.dispose();
      });
      assert.equal(warned.length, 0);
    });

    it("refuses a wrong rule under 'warn' too: it would hand callers outputs of the wrong length", async () => {
      const floor: ModelConfig = { output: [{ name: 'y', cropAxes: [{ axis: 1, input: 'x', inputAxis: 1, ratio: 0.5, rounding: 'floor' }] }] };
      await assert.rejects(loadModel(stridedModel(), { ...padded, ...floor, paddingCheck: { action: 'warn' } }),
        (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT', 'its rule predicts length')));
    });
  });

  it('a padded batch that fails rejects every request with one line naming the padding', async () => {
    const model = await loadModel(addModel(), { ...BATCH, input: [{ name: 'x', allowPadding: true, lengthBuckets: [4] }], paddingCheck: { action: 'off' } });
    try {
      // Alone, each runs (x [1,1] broadcasts over b); padded to the bucket, x is 4 long and b 3.
      const b = new Tensor('float32', new Float32Array([1, 2, 3]), [1, 3]);
      const settled = await Promise.allSettled([row(3, 0), row(1, 5)].map((x) => model.infer({ x: new Tensor('float32', x, [1, x.length]), b })));
      for (const s of settled) {
        assert.equal(s.status, 'rejected');
        const e = (s as PromiseRejectedResult).reason as KilnError;
        assert.ok(e instanceof KilnError);
        assert.match(e.message, /^model run failed on a padded batch of 2 requests \(input "x" padded with 0 to \[N,4\] on axes 1 from \[1,3\], \[1,1\]\): \S/);
        assert.ok(!e.message.includes('\n'), e.message);
        assert.ok(!/\[ONNXRuntimeError\]|\.cc:\d/.test(e.message), e.message);
      }
      // The model still serves requests that need no padding.
      const ok = await model.infer({ x: new Tensor('float32', row(3, 0), [1, 3]), b });
      assert.deepEqual(Array.from(ok.y.data as Float32Array), [1, 3, 5]);
    } finally {
      await model.dispose();
    }
  });

  describe('PP-OCRv4 recognizer (width-padded text lines)', () => {
    const output = 'softmax_11.tmp_0';
    const lines = ['Hello World', 'KILN 2026', 'ONNX Runtime 1.30', 'quick brown fox'];
    // The output's time axis is the width after a stride-4 stem (rounding up) and a stride-2 pool (rounding down).
    const steps = [{ ratio: 0.25, rounding: 'ceil' as const }, { ratio: 0.5, rounding: 'floor' as const }];
    const config: ModelConfig = {
      maxBatchSize: 8, dynamicBatching: { maxQueueDelayMicroseconds: 50000 },
      input: [{ name: 'x', allowPadding: true, lengthBuckets: [160, 320, 640] }],
      output: [{ name: output, cropAxes: [{ axis: 1, input: 'x', inputAxis: 3, steps }] }],
    };

    it('refuses padding without a rule for the output time axis', async () => {
      await assert.rejects(loadModel(OCR_MODELS.rec, { ...config, output: undefined }), (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
        `output "${output}" [p2o.DynamicDimension.2,p2o.DynamicDimension.3,6625]: axis 1 ("p2o.DynamicDimension.3") may depend on the padded length of input "x"`)));
    });

    it('refuses a plain 1/8 ratio: the model rounds in two steps', async () => {
      const floor = { ...config, output: [{ name: output, cropAxes: [{ axis: 1, input: 'x', inputAxis: 3, ratio: 0.125, rounding: 'floor' as const }] }] };
      await assert.rejects(loadModel(OCR_MODELS.rec, floor), (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
        `output "${output}" axis 1: its rule predicts length 15 for input "x" axis 3 of length 125, the model gives 16`)));
    });

    it('by default refuses padding the width: the model is not padding-invariant', async () => {
      await assert.rejects(loadModel(OCR_MODELS.rec, config), (e: unknown) => Boolean(assertKilnError(e, 'E_INVALID_ARGUMENT',
        /^padding check: output "softmax_11\.tmp_0" of Kiln's generated sample \("x" float32 \[1,3,48,120\], pseudo-random values\) with input "x" \[1,3,48,120\] padded with 0 to \[1,3,48,160\], cut back to \[1,15,6625\], differs from the unpadded run by up to 0\.\d+ at \[0,\d+,\d+\]/,
        'the model is not padding-invariant')));
    });

    it("with the check off, a batch of lines of different widths gives each caller its own shape and the unbatched text", async () => {
      const keys = loadKeys();
      const model = await loadModel(OCR_MODELS.rec, { ...config, paddingCheck: { action: 'off' } });
      const reference = await Session.create(OCR_MODELS.rec);
      try {
        // Each line at its natural width (height 48), as a caller without a fixed width sends it.
        const feeds = lines.map((text) => {
          const img = renderText(text);
          return recPreprocess(img, { width: Math.ceil((48 * img.width) / img.height) });
        });
        const results = await Promise.all(feeds.map((x) => model.infer({ x })));
        assert.equal(model.stats().executionCount, 1, 'one padded batch');
        let agree = 0;
        let steps = 0;
        for (let i = 0; i < lines.length; i++) {
          const own = reference.runSync({ x: feeds[i] })[output];
          const got = results[i][output];
          const width = feeds[i].dims[3];
          assert.deepEqual(got.dims, own.dims);
          assert.deepEqual(got.dims, [1, Math.floor(Math.ceil(width / 4) / 2), 6625]);
          const [, t, c] = own.dims;
          for (let k = 0; k < t; k++) {
            const a = own.data as Float32Array;
            const b = got.data as Float32Array;
            let ia = 0;
            let ib = 0;
            for (let j = 1; j < c; j++) {
              if (a[k * c + j] > a[k * c + ia]) ia = j;
              if (b[k * c + j] > b[k * c + ib]) ib = j;
            }
            if (ia === ib) agree++;
          }
          steps += t;
          // Measured: the probabilities move (by up to 0.52) but the decoded text does not.
          assert.equal(ctcDecode(got.data as Float32Array, got.dims, keys).text, ctcDecode(own.data as Float32Array, own.dims, keys).text);
          assert.equal(ctcDecode(got.data as Float32Array, got.dims, keys).text, lines[i]);
        }
        // Measured: 129 of 130 time steps keep their argmax.
        assert.ok(agree >= steps - 2, `argmax agreement ${agree}/${steps}`);
      } finally {
        await model.dispose();
        await reference.dispose();
      }
    });
  });
});

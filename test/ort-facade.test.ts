import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import ortNode = require('onnxruntime-node');
import * as kilnOrt from '../lib/ort';
import { KilnError, type KilnErrorCode } from '../lib';
import type { TensorType } from '../lib/tensor';
import { addModel, convModel, identityModel, mlpModel, multiIOModel, prng, symbolicDimsModel } from './fixtures/models';
import { OCR_MODELS } from '../support/ppocr';
import { VAD_MODELS } from './helpers/vad';

// --- The two runtimes behind one shape: each case below runs through both. ---

interface AnyTensor {
  readonly type: string;
  readonly data: unknown;
  readonly dims: readonly number[];
}
type AnyFetches = readonly string[] | Record<string, AnyTensor | null>;
interface AnySession {
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly unknown[];
  readonly outputMetadata: readonly unknown[];
  run(feeds: Record<string, AnyTensor>, fetches?: AnyFetches | kilnOrt.RunOptions, options?: kilnOrt.RunOptions): Promise<Record<string, AnyTensor>>;
  release(): Promise<void>;
}
interface Runtime {
  readonly name: string;
  tensor(type: TensorType, data: unknown, dims?: readonly number[]): AnyTensor;
  create(model: string | Uint8Array, options?: kilnOrt.SessionOptions): Promise<AnySession>;
}

const ORT: Runtime = {
  name: 'onnxruntime-node',
  tensor: (type, data, dims) => new ortNode.Tensor(type as ortNode.Tensor.Type, data as ortNode.Tensor.DataType, dims),
  create: (model, options) => (typeof model === 'string'
    ? ortNode.InferenceSession.create(model, options)
    : ortNode.InferenceSession.create(model, options)),
};
const KILN: Runtime = {
  name: 'kiln/ort',
  tensor: (type, data, dims) => new kilnOrt.Tensor(type, data as kilnOrt.Tensor.DataType, dims),
  create: (model, options) => (typeof model === 'string'
    ? kilnOrt.InferenceSession.create(model, options)
    : kilnOrt.InferenceSession.create(model, options)),
};

// --- Helpers. ---

const FLOAT_TYPES: ReadonlySet<string> = new Set(['float32', 'float64']);

function values(t: AnyTensor): unknown[] {
  return Array.from(t.data as ArrayLike<unknown>);
}

/** Same type, dims and values; floats within rounding (thread counts may order sums differently). */
function assertSameTensor(actual: AnyTensor, expected: AnyTensor, what: string): void {
  assert.equal(actual.type, expected.type, `${what}: type`);
  assert.deepEqual([...actual.dims], [...expected.dims], `${what}: dims`);
  const a = values(actual);
  const e = values(expected);
  if (!FLOAT_TYPES.has(actual.type)) return assert.deepEqual(a, e, `${what}: values`);
  assert.equal(a.length, e.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = e[i] as number;
    assert.ok(Math.abs(x - y) <= 1e-5 + 1e-4 * Math.abs(y), `${what}[${i}]: ${x} vs ${y}`);
  }
}

function assertSameResults(actual: Record<string, AnyTensor>, expected: Record<string, AnyTensor>): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort());
  for (const name of Object.keys(expected)) assertSameTensor(actual[name], expected[name], name);
}

function floats(n: number, seed: number): Float32Array {
  const rand = prng(seed);
  return Float32Array.from({ length: n }, () => rand());
}

function kilnError(code: KilnErrorCode): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof KilnError, `expected a KilnError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

type IdentityType = Exclude<TensorType, 'bfloat16'>; // onnxruntime-node cannot describe bfloat16

/** Two values per type for identityModel, whose input has no declared shape. */
const IDENTITY_FEEDS: Readonly<Record<IdentityType, unknown>> = {
  float32: Float32Array.of(-1.25, 3), float64: Float64Array.of(Math.PI, -0), float16: Uint16Array.of(0x3e00, 0xc000), // 1.5, -2
  int8: Int8Array.of(-7, 100), int16: Int16Array.of(-300, 2), int32: Int32Array.of(-70000, 1), int64: BigInt64Array.of(-42n, 2n ** 40n),
  uint8: Uint8Array.of(200, 1), uint16: Uint16Array.of(60000, 1), uint32: Uint32Array.of(4e9, 1), uint64: BigUint64Array.of(2n ** 63n, 1n),
  bool: Uint8Array.of(1, 0), string: ['héllo', ''],
};

/** A model, the feeds of one run (built per runtime) and a label. */
interface Case {
  readonly label: string;
  readonly model: () => string | Uint8Array;
  readonly feeds: (rt: Runtime) => Record<string, AnyTensor>;
}

const CASES: readonly Case[] = [
  { label: 'add', model: addModel, feeds: (rt) => ({ a: rt.tensor('float32', floats(12, 1), [3, 4]), b: rt.tensor('float32', floats(12, 2), [3, 4]) }) },
  { label: 'mlp', model: mlpModel, feeds: (rt) => ({ x: rt.tensor('float32', floats(2 * 512, 3), [2, 512]) }) },
  { label: 'conv', model: convModel, feeds: (rt) => ({ x: rt.tensor('float32', floats(2 * 3 * 32 * 32, 4), [2, 3, 32, 32]) }) },
  {
    label: 'multi-io', model: multiIOModel,
    feeds: (rt) => ({ x: rt.tensor('float32', floats(9, 5), [3, 3]), idx: rt.tensor('int64', BigInt64Array.of(1n, -2n, 3n), [3]) }),
  },
  {
    label: 'symbolic dims', model: symbolicDimsModel,
    feeds: (rt) => ({ x: rt.tensor('float32', floats(2 * 3 * 8, 6), [2, 3, 8]), u: rt.tensor('float32', floats(8, 7), [2, 4]) }),
  },
  ...(Object.keys(IDENTITY_FEEDS) as IdentityType[]).map((type): Case => ({
    label: `identity ${type}`, model: () => identityModel(type),
    feeds: (rt) => ({ x: rt.tensor(type, IDENTITY_FEEDS[type], [2, 1]) }),
  })),
  { label: 'PP-OCR cls', model: () => OCR_MODELS.cls, feeds: (rt) => ({ x: rt.tensor('float32', floats(3 * 48 * 192, 8), [1, 3, 48, 192]) }) },
  { label: 'PP-OCR det', model: () => OCR_MODELS.det, feeds: (rt) => ({ x: rt.tensor('float32', floats(3 * 64 * 96, 9), [1, 3, 64, 96]) }) },
  { label: 'PP-OCR rec', model: () => OCR_MODELS.rec, feeds: (rt) => ({ x: rt.tensor('float32', floats(3 * 48 * 320, 10), [1, 3, 48, 320]) }) },
  {
    label: 'Silero VAD v5', model: () => VAD_MODELS.v5,
    feeds: (rt) => ({
      input: rt.tensor('float32', floats(576, 11).map((v) => v * 0.3), [1, 576]),
      state: rt.tensor('float32', new Float32Array(256), [2, 1, 128]),
      sr: rt.tensor('int64', BigInt64Array.of(16000n), []),
    }),
  },
];

describe('kiln/ort facade', function () {
  this.timeout(60000);

  describe('matches onnxruntime-node', () => {
    for (const c of CASES) {
      it(`${c.label}: names, metadata and outputs`, async () => {
        const [ort, kiln] = await Promise.all([ORT.create(c.model()), KILN.create(c.model())]);
        try {
          assert.deepEqual(kiln.inputNames, ort.inputNames);
          assert.deepEqual(kiln.outputNames, ort.outputNames);
          assert.deepEqual(kiln.inputMetadata, ort.inputMetadata);
          assert.deepEqual(kiln.outputMetadata, ort.outputMetadata);
          const expected = await ort.run(c.feeds(ORT));
          const actual = await kiln.run(c.feeds(KILN));
          assertSameResults(actual, expected);
          for (const t of Object.values(actual)) assert.ok(t instanceof kilnOrt.Tensor);
        } finally {
          await Promise.all([ort.release(), kiln.release()]);
        }
      });
    }
  });

  describe('fetches', () => {
    const multiIO = CASES.find((c) => c.label === 'multi-io') as Case;
    let ort: AnySession;
    let kiln: AnySession;
    before(async () => {
      [ort, kiln] = await Promise.all([ORT.create(multiIOModel()), KILN.create(multiIOModel())]);
    });
    after(() => Promise.all([ort.release(), kiln.release()]));

    const selections: [string, (rt: Runtime) => AnyFetches, kilnOrt.RunOptions?][] = [
      ['names', () => ['doubled']],
      ['an object of name -> null', () => ({ sum: null })],
      ['names and run options', () => ['sum', 'doubled'], { logSeverityLevel: 3, tag: 'facade' }],
    ];
    for (const [label, fetches, options] of selections) {
      it(`selects outputs by ${label}`, async () => {
        assertSameResults(
          await kiln.run(multiIO.feeds(KILN), fetches(KILN), options),
          await ort.run(multiIO.feeds(ORT), fetches(ORT), options),
        );
      });
    }

    it('reads an object of run options as options, not fetches', async () => {
      const options = { logSeverityLevel: 3 as const, terminate: false };
      assertSameResults(await kiln.run(multiIO.feeds(KILN), options), await ort.run(multiIO.feeds(ORT), options));
    });

    it('writes into a preallocated output tensor and returns that tensor', async () => {
      const sum = new kilnOrt.Tensor('float32', new Float32Array(3), [3]);
      const data = sum.data;
      const results = await kiln.run(multiIO.feeds(KILN), { sum, doubled: null });
      assert.equal(results.sum, sum);
      assert.equal(results.sum.data, data);
      assert.ok(results.doubled instanceof kilnOrt.Tensor);
      const expected = await ort.run(multiIO.feeds(ORT), { sum: ORT.tensor('float32', new Float32Array(3), [3]), doubled: null });
      assertSameResults(results, expected);
    });
  });

  describe('errors', () => {
    let ort: AnySession;
    let kiln: AnySession;
    const add = CASES[0];
    before(async () => {
      [ort, kiln] = await Promise.all([ORT.create(mlpModel()), KILN.create(mlpModel())]);
    });
    after(() => Promise.all([ort.release(), kiln.release()]));

    async function bothReject(run: (s: AnySession, rt: Runtime) => Promise<unknown>, code: KilnErrorCode): Promise<void> {
      await assert.rejects(run(ort, ORT));
      await assert.rejects(run(kiln, KILN), kilnError(code));
    }
    const x = (rt: Runtime, type: TensorType = 'float32', dims = [1, 512]): AnyTensor =>
      rt.tensor(type, type === 'float64' ? new Float64Array(512) : new Float32Array(512), dims);

    it('wrong dtype', () => bothReject((s, rt) => s.run({ x: x(rt, 'float64') }), 'E_DTYPE_MISMATCH'));
    it('wrong dims', () => bothReject((s, rt) => s.run({ x: rt.tensor('float32', new Float32Array(511), [1, 511]) }), 'E_SHAPE_MISMATCH'));
    it('wrong rank', () => bothReject((s, rt) => s.run({ x: x(rt, 'float32', [512]) }), 'E_SHAPE_MISMATCH'));
    it('missing input', () => bothReject((s) => s.run({}), 'E_INVALID_ARGUMENT'));
    it('unknown output name', () => bothReject((s, rt) => s.run({ x: x(rt) }, ['nope']), 'E_INVALID_ARGUMENT'));
    it('invalid run options', async () => {
      await bothReject((s, rt) => s.run({ x: x(rt) }, { logSeverityLevel: 9 as 0 }), 'E_INVALID_ARGUMENT');
      await bothReject((s, rt) => s.run({ x: x(rt) }, { tag: 5 as unknown as string }), 'E_INVALID_ARGUMENT');
    });

    // onnxruntime-node ignores these two; Kiln reports the likely typo.
    it('unknown input', () => assert.rejects(kiln.run({ x: x(KILN), y: x(KILN) }), kilnError('E_INVALID_ARGUMENT')));
    it('unknown output in a fetch object', () => assert.rejects(kiln.run({ x: x(KILN) }, { nope: null }), kilnError('E_INVALID_ARGUMENT')));

    it('an aborted signal (Kiln\'s addition to RunOptions)', () =>
      assert.rejects(kiln.run({ x: x(KILN) }, { signal: AbortSignal.abort() }), kilnError('E_ABORTED')));

    it('run after release', async () => {
      const [o, k] = await Promise.all([ORT.create(addModel()), KILN.create(addModel())]);
      await Promise.all([o.release(), k.release()]);
      await assert.rejects(o.run(add.feeds(ORT)));
      await assert.rejects(k.run(add.feeds(KILN)), kilnError('E_DISPOSED'));
    });

    it('a model that is not ONNX', async () => {
      await assert.rejects(ORT.create(Uint8Array.of(1, 2, 3)));
      await assert.rejects(KILN.create(Uint8Array.of(1, 2, 3)), kilnError('E_MODEL_LOAD'));
    });

    const badOptions: [string, kilnOrt.SessionOptions, KilnErrorCode][] = [
      ['graphOptimizationLevel', { graphOptimizationLevel: 'most' as 'all' }, 'E_INVALID_ARGUMENT'],
      ['logSeverityLevel', { logSeverityLevel: 7 as 0 }, 'E_INVALID_ARGUMENT'],
      ['intraOpNumThreads', { intraOpNumThreads: -1 }, 'E_INVALID_ARGUMENT'],
      ['extra (not a string)', { extra: { session: { x: 1 } } }, 'E_INVALID_ARGUMENT'],
      ['an unknown provider', { executionProviders: ['cdua'] }, 'E_INVALID_ARGUMENT'],
      ['only providers Kiln lacks', { executionProviders: ['dml'] }, 'E_PROVIDER_UNAVAILABLE'],
    ];
    for (const [label, options, code] of badOptions) {
      it(`invalid session option: ${label}`, async () => {
        await assert.rejects(ORT.create(addModel(), options));
        await assert.rejects(KILN.create(addModel(), options), kilnError(code));
      });
    }
  });

  describe('session options', () => {
    it('accepts the options Kiln cannot honour and runs as onnxruntime-node does', async () => {
      const options: kilnOrt.SessionOptions = {
        executionProviders: [{ name: 'cpu', useArena: false }],
        enableCpuMemArena: false, enableMemPattern: false, freeDimensionOverrides: { N: 3 },
        graphOptimizationLevel: 'layout', executionMode: 'sequential', intraOpNumThreads: 1, interOpNumThreads: 1,
        logId: 'facade', logSeverityLevel: 3, logVerbosityLevel: 0, preferredOutputLocation: 'cpu',
        extra: { session: { set_denormal_as_zero: '1' } },
      };
      const [ort, kiln] = await Promise.all([ORT.create(addModel(), options), KILN.create(addModel(), options)]);
      try {
        assertSameResults(await kiln.run(CASES[0].feeds(KILN)), await ort.run(CASES[0].feeds(ORT)));
      } finally {
        await Promise.all([ort.release(), kiln.release()]);
      }
    });

    it('skips providers Kiln lacks, with a process warning', async () => {
      const warned = new Promise<string>((resolve) => {
        const onWarning = (w: Error): void => {
          if (!w.message.startsWith('kiln/ort')) return;
          process.off('warning', onWarning);
          resolve(w.message);
        };
        process.on('warning', onWarning);
      });
      const session = await kilnOrt.InferenceSession.create(addModel(), { executionProviders: ['webgpu', 'cpu'] });
      assert.match(await warned, /webgpu/);
      await session.release();
    });

    it('writes the optimized model and the profile where asked', async () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ort-'));
      try {
        const optimizedModelFilePath = path.join(dir, 'optimized.onnx');
        const session = await kilnOrt.InferenceSession.create(addModel(), {
          optimizedModelFilePath, graphOptimizationLevel: 'extended', enableProfiling: true, profileFilePrefix: path.join(dir, 'profile'),
        });
        await session.run(CASES[0].feeds(KILN) as kilnOrt.FeedsType);
        session.startProfiling();
        const profile = session.endProfiling();
        await session.release();
        assert.ok(fs.existsSync(optimizedModelFilePath));
        assert.ok(profile.startsWith(path.join(dir, 'profile')) && fs.existsSync(profile), profile);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    describe('profiling', () => {
      let dir: string;
      beforeEach(() => {
        dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ort-profile-'));
      });
      afterEach(() => {
        fs.rmSync(dir, { recursive: true, force: true });
      });

      it('profiles from creation with enableProfiling; startProfiling() then does nothing, as in onnxruntime-node', async () => {
        const profileFilePrefix = path.join(dir, 'kiln');
        const session = await kilnOrt.InferenceSession.create(addModel(), { enableProfiling: true, profileFilePrefix });
        session.startProfiling();
        await session.run(CASES[0].feeds(KILN) as kilnOrt.FeedsType);
        const file = session.endProfiling();
        await session.release();
        assert.ok(file.startsWith(profileFilePrefix), file);
        const events = JSON.parse(fs.readFileSync(file, 'utf8')) as { cat?: string; name?: string }[];
        assert.ok(events.some((e) => e.cat === 'Session' && e.name === 'model_run'), 'the run is in the profile');
        // onnxruntime-node writes the same kind of file under its prefix.
        const ort = await ortNode.InferenceSession.create(addModel(), { enableProfiling: true, profileFilePrefix: path.join(dir, 'ort') });
        ort.startProfiling();
        await ort.run(CASES[0].feeds(ORT) as Record<string, ortNode.Tensor>);
        ort.endProfiling();
        await ort.release();
        assert.ok(fs.readdirSync(dir).some((f) => f.startsWith('ort') && f.endsWith('.json')));
      });

      it('startProfiling() without enableProfiling: E_INVALID_ARGUMENT saying how to profile (onnxruntime-node silently profiles nothing)', async () => {
        const ort = await ortNode.InferenceSession.create(addModel());
        ort.startProfiling();
        await ort.release();
        const session = await kilnOrt.InferenceSession.create(addModel());
        try {
          assert.throws(() => session.startProfiling(), (e: unknown) => kilnError('E_INVALID_ARGUMENT')(e)
            && /only from its creation/.test((e as Error).message) && (e as Error).message.includes('{ enableProfiling: true }') && (e as Error).message.includes('endProfiling()'));
          assert.equal(session.endProfiling(), '', 'nothing was profiled');
          await session.run(CASES[0].feeds(KILN) as kilnOrt.FeedsType);
        } finally {
          await session.release();
        }
      });

      it('startProfiling() after endProfiling(): E_INVALID_ARGUMENT (ONNX Runtime cannot restart it); after release: E_DISPOSED', async () => {
        const session = await kilnOrt.InferenceSession.create(addModel(), { enableProfiling: true, profileFilePrefix: path.join(dir, 'p') });
        assert.notEqual(session.endProfiling(), '');
        assert.throws(() => session.startProfiling(), (e: unknown) => kilnError('E_INVALID_ARGUMENT')(e) && /cannot restart/.test((e as Error).message));
        await session.release();
        assert.throws(() => session.startProfiling(), kilnError('E_DISPOSED'));
      });
    });

    it('loads from an ArrayBuffer slice as onnxruntime-node does', async () => {
      const bytes = addModel();
      const padded = new Uint8Array(bytes.length + 16);
      padded.set(bytes, 8);
      const session = await kilnOrt.InferenceSession.create(padded.buffer, 8, bytes.length);
      assert.deepEqual(session.inputNames, ['a', 'b']);
      await session.release();
      await assert.rejects(kilnOrt.InferenceSession.create(padded.buffer, 8, padded.length), kilnError('E_INVALID_ARGUMENT'));
    });
  });

  describe('Tensor', () => {
    const constructions: [string, unknown[]][] = [
      ['float32 from numbers', ['float32', [1, 2.5, -3]]],
      ['int64 from numbers and bigints', ['int64', [1, 2n, -3], [3, 1]]],
      ['uint64 from numbers', ['uint64', [1, 2]]],
      ['int32 from a typed array', ['int32', Int32Array.of(4, 5, 6, 7), [2, 2]]],
      ['bool from booleans', ['bool', [true, false, true]]],
      ['bool from a Uint8Array', ['bool', Uint8Array.of(1, 0)]],
      ['uint8 from a Uint8ClampedArray', ['uint8', Uint8ClampedArray.of(1, 255)]],
      ['inferred float32', [Float32Array.of(1, 2, 3, 4), [2, 2]]],
      ['inferred uint16', [Uint16Array.of(1)]],
      ['inferred int64', [BigInt64Array.of(1n, 2n)]],
      ['inferred uint8 from a Uint8ClampedArray', [Uint8ClampedArray.of(9)]],
      ['inferred string', [['a', 'b'], [2, 1]]],
      ['inferred bool', [[true, false]]],
      ['a scalar', ['float64', Float64Array.of(2), []]],
      ['an empty tensor', ['float32', new Float32Array(0), [0, 3]]],
    ];
    for (const [label, args] of constructions) {
      it(`builds ${label} as onnxruntime-common does`, () => {
        const expected: AnyTensor & { size: number; location: string } = Reflect.construct(ortNode.Tensor, args);
        const actual: kilnOrt.Tensor = Reflect.construct(kilnOrt.Tensor, args);
        assertSameTensor(actual, expected, label);
        assert.equal((actual.data as object).constructor, (expected.data as object).constructor);
        assert.equal(actual.size, expected.size);
        assert.equal(actual.location, expected.location);
      });
    }

    const rejected: [string, unknown[]][] = [
      ['a size mismatch', ['float32', new Float32Array(3), [2]]],
      ['float16 from numbers', ['float16', [1]]],
      ['a typed array of another type', ['float32', new Float64Array(2)]],
      ['an unknown type', ['float128', new Float32Array(1)]],
      ['an array of numbers without a type', [[1, 2]]],
      ['an empty array without a type', [[]]],
      ['a negative dim', ['float32', new Float32Array(0), [-1]]],
      ['a fractional int64', ['int64', [1.5]]],
    ];
    for (const [label, args] of rejected) {
      it(`rejects ${label} with a KilnError`, () => {
        assert.throws(() => Reflect.construct(ortNode.Tensor, args));
        assert.throws(() => Reflect.construct(kilnOrt.Tensor, args), (e: unknown) => e instanceof KilnError);
      });
    }

    it('getData, reshape and dispose', async () => {
      const t = new kilnOrt.Tensor('float32', Float32Array.of(1, 2, 3, 4), [4]);
      assert.equal(await t.getData(), t.data);
      const r = t.reshape([2, 2]);
      assert.deepEqual(r.dims, [2, 2]);
      assert.equal(r.data, t.data);
      t.dispose();
      assert.equal(t.location, 'none');
      assert.throws(() => t.data, kilnError('E_DISPOSED'));
      assert.equal(r.location, 'cpu');
    });
  });

  describe('env', () => {
    it('reports versions as onnxruntime-common does', async () => {
      assert.equal(kilnOrt.env.versions.common, ortNode.env.versions.common);
      const session = await kilnOrt.InferenceSession.create(addModel());
      assert.match(kilnOrt.env.versions.node ?? '', /^\d+\.\d+\.\d+/);
      await session.release();
    });

    it('rejects an invalid log level when a session is created', async () => {
      kilnOrt.env.logLevel = 'loud' as 'error';
      try {
        await assert.rejects(kilnOrt.InferenceSession.create(addModel()), kilnError('E_INVALID_ARGUMENT'));
      } finally {
        kilnOrt.env.logLevel = undefined;
      }
    });
  });

  it('runs a typical onnxruntime-node snippet with only the import changed', async () => {
    const snippet = (importPath: string): string => `
      const ort = require(${JSON.stringify(importPath)});
      const session = await ort.InferenceSession.create(modelPath);
      const data = Float32Array.from({ length: 3 * 48 * 192 }, (_, i) => (i % 251) / 251);
      const feeds = { x: new ort.Tensor('float32', data, [1, 3, 48, 192]) };
      const results = await session.run(feeds);
      await session.release();
      return results[session.outputNames[0]];
    `;
    type Snippet = (req: NodeRequire, modelPath: string) => Promise<AnyTensor>;
    const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...params: string[]) => Snippet;
    const run = (importPath: string): Promise<AnyTensor> => new AsyncFunction('require', 'modelPath', snippet(importPath))(require, OCR_MODELS.cls);
    const expected = await run('onnxruntime-node');
    const actual = await run('../lib/ort');
    assert.ok(actual instanceof kilnOrt.Tensor);
    assertSameTensor(actual, expected, 'snippet output');
  });
});

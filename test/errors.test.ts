import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { KilnError, Session, Tensor, cuda, loadModel, runtime, type Feeds, type KilnErrorCode, type RunOptions, type SessionOptions, type TensorLike, type TensorType } from '../lib';
import { addModel, identityModel, slowModel } from './fixtures/models';
import { getGc } from './helpers/gc';
import { assertKilnError, thrown } from './helpers/assert-error';
import { ERROR_CODES, toKilnError } from '../lib/errors';
import { native } from '../lib/binding';

// --- helpers -----------------------------------------------------------------------------------

const THIS_FILE = path.basename(__filename);


/**
 * What `start` rejects with. It must return a promise rather than throw, and the error's
 * stack must lead back to this file (the caller), not end inside the addon.
 */
async function rejection(start: () => Promise<unknown>): Promise<unknown> {
  let promise: Promise<unknown> | undefined;
  assert.doesNotThrow(() => {
    promise = start();
  }, 'an async API must reject, not throw synchronously');
  assert.ok(promise instanceof Promise);
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof Error && e.stack?.includes(THIS_FILE), `stack does not reach ${THIS_FILE}:\n${(e as Error).stack}`);
    return e;
  }
  assert.fail('expected a rejection, but the promise resolved');
}


/** The error of an invalid run: run() rejects, runSync() throws the same code and message. */
async function runError(session: Session, feeds: unknown, options?: unknown): Promise<unknown> {
  const asyncError = await rejection(() => session.run(feeds as Feeds, options as RunOptions));
  const syncError = thrown(() => session.runSync(feeds as Feeds, options as RunOptions));
  assert.ok(syncError instanceof KilnError && asyncError instanceof KilnError);
  assert.equal(syncError.code, asyncError.code);
  assert.equal(syncError.message, asyncError.message);
  assert.ok(syncError.stack?.includes(THIS_FILE), `runSync stack does not reach ${THIS_FILE}`);
  return asyncError;
}

function createError(model: unknown, options?: unknown): Promise<unknown> {
  return rejection(() => Session.create(model as Uint8Array, options as SessionOptions));
}

function f32(dims: readonly number[], n = dims.reduce((a, b) => a * b, 1)): TensorLike {
  return { type: 'float32', data: new Float32Array(n), dims };
}

function detached(n: number): Float32Array {
  const data = new Float32Array(n);
  structuredClone(data.buffer, { transfer: [data.buffer] });
  assert.equal(data.length, 0, 'the buffer is detached');
  return data;
}


// --- tests -------------------------------------------------------------------------------------

describe('errors', function () {
  it('the native core names only the stable codes of lib/errors.ts', () => {
    // native/core/error.cc maps each core Code to its name; that list must stay a subset of
    // the one in lib/errors.ts, or an error would reach users as E_ORT.
    const source = fs.readFileSync(path.join(__dirname, '..', '..', 'native', 'core', 'error.cc'), 'utf8');
    const named = [...new Set([...source.matchAll(/"(E_[A-Z_]+)"/g)].map((m) => m[1]))];
    assert.ok(named.length >= 10, `expected the core's code names in error.cc, found ${named.length}`);
    for (const code of named) assert.ok((ERROR_CODES as readonly string[]).includes(code), `native code ${code} is not in ERROR_CODES`);
    const header = fs.readFileSync(path.join(__dirname, '..', '..', 'native', 'core', 'error.h'), 'utf8');
    const enumBody = /enum class Code[^{]*\{([^}]*)\}/.exec(header);
    assert.ok(enumBody, 'enum class Code in error.h');
    const members = enumBody[1].split(',').map((m) => m.replace(/\/\/.*$/gm, '').trim()).filter(Boolean);
    assert.equal(named.length, members.length, `error.cc names ${named.length} codes, error.h declares ${members.length}`);
  });

  this.timeout(60000);

  describe('Tensor constructor', () => {
    const cases: readonly [string, () => unknown, KilnErrorCode, readonly string[]][] = [
      ['an unknown type', () => new Tensor('float33' as TensorType, new Float32Array(1)), 'E_INVALID_ARGUMENT', ['tensor type must be one of', 'float32', 'received float33']],
      ['a TypedArray class not matching the type', () => new Tensor('float32', new Float64Array(2) as unknown as Float32Array), 'E_DTYPE_MISMATCH', ['float32', 'needs a Float32Array', 'received Float64Array']],
      ['int64 with number data', () => new Tensor('int64', new Int32Array(2) as unknown as BigInt64Array), 'E_DTYPE_MISMATCH', ['int64', 'BigInt64Array', 'received Int32Array']],
      ['string with TypedArray data', () => new Tensor('string', new Uint8Array(2) as unknown as string[]), 'E_DTYPE_MISMATCH', ['string', 'string[]', 'received Uint8Array']],
      ['data length not matching dims', () => new Tensor('float32', new Float32Array(3), [2, 2]), 'E_INVALID_ARGUMENT', ['[2,2]', 'needs 4 elements', 'received 3']],
      ['a negative dim', () => new Tensor('float32', new Float32Array(3), [3, -1]), 'E_INVALID_ARGUMENT', ['dims[1]', 'non-negative integer', 'received -1']],
      ['a non-integer dim', () => new Tensor('float32', new Float32Array(3), [1.5, 2]), 'E_INVALID_ARGUMENT', ['dims[0]', 'non-negative integer', 'received 1.5']],
      ['overflowing dims', () => new Tensor('float32', new Float32Array(1), [2 ** 40, 2 ** 40]), 'E_INVALID_ARGUMENT', ['[1099511627776,1099511627776]', 'overflow']],
    ];
    for (const [what, make, code, fragments] of cases) {
      it(`rejects ${what} with ${code}`, () => {
        assertKilnError(thrown(make), code, ...fragments);
      });
    }
  });

  describe('feeds', () => {
    let session: Session;
    before(async () => {
      session = await Session.create(addModel());
    });
    after(() => session.dispose());

    const good = f32([1, 4]);

    it('wrong dtype: E_DTYPE_MISMATCH naming input, expectation and what was received', async () => {
      const e = await runError(session, { a: { type: 'float64', data: new Float64Array(4), dims: [1, 4] }, b: good });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "a": expected float32 with shape [N,4], received float64 with shape [1,4]');
    });

    it('TypedArray class not matching type: E_DTYPE_MISMATCH', async () => {
      const e = await runError(session, { a: good, b: { type: 'float32', data: new Float64Array(4), dims: [1, 4] } });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "b"', 'Float32Array', 'received Float64Array');
    });

    it('a plain Array as data: E_DTYPE_MISMATCH', async () => {
      const e = await runError(session, { a: { type: 'float32', data: [1, 2, 3, 4], dims: [1, 4] }, b: good });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "a"', 'Float32Array', 'received Array');
    });

    it('wrong rank: E_SHAPE_MISMATCH', async () => {
      const e = await runError(session, { a: f32([4]), b: good });
      assertKilnError(e, 'E_SHAPE_MISMATCH', 'input "a": expected float32 with shape [N,4], received float32 with shape [4]', 'rank 1, expected 2');
    });

    it('wrong fixed dim: E_SHAPE_MISMATCH', async () => {
      const e = await runError(session, { a: good, b: f32([2, 3]) });
      assertKilnError(e, 'E_SHAPE_MISMATCH', 'input "b": expected float32 with shape [N,4], received float32 with shape [2,3]', 'dims[1] must be 4');
    });

    it('data length not matching dims: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, { a: { type: 'float32', data: new Float32Array(5), dims: [1, 4] }, b: good });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "a"', '[1,4] need 4 elements', 'data has 5');
    });

    it('a negative dim: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, { a: f32([-1, 4], 4), b: good });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "a"', 'dims[0] must be a non-negative integer', 'received -1');
    });

    for (const bad of [1.5, NaN, Infinity]) {
      it(`a non-integer dim (${bad}): E_INVALID_ARGUMENT`, async () => {
        const e = await runError(session, { a: good, b: f32([bad, 4], 4) });
        assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "b"', 'dims[0] must be a non-negative integer', `received ${bad}`);
      });
    }

    it('overflowing dims [2**40, 2**40]: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, { a: good, b: f32([2 ** 40, 2 ** 40], 4) });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "b"', '[1099511627776,1099511627776]', 'overflow');
    });

    it('dims that are not an array: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, { a: good, b: { type: 'float32', data: new Float32Array(4), dims: 4 } });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "b"', 'dims must be an array', 'received number');
    });

    it('a feed that is not a tensor: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, { a: good, b: null });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "b"', 'expected a tensor', 'received null');
    });

    it('feeds that are not an object: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, null);
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'feeds must be an object', 'received null');
    });

    it('a missing input: E_INVALID_ARGUMENT naming it', async () => {
      const e = await runError(session, { a: good });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'missing input "b"');
    });

    it('an unknown input: E_INVALID_ARGUMENT naming it and the model\'s inputs', async () => {
      const e = await runError(session, { a: good, b: good, c: good });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'unknown input "c"', 'inputs are: a, b');
    });

    it('a detached input buffer: E_INVALID_ARGUMENT mentioning "detached"', async () => {
      const e = await runError(session, { a: { type: 'float32', data: detached(4), dims: [1, 4] }, b: good });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "a"', 'detached');
    });

    it('an input buffer detached through a MessagePort transfer: E_INVALID_ARGUMENT mentioning "detached"', async () => {
      const data = new Float32Array(4);
      const { port1, port2 } = new MessageChannel();
      port1.postMessage(data.buffer, [data.buffer]);
      port1.close();
      port2.close();
      const e = await runError(session, { a: good, b: { type: 'float32', data, dims: [1, 4] } });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'input "b"', 'detached');
    });

    it('ORT\'s own failure (shapes that do not broadcast) rejects with E_ORT, keeping its message', async () => {
      const quiet = await Session.create(addModel(), { logLevel: 'fatal' });
      try {
        const e = await runError(quiet, { a: f32([2, 4]), b: f32([3, 4]) });
        assertKilnError(e, 'E_ORT', 'Add', 'broadcast');
      } finally {
        await quiet.dispose();
      }
    });
  });

  describe('outputs', () => {
    let session: Session;
    before(async () => {
      session = await Session.create(addModel(), { logLevel: 'fatal' });
    });
    after(() => session.dispose());

    const feeds = { a: f32([1, 4]), b: f32([1, 4]) };

    it('an unknown requested output (list): E_INVALID_ARGUMENT naming it and the model\'s outputs', async () => {
      const e = await runError(session, feeds, { outputs: ['q'] });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'unknown output "q"', 'outputs are: y');
    });

    it('an unknown requested output (object): E_INVALID_ARGUMENT naming it', async () => {
      const e = await runError(session, feeds, { outputs: { q: null } });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'unknown output "q"');
    });

    it('an output named twice: E_INVALID_ARGUMENT naming it', async () => {
      const e = await runError(session, feeds, { outputs: ['y', 'y'] });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'outputs: "y" is named twice');
    });

    it('an empty output list: E_INVALID_ARGUMENT', async () => {
      const e = await runError(session, feeds, { outputs: [] });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'outputs', 'at least one output');
    });

    it('a preallocated output of the wrong dtype: E_DTYPE_MISMATCH naming the output', async () => {
      const e = await runError(session, feeds, { outputs: { y: { type: 'float64', data: new Float64Array(4), dims: [1, 4] } } });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'output "y": expected float32 with shape [N,4], received float64 with shape [1,4]');
    });

    it('a preallocated output with a detached buffer: E_INVALID_ARGUMENT mentioning "detached"', async () => {
      const e = await runError(session, feeds, { outputs: { y: { type: 'float32', data: detached(4), dims: [1, 4] } } });
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'output "y"', 'detached');
    });

    it('a preallocated output whose shape differs from the computed one: E_ORT naming the shapes', async () => {
      const e = await runError(session, feeds, { outputs: { y: f32([2, 4]) } });
      assertKilnError(e, 'E_ORT', "'y'", '{2,4}', '{1,4}');
    });
  });

  describe('model loading', () => {
    let dir: string;
    before(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-errors-'));
    });
    after(() => fs.rmSync(dir, { recursive: true, force: true }));

    it('a missing model file: E_NOT_FOUND naming the path', async () => {
      const file = path.join(dir, 'missing.onnx');
      assertKilnError(await createError(file), 'E_NOT_FOUND', file);
    });

    it('a missing model file for a TensorRT instance group (read in JS for its profiles): E_NOT_FOUND, a KilnError', async () => {
      const file = path.join(dir, 'missing-trt.onnx');
      const e = await rejection(() => loadModel(file, { maxBatchSize: 8, instanceGroup: [{ kind: 'GPU' }], session: { providers: ['tensorrt'] } }));
      assertKilnError(e, 'E_NOT_FOUND', file);
    });

    it('system errors become KilnErrors without the errno prefix: a missing path E_NOT_FOUND, an unusable one E_INVALID_ARGUMENT, a lacking resource E_UNAVAILABLE', () => {
      const missing = thrown(() => fs.readFileSync(path.join(dir, 'nothing-here')));
      const notFound = toKilnError(missing);
      assertKilnError(notFound, 'E_NOT_FOUND', 'no such file or directory', 'nothing-here');
      assert.ok(!notFound.message.startsWith('ENOENT'), notFound.message);
      assert.equal(notFound.cause, missing);
      assertKilnError(toKilnError(thrown(() => fs.readdirSync(path.join(dir, 'missing.onnx', 'x')))), 'E_NOT_FOUND');
      const file = path.join(dir, 'plain-file');
      fs.writeFileSync(file, 'x');
      assertKilnError(toKilnError(thrown(() => fs.readdirSync(path.join(file, 'below')))), 'E_NOT_FOUND', 'not a directory');
      assertKilnError(toKilnError(thrown(() => fs.readFileSync(dir))), 'E_INVALID_ARGUMENT', 'illegal operation on a directory');
      // A resource the system cannot provide now is not the caller's mistake.
      const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
      assertKilnError(toKilnError(full), 'E_UNAVAILABLE', 'no space left on device');
      // A code that only looks like an errno (no syscall) is not taken for one.
      assertKilnError(toKilnError(Object.assign(new Error('odd'), { code: 'EWHATEVER' })), 'E_ORT', 'odd');
    });

    it('a directory as model path: E_MODEL_LOAD', async () => {
      assertKilnError(await createError(dir), 'E_MODEL_LOAD', dir, 'not a file');
    });

    it('a file of corrupt bytes: E_MODEL_LOAD naming the file', async () => {
      const file = path.join(dir, 'corrupt.onnx');
      fs.writeFileSync(file, Buffer.from('this is not an ONNX model, just text'));
      assertKilnError(await createError(file), 'E_MODEL_LOAD', 'cannot load model', file);
    });

    it('corrupt model bytes: E_MODEL_LOAD', async () => {
      const bytes = new Uint8Array(256).map((_, i) => (i * 37 + 11) & 0xff);
      assertKilnError(await createError(bytes), 'E_MODEL_LOAD', 'cannot load model from bytes');
    });

    for (const keep of [0.5, 0.1]) {
      it(`model bytes truncated to ${keep * 100}%: E_MODEL_LOAD`, async () => {
        const model = addModel();
        assertKilnError(await createError(model.slice(0, Math.floor(model.length * keep))), 'E_MODEL_LOAD', 'cannot load model from bytes');
      });
    }

    it('empty model bytes: E_MODEL_LOAD (not a file lookup)', async () => {
      assertKilnError(await createError(new Uint8Array(0)), 'E_MODEL_LOAD', 'empty');
    });

    it('a session the addon cannot set up once loaded: the load still rejects, with the code', async () => {
      // The TS layer refuses executorThreads: 0 (see 'options'); the addon's own check fails
      // while the loaded model is handed to JS, after the load itself succeeded. The promise
      // must settle all the same.
      runtime();
      const load = native().NativeSession.load(addModel(), { providers: [], executorThreads: 0, executorSpinMicroseconds: 0 });
      let timer: NodeJS.Timeout | undefined;
      const pending = new Promise((resolve) => {
        timer = setTimeout(() => resolve('still pending after 10 s'), 10000);
      });
      try {
        const outcome = await Promise.race([load.then(() => 'resolved', (e: unknown) => e), pending]);
        assert.ok(outcome instanceof Error, `expected a rejection, the load is ${String(outcome)}`);
        assert.equal((outcome as Error & { code?: unknown }).code, 'E_INVALID_ARGUMENT');
        assert.match(outcome.message, /an executor runs 1 to 1024 threads, not 0/);
      } finally {
        clearTimeout(timer);
      }
    });

    it('a model that is neither path nor bytes: E_INVALID_ARGUMENT', async () => {
      assertKilnError(await createError(123), 'E_INVALID_ARGUMENT', 'model must be a file path, a Uint8Array or an ArrayBuffer', 'received number');
    });
  });

  describe('options', () => {
    const cases: readonly [string, unknown, readonly string[]][] = [
      ['intraOpThreads: -1', { intraOpThreads: -1 }, ['option "intraOpThreads"', 'integer', 'received -1']],
      ['intraOpThreads: 1.5', { intraOpThreads: 1.5 }, ['option "intraOpThreads"', 'received 1.5']],
      ['executorThreads: 0', { executorThreads: 0 }, ['option "executorThreads"', 'received 0']],
      ["providers: ['gpu']", { providers: ['gpu'] }, ['option "providers[0]"', "'cpu', 'cuda', 'tensorrt'", 'received "gpu"']],
      ['providers: []', { providers: [] }, ['option "providers"', 'non-empty array']],
      ["provider { name: 'gpu' }", { providers: [{ name: 'gpu' }] }, ['option "providers[0].name"', 'received "gpu"']],
      ['an unknown cuda option', { providers: [{ name: 'cuda', devicId: 0 }] }, ['option "providers[0].devicId" is not known']],
      ['an unknown option key', { intraOpThread: 2 }, ['option "intraOpThread" is not known', 'intraOpThreads']],
      ["logLevel: 'loud'", { logLevel: 'loud' }, ['option "logLevel"', 'received "loud"']],
      ['options that are not an object', 'fast', ['expected an object', 'received "fast"']],
    ];
    for (const [what, options, fragments] of cases) {
      it(`${what}: E_INVALID_ARGUMENT naming the option`, async () => {
        assertKilnError(await createError(addModel(), options), 'E_INVALID_ARGUMENT', ...fragments);
      });
    }
  });

  describe('providers', () => {
    /** Why CUDA cannot be used here, as Kiln should explain it; '' if it might be usable. */
    function cudaProblem(): string {
      if (!runtime().providers.includes('CUDAExecutionProvider')) return 'has no CUDAExecutionProvider';
      return cuda.devices().problem ?? '';
    }

    it("'cuda' alone where CUDA is unavailable: E_PROVIDER_UNAVAILABLE naming what is missing", async function () {
      const problem = cudaProblem();
      if (!problem) this.skip(); // a usable NVIDIA driver: the provider may load
      const e = await createError(addModel(), { providers: ['cuda'] });
      assertKilnError(e, 'E_PROVIDER_UNAVAILABLE', 'no requested execution provider is available', `cuda: `, problem);
    });

    it("['cuda', 'cpu'] where CUDA is unavailable falls back to CPU and notes why", async function () {
      const problem = cudaProblem();
      if (!problem) this.skip();
      const session = await Session.create(addModel(), { providers: ['cuda', 'cpu'] });
      try {
        assert.deepEqual(session.providers, ['CPUExecutionProvider']);
        assert.equal(session.providerNotes.length, 1);
        assert.ok(session.providerNotes[0].startsWith('cuda: '), session.providerNotes[0]);
        assert.ok(session.providerNotes[0].includes(problem), session.providerNotes[0]);
        const { y } = await session.run({ a: { type: 'float32', data: Float32Array.of(1, 2, 3, 4), dims: [1, 4] }, b: { type: 'float32', data: Float32Array.of(1, 1, 1, 1), dims: [1, 4] } });
        assert.deepEqual([...(y.data as Float32Array)], [2, 3, 4, 5]);
      } finally {
        await session.dispose();
      }
    });
  });

  describe('disposal', () => {
    const feeds = { a: { type: 'float32', data: new Float32Array(4), dims: [1, 4] }, b: { type: 'float32', data: new Float32Array(4), dims: [1, 4] } } as const;

    it('run after dispose rejects with E_DISPOSED; runSync throws it', async () => {
      const session = await Session.create(addModel());
      await session.dispose();
      assert.equal(session.disposed, true);
      assertKilnError(await runError(session, feeds), 'E_DISPOSED', 'disposed');
    });

    it('a run queued behind a running one rejects with E_DISPOSED when the session is disposed', async () => {
      const session = await Session.create(slowModel());
      const x = { type: 'float32', data: Float32Array.of(0.5), dims: [1] } as const;
      const iterations = (n: bigint): TensorLike => ({ type: 'int64', data: BigInt64Array.of(n), dims: [] });
      const first = session.run({ iterations: iterations(200n), x }).then(() => 'resolved', (e: unknown) => e);
      const second = rejection(() => session.run({ iterations: iterations(1n), x }));
      await session.dispose();
      assertKilnError(await second, 'E_DISPOSED', 'disposed before this run started');
      const outcome = await first; // it may have started (and finished) or not
      if (outcome !== 'resolved') assertKilnError(outcome, 'E_DISPOSED');
    });
  });

  describe('buffers detached while a run is queued', () => {
    it('an input buffer detached while its run is queued never yields a result computed from freed memory', async function () {
      const gc = getGc();
      if (!gc) this.skip();
      const session = await Session.create(slowModel());
      try {
        const x = { type: 'float32', data: Float32Array.of(0.5), dims: [1] } as const;
        const iterations = (n: bigint): TensorLike => ({ type: 'int64', data: BigInt64Array.of(n), dims: [] });
        const first = session.run({ iterations: iterations(400n), x });
        const input = new Float32Array(1024).subarray(0, 1);
        input[0] = 0.25;
        const second = session.run({ iterations: iterations(0n), x: { type: 'float32', data: input, dims: [1] } }).then((r) => r, (e: unknown) => e);
        // Transfer the buffer away and drop it, so that its memory is freed (V8 sweeps array
        // buffers concurrently: give it a moment) and reused, all while the first run still runs.
        structuredClone(input.buffer, { transfer: [input.buffer] });
        gc!();
        gc!();
        await new Promise((resolve) => setTimeout(resolve, 20));
        const reuse = Array.from({ length: 64 }, () => new Float32Array(1024).fill(123));
        await first;
        const outcome = await second;
        assert.equal(reuse.length, 64);
        if (outcome instanceof Error) {
          assertKilnError(outcome, 'E_INVALID_ARGUMENT', 'input "x"', 'detached');
        } else {
          const y = (outcome as { y: TensorLike }).y;
          assert.deepEqual([...(y.data as Float32Array)], [0.25], 'the run read freed memory');
        }
      } finally {
        await session.dispose();
      }
    });

    /**
     * Runs `body` (JS, inside an async function, with gc, Session and the fixtures in scope) in
     * a child process, for what may crash a process, and returns what it printed last as JSON.
     */
    function inChild<T>(body: string): T {
      const script = `
        const v8 = require('v8'); const vm = require('vm');
        v8.setFlagsFromString('--expose-gc'); const gc = vm.runInNewContext('gc');
        const { Session } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib'))});
        const { addModel, slowModel } = require(${JSON.stringify(path.resolve(__dirname, 'fixtures', 'models'))});
        (async () => { ${body} })();
      `;
      const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 50000 });
      assert.equal(child.signal, null, `the child was killed by ${child.signal}: ${child.stderr.slice(-500)}`);
      assert.equal(child.status, 0, `the child exited with ${child.status}: ${child.stderr.slice(-500)}`);
      return JSON.parse(child.stdout.trim().split('\n').pop() ?? '') as T;
    }

    it('a 1 MiB input buffer detached while its run is queued does not crash the process (child process)', function () {
      // glibc returns a buffer this large to the OS when it is freed: reading it faults.
      const outcomes = inChild<string[]>(`
        const session = await Session.create(addModel());
        const n = 1 << 22;
        const big = { type: 'float32', data: new Float32Array(n * 4), dims: [n, 4] };
        const outcomes = [];
        for (let k = 0; k < 3; k++) {
          const ahead = [1, 2, 3].map(() => session.run({ a: big, b: big }));
          const m = 1 << 16;
          const a = new Float32Array(m * 4).fill(1);
          const queued = session.run({ a: { type: 'float32', data: a, dims: [m, 4] }, b: { type: 'float32', data: new Float32Array(m * 4).fill(2), dims: [m, 4] } })
            .then((r) => (r.y.data.every((v) => v === 3) ? 'right' : 'wrong values'), (e) => e.code + ': ' + e.message);
          structuredClone(a.buffer, { transfer: [a.buffer] });
          gc(); gc();
          await Promise.all(ahead);
          outcomes.push(await queued);
        }
        await session.dispose();
        console.log(JSON.stringify(outcomes));
      `);
      for (const outcome of outcomes) {
        if (outcome !== 'right') assert.match(outcome, /^E_INVALID_ARGUMENT: input "a".*detached/);
      }
    });

    it('a caller\'s output buffer detached while its run is queued is never written (child process)', function () {
      // A write into the freed buffer corrupts the heap (the process may abort) or lands in
      // whatever was allocated there since: unrelated buffers must keep their values.
      const report = inChild<{ clobbered: number; outcomes: string[] }>(`
        const iterations = (n) => ({ type: 'int64', data: BigInt64Array.of(n), dims: [] });
        const session = await Session.create(slowModel());
        const report = { clobbered: 0, outcomes: [] };
        for (let k = 0; k < 3; k++) {
          const first = session.run({ iterations: iterations(400n), x: { type: 'float32', data: Float32Array.of(0.5), dims: [1] } });
          const out = new Float32Array(1024).subarray(0, 1);
          const second = session.run({ iterations: iterations(0n), x: { type: 'float32', data: Float32Array.of(0.25), dims: [1] } },
            { outputs: { y: { type: 'float32', data: out, dims: [] } } }).then(() => 'resolved', (e) => e.code + ': ' + e.message);
          structuredClone(out.buffer, { transfer: [out.buffer] });
          gc(); gc();
          await new Promise((resolve) => setTimeout(resolve, 20));
          const reuse = Array.from({ length: 64 }, () => new Float32Array(1024).fill(123));
          await first;
          report.outcomes.push(await second);
          report.clobbered += reuse.filter((b) => b.some((v) => v !== 123)).length;
        }
        await session.dispose();
        console.log(JSON.stringify(report));
      `);
      assert.equal(report.clobbered, 0, 'the run wrote into memory that now belongs to other buffers');
      for (const outcome of report.outcomes) {
        if (outcome !== 'resolved') assert.match(outcome, /^E_INVALID_ARGUMENT: output "y".*detached/);
      }
    });
  });

  describe('string tensors', () => {
    let session: Session;
    before(async () => {
      session = await Session.create(identityModel('string'));
    });
    after(() => session.dispose());

    it('a string tensor given a TypedArray: E_DTYPE_MISMATCH', async () => {
      const e = await runError(session, { x: { type: 'string', data: new Uint8Array(1), dims: [] } });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "x"', 'Array', 'received Uint8Array');
    });

    it('a string[] holding a non-string: E_DTYPE_MISMATCH naming the element', async () => {
      const e = await runError(session, { x: { type: 'string', data: [7], dims: [] } });
      assertKilnError(e, 'E_DTYPE_MISMATCH', 'input "x"', 'element 0', 'not a string');
    });
  });
});

// The GPU surface as far as a machine without a GPU can check it: driver discovery and
// provider fallback (in child processes, each with a driver situation of its own: none, the
// fake driver built by `node scripts/ctest.js`, a fake one too old or without devices), GPU
// instance groups, outputLocation and DeviceTensor errors, and the mapping of the cuda and
// tensorrt options to ONNX Runtime's V2 provider options.
import { strict as assert } from 'assert';
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { DeviceTensor, Session, Tensor, type CudaDevices, type KilnErrorCode, type ProviderSpec, type RunOptions, type SessionOptions } from '../lib';
import { providersFor, tensorRtProfiles } from '../lib/batching/gpu';
import { GraphBuilder } from '../lib/onnx';
import { sessionConfig } from '../lib/options';
import { addModel, mlpModel, mlpReference, multiIOModel, symbolicDimsModel } from './fixtures/models';
import { batchInput } from './helpers/cuda-probe';
import { assertKilnError, thrown } from './helpers/assert-error';

// --- helpers -----------------------------------------------------------------------------------

const ROOT = path.resolve(__dirname, '..', '..');
const PROBE = path.join(__dirname, 'helpers', 'cuda-probe.js');
// Where scripts/ctest.js builds the fake driver (KILN_CMAKE_BUILD_DIR, relative to the root or absolute).
const FAKE_DRIVER = path.resolve(ROOT, process.env.KILN_CMAKE_BUILD_DIR || 'build-cmake', 'libkiln-fake-cuda.so');
const NO_DRIVER = '/nonexistent/libcuda.so.1';

interface ErrorReport {
  name: string;
  code: string | undefined;
  message: string;
}

type Failure = { error: ErrorReport };

interface CreateResult {
  providers: string[];
  notes: string[];
  deviceUndefined: boolean;
  device: number | null;
  y: number[];
  yDims: number[];
  cudaOutput: ErrorReport | string | null;
}

interface BatchResult {
  sessions: { providers: string[]; notes: string[]; deviceUndefined: boolean }[];
  distinct: number;
  instances: number;
  kind: string;
  outputs: { dims: number[]; data: number[] }[];
}


/** The same for an error reported by the probe (a child process). */
function assertReported(r: unknown, code: KilnErrorCode, ...fragments: readonly (string | RegExp)[]): ErrorReport {
  assert.ok(r !== null && typeof r === 'object' && 'error' in r, `expected an error, the probe reported ${JSON.stringify(r)}`);
  const e = (r as Failure).error;
  assert.equal(e.name, 'KilnError', JSON.stringify(e));
  assert.equal(e.code, code, `code of: ${e.message}`);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    else assert.match(e.message, f);
  }
  return e;
}

function assertSession(r: unknown): CreateResult {
  assert.ok(r !== null && typeof r === 'object' && !('error' in r), `expected a session, the probe reported ${JSON.stringify(r)}`);
  return r as CreateResult;
}


async function rejected(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail('expected a rejection');
}

/** The driver situation of a child: the CUDA library and the fake driver's settings. */
interface DriverEnv {
  library: string;
  fakeVersion?: number;
  fakeDevices?: number;
}

function childEnv(d: DriverEnv): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, KILN_CUDA_LIBRARY: d.library };
  delete env.KILN_FAKE_CUDA_DRIVER_VERSION;
  delete env.KILN_FAKE_CUDA_DEVICES;
  if (d.fakeVersion !== undefined) env.KILN_FAKE_CUDA_DRIVER_VERSION = String(d.fakeVersion);
  if (d.fakeDevices !== undefined) env.KILN_FAKE_CUDA_DEVICES = String(d.fakeDevices);
  return env;
}

function toJson(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? { $bigint: String(x) } : x));
}

/** Runs the probe's `scenario` in a child process and returns the JSON it printed last. */
function probe<T>(d: DriverEnv, scenario: string, arg?: unknown): Promise<T> {
  const args = [PROBE, scenario, ...(arg === undefined ? [] : [toJson(arg)])];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { env: childEnv(d), encoding: 'utf8', timeout: 30000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) {
        reject(new Error(`cuda-probe ${scenario} (KILN_CUDA_LIBRARY=${d.library}) failed: ${err.message}\n${stderr.slice(-2000)}`));
        return;
      }
      const last = stdout.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`cuda-probe ${scenario} printed no JSON: ${JSON.stringify(stdout.slice(-500))}\n${stderr.slice(-2000)}`));
      }
    });
  });
}

function requireFakeDriver(): void {
  assert.ok(fs.existsSync(FAKE_DRIVER), `the fake CUDA driver ${FAKE_DRIVER} is missing: build it with \`node scripts/ctest.js\` (part of npm test)`);
}

/** a + b of the probe's create scenario: a = 0..7, b = 10 * a, dims [2, 4]. */
const ADD_EXPECTED = Array.from({ length: 8 }, (_, i) => 11 * i);

function assertCpuFallback(r: CreateResult, note: RegExp): void {
  assert.deepEqual(r.providers, ['CPUExecutionProvider']);
  assert.equal(r.notes.length, 1, `notes: ${JSON.stringify(r.notes)}`);
  assert.match(r.notes[0], note);
  assert.equal(r.deviceUndefined, true, 'a session that fell back to the CPU has no device');
  assert.deepEqual(r.yDims, [2, 4]);
  assert.deepEqual(r.y, ADD_EXPECTED);
  assert.ok(r.cudaOutput !== null && typeof r.cudaOutput === 'object', `outputLocation 'cuda' on a fallen-back session: ${JSON.stringify(r.cudaOutput)}`);
  assert.equal(r.cudaOutput.code, 'E_INVALID_ARGUMENT');
  assert.ok(r.cudaOutput.message.includes('CPUExecutionProvider'), r.cudaOutput.message);
}

/** Every output of the batch scenario equals mlpReference of its own input. */
function assertMlpOutputs(r: BatchResult): void {
  assert.equal(r.outputs.length, 8);
  r.outputs.forEach((out, i) => {
    const { rows, data } = batchInput(i);
    assert.deepEqual(out.dims, [rows, 10], `request ${i}`);
    const want = mlpReference(data, rows);
    assert.equal(out.data.length, want.length);
    for (let k = 0; k < want.length; k++) {
      assert.ok(Math.abs(out.data[k] - want[k]) <= 1e-4, `request ${i}, y[${k}] = ${out.data[k]}, expected ${want[k]}`);
    }
  });
}

// --- driver discovery and provider fallback (child processes) ----------------------------------

describe('CUDA without a GPU (child processes)', function () {
  this.timeout(30000);

  describe('no NVIDIA driver', function () {
    const none: DriverEnv = { library: NO_DRIVER };

    it('cuda.devices() reports no devices and why', async function () {
      const d = await probe<CudaDevices>(none, 'devices');
      assert.deepEqual(d.devices, []);
      assert.equal(d.driverVersion, null);
      assert.equal(d.library, NO_DRIVER);
      assert.ok(d.problem?.startsWith('no NVIDIA driver'), `problem: ${d.problem}`);
      assert.ok(d.problem?.includes(NO_DRIVER), `problem: ${d.problem}`);
    });

    it("['cuda'] alone rejects E_PROVIDER_UNAVAILABLE naming the missing driver; with options too", async function () {
      const [plain, options, trt] = await probe<unknown[]>(none, 'create', [
        { providers: ['cuda'] },
        { providers: [{ name: 'cuda', deviceId: 0, gpuMemLimit: 1 << 30 }] },
        { providers: ['tensorrt'] },
      ]);
      assertReported(plain, 'E_PROVIDER_UNAVAILABLE', 'no NVIDIA driver', NO_DRIVER, 'cuda: ');
      assertReported(options, 'E_PROVIDER_UNAVAILABLE', 'no NVIDIA driver', NO_DRIVER);
      assertReported(trt, 'E_PROVIDER_UNAVAILABLE', 'no NVIDIA driver', 'tensorrt: ');
    });

    it("['cuda', 'cpu'] and ['tensorrt', 'cpu'] fall back to the CPU with a note, and run correctly", async function () {
      const [cuda, trt, stream] = await probe<unknown[]>(none, 'create', [
        { providers: ['cuda', 'cpu'] },
        { providers: ['tensorrt', 'cpu'] },
        { providers: [{ name: 'cuda', userComputeStream: 1234n }, 'cpu'] },
      ]);
      assertCpuFallback(assertSession(cuda), /^cuda: no NVIDIA driver.*\/nonexistent\/libcuda\.so\.1/);
      assertCpuFallback(assertSession(trt), /^tensorrt: no NVIDIA driver/);
      assertCpuFallback(assertSession(stream), /^cuda: no NVIDIA driver/);
    });

    it('a GPU instance group without providers rejects E_PROVIDER_UNAVAILABLE', async function () {
      const r = await probe<unknown>(none, 'batch', { maxBatchSize: 8, instanceGroup: [{ count: 2, kind: 'GPU' }] });
      assertReported(r, 'E_PROVIDER_UNAVAILABLE', 'no NVIDIA driver', 'cuda: ');
    });

    it('a library that is no CUDA driver is reported, not loaded as one', async function () {
      const d = await probe<CudaDevices>({ library: 'libm.so.6' }, 'devices');
      assert.deepEqual(d.devices, []);
      assert.equal(d.driverVersion, null);
      assert.equal(d.library, 'libm.so.6');
      assert.ok(d.problem?.includes('lacks cuInit'), `problem: ${d.problem}`);
    });
  });

  describe('the fake driver (build-cmake/libkiln-fake-cuda.so)', function () {
    const fake = (extra: Omit<DriverEnv, 'library'> = {}): DriverEnv => ({ library: FAKE_DRIVER, ...extra });
    // Not a skip: without the fake driver these checks would silently not run.
    before(requireFakeDriver);

    it('cuda.devices() lists its one device', async function () {
      const d = await probe<CudaDevices>(fake(), 'devices');
      assert.equal(d.problem, undefined, `problem: ${d.problem}`);
      assert.equal(d.driverVersion, '12.4');
      assert.equal(d.library, FAKE_DRIVER);
      assert.equal(d.devices.length, 1);
      const [dev] = d.devices;
      assert.equal(dev.id, 0);
      assert.equal(dev.name, 'Kiln Fake GPU 0');
      assert.equal(dev.computeCapability, '9.0');
      assert.equal(dev.totalMemory, 1024 ** 3);
      assert.ok(Number.isInteger(dev.multiprocessors) && dev.multiprocessors > 0, `multiprocessors ${dev.multiprocessors}`);
      assert.match(dev.pciBusId, /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-9]$/i);
    });

    it('KILN_FAKE_CUDA_DEVICES=2 lists two devices', async function () {
      const d = await probe<CudaDevices>(fake({ fakeDevices: 2 }), 'devices');
      assert.equal(d.problem, undefined);
      assert.deepEqual(d.devices.map((x) => [x.id, x.name]), [[0, 'Kiln Fake GPU 0'], [1, 'Kiln Fake GPU 1']]);
    });

    it("['cuda', 'cpu'] and ['tensorrt', 'cpu'] fall back: ONNX Runtime cannot load the provider library", async function () {
      const [cuda, trt, cudaOptions, noDeviceIo] = await probe<unknown[]>(fake(), 'create', [
        { providers: ['cuda', 'cpu'] },
        { providers: ['tensorrt', 'cpu'] },
        { providers: [{ name: 'cuda', deviceId: 0, cudnnConvAlgoSearch: 'heuristic' }, 'cpu'] },
        { providers: ['cuda', 'cpu'], options: { deviceIo: false } },
      ]);
      // With no options ORT fails in SessionOptionsAppendExecutionProvider_*; with options, in
      // Update*ProviderOptions (loading libonnxruntime_providers_shared).
      assertCpuFallback(assertSession(cuda), /^cuda: .*Failed to load (shared )?library/);
      assertCpuFallback(assertSession(trt), /^tensorrt: .*Failed to load (shared )?library/);
      assertCpuFallback(assertSession(cudaOptions), /^cuda: .*Failed to load library.*libonnxruntime_providers_shared/);
      assertCpuFallback(assertSession(noDeviceIo), /^cuda: .*Failed to load (shared )?library/);
    });

    it("['cuda'] alone rejects E_PROVIDER_UNAVAILABLE (not E_INVALID_ARGUMENT), with options too", async function () {
      const results = await probe<unknown[]>(fake(), 'create', [
        { providers: ['cuda'] },
        { providers: [{ name: 'cuda', deviceId: 0, gpuMemLimit: 1 << 30 }] },
        { providers: [{ name: 'cuda', arenaExtendStrategy: 'sameAsRequested', useTf32: false, enableCudaGraph: true }] },
        { providers: [{ name: 'cuda', userComputeStream: 1234n }] },
        { providers: ['tensorrt'] },
        { providers: [{ name: 'tensorrt', deviceId: 0, fp16: true, builderOptimizationLevel: 3 }] },
      ]);
      for (const r of results) assertReported(r, 'E_PROVIDER_UNAVAILABLE', 'no requested execution provider is available', /Failed to load (shared )?library/);
      assertReported(results[1], 'E_PROVIDER_UNAVAILABLE', 'cuda: ', 'libonnxruntime_providers_shared');
      assertReported(results[5], 'E_PROVIDER_UNAVAILABLE', 'tensorrt: ', 'libonnxruntime_providers_shared');
    });

    it('a deviceId the machine lacks falls back with a note naming it', async function () {
      const [fallback, alone] = await probe<unknown[]>(fake(), 'create', [
        { providers: [{ name: 'cuda', deviceId: 5 }, 'cpu'] },
        { providers: [{ name: 'cuda', deviceId: 5 }] },
      ]);
      assertCpuFallback(assertSession(fallback), /^cuda: CUDA device 5 does not exist \(this machine has 1\)/);
      assertReported(alone, 'E_PROVIDER_UNAVAILABLE', 'CUDA device 5 does not exist');
    });

    it('a driver older than CUDA 12.0 is reported and not used', async function () {
      const env = fake({ fakeVersion: 11080 });
      const [d, sessions] = await Promise.all([
        probe<CudaDevices>(env, 'devices'),
        probe<unknown[]>(env, 'create', [{ providers: ['cuda'] }, { providers: ['cuda', 'cpu'] }]),
      ]);
      assert.deepEqual(d.devices, []);
      assert.equal(d.driverVersion, '11.8');
      for (const f of ['too old', '11.8', '12.0']) assert.ok(d.problem?.includes(f), `problem ${JSON.stringify(d.problem)} lacks ${f}`);
      assertReported(sessions[0], 'E_PROVIDER_UNAVAILABLE', 'too old', '11.8');
      assertCpuFallback(assertSession(sessions[1]), /^cuda: .*too old/);
    });

    it('a driver without devices is reported', async function () {
      const env = fake({ fakeDevices: 0 });
      const [d, [alone]] = await Promise.all([
        probe<CudaDevices>(env, 'devices'),
        probe<unknown[]>(env, 'create', [{ providers: ['cuda'] }]),
      ]);
      assert.deepEqual(d.devices, []);
      assert.equal(d.driverVersion, '12.4');
      assert.ok(d.problem?.startsWith('no CUDA device'), `problem: ${d.problem}`);
      assertReported(alone, 'E_PROVIDER_UNAVAILABLE', 'no CUDA device');
    });

    it('a GPU instance group of 2 is 2 sessions, each falling back to the CPU, serving concurrent requests correctly', async function () {
      const r = await probe<BatchResult | Failure>(fake(), 'batch', {
        maxBatchSize: 8,
        instanceGroup: [{ count: 2, kind: 'GPU' }],
        session: { providers: ['cuda', 'cpu'] },
      });
      assert.ok(!('error' in r), JSON.stringify(r));
      assert.equal(r.sessions.length, 2);
      assert.equal(r.distinct, 2, 'each instance is a session of its own');
      assert.equal(r.instances, 2);
      assert.equal(r.kind, 'GPU');
      for (const s of r.sessions) {
        assert.deepEqual(s.providers, ['CPUExecutionProvider']);
        assert.equal(s.notes.length, 1);
        assert.match(s.notes[0], /^cuda: .*Failed to load (shared )?library/);
        assert.equal(s.deviceUndefined, true);
      }
      assertMlpOutputs(r);
    });

    it('gpus [0, 1] with count 1 is one session per GPU, each aimed at its own device', async function () {
      const config = { maxBatchSize: 8, instanceGroup: [{ count: 1, kind: 'GPU', gpus: [0, 1] }], session: { providers: ['cuda', 'cpu'] } };
      const [two, one] = await Promise.all([
        probe<BatchResult | Failure>(fake({ fakeDevices: 2 }), 'batch', config),
        probe<BatchResult | Failure>(fake({ fakeDevices: 1 }), 'batch', config),
      ]);
      assert.ok(!('error' in two), JSON.stringify(two));
      assert.equal(two.sessions.length, 2);
      assert.equal(two.distinct, 2);
      for (const s of two.sessions) {
        assert.deepEqual(s.providers, ['CPUExecutionProvider']);
        assert.match(s.notes[0], /^cuda: .*Failed to load (shared )?library/);
      }
      assertMlpOutputs(two);
      // On a machine with one GPU, the second instance's deviceId 1 is what makes it fall back.
      assert.ok(!('error' in one), JSON.stringify(one));
      assert.equal(one.sessions.length, 2);
      assert.match(one.sessions[0].notes[0], /^cuda: .*Failed to load (shared )?library/);
      assert.deepEqual(one.sessions[1].notes, ['cuda: CUDA device 1 does not exist (this machine has 1)']);
      assertMlpOutputs(one);
    });

    it('a TensorRT instance group falls back to the CPU likewise', async function () {
      const r = await probe<BatchResult | Failure>(fake(), 'batch', {
        maxBatchSize: 8,
        dynamicBatching: { preferredBatchSize: [4] },
        instanceGroup: [{ count: 1, kind: 'GPU' }],
        session: { providers: ['tensorrt', 'cpu'] },
      });
      assert.ok(!('error' in r), JSON.stringify(r));
      assert.equal(r.sessions.length, 1);
      assert.deepEqual(r.sessions[0].providers, ['CPUExecutionProvider']);
      assert.match(r.sessions[0].notes[0], /^tensorrt: .*Failed to load (shared )?library/);
      assertMlpOutputs(r);
    });
  });
});

// --- outputLocation, DeviceTensor, deviceIo (in process, CPU only) -----------------------------

describe('device IO on a CPU session', function () {
  let session: Session;
  const feeds = {
    a: new Tensor('float32', new Float32Array([1, 2, 3, 4]), [1, 4]),
    b: new Tensor('float32', new Float32Array([10, 20, 30, 40]), [1, 4]),
  };

  before(async function () {
    session = await Session.create(addModel());
  });

  after(async function () {
    await session?.dispose();
  });

  it('a CPU session has no device and runs on CPUExecutionProvider', function () {
    assert.equal(session.device, undefined);
    assert.deepEqual(session.providers, ['CPUExecutionProvider']);
    assert.deepEqual(session.providerNotes, []);
  });

  it("outputLocation 'cuda' is refused by run and runSync, naming the provider", async function () {
    const asyncError = await rejected(session.run(feeds, { outputLocation: 'cuda' }));
    assertKilnError(asyncError, 'E_INVALID_ARGUMENT', "outputLocation 'cuda'", 'CPUExecutionProvider');
    const syncError = thrown(() => session.runSync(feeds, { outputLocation: 'cuda' }));
    assertKilnError(syncError, 'E_INVALID_ARGUMENT', "outputLocation 'cuda'", 'CPUExecutionProvider');
    assert.equal((syncError as Error).message, (asyncError as Error).message);
    // also with named outputs
    assertKilnError(thrown(() => session.runSync(feeds, { outputLocation: 'cuda', outputs: ['y'] })), 'E_INVALID_ARGUMENT', "outputLocation 'cuda'");
  });

  it("outputLocation 'cpu' (and unset) runs normally", async function () {
    const r = await session.run(feeds, { outputLocation: 'cpu' });
    assert.deepEqual(Array.from(r.y.data as Float32Array), [11, 22, 33, 44]);
    const s = session.runSync(feeds, { outputLocation: 'cpu' });
    assert.deepEqual(Array.from(s.y.data as Float32Array), [11, 22, 33, 44]);
  });

  it("outputLocation 'gpu' (or any other value) is E_INVALID_ARGUMENT", async function () {
    // null is not undefined: it must not silently mean 'cpu' either
    for (const location of ['gpu', 'CUDA', 1, null]) {
      const options = { outputLocation: location } as unknown as RunOptions;
      assertKilnError(await rejected(session.run(feeds, options)), 'E_INVALID_ARGUMENT', 'outputLocation', "'cpu' or 'cuda'");
      assertKilnError(thrown(() => session.runSync(feeds, options)), 'E_INVALID_ARGUMENT', 'outputLocation', "'cpu' or 'cuda'");
    }
  });

  it('a DeviceTensor cannot be made by a user', function () {
    const Ctor = DeviceTensor as unknown as new (...args: unknown[]) => DeviceTensor;
    for (const args of [[], [Symbol('kiln.device'), 'float32', [1, 4], 0, {}], ['float32', [1, 4], 0]]) {
      assertKilnError(thrown(() => new Ctor(...args)), 'E_INVALID_ARGUMENT', 'outputLocation');
    }
  });

  it('deviceIo must be a boolean; false is accepted', async function () {
    for (const bad of ['yes', 1, null, {}]) {
      const e = await rejected(Session.create(addModel(), { deviceIo: bad } as unknown as SessionOptions));
      assertKilnError(e, 'E_INVALID_ARGUMENT', 'option "deviceIo"', 'a boolean');
    }
    for (const ok of [false, true]) {
      const s = await Session.create(addModel(), { deviceIo: ok });
      try {
        assert.equal(s.device, undefined);
        assert.deepEqual(Array.from(s.runSync(feeds).y.data as Float32Array), [11, 22, 33, 44]);
      } finally {
        await s.dispose();
      }
    }
    assert.equal(sessionConfig({ deviceIo: false }).deviceIo, false);
    assert.equal(sessionConfig({ deviceIo: true }).deviceIo, true);
    assert.equal(sessionConfig({}).deviceIo, undefined);
  });
});

// --- option mapping ------------------------------------------------------------------------------

/** The native options of a single provider spec, sorted by key. */
function mapped(spec: ProviderSpec): [string, string][] {
  const config = sessionConfig({ providers: [spec] });
  assert.equal(config.providers.length, 1);
  const options = [...config.providers[0].options];
  const keys = options.map(([k]) => k);
  assert.equal(new Set(keys).size, keys.length, `duplicate keys: ${keys.join(', ')}`);
  return options.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

function sorted(entries: [string, string][]): [string, string][] {
  return [...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

describe('provider options', function () {
  it('provider names map to native providers without options', function () {
    const config = sessionConfig({ providers: ['tensorrt', 'cuda', 'cpu', { name: 'cpu' }, { name: 'cuda' }, { name: 'tensorrt' }] });
    assert.deepEqual(config.providers, [
      { name: 'tensorrt', options: [] }, { name: 'cuda', options: [] }, { name: 'cpu', options: [] },
      { name: 'cpu', options: [] }, { name: 'cuda', options: [] }, { name: 'tensorrt', options: [] },
    ]);
    assert.deepEqual(sessionConfig({}).providers, []);
  });

  const cudaCases: [string, Omit<Extract<ProviderSpec, { name: 'cuda' }>, 'name'>, [string, string][]][] = [
    ['deviceId', { deviceId: 3 }, [['device_id', '3']]],
    ['deviceId 0', { deviceId: 0 }, [['device_id', '0']]],
    ['gpuMemLimit', { gpuMemLimit: 2 ** 33 }, [['gpu_mem_limit', '8589934592']]],
    ['arenaExtendStrategy nextPowerOfTwo', { arenaExtendStrategy: 'nextPowerOfTwo' }, [['arena_extend_strategy', 'kNextPowerOfTwo']]],
    ['arenaExtendStrategy sameAsRequested', { arenaExtendStrategy: 'sameAsRequested' }, [['arena_extend_strategy', 'kSameAsRequested']]],
    ['cudnnConvAlgoSearch exhaustive', { cudnnConvAlgoSearch: 'exhaustive' }, [['cudnn_conv_algo_search', 'EXHAUSTIVE']]],
    ['cudnnConvAlgoSearch heuristic', { cudnnConvAlgoSearch: 'heuristic' }, [['cudnn_conv_algo_search', 'HEURISTIC']]],
    ['cudnnConvAlgoSearch default', { cudnnConvAlgoSearch: 'default' }, [['cudnn_conv_algo_search', 'DEFAULT']]],
    ['doCopyInDefaultStream true', { doCopyInDefaultStream: true }, [['do_copy_in_default_stream', '1']]],
    ['doCopyInDefaultStream false', { doCopyInDefaultStream: false }, [['do_copy_in_default_stream', '0']]],
    ['enableCudaGraph', { enableCudaGraph: true }, [['enable_cuda_graph', '1']]],
    ['useTf32', { useTf32: false }, [['use_tf32', '0']]],
    ['userComputeStream bigint', { userComputeStream: 1234n }, [['user_compute_stream', '1234']]],
    ['userComputeStream 64-bit bigint', { userComputeStream: 0x7f00_dead_beefn }, [['user_compute_stream', String(0x7f00_dead_beefn)]]],
    ['userComputeStream number', { userComputeStream: 4096 }, [['user_compute_stream', '4096']]],
  ];
  for (const [title, spec, want] of cudaCases) {
    it(`cuda ${title} -> ${want.map(([k, v]) => `${k}=${v}`).join(', ')}`, function () {
      assert.deepEqual(mapped({ name: 'cuda', ...spec }), sorted(want));
    });
  }

  it('all cuda options together', function () {
    assert.deepEqual(mapped({
      name: 'cuda', deviceId: 1, gpuMemLimit: 1 << 30, arenaExtendStrategy: 'sameAsRequested', cudnnConvAlgoSearch: 'heuristic',
      doCopyInDefaultStream: false, enableCudaGraph: true, useTf32: true, userComputeStream: 99n,
    }), sorted([
      ['device_id', '1'], ['gpu_mem_limit', '1073741824'], ['arena_extend_strategy', 'kSameAsRequested'],
      ['cudnn_conv_algo_search', 'HEURISTIC'], ['do_copy_in_default_stream', '0'], ['enable_cuda_graph', '1'],
      ['use_tf32', '1'], ['user_compute_stream', '99'],
    ]));
  });

  const trtCases: [string, Omit<Extract<ProviderSpec, { name: 'tensorrt' }>, 'name'>, [string, string][]][] = [
    ['deviceId', { deviceId: 2 }, [['device_id', '2']]],
    ['fp16', { fp16: true }, [['trt_fp16_enable', '1']]],
    ['int8', { int8: false }, [['trt_int8_enable', '0']]],
    ['int8CalibrationTable', { int8CalibrationTable: 'calib.flatbuffers' }, [['trt_int8_calibration_table_name', 'calib.flatbuffers']]],
    ['int8UseNativeCalibrationTable', { int8UseNativeCalibrationTable: true }, [['trt_int8_use_native_calibration_table', '1']]],
    ['engineCachePath', { engineCachePath: '/x' }, [['trt_engine_cache_enable', '1'], ['trt_engine_cache_path', '/x']]],
    ['timingCachePath', { timingCachePath: '/t' }, [['trt_timing_cache_enable', '1'], ['trt_timing_cache_path', '/t']]],
    ['dumpEpContextModel', { dumpEpContextModel: true }, [['trt_dump_ep_context_model', '1']]],
    ['epContextFilePath', { epContextFilePath: 'ctx.onnx' }, [['trt_ep_context_file_path', 'ctx.onnx']]],
    ['maxWorkspaceSize', { maxWorkspaceSize: 1 << 30 }, [['trt_max_workspace_size', '1073741824']]],
    ['builderOptimizationLevel 0', { builderOptimizationLevel: 0 }, [['trt_builder_optimization_level', '0']]],
    ['builderOptimizationLevel 5', { builderOptimizationLevel: 5 }, [['trt_builder_optimization_level', '5']]],
    ['profile shapes', { profileMinShapes: { x: [1, 512] }, profileOptShapes: { x: [32, 512] }, profileMaxShapes: { x: [64, 512] } }, [
      ['trt_profile_min_shapes', 'x:1x512'], ['trt_profile_opt_shapes', 'x:32x512'], ['trt_profile_max_shapes', 'x:64x512'],
    ]],
    ['profile shapes of two inputs', {
      profileMinShapes: { a: [1, 3, 224, 224], b: [1] },
      profileOptShapes: { a: [8, 3, 224, 224], b: [8] },
      profileMaxShapes: { a: [16, 3, 224, 224], b: [16] },
    }, [
      ['trt_profile_min_shapes', 'a:1x3x224x224,b:1'], ['trt_profile_opt_shapes', 'a:8x3x224x224,b:8'],
      ['trt_profile_max_shapes', 'a:16x3x224x224,b:16'],
    ]],
  ];
  for (const [title, spec, want] of trtCases) {
    it(`tensorrt ${title} -> ${want.map(([k, v]) => `${k}=${v}`).join(', ')}`, function () {
      assert.deepEqual(mapped({ name: 'tensorrt', ...spec }), sorted(want));
    });
  }

  it('options left unset are not passed (ORT keeps its defaults)', function () {
    assert.deepEqual(mapped({ name: 'cuda', deviceId: undefined, useTf32: undefined }), []);
    assert.deepEqual(mapped({ name: 'tensorrt', engineCachePath: undefined, fp16: undefined }), []);
  });

  /** [title, providers value, field named in the message, more fragments] */
  const bad: [string, unknown, string, ...string[]][] = [
    ['providers not an array', 'cuda', 'option "providers"', 'a non-empty array'],
    ['providers empty', [], 'option "providers"', 'a non-empty array'],
    ['unknown provider name', ['gpu'], 'option "providers[0]"'],
    ['provider a number', [0], 'option "providers[0]"'],
    ['provider null', [null], 'option "providers[0]"'],
    ['unknown provider object', [{ name: 'rocm' }], 'option "providers[0].name"', 'one of cpu, cuda, tensorrt'],
    ['cpu with options', [{ name: 'cpu', threads: 2 }], 'option "providers[0].threads" is not known'],
    // cuda
    ['cuda unknown key', [{ name: 'cuda', gpuMemoryLimit: 1 }], 'option "providers[0].gpuMemoryLimit" is not known', 'gpuMemLimit'],
    ['cuda deviceId -1', [{ name: 'cuda', deviceId: -1 }], 'option "providers[0].deviceId"', 'an integer >= 0', '-1'],
    ['cuda deviceId 1.5', [{ name: 'cuda', deviceId: 1.5 }], 'option "providers[0].deviceId"'],
    ['cuda deviceId string', [{ name: 'cuda', deviceId: '0' }], 'option "providers[0].deviceId"', '"0"'],
    ['cuda gpuMemLimit 0', [{ name: 'cuda', gpuMemLimit: 0 }], 'option "providers[0].gpuMemLimit"', '>= 1'],
    ['cuda gpuMemLimit string', [{ name: 'cuda', gpuMemLimit: '1GB' }], 'option "providers[0].gpuMemLimit"'],
    ['cuda gpuMemLimit NaN', [{ name: 'cuda', gpuMemLimit: NaN }], 'option "providers[0].gpuMemLimit"'],
    ['cuda arenaExtendStrategy', [{ name: 'cuda', arenaExtendStrategy: 'kSameAsRequested' }], 'option "providers[0].arenaExtendStrategy"', 'one of nextPowerOfTwo, sameAsRequested'],
    ['cuda cudnnConvAlgoSearch upper case', [{ name: 'cuda', cudnnConvAlgoSearch: 'HEURISTIC' }], 'option "providers[0].cudnnConvAlgoSearch"', 'one of exhaustive, heuristic, default'],
    ['cuda cudnnConvAlgoSearch number', [{ name: 'cuda', cudnnConvAlgoSearch: 1 }], 'option "providers[0].cudnnConvAlgoSearch"'],
    ['cuda doCopyInDefaultStream 1', [{ name: 'cuda', doCopyInDefaultStream: 1 }], 'option "providers[0].doCopyInDefaultStream"', 'a boolean'],
    ['cuda enableCudaGraph "true"', [{ name: 'cuda', enableCudaGraph: 'true' }], 'option "providers[0].enableCudaGraph"', 'a boolean'],
    ['cuda useTf32 null', [{ name: 'cuda', useTf32: null }], 'option "providers[0].useTf32"', 'a boolean'],
    ['cuda userComputeStream 0', [{ name: 'cuda', userComputeStream: 0 }], 'option "providers[0].userComputeStream"', 'cudaStream_t'],
    ['cuda userComputeStream 0n', [{ name: 'cuda', userComputeStream: 0n }], 'option "providers[0].userComputeStream"'],
    ['cuda userComputeStream -1n', [{ name: 'cuda', userComputeStream: -1n }], 'option "providers[0].userComputeStream"', '-1n'],
    ['cuda userComputeStream 1.5', [{ name: 'cuda', userComputeStream: 1.5 }], 'option "providers[0].userComputeStream"'],
    ['cuda userComputeStream string', [{ name: 'cuda', userComputeStream: '1234' }], 'option "providers[0].userComputeStream"'],
    ['cuda userComputeStream 2^53', [{ name: 'cuda', userComputeStream: 2 ** 53 }], 'option "providers[0].userComputeStream"'],
    ['second provider bad', ['cpu', { name: 'cuda', deviceId: -2 }], 'option "providers[1].deviceId"'],
    // tensorrt
    ['tensorrt unknown key', [{ name: 'tensorrt', fp32: true }], 'option "providers[0].fp32" is not known'],
    ['tensorrt deviceId -1', [{ name: 'tensorrt', deviceId: -1 }], 'option "providers[0].deviceId"'],
    ['tensorrt fp16 "yes"', [{ name: 'tensorrt', fp16: 'yes' }], 'option "providers[0].fp16"', 'a boolean'],
    ['tensorrt int8 1', [{ name: 'tensorrt', int8: 1 }], 'option "providers[0].int8"', 'a boolean'],
    ['tensorrt int8CalibrationTable empty', [{ name: 'tensorrt', int8CalibrationTable: '' }], 'option "providers[0].int8CalibrationTable"', 'a non-empty string'],
    ['tensorrt int8UseNativeCalibrationTable', [{ name: 'tensorrt', int8UseNativeCalibrationTable: 'no' }], 'option "providers[0].int8UseNativeCalibrationTable"'],
    ['tensorrt engineCachePath number', [{ name: 'tensorrt', engineCachePath: 5 }], 'option "providers[0].engineCachePath"', 'a non-empty string'],
    ['tensorrt engineCachePath empty', [{ name: 'tensorrt', engineCachePath: '' }], 'option "providers[0].engineCachePath"'],
    ['tensorrt timingCachePath', [{ name: 'tensorrt', timingCachePath: true }], 'option "providers[0].timingCachePath"'],
    ['tensorrt dumpEpContextModel', [{ name: 'tensorrt', dumpEpContextModel: 0 }], 'option "providers[0].dumpEpContextModel"'],
    ['tensorrt epContextFilePath', [{ name: 'tensorrt', epContextFilePath: {} }], 'option "providers[0].epContextFilePath"'],
    ['tensorrt maxWorkspaceSize 0', [{ name: 'tensorrt', maxWorkspaceSize: 0 }], 'option "providers[0].maxWorkspaceSize"', '>= 1'],
    ['tensorrt builderOptimizationLevel 6', [{ name: 'tensorrt', builderOptimizationLevel: 6 }], 'option "providers[0].builderOptimizationLevel"', 'in [0, 5]', '6'],
    ['tensorrt builderOptimizationLevel -1', [{ name: 'tensorrt', builderOptimizationLevel: -1 }], 'option "providers[0].builderOptimizationLevel"'],
    ['tensorrt builderOptimizationLevel 2.5', [{ name: 'tensorrt', builderOptimizationLevel: 2.5 }], 'option "providers[0].builderOptimizationLevel"'],
    ['tensorrt only profileMinShapes', [{ name: 'tensorrt', profileMinShapes: { x: [1, 4] } }], 'option "providers[0]"', 'profileMinShapes, profileOptShapes and profileMaxShapes together'],
    ['tensorrt no profileOptShapes', [{ name: 'tensorrt', profileMinShapes: { x: [1, 4] }, profileMaxShapes: { x: [8, 4] } }], 'option "providers[0]"', 'together'],
    ['tensorrt only profileMaxShapes', [{ name: 'tensorrt', profileMaxShapes: { x: [8, 4] } }], 'option "providers[0]"', 'together'],
    ['tensorrt profile dim 0', [{ name: 'tensorrt', profileMinShapes: { x: [0, 4] }, profileOptShapes: { x: [1, 4] }, profileMaxShapes: { x: [8, 4] } }], 'option "providers[0].profileMinShapes.x"', 'positive integers'],
    ['tensorrt profile dim -1', [{ name: 'tensorrt', profileMinShapes: { x: [1, 4] }, profileOptShapes: { x: [-1, 4] }, profileMaxShapes: { x: [8, 4] } }], 'option "providers[0].profileOptShapes.x"'],
    ['tensorrt profile dim 1.5', [{ name: 'tensorrt', profileMinShapes: { x: [1, 4] }, profileOptShapes: { x: [2, 4] }, profileMaxShapes: { x: [8.5, 4] } }], 'option "providers[0].profileMaxShapes.x"'],
    ['tensorrt profile dims empty', [{ name: 'tensorrt', profileMinShapes: { x: [] }, profileOptShapes: { x: [1] }, profileMaxShapes: { x: [1] } }], 'option "providers[0].profileMinShapes.x"'],
    ['tensorrt profile dims not an array', [{ name: 'tensorrt', profileMinShapes: { x: 4 }, profileOptShapes: { x: [1] }, profileMaxShapes: { x: [1] } }], 'option "providers[0].profileMinShapes.x"'],
    ['tensorrt profile not an object', [{ name: 'tensorrt', profileMinShapes: [[1, 4]], profileOptShapes: { x: [1] }, profileMaxShapes: { x: [1] } }], 'option "providers[0].profileMinShapes"', 'an object of input name -> dims'],
  ];
  for (const [title, providers, ...fragments] of bad) {
    it(`rejects ${title}`, async function () {
      const e = thrown(() => sessionConfig({ providers }));
      assertKilnError(e, 'E_INVALID_ARGUMENT', ...fragments);
      // Session.create validates the same way, before anything loads
      assertKilnError(await rejected(Session.create(addModel(), { providers } as SessionOptions)), 'E_INVALID_ARGUMENT', fragments[0]);
    });
  }
});

// --- TensorRT profiles and instance placement --------------------------------------------------

describe('GPU instance groups: TensorRT profiles and providers', function () {
  it('tensorRtProfiles spans the batch dim 1..maxBatchSize, optimised for the largest preferred size', async function () {
    assert.deepEqual(await tensorRtProfiles(mlpModel(), 64, [16, 32]), {
      profileMinShapes: { x: [1, 512] },
      profileOptShapes: { x: [32, 512] },
      profileMaxShapes: { x: [64, 512] },
    });
  });

  it('without preferred sizes it optimises for maxBatchSize; a preferred size above it is capped', async function () {
    const none = await tensorRtProfiles(mlpModel(), 64, []);
    assert.deepEqual(none?.profileOptShapes, { x: [64, 512] });
    assert.deepEqual(none?.profileMinShapes, { x: [1, 512] });
    const capped = await tensorRtProfiles(mlpModel(), 8, [4, 128]);
    assert.deepEqual(capped?.profileOptShapes, { x: [8, 512] });
    assert.deepEqual(capped?.profileMaxShapes, { x: [8, 512] });
  });

  it('reads a model file and an ArrayBuffer alike', async function () {
    const bytes = mlpModel();
    const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
    assert.deepEqual(await tensorRtProfiles(buffer, 4, []), {
      profileMinShapes: { x: [1, 512] }, profileOptShapes: { x: [4, 512] }, profileMaxShapes: { x: [4, 512] },
    });
    const dir = fs.mkdtempSync(path.join(require('os').tmpdir(), 'kiln-gpu-'));
    try {
      const file = path.join(dir, 'multi.onnx');
      fs.writeFileSync(file, multiIOModel());
      assert.deepEqual(await tensorRtProfiles(file, 16, [8]), {
        profileMinShapes: { x: [1, 3], idx: [1] },
        profileOptShapes: { x: [8, 3], idx: [8] },
        profileMaxShapes: { x: [16, 3], idx: [16] },
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is undefined when the model does not batch or its other dims are not fixed', async function () {
    assert.equal(await tensorRtProfiles(mlpModel(), 0, [16]), undefined);
    assert.equal(await tensorRtProfiles(symbolicDimsModel(), 8, []), undefined);
    const g = new GraphBuilder('symbolic_feature');
    const x = g.input('x', 'float32', ['N', 'F']);
    g.output(g.node('Relu', [x], { outputs: 'y' }), 'float32', ['N', 'F']);
    assert.equal(await tensorRtProfiles(g.build({ opset: 17 }), 8, []), undefined);
    const fixed = new GraphBuilder('fixed_batch');
    const f = fixed.input('x', 'float32', [4, 8]);
    fixed.output(fixed.node('Relu', [f], { outputs: 'y' }), 'float32', [4, 8]);
    assert.equal(await tensorRtProfiles(fixed.build({ opset: 17 }), 8, []), undefined);
  });

  it('the profiles it makes are valid tensorrt options', async function () {
    const profiles = await tensorRtProfiles(mlpModel(), 64, [16, 32]);
    assert.ok(profiles);
    assert.deepEqual(mapped({ name: 'tensorrt', ...profiles }), sorted([
      ['trt_profile_min_shapes', 'x:1x512'], ['trt_profile_opt_shapes', 'x:32x512'], ['trt_profile_max_shapes', 'x:64x512'],
    ]));
  });

  const profiles = {
    profileMinShapes: { x: [1, 512] },
    profileOptShapes: { x: [32, 512] },
    profileMaxShapes: { x: [64, 512] },
  };

  it('providersFor defaults to CUDA on the given device', function () {
    assert.deepEqual(providersFor(1, undefined, undefined), [{ name: 'cuda', deviceId: 1 }]);
    assert.deepEqual(providersFor(0, undefined, profiles), [{ name: 'cuda', deviceId: 0 }]);
  });

  it('providersFor aims each GPU provider at the device and gives TensorRT the profiles', function () {
    assert.deepEqual(providersFor(0, ['tensorrt', 'cpu'], profiles), [{ name: 'tensorrt', ...profiles, deviceId: 0 }, { name: 'cpu' }]);
    assert.deepEqual(providersFor(2, ['tensorrt', 'cuda', 'cpu'], undefined), [{ name: 'tensorrt', deviceId: 2 }, { name: 'cuda', deviceId: 2 }, { name: 'cpu' }]);
    const cuda = { name: 'cuda' as const, gpuMemLimit: 1 << 30, deviceId: 7 };
    const cpu = { name: 'cpu' as const };
    const out = providersFor(3, [cuda, cpu], profiles);
    assert.deepEqual(out, [{ name: 'cuda', gpuMemLimit: 1 << 30, deviceId: 3 }, { name: 'cpu' }]);
    assert.equal(out[1], cpu, 'the cpu spec is passed on unchanged');
    assert.equal(cuda.deviceId, 7, "the caller's spec is not modified");
    // what comes out is accepted by sessionConfig
    assert.deepEqual(sessionConfig({ providers: providersFor(1, ['tensorrt', 'cpu'], profiles) }).providers, [
      { name: 'tensorrt', options: [['device_id', '1'], ['trt_profile_min_shapes', 'x:1x512'], ['trt_profile_opt_shapes', 'x:32x512'], ['trt_profile_max_shapes', 'x:64x512']] },
      { name: 'cpu', options: [] },
    ]);
  });

  it("a TensorRT spec with its own profiles keeps them", function () {
    const own = {
      name: 'tensorrt' as const, fp16: true,
      profileMinShapes: { x: [2, 512] }, profileOptShapes: { x: [4, 512] }, profileMaxShapes: { x: [8, 512] },
    };
    assert.deepEqual(providersFor(1, [own], profiles), [{ ...own, deviceId: 1 }]);
    const partial = { name: 'tensorrt' as const, profileMinShapes: { x: [2, 512] } };
    // A partial set of its own is not completed from the batching profiles (sessionConfig then says so).
    assert.deepEqual(providersFor(0, [partial], profiles), [{ ...partial, deviceId: 0 }]);
    assertKilnError(thrown(() => sessionConfig({ providers: providersFor(0, [partial], profiles) })), 'E_INVALID_ARGUMENT', 'together');
  });
});

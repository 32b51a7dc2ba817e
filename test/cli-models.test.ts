// `kiln optimize`, `kiln quantize` and `kiln fp16` end to end: the compiled CLI run as a
// process on the sample models, the model it writes loaded and run against the original on
// the same input, its report, and its refusals (exit code, `kiln: CODE: message`, nothing
// written). Also the generated help and the refusal of unknown options by every command.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { optimize, Session, Tensor, type Feeds } from '../lib';
import { convModel, mlpModel, prng } from './fixtures/models';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

function kiln(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A seeded float32 input of `dims`. */
function input(dims: number[], seed: number): Tensor<'float32'> {
  const rand = prng(seed);
  return new Tensor('float32', Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, rand), dims);
}

/** Output `y` of `model` on `feeds`, as float32 (a float16 output widened). */
async function outputOf(model: string | Uint8Array, feeds: Feeds): Promise<Float32Array> {
  const session = await Session.create(model);
  try {
    const y = (await session.run(feeds)).y;
    return y.type === 'float16' ? Float32Array.from(y.data as Uint16Array, optimize.float16Value) : (y.data as Float32Array);
  } finally {
    await session.dispose();
  }
}

const maxAbsError = (a: Float32Array, b: Float32Array): number => a.reduce((m, x, i) => Math.max(m, Math.abs(x - b[i])), 0);

function cosine(a: Float32Array, b: Float32Array): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  a.forEach((x, i) => {
    ab += x * b[i];
    aa += x * x;
    bb += b[i] * b[i];
  });
  return ab / Math.sqrt(aa * bb);
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('kiln optimize, quantize and fp16 (the process)', function () {
  this.timeout(60_000);
  let dir: string;
  let mlp: string;
  let conv: string;
  const x = { mlp: input([3, 512], 11), conv: input([2, 3, 32, 32], 12) };

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cli-models-'));
    mlp = path.join(dir, 'mlp.onnx');
    conv = path.join(dir, 'conv.onnx');
    fs.writeFileSync(mlp, mlpModel());
    fs.writeFileSync(conv, convModel());
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('kiln --help lists the commands, kiln quantize --help its options; kiln bench refuses an unknown option', () => {
    const top = kiln('--help');
    assert.equal(top.status, 0, top.stderr);
    for (const command of ['info', 'bench', 'optimize', 'quantize', 'fp16', 'cache-tune', 'serve']) assert.match(top.stdout, new RegExp(`\\n  ${command} `));
    const help = kiln('quantize', '--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: kiln quantize \[options\] <IN.onnx>\n/);
    for (const option of ['-o, --output <OUT.onnx>', '--calibration <DATA>', '--method <METHOD>', '--percentile <P>', '--per-tensor', '--symmetric', '--op-types <LIST>',
      '--include <NODE,...>', '--exclude <NODE,...>', '--no-fuse', '--quantize-output-layer', '--tolerance <R>', '--tolerance-absolute <A>', '--metric <M>',
      '--eval <DATA>', '--floor <X>', '--no-floor', '--trt-table <FILE>', '--no-preprocess', '--external-data <BYTES>', '--dim <NAME=N>', '--calls <N>']) {
      assert.match(help.stdout, new RegExp(`\\n  ${escape(option)} `), option);
    }
    const bench = kiln('bench', '--bogus');
    assert.equal(bench.status, 1);
    assert.equal(bench.stderr, "kiln: E_INVALID_ARGUMENT: kiln bench: unknown option '--bogus' (see kiln bench --help)\n");
    assert.equal(bench.stdout, '', 'nothing was run');
  });

  it('optimize writes a model that gives the original outputs, and reports node counts, size, load and latency', async () => {
    const out = path.join(dir, 'conv.opt.onnx');
    const r = kiln('optimize', conv, '-o', out, '--calls', '5');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^kiln optimize: ${escape(conv)} -> ${escape(out)}, level extended \\(ONNX Runtime \\S+, CPU provider\\)\\n`));
    assert.match(r.stdout, /\n  nodes +before +after +change\n/);
    assert.match(r.stdout, /\n    total +\d+ +\d+ +[-+]?\d+\n/);
    assert.match(r.stdout, /\n  size +\S+ K?i?B +\S+ K?i?B +\d\.\d\dx\n/);
    assert.match(r.stdout, /\n  load +\d+\.\d ms +\d+\.\d ms /);
    assert.match(r.stdout, /\n  latency median \(5 runs\) /);
    assert.match(r.stdout, /\n  latency: batch-1 runs on random inputs/);
    const feeds = { x: x.conv };
    assert.ok(maxAbsError(await outputOf(conv, feeds), await outputOf(out, feeds)) < 1e-4);
  });

  it('quantize (dynamic) writes an INT8 model close to FP32, and reports the comparison, the check and the nodes', async () => {
    const out = path.join(dir, 'mlp.int8.onnx');
    const r = kiln('quantize', mlp, '-o', out, '--calls', '0');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^kiln quantize: ${escape(mlp)} -> ${escape(out)}, dynamic INT8 \\(weights int8, activations quantized at run time\\), per-channel weights\\n`));
    assert.match(r.stdout, /\n +FP32 +INT8 +change\n  size .*\n  accuracy against FP32 on 1 random sample\n  +top-1 agreement .*\n  +cosine similarity .*\n  +max abs error .*\n/);
    assert.match(r.stdout, new RegExp(`\\n  check: cosine similarity \\S+ against FP32 on one random input, x \\[1,512\\]: no real data given \\(--eval DATA\\) \\(at least 0\\.9 required\\): passed, ${escape(out)} written\\n`));
    assert.match(r.stdout, /\n  nodes: 2 quantized, 1 left in FP32\n  quantized: fc0, fc1\n  left in FP32:\n/);
    assert.doesNotMatch(r.stdout, /latency median/, '--calls 0 skips the timing');
    const feeds = { x: x.mlp };
    assert.ok(cosine(await outputOf(mlp, feeds), await outputOf(out, feeds)) > 0.99);
  });

  it('quantize (static) of a conv net with calibration data writes a QDQ model close to FP32', async () => {
    const data = path.join(dir, 'conv-calibration');
    fs.mkdirSync(data);
    for (let i = 0; i < 3; i++) optimize.writeNpy(path.join(data, `${i}.npy`), input([1, 3, 32, 32], 20 + i));
    const out = path.join(dir, 'conv.qdq.onnx');
    const r = kiln('quantize', conv, '-o', out, '--calibration', data, '--calls', '0');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /, static INT8 in QDQ form, minmax calibration on 3 samples, uint8 activations, per-channel weights\n/);
    assert.match(r.stdout, /\n  check: cosine similarity \S+ against FP32 on 3 calibration samples \(at least 0\.9 required\): passed/);
    assert.match(r.stdout, /\n  nodes: \d+ quantized/);
    const model = optimize.readModel(out);
    assert.ok(model.graph?.node?.some((n) => n.opType === 'QuantizeLinear'), 'QDQ nodes written');
    const feeds = { x: x.conv };
    assert.ok(cosine(await outputOf(conv, feeds), await outputOf(out, feeds)) > 0.98);
  });

  it('fp16 writes a float16 model within float16 error of FP32, with float32 or (--fp16-io) float16 inputs and outputs', async () => {
    const out = path.join(dir, 'conv.fp16.onnx');
    const r = kiln('fp16', conv, '-o', out, '--calls', '5');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^kiln fp16: ${escape(conv)} -> ${escape(out)}, inputs and outputs kept float32\\n`));
    assert.match(r.stdout, /\n  nodes in float16: +\d+\n  nodes kept float32: +\d+.*\n  weights converted: +6 .*\n  Casts inserted: +\d+\n/);
    assert.match(r.stdout, /\n +FP32 +FP16 +change\n  size .*\n  accuracy against FP32 on 1 random sample\n/);
    assert.match(r.stdout, /\n  latency median \(5 runs\) .*\n  latency p99 .*\n  latency: on x \[1,3,32,32\] \(random data, symbolic dims from --dim, else 1\)\n/);
    assert.match(r.stdout, new RegExp(`\\n  check: cosine similarity \\S+ against FP32 on one random input, x \\[1,3,32,32\\]: .*: passed, ${escape(out)} written\\n`));
    const feeds = { x: x.conv };
    const reference = await outputOf(conv, feeds);
    const scale = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    assert.ok(maxAbsError(reference, await outputOf(out, feeds)) < 2e-3 * scale);

    const io = path.join(dir, 'conv.fp16-io.onnx');
    const half = kiln('fp16', conv, '-o', io, '--fp16-io', '--calls', '0');
    assert.equal(half.status, 0, half.stderr);
    assert.match(half.stdout, /, float16 inputs and outputs\n/);
    const session = await Session.create(io);
    assert.equal(session.inputs[0].type, 'float16');
    await session.dispose();
    const halfFeeds = { x: new Tensor('float16', optimize.toFloat16Array(x.conv.data).data, x.conv.dims) };
    assert.ok(maxAbsError(reference, await outputOf(io, halfFeeds)) < 5e-3 * scale);
  });

  it('a model below the floor is not written: E_ACCURACY, exit 1 (fp16, and dynamic quantize)', () => {
    const out = path.join(dir, 'below.onnx');
    const half = kiln('fp16', mlp, '-o', out, '--metric', 'max-error', '--floor', '1e-12', '--calls', '0');
    assert.equal(half.status, 1, half.stdout);
    assert.match(half.stdout, new RegExp(`\\n  check: max abs error \\S+ against FP32 on one random input, x \\[1,512\\]: .* \\(at most 1e-12 required\\): FAILED, ${escape(out)} not written\\n`));
    assert.match(half.stderr, new RegExp(`^kiln: E_ACCURACY: the float16 model's max abs error against FP32 is \\S+ on one random input, .*, above the floor 1e-12: ${escape(out)} not written \\(--block and --block-nodes keep ops in float32; `));
    assert.doesNotMatch(half.stdout, /latency median/, 'a refused model is not timed');
    assert.equal(fs.existsSync(out), false);
    const int8 = kiln('quantize', mlp, '-o', out, '--metric', 'max-error', '--floor', '1e-9', '--calls', '0');
    assert.equal(int8.status, 1, int8.stdout);
    assert.match(int8.stderr, /^kiln: E_ACCURACY: the quantized model's max abs error against FP32 is \S+ on one random input, .*, above the floor 1e-9: /);
    assert.equal(fs.existsSync(out), false);
  });

  it('refuses a missing model, an unknown option and bad values before any work, with one Kiln code', () => {
    const out = path.join(dir, 'never.onnx');
    const refused = (args: string[], stderr: string): void => {
      const r = kiln(...args);
      assert.deepEqual({ status: r.status, stderr: r.stderr, stdout: r.stdout }, { status: 1, stderr: `kiln: ${stderr}\n`, stdout: '' }, args.join(' '));
    };
    for (const command of ['optimize', 'quantize', 'fp16']) {
      refused([command, path.join(dir, 'missing.onnx'), '-o', out], `E_NOT_FOUND: no such model file: ${path.join(dir, 'missing.onnx')}`);
      refused([command, mlp, '-o', out, '--bogus'], `E_INVALID_ARGUMENT: kiln ${command}: unknown option '--bogus' (see kiln ${command} --help)`);
      refused([command, mlp, '-o', out, '--calls', '-1'], 'E_INVALID_ARGUMENT: --calls must be an integer >= 0, received -1');
    }
    refused(['optimize', mlp], "E_INVALID_ARGUMENT: kiln optimize: required option '-o, --output <OUT.onnx>' not specified (see kiln optimize --help)");
    refused(['optimize', mlp, '-o', out, '--level', 'fast'], 'E_INVALID_ARGUMENT: --level must be basic, extended or all, received fast');
    refused(['optimize', mlp, '-o', out, '--external-data', '1.5'], 'E_INVALID_ARGUMENT: --external-data must be a size in bytes, received 1.5');
    refused(['quantize', mlp, '-o', out, '--percentile', '0'], 'E_INVALID_ARGUMENT: --percentile must be a percentage in (0, 100], received 0');
    refused(['quantize', mlp, '-o', out, '--tolerance', '1'], 'E_INVALID_ARGUMENT: --tolerance must be a share between 0 and 1 (0.01: 1%), received 1');
    refused(['quantize', mlp, '-o', out, '--calls', '1', '--calls', '2'], 'E_INVALID_ARGUMENT: --calls is given more than once');
    refused(['fp16', mlp, '-o', out, '--floor', 'high'], 'E_INVALID_ARGUMENT: --floor must be a number >= 0, received high');
    refused(['fp16', mlp, '-o', out, '--dim', 'N=0'], 'E_INVALID_ARGUMENT: --dim takes NAME=SIZE (a symbolic dim of an input and its size >= 1), received N=0');
    refused(['fp16', mlp, '-o', out, '--keep-io', '--fp16-io'], 'E_INVALID_ARGUMENT: give --keep-io or --fp16-io, not both');
    assert.equal(fs.existsSync(out), false);
  });
});

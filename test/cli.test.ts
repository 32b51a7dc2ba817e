// The `kiln` command line: usage, unknown commands and options, and output paths checked
// before any work, with failures told as `kiln: CODE: message`.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeNpy } from '../lib/optimize';
import { Tensor } from '../lib';
import { mlpModel, prng } from '../lib/samples';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

function kiln(...args: string[]): { status: number | null; stdout: string; stderr: string; ms: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t };
}

describe('kiln command line', function () {
  this.timeout(120_000);
  let dir: string;
  let model: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cli-'));
    model = path.join(dir, 'mlp.onnx');
    fs.writeFileSync(model, mlpModel());
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('kiln CMD --help prints the usage and exits 0', () => {
    for (const command of ['quantize', 'fp16', 'optimize', 'bench']) {
      const r = kiln(command, '--help');
      assert.equal(r.status, 0, `${command}: ${r.stderr}`);
      assert.match(r.stdout, /^usage:/);
      assert.match(r.stdout, new RegExp(`kiln ${command} `));
      assert.equal(r.stderr, '');
    }
    assert.equal(kiln('help').status, 0);
  });

  it('an unknown command says so on stderr, prints the usage and exits 2', () => {
    const r = kiln('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^kiln: unknown command "frobnicate"; the commands are info, bench, optimize, quantize, fp16, help\n$/);
    assert.match(r.stdout, /^usage:/);
  });

  it('an output folder that does not exist is refused before any work, with one Kiln code', () => {
    const r = kiln('quantize', model, '-o', path.join(dir, 'nowhere', 'y.onnx'));
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `kiln: E_NOT_FOUND: output ${path.join(dir, 'nowhere', 'y.onnx')}: the folder ${path.join(dir, 'nowhere')} does not exist\n`);
    assert.equal(r.stdout, '', 'nothing was quantized or timed');
    assert.equal(fs.existsSync(path.join(dir, 'nowhere')), false);
  });

  it('an output that is a folder is refused before any work', () => {
    const r = kiln('fp16', model, '-o', dir);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `kiln: E_INVALID_ARGUMENT: output ${dir} is a folder, expected a file name\n`);
  });

  it('a missing model file is E_NOT_FOUND', () => {
    const r = kiln('optimize', path.join(dir, 'missing.onnx'), '-o', path.join(dir, 'o.onnx'));
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `kiln: E_NOT_FOUND: no such model file: ${path.join(dir, 'missing.onnx')}\n`);
  });

  it('an unknown option names the command', () => {
    const r = kiln('quantize', model, '-o', path.join(dir, 'q.onnx'), '--frob');
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'kiln: E_INVALID_ARGUMENT: kiln quantize: unknown option --frob (see kiln help)\n');
  });

  it('the quantize summary lists the quantized nodes by name, for --include and --exclude', () => {
    const out = path.join(dir, 'q.onnx');
    const r = kiln('quantize', model, '-o', out, '--calls', '0');
    assert.equal(r.status, 0, r.stderr);
    const listed = /\n  quantized: (.+)\n/.exec(r.stdout);
    assert.ok(listed, r.stdout);
    const names = listed[1].split(', ');
    assert.equal(names.length, Number(/nodes: (\d+) quantized/.exec(r.stdout)?.[1]));
    // A listed name is accepted by --exclude, which then leaves that node in FP32.
    const again = kiln('quantize', model, '-o', out, '--calls', '0', '--exclude', names[0]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, new RegExp(`left in FP32:\\n(.*\\n)*\\s+${names[0].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s`));
  });

  it('calibration progress names its passes, each counted over the samples', () => {
    const data = path.join(dir, 'calibration');
    fs.mkdirSync(data);
    const rand = prng(3);
    for (let i = 0; i < 3; i++) writeNpy(path.join(data, `${i}.npy`), new Tensor('float32', Float32Array.from({ length: 512 }, rand), [1, 512]));
    const r = kiln('quantize', model, '-o', path.join(dir, 's.onnx'), '--calibration', data, '--method', 'percentile', '--calls', '0');
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stderr, /  calibration: ranges 100% \(3\/3\)\n/);
    assert.match(r.stderr, /  calibration: histograms 100% \(3\/3\)\n/);
    assert.doesNotMatch(r.stderr, /\/6\)/);
  });
});

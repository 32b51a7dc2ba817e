// `kiln cache-tune` end to end: the compiled CLI run as a process on an identity model and a
// folder of .npy samples in clusters; the threshold it prints must separate the clusters.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { writeNpy } from '../lib/optimize/data';
import { Tensor } from '../lib';
import { GraphBuilder } from '../lib/onnx/builder';
import { prng } from './fixtures/models';

const CLI = path.join(__dirname, '..', 'lib', 'cli', 'kiln.js');

function kiln(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** x: float32 ['N',16] -> y = Identity(x): the outputs agree exactly when the inputs do. */
function identity16(): Uint8Array {
  const g = new GraphBuilder('identity16');
  g.output(g.node('Identity', [g.input('x', 'float32', ['N', 16])], { outputs: 'y' }), 'float32', ['N', 16]);
  return g.build({ opset: 17 });
}

const unit = (v: Float32Array): Float32Array => {
  const n = Math.hypot(...v);
  return v.map((x) => x / n);
};
const dot = (a: Float32Array, b: Float32Array): number => a.reduce((s, x, i) => s + x * b[i], 0);

describe('kiln cache-tune', function () {
  this.timeout(20_000);
  let dir: string;
  let model: string;
  let samples: string;
  let vectors: { v: Float32Array; cluster: number }[];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-cache-tune-'));
    model = path.join(dir, 'identity.onnx');
    fs.writeFileSync(model, identity16());
    samples = path.join(dir, 'samples');
    fs.mkdirSync(samples);
    // 3 clusters of 5 around orthogonal centres (one-hot in 16 dims), 3% noise: within a
    // cluster inputs (and, through the identity, outputs) score cosine > 0.99, across < 0.1.
    const rand = prng(7);
    vectors = [];
    for (let c = 0; c < 3; c++) {
      for (let k = 0; k < 5; k++) {
        const v = Float32Array.from({ length: 16 }, (_, i) => (i === c ? 1 : 0) + 0.03 * (rand() - 0.5));
        vectors.push({ v, cluster: c });
        writeNpy(path.join(samples, `s${c}_${k}.npy`), new Tensor('float32', v, [1, 16]));
      }
    }
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prints a threshold between the across-cluster and within-cluster similarities', () => {
    const r = kiln('cache-tune', model, '--samples', samples, '--judge', 'cosine', '--tolerance', '0.05', '--target-false-hit-rate', '0');
    assert.equal(r.status, 0, r.stderr);
    const m = /threshold:\s+([-\d.e]+)/.exec(r.stdout);
    assert.ok(m, r.stdout);
    const threshold = Number(m[1]);
    let within = 1;
    let across = -1;
    for (let i = 0; i < vectors.length; i++) {
      for (let j = i + 1; j < vectors.length; j++) {
        const s = dot(unit(vectors[i].v), unit(vectors[j].v));
        if (vectors[i].cluster === vectors[j].cluster) within = Math.min(within, s);
        else across = Math.max(across, s);
      }
    }
    assert.ok(across < 0.1 && within > 0.99, `constructed: across ${across}, within ${within}`);
    assert.ok(threshold > across && threshold < within, `threshold ${threshold} should lie in (${across}, ${within})`);
    assert.match(r.stdout, /false-hit rate: 0\.00%/);
    // 30 of the 105 pairs are within a cluster: all of them hit.
    assert.match(r.stdout, /hit rate:\s+28\.57%/);
    assert.match(r.stdout, /samples:\s+15\n/);
    assert.match(r.stdout, new RegExp(`semanticCache: \\{ threshold: ${m[1].replace('.', '\\.')}, metric: 'cosine', embedding: 'input'`));
  });

  it('refuses a model file that is not there with E_NOT_FOUND', () => {
    const r = kiln('cache-tune', path.join(dir, 'missing.onnx'), '--samples', samples);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^kiln: E_NOT_FOUND: no such model file/);
  });

  it('refuses fewer than 2 samples with E_INVALID_ARGUMENT', () => {
    const one = path.join(dir, 'one');
    fs.mkdirSync(one);
    fs.copyFileSync(path.join(samples, 's0_0.npy'), path.join(one, 's0_0.npy'));
    const r = kiln('cache-tune', model, '--samples', one);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /^kiln: E_INVALID_ARGUMENT: cache-tune needs at least 2 samples/);
  });
});

// The published package: `npm pack` with the prebuilds, installed into an empty folder with
// no compiler, no ONNX Runtime headers and nothing to download beyond the npm registry,
// then an inference through `kiln` and through `kiln/ort`.
import { strict as assert } from 'assert';
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { addModel } from './fixtures/models';
import { KilnError } from '../lib';

const ROOT = path.resolve(__dirname, '..', '..');
const TARGET = `${process.platform}-${process.arch}`;
const PREBUILDS = path.join(ROOT, 'prebuilds', TARGET);
// npm as installed with this node (its own cli, run by this node: nothing from PATH).
const NPM_CLI = path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js');

/**
 * An environment in which nothing can be compiled or fetched: no compilers (CC/CXX fail),
 * no node-gyp, no ONNX Runtime headers, no onnxruntime-node download. PATH holds only
 * `node` and `sh` (npm prepends its own helpers).
 */
function bareEnv(bin: string, home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: bin,
    HOME: home,
    CC: '/bin/false',
    CXX: '/bin/false',
    npm_config_node_gyp: '/nonexistent/node-gyp.js',
    ONNXRUNTIME_ROOT: '/nonexistent',
    npm_config_cache: process.env.npm_config_cache ?? path.join(os.homedir(), '.npm'),
    npm_config_prefer_offline: 'true',
    npm_config_audit: 'false',
    npm_config_fund: 'false',
    npm_config_update_notifier: 'false',
  };
  return env;
}

function npm(args: string[], cwd: string, env: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [NPM_CLI, ...args], { cwd, env, encoding: 'utf8', timeout: 300_000 });
}

const CONSUMER = `
const assert = require('assert');
(async () => {
  const kiln = require('kiln');
  const session = await kiln.Session.create('add.onnx');
  const a = Float32Array.of(1, 2, 3, 4), b = Float32Array.of(10, 20, 30, 40);
  const { y } = await session.run({ a: { type: 'float32', data: a, dims: [1, 4] }, b: { type: 'float32', data: b, dims: [1, 4] } });
  assert.deepStrictEqual([...y.data], [11, 22, 33, 44]);
  await session.dispose();
  const ort = require('kiln/ort');
  const s2 = await ort.InferenceSession.create('add.onnx');
  const out = await s2.run({ a: new ort.Tensor('float32', a, [1, 4]), b: new ort.Tensor('float32', b, [1, 4]) });
  assert.deepStrictEqual([...out.y.data], [11, 22, 33, 44]);
  await s2.release();
  console.log(JSON.stringify({ ok: true, library: kiln.runtime().library, addon: require.resolve('kiln') }));
})().catch((e) => { console.error(e && e.stack || e); process.exit(1); });
`;

describe('npm pack: the published package', function () {
  this.timeout(600_000);
  let work: string;
  let tarball: string;
  let bin: string;
  let files: string[];

  before(() => {
    if (!fs.existsSync(PREBUILDS) || !fs.readdirSync(PREBUILDS).some((f) => f.endsWith('.node'))) {
      execFileSync(process.execPath, [NPM_CLI, 'run', 'prebuild'], { cwd: ROOT, stdio: 'pipe' });
    }
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-pack-'));
    // dist/ is current (npm test builds it first): pack without re-running prepare.
    const out = execFileSync(process.execPath, [NPM_CLI, 'pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, encoding: 'utf8' });
    const info = JSON.parse(out)[0] as { filename: string; files: { path: string }[] };
    tarball = path.join(work, info.filename);
    files = info.files.map((f) => f.path);
    bin = path.join(work, 'bin');
    fs.mkdirSync(bin);
    fs.symlinkSync(process.execPath, path.join(bin, 'node'));
    fs.symlinkSync('/bin/sh', path.join(bin, 'sh')); // npm runs lifecycle scripts through sh
  });

  after(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('contains the prebuilt addon, the ONNX Runtime library and the compiled API, and no tests or build outputs', () => {
    for (const f of [`prebuilds/${TARGET}/kiln.node`, `prebuilds/${TARGET}/libonnxruntime.so.1`, `prebuilds/${TARGET}/onnxruntime.json`, 'dist/lib/index.js', 'dist/lib/ort.js', 'dist/lib/cli/kiln.js', 'package.json']) {
      assert.ok(files.includes(f), `the tarball lacks ${f}`);
    }
    for (const f of files) {
      assert.ok(!/^(dist\/test|dist\/bench|test|bench|build|build-cmake|third_party|node_modules)\//.test(f), `the tarball holds ${f}`);
    }
  });

  it('installs into an empty folder without compilers, headers or downloads, and runs kiln and kiln/ort', () => {
    const app = path.join(work, 'app');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
    fs.writeFileSync(path.join(app, 'add.onnx'), addModel());
    fs.writeFileSync(path.join(app, 'main.js'), CONSUMER);
    const env = bareEnv(bin, path.join(work, 'home'));
    const install = npm(['install', tarball], app, env);
    assert.equal(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
    const kilnDir = path.join(app, 'node_modules', 'kiln');
    assert.ok(!fs.existsSync(path.join(kilnDir, 'build')), 'the install compiled the addon');
    assert.ok(!fs.existsSync(path.join(app, 'node_modules', 'onnxruntime-node')), 'onnxruntime-node (whose postinstall downloads) was installed');
    const run = spawnSync(process.execPath, ['main.js'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(run.status, 0, `the consumer failed:\n${run.stdout}\n${run.stderr}`);
    const result = JSON.parse(run.stdout.trim().split('\n').pop() as string) as { ok: boolean; library: string };
    assert.equal(result.ok, true);
    assert.equal(result.library, path.join(kilnDir, 'prebuilds', TARGET, 'libonnxruntime.so.1'));
    // The CLI's main job works from the installed package too.
    const bench = spawnSync(path.join(app, 'node_modules', '.bin', 'kiln'), ['bench', 'add', '-p', '200', '--max-trials', '3'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    assert.equal(bench.status, 0, `kiln bench failed:\n${bench.stdout}\n${bench.stderr}`);
    assert.match(bench.stdout, /\n  concurrency 1 +[0-9.]+ /, 'a step measured: its throughput in infer/s');
    // Without the library (and no onnxruntime-node, no KILN_ORT_LIBRARY): the error names
    // every place looked at and what to do.
    fs.rmSync(path.join(kilnDir, 'prebuilds', TARGET, 'libonnxruntime.so.1'));
    const none = spawnSync(process.execPath, ['main.js'], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(none.status, 0);
    assert.match(none.stderr, /E_PROVIDER_UNAVAILABLE|no ONNX Runtime library found/);
    assert.match(none.stderr, /no ONNX Runtime library found: KILN_ORT_LIBRARY is not set, this installation has no prebuilt library for linux-x64/);
    assert.match(none.stderr, /install onnxruntime-node \(npm install onnxruntime-node --onnxruntime-node-install=skip\) or set KILN_ORT_LIBRARY/);
  });

  it('without a matching prebuild, the same bare install fails (the environment really cannot compile), and loading says why and what to do', () => {
    const app = path.join(work, 'app-noprebuild');
    fs.mkdirSync(app);
    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'app2', version: '1.0.0', private: true }));
    const env = bareEnv(bin, path.join(work, 'home'));
    // Installed without scripts, then its prebuild removed: what a user on another platform has.
    const install = npm(['install', '--ignore-scripts', tarball], app, env);
    assert.equal(install.status, 0, `npm install failed:\n${install.stdout}\n${install.stderr}`);
    const kilnDir = path.join(app, 'node_modules', 'kiln');
    fs.rmSync(path.join(kilnDir, 'prebuilds', TARGET, 'kiln.node'));
    const rebuild = npm(['rebuild', 'kiln'], app, env);
    assert.notEqual(rebuild.status, 0, 'a rebuild succeeded in an environment meant to have no compiler');
    const load = spawnSync(process.execPath, ['-e', "require('kiln').runtime()"], { cwd: app, env, encoding: 'utf8', timeout: 60_000 });
    assert.notEqual(load.status, 0);
    assert.match(load.stderr, /kiln: no prebuilt binary for linux-x64/);
    assert.match(load.stderr, /fix: build from source/);
  });
});

describe('addon load errors say why and what to do', () => {
  const cases: [string, string, RegExp, RegExp][] = [
    ['no prebuild and no local build', `No native build was found for platform=linux arch=x64 runtime=node abi=115 uv=1 libc=glibc node=20.20.2\n    loaded from: /app/node_modules/kiln`, /no prebuilt binary for/, /fix: build from source: install a C\+\+17 compiler and python3, then run `npm rebuild kiln`/],
    ['a C library older than the build', "/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.30' not found (required by /app/node_modules/kiln/prebuilds/linux-x64/kiln.node)", /C\/C\+\+ runtime of this system is older/, /fix: build from source on this system/],
    ['a binary for another platform', '/app/node_modules/kiln/prebuilds/linux-x64/kiln.node: invalid ELF header', /does not match this platform or a library it needs is missing/, /fix: reinstall kiln on this machine/],
  ];
  for (const [what, message, why, fix] of cases) {
    it(`${what}: E_PROVIDER_UNAVAILABLE with the cause, the original message and the fix`, () => {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      const { explainLoadError } = require('../lib/binding') as typeof import('../lib/binding');
      const e = explainLoadError(new Error(message));
      assert.ok(e instanceof KilnError, 'a KilnError, as every failure');
      assert.equal(e.code, 'E_PROVIDER_UNAVAILABLE');
      assert.match(e.message, /^kiln: /);
      assert.match(e.message, why);
      assert.match(e.message, fix);
      assert.ok(e.message.includes(message), 'the original message is kept');
    });
  }
});

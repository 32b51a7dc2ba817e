#!/usr/bin/env node
'use strict';
// Builds the native core, its tests and the harness with CMake and runs ctest. The tests
// get the ONNX Runtime library Kiln loads by default and models written by the project's
// own ONNX writer (compiled to dist/ by `npm run build:ts`).
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const buildDir = path.resolve(root, process.env.KILN_CMAKE_BUILD_DIR || 'build-cmake');
const modelsDir = path.join(buildDir, 'models');

function writeModels() {
  const fixtures = require(path.join(root, 'dist', 'test', 'fixtures', 'models.js'));
  fs.mkdirSync(modelsDir, { recursive: true });
  const models = {
    'add.onnx': fixtures.addModel(),
    'mlp.onnx': fixtures.mlpModel(),
    'conv.onnx': fixtures.convModel(),
    'big_output.onnx': fixtures.bigOutputModel(),
    'identity_string.onnx': fixtures.identityModel('string'),
  };
  for (const [name, bytes] of Object.entries(models)) fs.writeFileSync(path.join(modelsDir, name), bytes);
}

function run(cmd, args, env) {
  execFileSync(cmd, args, { stdio: 'inherit', cwd: root, env: { ...process.env, ...env } });
}

function main() {
  const { bundledLibrary } = require(path.join(root, 'dist', 'lib', 'runtime.js'));
  const library = process.env.KILN_ORT_LIBRARY || bundledLibrary();
  if (!library) throw new Error('no ONNX Runtime library: install onnxruntime-node or set KILN_ORT_LIBRARY');
  writeModels();
  const extra = process.env.KILN_SANITIZE ? ['-DKILN_SANITIZE=ON', '-DCMAKE_BUILD_TYPE=Debug'] : [];
  run('cmake', ['-S', '.', '-B', buildDir, ...extra]);
  run('cmake', ['--build', buildDir, '-j', String(Math.max(1, require('os').availableParallelism?.() ?? 2))]);
  run('ctest', ['--test-dir', buildDir, '--output-on-failure'], { KILN_ORT_LIBRARY: library, KILN_TEST_MODELS: modelsDir });
}

try {
  main();
} catch (e) {
  process.stderr.write(`native tests failed: ${e.message}\n`);
  process.exit(1);
}

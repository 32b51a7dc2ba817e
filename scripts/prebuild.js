#!/usr/bin/env node
'use strict';
// `npm run prebuild`: the N-API prebuild for this platform (prebuildify, under
// prebuilds/<platform>-<arch>/) and, next to it, the ONNX Runtime library Kiln loads by
// default, taken from the onnxruntime-node package (MIT licensed, as ONNX Runtime is). With
// both in the packed tarball, installing Kiln needs no compiler, no ONNX Runtime headers and
// no download: onnxruntime-node itself is not a dependency, because its postinstall fetches
// CUDA libraries from NuGet on linux-x64.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');

const root = path.resolve(__dirname, '..');
const target = `${process.platform}-${process.arch}`;
const dir = path.join(root, 'prebuilds', target);

function ortLibrary() {
  const pkg = require.resolve('onnxruntime-node/package.json', { paths: [root] });
  const version = require(pkg).version;
  const bin = path.join(path.dirname(pkg), 'bin', 'napi-v6', process.platform, process.arch);
  const name = fs.readdirSync(bin).find((n) => /^libonnxruntime\.so\.\d+$/.test(n) || /^libonnxruntime\.\d[\d.]*\.dylib$/.test(n) || n === 'onnxruntime.dll');
  if (!name) throw new Error(`onnxruntime-node ${version} has no ONNX Runtime library for ${target}`);
  return { file: path.join(bin, name), name, version };
}

function main() {
  const ort = ortLibrary();
  execFileSync(process.execPath, [require.resolve('prebuildify/bin.js', { paths: [root] }), '--napi', '--strip'], { cwd: root, stdio: 'inherit' });
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(ort.file, path.join(dir, ort.name));
  const note = {
    library: ort.name,
    version: ort.version,
    source: `onnxruntime-node@${ort.version} (bin/napi-v6/${process.platform}/${process.arch}/${ort.name})`,
    license: 'MIT, Copyright (c) Microsoft Corporation (https://github.com/microsoft/onnxruntime/blob/main/LICENSE)',
  };
  fs.writeFileSync(path.join(dir, 'onnxruntime.json'), JSON.stringify(note, null, 2) + '\n');
  const files = fs.readdirSync(dir).map((f) => `${f} (${(fs.statSync(path.join(dir, f)).size / 2 ** 20).toFixed(1)} MiB)`);
  process.stdout.write(`prebuilds/${target}: ${files.join(', ')}\n`);
}

try {
  main();
} catch (e) {
  process.stderr.write(`prebuild failed: ${e.message}\n`);
  process.exit(1);
}

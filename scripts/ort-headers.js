#!/usr/bin/env node
'use strict';
// Finds the ONNX Runtime C headers the addon compiles against and prints their folder.
// Order: $ONNXRUNTIME_ROOT/include[/onnxruntime], /usr/include/onnxruntime, then
// third_party/onnxruntime/include, filled on demand from Debian's libonnxruntime-dev .deb
// (headers only; the package is never installed and the host's apt state is untouched).
const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const HEADER = 'onnxruntime_c_api.h';
const SUITE = process.env.KILN_ORT_DEB_SUITE || 'trixie';
const MIRROR = process.env.KILN_DEBIAN_MIRROR || 'http://deb.debian.org/debian';
const root = path.resolve(__dirname, '..');
const vendored = path.join(root, 'third_party', 'onnxruntime', 'include');

function hasHeader(dir) {
  return fs.existsSync(path.join(dir, HEADER));
}

function candidates() {
  const out = [];
  if (process.env.ONNXRUNTIME_ROOT) {
    const r = process.env.ONNXRUNTIME_ROOT;
    out.push(path.join(r, 'include', 'onnxruntime'), path.join(r, 'include'), r);
  }
  out.push('/usr/include/onnxruntime', vendored);
  return out;
}

function fetchFromDebian() {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-ort-deb-'));
  try {
    const state = path.join(work, 'state');
    const cache = path.join(work, 'cache');
    for (const d of [state, path.join(state, 'lists', 'partial'), path.join(cache, 'archives', 'partial')]) {
      fs.mkdirSync(d, { recursive: true });
    }
    fs.writeFileSync(path.join(state, 'status'), '');
    const list = path.join(work, 'sources.list');
    fs.writeFileSync(list, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${MIRROR} ${SUITE} main\n`);
    const apt = [
      '-o', `Dir::Etc::SourceList=${list}`,
      '-o', 'Dir::Etc::SourceParts=-',
      '-o', `Dir::State=${state}`,
      '-o', `Dir::State::status=${path.join(state, 'status')}`,
      '-o', `Dir::Cache=${cache}`,
      '-o', 'APT::Architecture=amd64',
      '-o', 'Debug::NoLocking=1',
    ];
    process.stderr.write(`kiln: fetching ONNX Runtime headers (libonnxruntime-dev from Debian ${SUITE})\n`);
    execFileSync('apt-get', [...apt, 'update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('apt-get', [...apt, 'download', '-qq', 'libonnxruntime-dev'], { cwd: work, stdio: ['ignore', 'ignore', 'inherit'] });
    const deb = fs.readdirSync(work).find((f) => f.startsWith('libonnxruntime-dev') && f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download produced no libonnxruntime-dev .deb');
    const ex = path.join(work, 'x');
    execFileSync('dpkg', ['-x', path.join(work, deb), ex]);
    const inc = path.join(ex, 'usr', 'include', 'onnxruntime');
    if (!hasHeader(inc)) throw new Error(`${deb} holds no ${HEADER}`);
    fs.rmSync(vendored, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(vendored), { recursive: true });
    fs.cpSync(inc, vendored, { recursive: true });
    fs.writeFileSync(path.join(path.dirname(vendored), 'SOURCE'), `${deb} (Debian ${SUITE}), headers only\n`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

function main() {
  let dir = candidates().find(hasHeader);
  if (!dir) {
    try {
      fetchFromDebian();
    } catch (e) {
      process.stderr.write(
        `kiln: no ONNX Runtime C headers found and fetching them failed: ${e.message}\n` +
          '  set ONNXRUNTIME_ROOT to an ONNX Runtime release folder (with include/), or install\n' +
          '  Debian/Ubuntu libonnxruntime-dev, or install a prebuilt kiln that needs no headers.\n',
      );
      process.exit(1);
    }
    dir = vendored;
  }
  process.stdout.write(dir + '\n');
}

main();

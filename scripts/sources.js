#!/usr/bin/env node
'use strict';
// Prints the sources listed in the given files (one path per line), for binding.gyp; CMake
// reads the same lists, so gyp and CMake build from one source list.
const fs = require('fs');
const path = require('path');
const root = path.resolve(__dirname, '..');
const out = [];
for (const list of process.argv.slice(2)) {
  for (const line of fs.readFileSync(path.join(root, list), 'utf8').split('\n')) {
    const s = line.trim();
    if (s && !s.startsWith('#')) out.push(s);
  }
}
process.stdout.write(out.join(' ') + '\n');

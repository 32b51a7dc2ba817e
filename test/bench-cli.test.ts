// The bench scripts' command lines (bench/cli.ts): --help lists the options, and a bad command
// line exits 2 with commander's message before any benchmark starts.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';

const BENCH = path.join(__dirname, '..', 'bench');

function bench(script: string, ...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(BENCH, `${script}.js`), ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const SCRIPTS: Readonly<Record<string, readonly string[]>> = {
  fuzz: ['--seconds <s>', '--seed <n>', '--target <name>', '--json <file>', '--iteration <i>', '--skip <families>', '--verbose'],
  load: ['--seconds <s>', '--only <names>', '--callers <list>', '--intra <n>', '--open-seconds <s>', '--tune', '--adaptive', '--ort-defaults'],
  soak: ['--inferences <n>', '--sessions <n>', '--models <n>', '--slices <n>', '--warmup <fraction>', '--json <file>'],
};

describe('bench command lines', function () {
  this.timeout(60_000);

  for (const [script, options] of Object.entries(SCRIPTS)) {
    it(`${script} --help lists its options and exits 0`, () => {
      const r = bench(script, '--help');
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^Usage: node dist/bench/${script}\\.js \\[options\\]`));
      for (const option of options) assert.ok(r.stdout.includes(option), `${script} --help does not list ${option}:\n${r.stdout}`);
      assert.equal(r.stderr, '');
    });

    it(`${script} refuses an unknown option with exit code 2`, () => {
      const r = bench(script, '--bogus');
      assert.equal(r.status, 2, r.stdout);
      assert.equal(r.stderr, "error: unknown option '--bogus'\n");
      assert.equal(r.stdout, '');
    });
  }

  it('a value out of range exits 2 and names the option', () => {
    const r = bench('fuzz', '--seconds', '-1');
    assert.equal(r.status, 2);
    assert.equal(r.stderr, "error: option '--seconds <s>' argument '-1' is invalid. Expected a number >= 0.\n");
    const target = bench('fuzz', '--target', 'nope');
    assert.equal(target.status, 2);
    assert.match(target.stderr, /^error: option '--target <name>' argument 'nope' is invalid\. Allowed choices are load, feed, batch, http, all\.\n$/);
  });
});

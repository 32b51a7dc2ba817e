// The command line's progress report: a bar per stage on a terminal, a line every 10%
// elsewhere; a stage that completes before its total (tuning's is an upper bound) shown as done.
import { strict as assert } from 'assert';
import { progressReporter } from '../lib/cli/progress';

/** A stream that records what is written to it, a terminal or not. */
function recorder(isTTY: boolean): { stream: NodeJS.WritableStream & { isTTY: boolean; columns: number }; text(): string } {
  let written = '';
  const stream = { isTTY, columns: 120, write: (s: string) => ((written += s), true) };
  return { stream: stream as unknown as NodeJS.WritableStream & { isTTY: boolean; columns: number }, text: () => written };
}

// What a terminal shows once cursor movements and line clearing are applied, line by line.
const shown = (text: string): string[] =>
  text.replace(/\x1b\[\?\d+[hl]|\x1b[78]|\x1b\[0K/g, '').split('\n').map((line) => line.split('\x1b[1G').pop() as string).filter((line) => line !== '');

describe('kiln progress', () => {
  it('on a terminal: one bar per stage, redrawn in place, ending at done/total', () => {
    const out = recorder(true);
    const progress = progressReporter(out.stream);
    for (let i = 1; i <= 3; i++) progress.update('calibration: ranges', i, 3);
    for (let i = 1; i <= 4; i++) progress.update('tuning', i, 10);
    progress.end(true);
    assert.deepEqual(shown(out.text()), [
      `  ${'calibration: ranges'.padEnd(24)} [${'#'.repeat(30)}] 100% (3/3)`,
      `  ${'tuning'.padEnd(24)} [${'#'.repeat(30)}] 100% (4/4)`,
    ]);
    assert.match(out.text(), /\x1b\[1G {2}calibration: ranges +\[#{10}\.{20}\] 33% \(1\/3\)/, 'the first update is drawn');
  });

  it('elsewhere: a line every 10%, and a stage that ends early says so; a failed one does not', () => {
    const out = recorder(false);
    const progress = progressReporter(out.stream);
    for (let i = 1; i <= 20; i++) progress.update('calibration: histograms', i, 20);
    for (let i = 1; i <= 3; i++) progress.update('tuning', i, 10);
    progress.end(true);
    progress.update('calibration: ranges', 1, 20);
    progress.end(false);
    assert.equal(out.text(), [
      ...[1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20].map((i) => `  calibration: histograms ${i * 5}% (${i}/20)`),
      '  tuning 10% (1/10)', '  tuning 20% (2/10)', '  tuning 30% (3/10)', '  tuning done after 3 of at most 10',
      '  calibration: ranges 5% (1/20)', '',
    ].join('\n'));
  });
});

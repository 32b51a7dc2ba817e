import { strict as assert } from 'assert';
import { INLINE_MAX_US, InlinePolicy } from '../lib/inline';

/** A policy that has seen `n` executor runs, each `handoffUs` of hand-off and `coreUs` in the core, with `elements` input elements. */
function trained(handoffUs: number, coreUs: number, elements = 8, n = 9): InlinePolicy {
  const p = new InlinePolicy();
  for (let i = 0; i < n; i++) p.executed(coreUs + handoffUs, coreUs, elements);
  return p;
}

/** How many of `n` choices go inline. */
function inlineCount(p: InlinePolicy, n: number, elements = 8): number {
  let k = 0;
  for (let i = 0; i < n; i++) if (p.choose(elements)) k++;
  return k;
}

describe('InlinePolicy (when run() executes on the calling thread)', () => {
  it('decides nothing before four hand-offs are measured; NaN hand-offs (runs not alone) do not count', () => {
    const p = new InlinePolicy();
    for (let i = 0; i < 10; i++) p.executed(NaN, 2, 8);
    assert.equal(p.ready, false);
    for (let i = 0; i < 3; i++) p.executed(30, 2, 8);
    assert.equal(p.ready, false);
    assert.equal(p.choose(8), false);
    p.executed(30, 2, 8);
    assert.equal(p.ready, true);
    assert.equal(p.choose(8), true, 'a 3.5 µs run against a 28 µs hand-off');
  });

  it('inline only when the run is shorter than the hand-off and at most INLINE_MAX_US', () => {
    assert.equal(inlineCount(trained(20, 2), 100), 100);
    assert.equal(inlineCount(trained(2, 20), 100), 0, 'a 21.5 µs run against a 2 µs hand-off');
    assert.equal(inlineCount(trained(5000, INLINE_MAX_US + 10), 100), 0, 'over the bound, however slow the hand-off');
    assert.equal(inlineCount(trained(5000, INLINE_MAX_US - 20), 100), 100);
  });

  it('medians: one cold or stalled sample does not sway the decision', () => {
    const p = trained(20, 2, 8, 8);
    p.executed(10_000, 5000, 8); // a cold first run's worth of time
    assert.equal(inlineCount(p, 10), 10);
  });

  it('runs with more input elements than any run measured short go to the executor', () => {
    const p = trained(20, 2, 8);
    assert.equal(p.choose(9), false);
    assert.equal(p.choose(8), true);
    p.ranInline(4, 1000);
    assert.equal(p.choose(1000), true, 'measured short at 1000 elements');
  });

  it('one run in 256 goes to the executor to keep the hand-off current', () => {
    assert.equal(inlineCount(trained(20, 2), 256 * 4), 256 * 4 - 4);
  });

  it('a surprise (an inline run over INLINE_MAX_US) sends the next 64 runs to the executor, doubling each time; calm halves it', () => {
    const p = trained(20, 2);
    p.ranInline(100_000, 8);
    assert.equal(inlineCount(p, 64), 0);
    assert.equal(p.choose(8), true);
    p.ranInline(100_000, 8);
    assert.equal(inlineCount(p, 128), 0, 'the second surprise sends twice as many');
    assert.equal(p.choose(8), true);
    // 1000 calm inline runs halve what the next surprise costs: 256 -> 128.
    for (let i = 0; i < 1000; i++) p.ranInline(4, 8);
    p.ranInline(100_000, 8);
    let executor = 0;
    while (!p.choose(8)) executor++;
    assert.equal(executor, 128);
  });

  it('a run of INLINE_MAX_US or less is no surprise; it joins the run-time median', () => {
    const p = trained(200, 2);
    for (let i = 0; i < 4; i++) p.ranInline(INLINE_MAX_US, 8);
    assert.equal(p.choose(8), true, '4 of 9 samples long: the median is still short');
    p.ranInline(INLINE_MAX_US, 8);
    assert.equal(p.choose(8), false, 'the median is now INLINE_MAX_US: not below the bound');
  });
});

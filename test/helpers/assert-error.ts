import { strict as assert } from 'assert';
import { KilnError, type KilnErrorCode } from '../../lib/errors';

/** Asserts `e` is a KilnError with `code` whose message contains every fragment. */
export function assertKilnError(e: unknown, code: KilnErrorCode, ...fragments: readonly (string | RegExp)[]): KilnError {
  assert.ok(e instanceof KilnError, `expected a KilnError, got ${String(e)}`);
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'KilnError');
  assert.equal(e.code, code, `code of: ${e.message}`);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(e.message.includes(f), `message ${JSON.stringify(e.message)} lacks ${JSON.stringify(f)}`);
    else assert.match(e.message, f);
  }
  return e;
}

/** The error `fn` throws; fails the test when it returns. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('expected a throw');
}

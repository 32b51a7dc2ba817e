/**
 * `--check`: a target's outputs compared with a reference run's on the same input sets, so a
 * fast answer is also shown to be the right one.
 */
import { float16Value } from '../optimize/fp16';
import type { Target, TargetReport } from './types';
import type { TargetOutputs } from './targets/kiln';

/** How far a value may be from the reference's: absolute plus relative to the reference. */
export const CHECK_TOLERANCE = { absolute: 1e-4, relative: 1e-3 } as const;

/** One element as a number (float16 and bfloat16 bits decoded). */
function numeric(type: string, v: number | bigint | string): number {
  if (type === 'float16') return float16Value(v as number);
  if (type === 'bfloat16') return new Float32Array(new Uint32Array([(v as number) << 16]).buffer)[0];
  return Number(v);
}

/** One output against the reference's: whether it matches, and its largest absolute difference. */
export function compareOutput(ref: TargetOutputs[string], got: TargetOutputs[string] | undefined): { match: boolean; maxAbsError: number } {
  if (!got || got.type !== ref.type || got.dims.length !== ref.dims.length || got.dims.some((d, i) => d !== ref.dims[i]) || got.data.length !== ref.data.length) {
    return { match: false, maxAbsError: Infinity };
  }
  let match = true;
  let maxAbsError = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const r = ref.data[i];
    const g = got.data[i];
    if (typeof r === 'string' || typeof g === 'string') {
      if (r !== g) match = false;
      continue;
    }
    const a = numeric(ref.type, r);
    const b = numeric(ref.type, g);
    if (Number.isNaN(a) && Number.isNaN(b)) continue;
    const diff = Math.abs(a - b);
    if (!(diff <= CHECK_TOLERANCE.absolute + CHECK_TOLERANCE.relative * Math.abs(a))) match = false;
    if (!(diff <= maxAbsError)) maxAbsError = Number.isNaN(diff) ? Infinity : diff;
  }
  return { match, maxAbsError };
}

/** The reference's outputs on input sets 0 .. count-1. */
export async function referenceOutputs(reference: Target, count: number): Promise<TargetOutputs[]> {
  const out: TargetOutputs[] = [];
  for (let i = 0; i < count; i++) out.push(await (reference.outputs as NonNullable<Target['outputs']>)(i));
  return out;
}

/** A target's outputs on the same input sets as `reference`, compared output by output. */
export async function checkTarget(target: Target, reference: readonly TargetOutputs[]): Promise<NonNullable<TargetReport['check']>> {
  const result = { compared: 0, mismatches: 0, maxAbsError: 0 };
  if (!target.outputs) return result;
  for (let i = 0; i < reference.length; i++) {
    const got = await target.outputs(i);
    for (const [name, ref] of Object.entries(reference[i])) {
      const c = compareOutput(ref, got[name]);
      result.compared++;
      if (!c.match) result.mismatches++;
      result.maxAbsError = Math.max(result.maxAbsError, c.maxAbsError);
    }
  }
  return result;
}

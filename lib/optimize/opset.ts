/**
 * Opset bookkeeping: integer kernels (QLinearConv, QLinearMatMul, MatMulInteger) exist from
 * opset 10, DynamicQuantizeLinear from 11, so an older model is upgraded first. The ops
 * whose meaning changed on the way are rewritten; any other changed op stops the upgrade
 * with its name.
 */
import { KilnError } from '../errors';
import type { ModelProto, NodeProto } from '../onnx/types';
import { Graph } from './graph';

/**
 * Ops whose meaning changed between opset 9 and 11 in ways this upgrade does not rewrite
 * (the opset they changed in). The other changes in that span relax an op (negative axes,
 * more types), so an older node stays valid, or are rewritten below (Slice 10, Clip and Pad 11).
 */
const REFUSED: Record<string, number> = { Upsample: 10, TopK: 10, Resize: 11, Loop: 11, If: 11, Scan: 11 };

/** Raises the default-domain opset of `model` to at least `target` (at most 11). */
export function upgradeOpset(model: ModelProto, target: number): void {
  const g = new Graph(model);
  const from = g.opset('');
  if (from >= target) return;
  if (from < 9 || target > 11) throw new KilnError('E_INVALID_ARGUMENT', `cannot upgrade a model from opset ${from} to ${target}: Kiln upgrades opset 9 and 10 to 10 or 11`);
  const nodes = g.nodes.filter((n) => (n.domain ?? '') === '');
  // Everything is checked before anything is rewritten: a refused model is left as it was.
  for (const n of nodes) {
    const op = n.opType ?? '';
    if (REFUSED[op] !== undefined && REFUSED[op] > from && REFUSED[op] <= target) {
      throw new KilnError('E_INVALID_ARGUMENT', `cannot upgrade the model from opset ${from} to ${target}: ${op} (node ${n.name || n.output?.[0]}) changed in opset ${REFUSED[op]}`);
    }
  }
  for (const n of nodes) {
    const op = n.opType ?? '';
    if (op === 'Slice' && from < 10) sliceToInputs(g, n);
    else if (op === 'Clip' && target >= 11) attributesToInputs(g, n, [['min', 'float32'], ['max', 'float32']]);
    else if (op === 'Pad' && target >= 11) padToInputs(g, n);
    else if (op === 'Scatter' && target >= 11) n.opType = 'ScatterElements'; // deprecated in 11, same meaning
  }
  g.requireOpset('', target);
}

/** Clip-11 style: scalar attributes become inputs, in order ('' for an absent one). */
function attributesToInputs(g: Graph, n: NodeProto, names: [string, 'float32'][]): void {
  const base = n.name || (n.output?.[0] as string);
  const inputs = [n.input?.[0] as string];
  for (const [name] of names) {
    const a = n.attribute?.find((x) => x.name === name);
    inputs.push(a?.f !== undefined ? g.addInitializer(`${base}.${name}`, 'float32', [], Float32Array.of(a.f)) : '');
  }
  while (inputs.length > 1 && inputs[inputs.length - 1] === '') inputs.pop();
  n.input = inputs;
  n.attribute = (n.attribute ?? []).filter((a) => !names.some(([x]) => x === a.name));
}

/** Pad-11: pads (and value) attributes become inputs. */
function padToInputs(g: Graph, n: NodeProto): void {
  const base = n.name || (n.output?.[0] as string);
  const pads = n.attribute?.find((a) => a.name === 'pads')?.ints ?? [];
  const value = n.attribute?.find((a) => a.name === 'value')?.f;
  const inputs = [n.input?.[0] as string, g.addInitializer(`${base}.pads`, 'int64', [pads.length], BigInt64Array.from(pads))];
  if (value !== undefined) inputs.push(g.addInitializer(`${base}.value`, 'float32', [], Float32Array.of(value)));
  n.input = inputs;
  n.attribute = (n.attribute ?? []).filter((a) => a.name !== 'pads' && a.name !== 'value');
}

/** Opset 9 Slice(x) with starts/ends/axes attributes -> opset 10 Slice(x, starts, ends, axes). */
function sliceToInputs(g: Graph, n: NodeProto): void {
  const ints = (name: string): bigint[] | undefined => n.attribute?.find((a) => a.name === name)?.ints;
  const starts = ints('starts') ?? [];
  const ends = ints('ends') ?? [];
  const axes = ints('axes');
  const base = n.name || (n.output?.[0] as string);
  const inputs = [n.input?.[0] as string,
    g.addInitializer(`${base}.starts`, 'int64', [starts.length], BigInt64Array.from(starts)),
    g.addInitializer(`${base}.ends`, 'int64', [ends.length], BigInt64Array.from(ends))];
  if (axes) inputs.push(g.addInitializer(`${base}.axes`, 'int64', [axes.length], BigInt64Array.from(axes)));
  n.input = inputs;
  n.attribute = (n.attribute ?? []).filter((a) => !['starts', 'ends', 'axes'].includes(a.name ?? ''));
}

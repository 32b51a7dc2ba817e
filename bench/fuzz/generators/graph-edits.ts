/**
 * Structural edits of a decoded model (nodes, graph inputs and outputs, dims, types,
 * initializers, attributes, opsets) for the load target.
 */
import type { AttributeProto, GraphProto, ModelProto, NodeProto, TypeProto, ValueInfoProto } from '../../../lib/onnx';
import { Rng } from '../random';

const OP_TYPES = [
  'Add', 'Relu', 'Identity', 'Gemm', 'MatMul', 'Conv', 'Reshape', 'Concat', 'Gather', 'Slice', 'Loop', 'If', 'Scan',
  'Cast', 'Not', 'Neg', 'ReduceSum', 'Expand', 'Tile', 'Shape', 'Size', 'Transpose', 'Softmax', 'TopK', 'Where',
  'NonExistentOp', '', 'add', 'QuantizeLinear', 'DequantizeLinear', 'Split', 'Squeeze', 'Unsqueeze',
];
const HUGE_DIMS = [-1n, -(2n ** 63n), 0n, 2n ** 31n, 2n ** 32n + 1n, 2n ** 40n, 2n ** 53n + 1n, 2n ** 62n, 2n ** 63n - 1n];
const ELEM_TYPES = [0, 1, 2, 3, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 99, -1];

/** Every graph of a model: the main one and the bodies in attributes (Loop, If, Scan). */
export function graphsOf(m: ModelProto): GraphProto[] {
  const out: GraphProto[] = [];
  const visit = (g: GraphProto | undefined): void => {
    if (!g) return;
    out.push(g);
    for (const n of g.node ?? []) {
      for (const a of n.attribute ?? []) {
        visit(a.g);
        for (const sub of a.graphs ?? []) visit(sub);
      }
    }
  };
  visit(m.graph);
  return out;
}

function valueNames(g: GraphProto): string[] {
  return [
    ...(g.input ?? []).map((v) => v.name ?? ''),
    ...(g.initializer ?? []).map((t) => t.name ?? ''),
    ...(g.node ?? []).flatMap((n) => n.output ?? []),
  ];
}

function tensorTypes(g: GraphProto): NonNullable<TypeProto['tensorType']>[] {
  return [...(g.input ?? []), ...(g.output ?? []), ...(g.valueInfo ?? [])]
    .map((v) => v.type?.tensorType)
    .filter((t): t is NonNullable<TypeProto['tensorType']> => t !== undefined);
}

type GraphEdit = (rng: Rng, m: ModelProto, g: GraphProto) => string | undefined;

export const GRAPH_EDITS: readonly (readonly [string, GraphEdit])[] = [
  ['op-type', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    n.opType = rng.pick(OP_TYPES);
    return `op ${n.name} -> ${JSON.stringify(n.opType)}`;
  }],
  ['domain', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    n.domain = rng.pick(['com.microsoft', 'ai.onnx.ml', 'bogus.domain', 'ai.onnx', '\0']);
    return `op ${n.name} domain ${JSON.stringify(n.domain)}`;
  }],
  ['drop-node-input', (rng, _m, g) => {
    const n = g.node?.find((x) => (x.input?.length ?? 0) > 0);
    if (!n?.input) return undefined;
    n.input.splice(rng.int(n.input.length), 1);
    return `node ${n.name} loses an input`;
  }],
  ['rename-node-input', (rng, _m, g) => {
    const n = g.node?.find((x) => (x.input?.length ?? 0) > 0);
    if (!n?.input) return undefined;
    const i = rng.int(n.input.length);
    n.input[i] = rng.pick(['nowhere', '', ...valueNames(g)]);
    return `node ${n.name} input ${i} -> ${JSON.stringify(n.input[i])}`;
  }],
  ['add-node-input', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    (n.input ??= []).push(rng.pick(['', ...valueNames(g)]));
    return `node ${n.name} gains an input`;
  }],
  ['node-outputs', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    const other = rng.pick(valueNames(g));
    n.output = rng.pick([[], [other], [...(n.output ?? []), other], ['']]);
    return `node ${n.name} outputs ${JSON.stringify(n.output)}`;
  }],
  ['cycle', (rng, _m, g) => {
    const nodes = g.node ?? [];
    if (nodes.length === 0) return undefined;
    const a = rng.pick(nodes);
    const b = rng.pick(nodes);
    if (!a.input?.length || !b.output?.length || !a.output?.length) return undefined;
    a.input[0] = b.output[0];
    if (b.input?.length) b.input[0] = a.output[0];
    return `cycle ${a.name} <-> ${b.name}`;
  }],
  ['drop-node', (rng, _m, g) => {
    if (!g.node?.length) return undefined;
    const [n] = g.node.splice(rng.int(g.node.length), 1);
    return `node ${n.name} removed`;
  }],
  ['reorder-nodes', (rng, _m, g) => {
    if (!g.node || g.node.length < 2) return undefined;
    g.node.reverse();
    if (rng.chance(0.5)) g.node.push(...g.node.splice(0, 1));
    return 'nodes out of topological order';
  }],
  ['graph-inputs', (rng, _m, g) => {
    const inputs = g.input ?? [];
    if (inputs.length === 0) return undefined;
    const what = rng.pick(['drop', 'duplicate', 'rename', 'empty-name']);
    const i = rng.int(inputs.length);
    if (what === 'drop') inputs.splice(i, 1);
    else if (what === 'duplicate') inputs.push({ ...inputs[i] });
    else inputs[i].name = what === 'rename' ? rng.pick(['nowhere', ...valueNames(g)]) : '';
    return `graph input ${i}: ${what}`;
  }],
  ['graph-outputs', (rng, _m, g) => {
    const outputs = g.output ?? [];
    const what = rng.pick(['drop-all', 'undefined-name', 'duplicate', 'initializer']);
    if (what === 'drop-all') g.output = [];
    else if (what === 'undefined-name') outputs.push({ name: 'nowhere', type: { tensorType: { elemType: 1 } } });
    else if (what === 'duplicate' && outputs.length > 0) outputs.push({ ...outputs[0] });
    else if (what === 'initializer' && g.initializer?.length) outputs.push({ name: g.initializer[0].name, type: { tensorType: { elemType: 1 } } });
    g.output = g.output ?? outputs;
    return `graph outputs: ${what}`;
  }],
  ['dim-value', (rng, _m, g) => {
    const dims = tensorTypes(g).flatMap((t) => t.shape?.dim ?? []);
    if (dims.length === 0) return undefined;
    const d = rng.pick(dims);
    delete d.dimParam;
    d.dimValue = rng.pick(HUGE_DIMS);
    return `dim -> ${d.dimValue}`;
  }],
  ['dim-param', (rng, _m, g) => {
    const dims = tensorTypes(g).flatMap((t) => t.shape?.dim ?? []);
    if (dims.length === 0) return undefined;
    const d = rng.pick(dims);
    delete d.dimValue;
    d.dimParam = rng.pick(['', 'N', 'M', '\0', 'x'.repeat(1000), '-1', '😀']);
    return `dim -> param ${JSON.stringify(d.dimParam.slice(0, 8))}`;
  }],
  ['rank', (rng, _m, g) => {
    const types = tensorTypes(g);
    if (types.length === 0) return undefined;
    const t = rng.pick(types);
    const what = rng.pick(['grow', 'shrink', 'unknown', 'huge']);
    const dims = (t.shape ??= {}).dim ??= [];
    if (what === 'grow') dims.push({ dimValue: 1n });
    else if (what === 'shrink') dims.pop();
    else if (what === 'unknown') delete t.shape;
    else t.shape.dim = Array.from({ length: rng.pick([33, 64, 1000]) }, () => ({ dimValue: 1n }));
    return `rank: ${what}`;
  }],
  ['elem-type', (rng, _m, g) => {
    const types = tensorTypes(g);
    if (types.length === 0) return undefined;
    const t = rng.pick(types);
    t.elemType = rng.pick(ELEM_TYPES);
    return `elem type -> ${t.elemType}`;
  }],
  ['value-kind', (rng, _m, g) => {
    const values: ValueInfoProto[] = [...(g.input ?? []), ...(g.output ?? [])];
    if (values.length === 0) return undefined;
    const v = rng.pick(values);
    const what = rng.pick(['sequence', 'map', 'optional', 'sparse', 'none']);
    if (what === 'sequence') v.type = { sequenceType: { elemType: { tensorType: { elemType: 1 } } } };
    else if (what === 'map') v.type = { mapType: { keyType: 7, valueType: { tensorType: { elemType: 1 } } } };
    else if (what === 'optional') v.type = { optionalType: { elemType: { tensorType: { elemType: 1 } } } };
    else if (what === 'sparse') v.type = { sparseTensorType: { elemType: 1, shape: { dim: [{ dimValue: 2n }] } } };
    else delete v.type;
    return `value ${v.name} -> ${what}`;
  }],
  ['initializer', (rng, _m, g) => {
    const inits = g.initializer ?? [];
    if (inits.length === 0) return undefined;
    const t = rng.pick(inits);
    const what = rng.pick(['drop', 'dims-huge', 'dims-mismatch', 'data-type', 'no-data', 'typed-field', 'external', 'rename']);
    switch (what) {
      case 'drop': inits.splice(inits.indexOf(t), 1); break;
      case 'dims-huge': t.dims = [rng.pick(HUGE_DIMS), ...(t.dims ?? []).slice(1)]; break;
      case 'dims-mismatch': t.dims = [...(t.dims ?? []), 2n]; break;
      case 'data-type': t.dataType = rng.pick(ELEM_TYPES); break;
      case 'no-data': delete t.rawData; break;
      case 'typed-field': delete t.rawData; t.floatData = [1, 2, 3]; t.int64Data = [2n ** 62n]; break;
      case 'external':
        t.dataLocation = 1;
        t.externalData = [
          { key: 'location', value: rng.pick(['/etc/hostname', '../../../../etc/hostname', 'nowhere.bin', '', '/dev/zero', '\0']) },
          { key: 'offset', value: rng.pick(['0', '-1', '99999999999999', 'x']) },
          { key: 'length', value: rng.pick(['4', '0', '18446744073709551615', '']) },
        ];
        break;
      case 'rename': t.name = rng.pick(['', ...valueNames(g)]); break;
    }
    return `initializer ${t.name}: ${what}`;
  }],
  ['attribute', (rng, _m, g) => {
    const n = g.node?.length ? rng.pick(g.node) : undefined;
    if (!n) return undefined;
    const attrs: AttributeProto[] = (n.attribute ??= []);
    const what = rng.pick(['drop', 'type', 'huge-ints', 'bogus', 'graph']);
    if (what === 'drop' && attrs.length) attrs.splice(rng.int(attrs.length), 1);
    else if (what === 'type' && attrs.length) rng.pick(attrs).type = rng.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 99]) as AttributeProto['type'];
    else if (what === 'huge-ints' && attrs.length) {
      const a = rng.pick(attrs);
      a.ints = [2n ** 40n, -(2n ** 62n), 0n];
      a.i = -(2n ** 63n);
    } else if (what === 'graph') attrs.push({ name: rng.pick(['body', 'then_branch', 'axis']), type: 5, g: { name: 'empty' } });
    else attrs.push({ name: rng.pick(['axis', 'bogus', 'kernel_shape', '']), type: 2, i: rng.pick([0n, -1n, 2n ** 40n]) });
    return `node ${n.name} attribute: ${what}`;
  }],
  ['opset', (rng, m) => {
    const what = rng.pick(['version', 'drop', 'domain', 'duplicate']);
    const ops = (m.opsetImport ??= []);
    if (what === 'version' && ops.length) ops[0].version = rng.pick([0n, 1n, 7n, 13n, 21n, 99n, 2n ** 40n, -1n]);
    else if (what === 'drop') m.opsetImport = [];
    else if (what === 'domain' && ops.length) ops[0].domain = rng.pick(['ai.onnx.ml', 'bogus', '\0']);
    else ops.push({ domain: '', version: 1n });
    return `opset: ${what}`;
  }],
  ['ir-version', (rng, m) => {
    m.irVersion = rng.pick([0n, 1n, 2n, 3n, 7n, 10n, 11n, 12n, 99n, -1n, 2n ** 62n]);
    return `ir_version -> ${m.irVersion}`;
  }],
  ['no-graph', (rng, m) => {
    if (rng.chance(0.5)) delete m.graph;
    else m.graph = {};
    return 'graph removed';
  }],
  ['functions', (rng, m) => {
    m.functions = [{ name: 'f', domain: 'local', input: ['x'], output: ['y'], node: [{ opType: rng.pick(['Identity', 'f', 'Bogus']), input: ['x'], output: ['y'], domain: rng.pick(['', 'local']) }] }];
    const n: NodeProto | undefined = m.graph?.node?.[0];
    if (n) {
      n.opType = 'f';
      n.domain = 'local';
      m.opsetImport = [...(m.opsetImport ?? []), { domain: 'local', version: 1n }];
    }
    return 'node calls a (recursive?) local function';
  }],
];

/**
 * A model being transformed: lookups the quantizers need (constant weights, producers,
 * consumers), fresh names, and opset bookkeeping. Edits are made on the ModelProto itself.
 */
import { KilnError } from '../errors';
import { tensorFromProto, tensorProto } from '../onnx';
import { AttributeType, type AttributeProto, type GraphProto, type ModelProto, type NodeProto, type TensorProto } from '../onnx/types';
import type { Tensor, TensorDataTypes, TensorType } from '../tensor';

export class Graph {
  readonly model: ModelProto;
  readonly graph: GraphProto;
  readonly #names = new Set<string>();
  /** Constant tensors by value name: initializers, and Constant nodes' values. */
  readonly #constants = new Map<string, TensorProto>();

  constructor(model: ModelProto) {
    if (!model.graph) throw new KilnError('E_MODEL_LOAD', 'the model has no graph');
    this.model = model;
    this.graph = model.graph;
    this.graph.node ??= [];
    this.graph.initializer ??= [];
    for (const t of this.graph.initializer) {
      if (t.name) this.#constants.set(t.name, t);
    }
    for (const n of this.graph.node) {
      const value = n.opType === 'Constant' && (n.domain ?? '') === '' ? n.attribute?.find((a) => a.name === 'value')?.t : undefined;
      if (value && n.output?.[0]) this.#constants.set(n.output[0], value);
    }
    // Subgraphs' names too: ONNX forbids a subgraph value that shadows an outer one.
    definedNames(this.graph, this.#names);
  }

  get nodes(): NodeProto[] {
    return this.graph.node as NodeProto[];
  }

  /** A name not used in the graph, based on `base`. */
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.#names.has(name); i++) name = `${base}_${i}`;
    this.#names.add(name);
    return name;
  }

  /** The constant (initializer or Constant node) called `name`, as a Tensor. */
  constant(name: string): Tensor | undefined {
    const proto = this.#constants.get(name);
    if (!proto) return undefined;
    try {
      return tensorFromProto(proto);
    } catch {
      return undefined; // a type Kiln does not carry: not a weight the tools touch
    }
  }

  isConstant(name: string): boolean {
    return this.#constants.has(name);
  }

  /** Adds an initializer; returns its name. */
  addInitializer<T extends TensorType>(base: string, type: T, dims: readonly number[], data: TensorDataTypes[T]): string {
    const name = this.fresh(base);
    const proto = tensorProto(type, dims, data, name);
    this.graph.initializer?.push(proto);
    this.#constants.set(name, proto);
    return name;
  }

  /** A node (not yet placed: see replace), unnamed (ONNX node names are optional). */
  node(opType: string, inputs: string[], outputs: string[], attributes: AttributeProto[] = [], domain = ''): NodeProto {
    const n: NodeProto = { opType, input: inputs, output: outputs };
    if (attributes.length) n.attribute = attributes;
    if (domain) n.domain = domain;
    return n;
  }

  /** Nodes that read `value`. */
  consumers(value: string): NodeProto[] {
    return this.nodes.filter((n) => n.input?.includes(value));
  }

  producer(value: string): NodeProto | undefined {
    return this.nodes.find((n) => n.output?.includes(value));
  }

  isGraphOutput(value: string): boolean {
    return (this.graph.output ?? []).some((o) => o.name === value);
  }

  /** Replaces `node` with `replacement` (in order), where it stood. */
  replace(node: NodeProto, replacement: NodeProto[]): void {
    const i = this.nodes.indexOf(node);
    if (i < 0) throw new KilnError('E_INVALID_ARGUMENT', `node ${node.name ?? node.opType} is not in the graph`);
    this.nodes.splice(i, 1, ...replacement);
  }

  /** The version of `domain` the model imports (0 when none). */
  opset(domain = ''): number {
    const d = (this.model.opsetImport ?? []).find((o) => (o.domain ?? '') === domain || (domain === '' && o.domain === 'ai.onnx'));
    return d ? Number(d.version ?? 0) : 0;
  }

  /** Imports `domain` at `version` at least. */
  requireOpset(domain: string, version: number): void {
    this.model.opsetImport ??= [];
    const d = this.model.opsetImport.find((o) => (o.domain ?? '') === domain);
    if (!d) this.model.opsetImport.push({ domain, version: BigInt(version) });
    else if (Number(d.version ?? 0) < version) d.version = BigInt(version);
  }

  /** Drops initializers and Constant nodes nothing reads any more (subgraphs' reads of outer values count). */
  prune(): void {
    const used = new Set<string>();
    readNames(this.graph, used);
    this.graph.initializer = (this.graph.initializer ?? []).filter((t) => !t.name || used.has(t.name) || (this.graph.input ?? []).some((v) => v.name === t.name));
    this.graph.node = this.nodes.filter((n) => !(n.opType === 'Constant' && (n.domain ?? '') === '' && !(n.output ?? []).some((o) => used.has(o))));
    for (const [name] of this.#constants) if (!used.has(name)) this.#constants.delete(name);
  }
}

/** The graphs held by a node's attributes (If's branches, Loop's and Scan's bodies). */
export function subgraphsOf(n: NodeProto): GraphProto[] {
  return (n.attribute ?? []).flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]);
}

/** Every value and node name that `graph` and its subgraphs define. */
function definedNames(graph: GraphProto, out: Set<string>): void {
  for (const v of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.initializer ?? [])]) if (v.name) out.add(v.name);
  for (const n of graph.node ?? []) {
    if (n.name) out.add(n.name);
    for (const o of n.output ?? []) if (o) out.add(o);
    for (const sub of subgraphsOf(n)) definedNames(sub, out);
  }
}

/** Every name that `graph`'s nodes and outputs read, its subgraphs' included. */
function readNames(graph: GraphProto, out: Set<string>): void {
  for (const n of graph.node ?? []) {
    for (const i of n.input ?? []) out.add(i);
    for (const sub of subgraphsOf(n)) readNames(sub, out);
  }
  for (const o of graph.output ?? []) if (o.name) out.add(o.name);
}

export const attrInt = (name: string, value: number): AttributeProto => ({ name, type: AttributeType.INT, i: BigInt(value) });
export const attrFloat = (name: string, value: number): AttributeProto => ({ name, type: AttributeType.FLOAT, f: value });

/** A node's integer attribute, or `fallback`. */
export function intAttr(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute?.find((x) => x.name === name);
  return a?.i !== undefined ? Number(a.i) : fallback;
}

export function floatAttr(n: NodeProto, name: string, fallback: number): number {
  const a = n.attribute?.find((x) => x.name === name);
  return a?.f !== undefined ? a.f : fallback;
}

/** Node counts by op type ("domain:op" outside the default domain). */
export function opCounts(model: ModelProto): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const n of model.graph?.node ?? []) {
    const key = n.domain ? `${n.domain}:${n.opType}` : (n.opType ?? '?');
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

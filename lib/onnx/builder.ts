import { KilnError } from '../errors';
import { ONNX_TYPE, isTensorType, type TensorDataTypes, type TensorType } from '../tensor';
import { encodeModel } from './proto';
import { tensorProto } from './tensor-proto';
import {
  AttributeType, type AttributeProto, type GraphProto, type ModelProto, type NodeProto,
  type TensorProto, type TypeProto, type ValueInfoProto,
} from './types';

/** A dimension: a fixed size, a symbolic name shared between values, or null for unknown. */
export type Dim = number | string | null;

/** An attribute whose ONNX type is stated rather than inferred; made by the `attr` helpers. */
export class Attr {
  constructor(readonly proto: Omit<AttributeProto, 'name'>) {}
}

/**
 * An attribute value. Plain values are typed by inference: bigint and integral numbers become
 * INT, other numbers FLOAT, strings STRING, arrays likewise (INTS only when every element is
 * integral). Use `attr.float(1)` / `attr.floats([1, 2])` where ONNX wants floats with integral
 * values. A GraphBuilder becomes a GRAPH attribute (Loop/If/Scan bodies).
 */
export type AttrValue =
  | number | bigint | string | readonly number[] | readonly bigint[] | readonly string[]
  | Attr | GraphBuilder;

const utf8 = new TextEncoder();

export const attr = {
  int: (v: number | bigint): Attr => new Attr({ type: AttributeType.INT, i: toInt64(v) }),
  float: (v: number): Attr => new Attr({ type: AttributeType.FLOAT, f: v }),
  string: (v: string): Attr => new Attr({ type: AttributeType.STRING, s: utf8.encode(v) }),
  ints: (v: readonly (number | bigint)[]): Attr => new Attr({ type: AttributeType.INTS, ints: v.map(toInt64) }),
  floats: (v: readonly number[]): Attr => new Attr({ type: AttributeType.FLOATS, floats: [...v] }),
  strings: (v: readonly string[]): Attr => new Attr({ type: AttributeType.STRINGS, strings: v.map((s) => utf8.encode(s)) }),
  tensor: <T extends TensorType>(type: T, dims: readonly number[], data: TensorDataTypes[T]): Attr =>
    new Attr({ type: AttributeType.TENSOR, t: tensorProto(type, dims, data) }),
};

export interface NodeOptions {
  attrs?: Readonly<Record<string, AttrValue>>;
  /** Node name; also the base of generated output names. Default: `${opType}_${k}`. */
  name?: string;
  /** Operator set domain, e.g. 'com.microsoft'; it must be imported in build options. */
  domain?: string;
}

export interface BuildOptions {
  /** Version of the default (ai.onnx) operator set. Default 17. */
  opset?: number;
  /** Further operator sets by domain, e.g. { 'com.microsoft': 1 }. */
  domains?: Readonly<Record<string, number>>;
  /** Default: the IR version that ONNX released together with `opset`. */
  irVersion?: number;
  producerName?: string;
  docString?: string;
  metadata?: Readonly<Record<string, string>>;
}

export const DEFAULT_OPSET = 17;

/** Names already taken in a model; shared by a graph and its subgraphs because ONNX forbids shadowing. */
class Scope {
  readonly values = new Set<string>();
  readonly nodes = new Set<string>();
  readonly domains = new Set<string>();
  private readonly counters = new Map<string, number>();

  assertFree(name: string, what: string): void {
    if (name === '') throw new KilnError('E_INVALID_ARGUMENT', `${what} name must not be empty`);
    if (this.values.has(name)) throw new KilnError('E_INVALID_ARGUMENT', `${what} '${name}': the name is already used in this model`);
  }

  /** `${base}_${k}` with the lowest k, per base, that names neither a value nor a node. */
  fresh(base: string): string {
    let k = this.counters.get(base) ?? 0;
    let name: string;
    do name = `${base}_${k++}`; while (this.values.has(name) || this.nodes.has(name));
    this.counters.set(base, k);
    return name;
  }
}

/**
 * Builds an ONNX graph node by node. Value names are checked as they are used, so a typo fails
 * at the call that made it rather than when ONNX Runtime loads the model.
 */
export class GraphBuilder {
  readonly name: string;
  #scope = new Scope();
  readonly #nodes: NodeProto[] = [];
  readonly #inputs: ValueInfoProto[] = [];
  readonly #outputs: ValueInfoProto[] = [];
  readonly #initializers: TensorProto[] = [];

  constructor(name: string) {
    this.name = name;
  }

  /** A graph for a control-flow attribute, sharing this graph's names (it may read outer values). */
  subgraph(name: string): GraphBuilder {
    const g = new GraphBuilder(name);
    g.#scope = this.#scope;
    return g;
  }

  /** Declares a graph input; omitting `dims` leaves the rank unknown. Returns its name. */
  input(name: string, type: TensorType, dims?: readonly Dim[]): string {
    this.#scope.assertFree(name, 'input');
    this.#inputs.push(valueInfo(name, type, dims));
    this.#scope.values.add(name);
    return name;
  }

  /** Declares an existing value as a graph output; omitting `dims` leaves the rank unknown. */
  output(name: string, type: TensorType, dims?: readonly Dim[]): string {
    this.assertDefined(name, 'output');
    this.#outputs.push(valueInfo(name, type, dims));
    return name;
  }

  /** Adds a constant tensor (see tensorProto for the data layout of each type). Returns its name. */
  initializer<T extends TensorType>(name: string, type: T, dims: readonly number[], data: TensorDataTypes[T]): string {
    this.#scope.assertFree(name, 'initializer');
    this.#initializers.push(tensorProto(type, dims, data, name));
    this.#scope.values.add(name);
    return name;
  }

  /**
   * Adds a node and returns the name of its single output (named by `outputs` when a string),
   * or, when `outputs` is a count or a list of names, the names of all its outputs. An empty
   * string in `inputs` or in an output list leaves that optional slot out.
   */
  node(opType: string, inputs: readonly string[], options?: NodeOptions & { outputs?: string }): string;
  node(opType: string, inputs: readonly string[], options: NodeOptions & { outputs: number | readonly string[] }): string[];
  node(opType: string, inputs: readonly string[], options: NodeOptions & { outputs?: string | number | readonly string[] } = {}): string | string[] {
    for (const input of inputs) if (input !== '') this.assertDefined(input, `${opType} input`);
    const scope = this.#scope;
    const nodeName = options.name ?? scope.fresh(opType);
    if (scope.nodes.has(nodeName)) throw new KilnError('E_INVALID_ARGUMENT', `node name '${nodeName}' is already used in this model`);
    const spec = options.outputs;
    const outputs = typeof spec === 'number' ? Array.from({ length: spec }, (_, i) => `${nodeName}_out${i}`)
      : typeof spec === 'string' ? [spec]
        : spec === undefined ? [nodeName] : [...spec];
    if (outputs.length === 0) throw new KilnError('E_INVALID_ARGUMENT', `${opType} node '${nodeName}' needs at least one output`);
    const named = outputs.filter((o) => o !== '');
    named.forEach((o, i) => {
      scope.assertFree(o, `${opType} output`);
      if (named.indexOf(o) !== i) throw new KilnError('E_INVALID_ARGUMENT', `${opType} output '${o}' is listed twice`);
    });
    const node: NodeProto = { input: [...inputs], output: outputs, name: nodeName, opType };
    const attrs = Object.entries(options.attrs ?? {});
    if (attrs.length > 0) node.attribute = attrs.map(([name, value]) => ({ name, ...attributeOf(value, `${opType}.${name}`) }));
    if (options.domain !== undefined && options.domain !== '') node.domain = options.domain;
    // Everything is checked: only now does the model change.
    if (node.domain !== undefined) scope.domains.add(node.domain);
    scope.nodes.add(nodeName);
    for (const o of named) scope.values.add(o);
    this.#nodes.push(node);
    return spec === undefined || typeof spec === 'string' ? outputs[0] : outputs;
  }

  /** This graph as a GraphProto (a snapshot: later additions do not show in it). */
  graph(): GraphProto {
    return {
      node: [...this.#nodes], name: this.name, initializer: [...this.#initializers],
      input: [...this.#inputs], output: [...this.#outputs],
    };
  }

  /** The whole model as a ModelProto, to inspect or edit before encoding. */
  model(options: BuildOptions = {}): ModelProto {
    const opset = options.opset ?? DEFAULT_OPSET;
    const domains = options.domains ?? {};
    for (const d of this.#scope.domains) {
      if (d !== 'ai.onnx' && !Object.prototype.hasOwnProperty.call(domains, d)) {
        throw new KilnError('E_INVALID_ARGUMENT', `operator domain '${d}' is used by a node but not imported; add it to build options.domains`);
      }
    }
    const model: ModelProto = {
      irVersion: BigInt(options.irVersion ?? irVersionFor(opset)),
      opsetImport: [
        { domain: '', version: BigInt(opset) },
        ...Object.entries(domains).map(([domain, version]) => ({ domain, version: BigInt(version) })),
      ],
      producerName: options.producerName ?? 'kiln',
      graph: this.graph(),
    };
    if (options.docString !== undefined) model.docString = options.docString;
    if (options.metadata !== undefined) {
      model.metadataProps = Object.entries(options.metadata).map(([key, value]) => ({ key, value }));
    }
    return model;
  }

  /** Serialized ModelProto bytes. */
  build(options: BuildOptions = {}): Uint8Array {
    return encodeModel(this.model(options));
  }

  private assertDefined(name: string, what: string): void {
    if (!this.#scope.values.has(name)) throw new KilnError('E_INVALID_ARGUMENT', `${what} '${name}' is not defined by any input, initializer or node output`);
  }
}

/** The IR version ONNX released alongside each default-domain opset (onnx.helper.VERSION_TABLE). */
export function irVersionFor(opset: number): number {
  if (!Number.isInteger(opset) || opset < 1) throw new KilnError('E_INVALID_ARGUMENT', `opset must be a positive integer, received ${opset}`);
  if (opset <= 8) return 3;
  if (opset <= 11) return opset - 5; // 9 -> 4, 10 -> 5, 11 -> 6
  if (opset <= 14) return 7;
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  if (opset === 23) return 11;
  throw new KilnError('E_INVALID_ARGUMENT', `no known IR version for opset ${opset}; pass irVersion explicitly`);
}

function valueInfo(name: string, type: TensorType, dims: readonly Dim[] | undefined): ValueInfoProto {
  if (!isTensorType(type)) throw new KilnError('E_INVALID_ARGUMENT', `'${name}': unknown element type ${String(type)}`);
  const tensorType: NonNullable<TypeProto['tensorType']> = { elemType: ONNX_TYPE[type] };
  if (dims !== undefined) {
    tensorType.shape = {
      dim: dims.map((d) => {
        if (d === null) return {};
        if (typeof d === 'string') return { dimParam: d };
        if (!Number.isSafeInteger(d) || d < 0) throw new KilnError('E_INVALID_ARGUMENT', `'${name}': dimension ${String(d)} is not a size, name or null`);
        return { dimValue: BigInt(d) };
      }),
    };
  }
  return { name, type: { tensorType } };
}

function attributeOf(value: AttrValue, what: string): Omit<AttributeProto, 'name'> {
  if (value instanceof Attr) return value.proto;
  if (value instanceof GraphBuilder) return { type: AttributeType.GRAPH, g: value.graph() };
  if (typeof value === 'bigint') return attr.int(value).proto;
  if (typeof value === 'number') return (Number.isInteger(value) ? attr.int(value) : attr.float(value)).proto;
  if (typeof value === 'string') return attr.string(value).proto;
  if (Array.isArray(value) && value.length > 0) {
    const list: readonly unknown[] = value;
    if (list.every((v) => typeof v === 'string')) return attr.strings(list as string[]).proto;
    if (list.every((v) => typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v)))) return attr.ints(list as (number | bigint)[]).proto;
    if (list.every((v) => typeof v === 'number')) return attr.floats(list as number[]).proto;
  }
  throw new KilnError('E_INVALID_ARGUMENT', `attribute ${what}: cannot infer an ONNX type for ${Array.isArray(value) ? 'this list (empty or mixed); use attr.ints/floats/strings' : typeof value}`);
}

function toInt64(v: number | bigint): bigint {
  if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new KilnError('E_INVALID_ARGUMENT', `${v} is not an exact integer; pass a bigint for values beyond 2^53`);
  const b = BigInt(v);
  if (b < -(2n ** 63n) || b >= 2n ** 63n) throw new KilnError('E_INVALID_ARGUMENT', `${b} does not fit in int64`);
  return b;
}

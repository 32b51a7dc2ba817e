/**
 * onnxruntime-common's InferenceSession over a Kiln Session: same arguments, names and
 * metadata; runs go through Kiln's executor threads and outputs are not copied.
 */
import { KilnError } from '../errors';
import { Session, type ValueInfo } from '../session';
import { describeData, isTensorType, type TensorLike, type TensorType } from '../tensor';
import { applyEnv } from './env';
import { runSignal, sessionOptions, type RunOptions, type SessionOptions } from './options';
import { Tensor } from './tensor';

export interface NonTensorValueMetadata {
  readonly name: string;
  readonly isTensor: false;
}
export interface TensorValueMetadata {
  readonly name: string;
  readonly isTensor: true;
  readonly type: TensorType;
  /** Fixed dims as numbers, symbolic dims by name, unnamed dynamic dims as ''. */
  readonly shape: ReadonlyArray<number | string>;
}
export type ValueMetadata = NonTensorValueMetadata | TensorValueMetadata;

export type FeedsType = { readonly [name: string]: TensorLike };
export type FetchesType = readonly string[] | { readonly [name: string]: TensorLike | null };
export type ReturnType = { readonly [name: string]: Tensor };

function metadata(v: ValueInfo): ValueMetadata {
  if (!isTensorType(v.type)) return { name: v.name, isTensor: false };
  // Kiln writes an unnamed dynamic dim as '?'; onnxruntime-node as ''.
  return { name: v.name, isTensor: true, type: v.type, shape: v.shape.map((d) => (d === '?' ? '' : d)) };
}

function isTensorValue(v: unknown): boolean {
  return v === null || (typeof v === 'object' && 'dims' in v);
}

function options(value: unknown): SessionOptions | undefined {
  if (value === undefined || (value !== null && typeof value === 'object')) return value as SessionOptions | undefined;
  throw new KilnError('E_INVALID_ARGUMENT', `session options must be an object, received ${describeData(value)}`);
}

function integer(value: unknown, what: string, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || (value as number) < min || (value as number) > max) {
    throw new KilnError('E_INVALID_ARGUMENT', `${what} must be an integer in [${min}, ${max}], received ${String(value)}`);
  }
  return value as number;
}

/** The model bytes or path and the options, from create()'s overloads. */
function modelSource(model: unknown, a: unknown, b: unknown, c: unknown): [string | Uint8Array, SessionOptions | undefined] {
  if (typeof model === 'string' || model instanceof Uint8Array) return [model, options(a)];
  const isBuffer = model instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && model instanceof SharedArrayBuffer);
  if (!isBuffer) {
    throw new KilnError('E_INVALID_ARGUMENT', `model must be a file path, a Uint8Array or an ArrayBuffer, received ${describeData(model)}`);
  }
  const buffer = model as ArrayBufferLike;
  if (typeof a !== 'number') return [new Uint8Array(buffer), options(a)];
  const offset = integer(a, 'byteOffset', 0, buffer.byteLength - 1);
  if (typeof b !== 'number') return [new Uint8Array(buffer, offset), options(b)];
  const length = integer(b, 'byteLength', 1, buffer.byteLength - offset);
  return [new Uint8Array(buffer, offset, length), options(c)];
}

export class InferenceSession {
  readonly #session: Session;
  /** ONNX Runtime profiles a session from its creation (enableProfiling) until endProfiling(). */
  #profiling: 'off' | 'running' | 'ended';
  readonly inputNames: readonly string[];
  readonly outputNames: readonly string[];
  readonly inputMetadata: readonly ValueMetadata[];
  readonly outputMetadata: readonly ValueMetadata[];

  private constructor(session: Session, profiling: boolean) {
    this.#session = session;
    this.#profiling = profiling ? 'running' : 'off';
    this.inputNames = session.inputs.map((v) => v.name);
    this.outputNames = session.outputs.map((v) => v.name);
    this.inputMetadata = session.inputs.map(metadata);
    this.outputMetadata = session.outputs.map(metadata);
  }

  static create(uri: string, options?: SessionOptions): Promise<InferenceSession>;
  static create(buffer: ArrayBufferLike, options?: SessionOptions): Promise<InferenceSession>;
  static create(buffer: ArrayBufferLike, byteOffset: number, byteLength?: number, options?: SessionOptions): Promise<InferenceSession>;
  static create(buffer: Uint8Array, options?: SessionOptions): Promise<InferenceSession>;
  static async create(model: string | ArrayBufferLike | Uint8Array, a?: SessionOptions | number, b?: number, c?: SessionOptions): Promise<InferenceSession> {
    const [source, opts] = modelSource(model, a, b, c);
    const kilnOptions = sessionOptions(opts);
    applyEnv();
    return new InferenceSession(await Session.create(source, kilnOptions), kilnOptions.profiling !== undefined);
  }

  run(feeds: FeedsType, options?: RunOptions): Promise<ReturnType>;
  run(feeds: FeedsType, fetches: FetchesType, options?: RunOptions): Promise<ReturnType>;
  async run(feeds: FeedsType, fetchesOrOptions?: FetchesType | RunOptions, maybeOptions?: RunOptions): Promise<ReturnType> {
    if (feeds === null || typeof feeds !== 'object' || Array.isArray(feeds) || feeds instanceof Tensor) {
      throw new KilnError('E_INVALID_ARGUMENT', `feeds must be an object of input name -> tensor, received ${describeData(feeds)}`);
    }
    let fetches: FetchesType | undefined;
    let options: unknown = fetchesOrOptions;
    if (this.#isFetches(fetchesOrOptions)) {
      fetches = fetchesOrOptions;
      options = maybeOptions;
    }
    const signal = runSignal(options);
    const results = await this.#session.run(feeds, { outputs: fetches, signal });
    const out: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(results)) {
      // A preallocated fetch tensor now holds the output: hand back that very tensor.
      const given = fetches && !Array.isArray(fetches) ? (fetches as Record<string, unknown>)[name] : undefined;
      out[name] = given instanceof Tensor && given.data === t.data ? given : new Tensor(t.type as TensorType, t.data, t.dims);
    }
    return out;
  }

  /** Resolves once nothing of this session is running; later runs reject with E_DISPOSED. */
  async release(): Promise<void> {
    await this.#session.dispose();
  }

  /**
   * Profiling runs from the session's creation with enableProfiling, and then this does
   * nothing, as in onnxruntime-node: ONNX Runtime cannot start profiling a session it
   * created without. Where onnxruntime-node would silently profile nothing (no
   * enableProfiling, or after endProfiling()), this is E_INVALID_ARGUMENT saying how to get
   * a profile.
   */
  startProfiling(): void {
    if (this.#session.disposed) throw new KilnError('E_DISPOSED', 'session is disposed');
    if (this.#profiling === 'running') return;
    throw new KilnError('E_INVALID_ARGUMENT', this.#profiling === 'ended'
      ? 'startProfiling(): this session\'s profiling ended with endProfiling() and ONNX Runtime cannot restart it; create another session with { enableProfiling: true } to profile again'
      : 'startProfiling(): ONNX Runtime profiles a session only from its creation; create the session with { enableProfiling: true } (profileFilePrefix names the file), and endProfiling() returns the profile\'s path');
  }

  /** Stops profiling and returns the profile file's path ('' when profiling was off). */
  endProfiling(): string {
    const file = this.#session.endProfiling();
    if (this.#profiling === 'running') this.#profiling = 'ended';
    return file;
  }

  /**
   * Reads run()'s second argument as fetches when it is names or an object with an output's
   * name as a key (onnxruntime-common's rule), or with a tensor or null as a value (so that a
   * misspelt output is reported rather than taken for RunOptions).
   */
  #isFetches(arg: unknown): arg is FetchesType {
    if (Array.isArray(arg)) return true;
    if (arg === null || typeof arg !== 'object') return false;
    return Object.entries(arg).some(([k, v]) => this.outputNames.includes(k) || isTensorValue(v));
  }
}

/** onnxruntime-common's type names, e.g. InferenceSession.SessionOptions. */
export declare namespace InferenceSession {
  type SessionOptions = import('./options').SessionOptions;
  type RunOptions = import('./options').RunOptions;
  type ExecutionProviderConfig = import('./options').ExecutionProviderConfig;
  type ValueMetadata = import('./session').ValueMetadata;
  type FeedsType = import('./session').FeedsType;
  type FetchesType = import('./session').FetchesType;
  type ReturnType = import('./session').ReturnType;
}

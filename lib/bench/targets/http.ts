/**
 * A KServe v2 server over HTTP as a bench target: `kiln serve`, Triton, MLServer or any other
 * server of the protocol. Requests carry JSON tensors, or Triton's binary tensor extension (a
 * JSON header of `Inference-Header-Content-Length` bytes, then each input's raw bytes; outputs
 * asked for as binary with `binary_data_output`). Each input set's body is encoded once, before
 * the first request, so the load generator measures the server and the wire rather than the
 * encoding; connections are kept alive, one per request in flight.
 */
import * as http from 'http';
import * as https from 'https';
import { KilnError, type KilnErrorCode } from '../../errors';
import { V2_TYPES, fromBinary, fromJson, toBinary, toJson, type JsonTensor } from '../../server/tensors';
import type { Tensor, TensorType } from '../../tensor';
import type { InputSet, ServerCounters, Target } from '../types';
import { httpServerCounters } from './server-counters';

export interface ServedTargetOptions {
  /** "127.0.0.1:8000" or "http://127.0.0.1:8000" (http); "127.0.0.1:8001" (grpc). */
  url: string;
  model: string;
  version?: string;
  /** Cycled through: request i uses inputs[i % inputs.length]. */
  inputs: InputSet[];
  /** The outputs requested (all when absent). */
  outputs?: string[];
  /** HTTP only: Triton's binary tensor extension instead of JSON tensors. */
  binary?: boolean;
}

/** A model's inputs and outputs as the server describes them; unknown (-1) dims named "dim<i>". */
export interface ServedModelMetadata {
  inputs: { name: string; type: TensorType; shape: (number | string)[] }[];
  outputs: { name: string; type: TensorType; shape: (number | string)[] }[];
}

/** Decoded outputs by name, as `Target.outputs` gives them. */
export type DecodedOutputs = Record<string, { type: string; dims: number[]; data: ArrayLike<number | bigint | string> }>;

const HEADER_LENGTH = 'inference-header-content-length';
/** Metadata and statistics calls give up after this long: a server that does not answer them is unavailable. */
const CONTROL_TIMEOUT_MS = 10_000;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One server's base URL with a keep-alive agent (a socket per request in flight, kept between requests). */
class HttpConnection {
  readonly base: string;
  readonly #url: URL;
  /** The URL's path without its trailing slash: the server may live below a prefix. */
  readonly #prefix: string;
  readonly #agent: http.Agent;
  readonly #module: typeof http | typeof https;

  constructor(url: string) {
    let parsed: URL;
    try {
      parsed = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`);
    } catch {
      throw new KilnError('E_INVALID_ARGUMENT', `server URL ${JSON.stringify(url)} is not host:port or an http(s):// URL`);
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new KilnError('E_INVALID_ARGUMENT', `server URL ${JSON.stringify(url)}: the HTTP target speaks http:// or https://, not ${parsed.protocol}//`);
    this.#url = parsed;
    this.#prefix = parsed.pathname.replace(/\/+$/, '');
    this.base = `${parsed.origin}${this.#prefix}`;
    this.#module = parsed.protocol === 'https:' ? https : http;
    this.#agent = new this.#module.Agent({ keepAlive: true, maxFreeSockets: 1024 });
  }

  request(method: string, path: string, body?: Buffer, headers?: Record<string, string>, timeoutMs?: number): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = this.#module.request(
        { protocol: this.#url.protocol, hostname: this.#url.hostname, port: this.#url.port, path: `${this.#prefix}${path}`, method, headers, agent: this.#agent, timeout: timeoutMs },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) }));
          res.on('error', (e) => reject(this.#unreachable(e)));
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', (e) => reject(this.#unreachable(e)));
      req.end(body);
    });
  }

  /** A path's JSON answer; a status other than 2xx is a KilnError carrying the server's message. */
  async getJson(path: string, what: string): Promise<unknown> {
    const a = await this.request('GET', path, undefined, { accept: 'application/json' }, CONTROL_TIMEOUT_MS);
    if (a.status < 200 || a.status >= 300) throw statusError(a, what);
    try {
      return JSON.parse(a.body.toString('utf8'));
    } catch (e) {
      throw new KilnError('E_UNAVAILABLE', `${what}: the server's answer is not JSON: ${(e as Error).message}`, { cause: e });
    }
  }

  close(): void {
    this.#agent.destroy();
  }

  #unreachable(e: Error): KilnError {
    return new KilnError('E_UNAVAILABLE', `cannot reach the server at ${this.base}: ${e.message}`, { cause: e });
  }
}

/** The code of a failed answer: 404 unknown, 400 (and other 4xx) bad request, 429 and 5xx unavailable. */
function statusCode(status: number, message: string): KilnErrorCode {
  if (status === 404) return 'E_NOT_FOUND';
  // Triton answers an unknown model with 400 in some versions.
  if (status === 400 && /unknown model|not found/i.test(message)) return 'E_NOT_FOUND';
  if (status >= 400 && status < 500 && status !== 429) return 'E_INVALID_ARGUMENT';
  return 'E_UNAVAILABLE';
}

/** A failed answer as a KilnError with the server's own message (`{"error": "..."}` in the protocol). */
function statusError(a: Answer, what: string): KilnError {
  const text = a.body.toString('utf8');
  let message = text.trim() || http.STATUS_CODES[a.status] || 'no message';
  try {
    const e = (JSON.parse(text) as { error?: unknown }).error;
    if (typeof e === 'string') message = e;
  } catch {
    // Not the protocol's JSON: the body as it is.
  }
  return new KilnError(statusCode(a.status, message), `${what}: HTTP ${a.status}: ${message}`);
}

const modelPath = (model: string, version?: string): string => `/v2/models/${encodeURIComponent(model)}${version ? `/versions/${encodeURIComponent(version)}` : ''}`;
const modelLabel = (model: string, version?: string): string => `model "${model}"${version ? ` version ${version}` : ''}`;

/** KServe v2 tensor metadata in Kiln's terms: datatypes as tensor types, -1 dims as names. */
export function servedMetadata(answer: unknown, what: string): ServedModelMetadata {
  const list = (key: 'inputs' | 'outputs'): ServedModelMetadata['inputs'] => {
    const tensors = (answer as Record<string, unknown> | null)?.[key];
    if (!Array.isArray(tensors)) throw new KilnError('E_UNAVAILABLE', `${what}: the metadata has no "${key}" array`);
    return (tensors as { name?: unknown; datatype?: unknown; shape?: unknown }[]).map((t) => {
      const type = V2_TYPES[String(t.datatype)];
      if (!type) throw new KilnError('E_INVALID_ARGUMENT', `${what}: ${key.slice(0, -1)} "${String(t.name)}" has datatype ${JSON.stringify(t.datatype)}, which Kiln does not know (one of ${Object.keys(V2_TYPES).join(', ')})`);
      const shape = (Array.isArray(t.shape) ? t.shape : []).map((d: unknown, i: number) => (Number(d) >= 0 ? Number(d) : `dim${i}`));
      return { name: String(t.name), type, shape };
    });
  };
  return { inputs: list('inputs'), outputs: list('outputs') };
}

/** The model's metadata from `GET /v2/models/{model}[/versions/{version}]`. */
export async function httpModelMetadata(url: string, model: string, version?: string): Promise<ServedModelMetadata> {
  const c = new HttpConnection(url);
  try {
    return servedMetadata(await c.getJson(modelPath(model, version), modelLabel(model, version)), modelLabel(model, version));
  } finally {
    c.close();
  }
}

interface Encoded {
  body: Buffer;
  headers: Record<string, string>;
}

/** One input set's request body, as JSON tensors or as the binary extension's header and bytes. */
export function encodeHttpRequest(set: InputSet, outputs: string[] | undefined, binary: boolean): Encoded {
  const tensors = Object.entries(set);
  if (!binary) {
    const header = { inputs: tensors.map(([name, t]) => toJson(name, t)), ...(outputs ? { outputs: outputs.map((name) => ({ name })) } : {}) };
    const body = Buffer.from(JSON.stringify(header));
    return { body, headers: { 'content-type': 'application/json', 'content-length': String(body.length) } };
  }
  const bytes = tensors.map(([, t]) => toBinary(t));
  const header = {
    inputs: tensors.map(([name, t], i) => {
      const { data: _data, ...rest } = toJson(name, { type: t.type, data: [], dims: t.dims });
      return { ...rest, parameters: { binary_data_size: bytes[i].length } };
    }),
    ...(outputs ? { outputs: outputs.map((name) => ({ name, parameters: { binary_data: true } })) } : {}),
    parameters: { binary_data_output: true },
  };
  const json = Buffer.from(JSON.stringify(header));
  const body = Buffer.concat([json, ...bytes]);
  return { body, headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length), [HEADER_LENGTH]: String(json.length) } };
}

/** An infer answer's outputs: JSON tensors, or binary ones after the JSON header. */
export function decodeHttpAnswer(a: Answer): DecodedOutputs {
  const given = a.headers[HEADER_LENGTH];
  const length = given === undefined ? a.body.length : Number(given);
  if (!Number.isSafeInteger(length) || length < 0 || length > a.body.length) throw new KilnError('E_UNAVAILABLE', `the server's Inference-Header-Content-Length ${JSON.stringify(given)} is not a length within its ${a.body.length}-byte answer`);
  let header: { outputs?: (JsonTensor & { parameters?: { binary_data_size?: unknown } })[] };
  try {
    header = JSON.parse(a.body.toString('utf8', 0, length)) as typeof header;
  } catch (e) {
    throw new KilnError('E_UNAVAILABLE', `the server's answer is not JSON: ${(e as Error).message}`, { cause: e });
  }
  const out: DecodedOutputs = {};
  let offset = length;
  for (const t of header.outputs ?? []) {
    const size = t.parameters?.binary_data_size;
    let tensor: Tensor;
    if (size === undefined) {
      tensor = fromJson(t, undefined, Number.MAX_SAFE_INTEGER);
    } else {
      const end = offset + Number(size);
      if (!Number.isSafeInteger(end) || end > a.body.length) throw new KilnError('E_UNAVAILABLE', `output "${t.name}": binary_data_size ${JSON.stringify(size)} goes past the end of the server's answer`);
      tensor = fromBinary(t, a.body.subarray(offset, end), undefined, Number.MAX_SAFE_INTEGER);
      offset = end;
    }
    out[t.name] = { type: tensor.type, dims: [...tensor.dims], data: tensor.data };
  }
  return out;
}

/** A KServe v2 HTTP endpoint as a target; the model's metadata is asked first, so an unknown model or an unreachable server fails here. */
export async function createHttpTarget(o: ServedTargetOptions): Promise<Target> {
  if (o.inputs.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'the HTTP target needs at least one input set');
  const c = new HttpConnection(o.url);
  const label = modelLabel(o.model, o.version);
  try {
    await c.getJson(modelPath(o.model, o.version), label);
  } catch (e) {
    c.close();
    throw e;
  }
  const encoded = o.inputs.map((set) => encodeHttpRequest(set, o.outputs, o.binary ?? false));
  const inferPath = `${modelPath(o.model, o.version)}/infer`;
  const send = async (index: number): Promise<Answer> => {
    const e = encoded[index % encoded.length];
    const a = await c.request('POST', inferPath, e.body, e.headers);
    if (a.status < 200 || a.status >= 300) throw statusError(a, label);
    return a;
  };
  let next = 0;
  return {
    name: 'http',
    description: `${label} at ${c.base} over HTTP (${o.binary ? 'binary' : 'JSON'} tensors)`,
    async infer(): Promise<void> {
      decodeHttpAnswer(await send(next++));
    },
    async outputs(index: number): Promise<DecodedOutputs> {
      return decodeHttpAnswer(await send(index));
    },
    counters(): Promise<ServerCounters> {
      return httpServerCounters((path) => c.getJson(path, `the statistics of ${label}`), o.model, o.version);
    },
    async close(): Promise<void> {
      c.close();
    },
  };
}

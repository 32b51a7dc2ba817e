/**
 * A KServe v2 server over gRPC (`inference.GRPCInferenceService`, proto/grpc_service.proto) as
 * a bench target, through @grpc/grpc-js on one channel. Inputs travel in
 * `raw_input_contents`; each input set's ModelInfer request is serialized once, before the
 * first request, and sent as those bytes. Outputs are read from `raw_output_contents` (what
 * Triton and `kiln serve` answer) or from typed `contents` (what some servers answer).
 */
import * as grpc from '@grpc/grpc-js';
import { KilnError, type KilnErrorCode } from '../../errors';
import { CONTENTS, inferenceService } from '../../server/grpc';
import { fromBinary, fromJson, toBinary, v2TypeOf } from '../../server/tensors';
import type { Tensor } from '../../tensor';
import type { ServerCounters, Target } from '../types';
import { servedMetadata, type DecodedOutputs, type ServedModelMetadata, type ServedTargetOptions } from './http';
import { grpcServerCounters } from './server-counters';

/** Metadata and statistics calls give up after this long: a server that does not answer them is unavailable. */
const CONTROL_TIMEOUT_MS = 10_000;

const CODES: Readonly<Partial<Record<grpc.status, KilnErrorCode>>> = {
  [grpc.status.NOT_FOUND]: 'E_NOT_FOUND',
  [grpc.status.INVALID_ARGUMENT]: 'E_INVALID_ARGUMENT',
  [grpc.status.FAILED_PRECONDITION]: 'E_INVALID_ARGUMENT',
  [grpc.status.OUT_OF_RANGE]: 'E_INVALID_ARGUMENT',
  [grpc.status.UNAUTHENTICATED]: 'E_INVALID_ARGUMENT',
  [grpc.status.PERMISSION_DENIED]: 'E_INVALID_ARGUMENT',
  [grpc.status.DEADLINE_EXCEEDED]: 'E_TIMEOUT',
  [grpc.status.CANCELLED]: 'E_ABORTED',
};

interface OutputTensor {
  name: string;
  datatype: string;
  shape: number[];
  contents?: Record<string, unknown[]>;
}

interface InferResponse {
  outputs?: OutputTensor[];
  raw_output_contents?: Buffer[];
}

/** A failed call as a KilnError with the server's message; an unknown model is E_NOT_FOUND whatever status the server chose. */
function callError(e: grpc.ServiceError, what: string): KilnError {
  const details = e.details || e.message;
  const code = /unknown model|not found/i.test(details) && e.code !== grpc.status.UNAVAILABLE ? 'E_NOT_FOUND' : (CODES[e.code] ?? 'E_UNAVAILABLE');
  return new KilnError(code, `${what}: gRPC ${grpc.status[e.code] ?? e.code}: ${details}`, { cause: e });
}

/** One channel to a server, and unary calls of the inference service on it. */
class GrpcConnection {
  readonly address: string;
  readonly #client: grpc.Client;
  readonly #service = inferenceService().service;

  constructor(url: string) {
    this.address = url.replace(/^(grpc|http|dns):\/\//i, '').replace(/\/+$/, '');
    if (!/^(\[[0-9a-f:.]+\]|[^\s/:]+):\d+$/i.test(this.address)) throw new KilnError('E_INVALID_ARGUMENT', `gRPC address ${JSON.stringify(url)} is not host:port`);
    this.#client = new grpc.Client(this.address, grpc.credentials.createInsecure(), { 'grpc.max_receive_message_length': -1, 'grpc.max_send_message_length': -1 });
  }

  /** The bytes of one request of `method`, serialized once for reuse. */
  serialize(method: string, request: unknown): Buffer {
    return this.#service[method].requestSerialize(request);
  }

  /** A unary call with a request already serialized (`raw`) or to serialize. */
  call<T>(method: string, request: unknown, what: string, options: { raw?: boolean; timeoutMs?: number } = {}): Promise<T> {
    const m = this.#service[method];
    const serialize = options.raw ? (b: Buffer): Buffer => b : m.requestSerialize;
    const callOptions: grpc.CallOptions = options.timeoutMs ? { deadline: Date.now() + options.timeoutMs } : {};
    return new Promise((resolve, reject) => {
      this.#client.makeUnaryRequest<unknown, unknown>(m.path, serialize as (value: unknown) => Buffer, m.responseDeserialize, request, new grpc.Metadata(), callOptions, (e, r) => (e ? reject(callError(e, what)) : resolve(r as T)));
    });
  }

  close(): void {
    this.#client.close();
  }
}

const modelLabel = (model: string, version?: string): string => `model "${model}"${version ? ` version ${version}` : ''}`;

/** The model's metadata from ModelMetadata. */
export async function grpcModelMetadata(url: string, model: string, version?: string): Promise<ServedModelMetadata> {
  const c = new GrpcConnection(url);
  try {
    const label = modelLabel(model, version);
    return servedMetadata(await c.call('ModelMetadata', { name: model, version: version ?? '' }, label, { timeoutMs: CONTROL_TIMEOUT_MS }), label);
  } finally {
    c.close();
  }
}

/** A ModelInfer answer's outputs: raw contents in output order, else each output's typed contents. */
export function decodeGrpcAnswer(r: InferResponse): DecodedOutputs {
  const raw = r.raw_output_contents ?? [];
  const outputs = r.outputs ?? [];
  const out: DecodedOutputs = {};
  outputs.forEach((t, i) => {
    const json = { name: t.name, datatype: t.datatype, shape: t.shape.map(Number), data: [] as unknown[] };
    let tensor: Tensor;
    if (raw.length) {
      if (i >= raw.length) throw new KilnError('E_UNAVAILABLE', `the server's answer has ${outputs.length} outputs and ${raw.length} raw_output_contents`);
      tensor = fromBinary(json, raw[i], undefined, Number.MAX_SAFE_INTEGER);
    } else {
      const values = t.contents?.[CONTENTS[t.datatype] ?? ''] ?? [];
      json.data = t.datatype === 'BYTES' ? (values as Buffer[]).map((b) => b.toString('utf8')) : values.map(Number);
      tensor = fromJson(json, undefined, Number.MAX_SAFE_INTEGER);
    }
    out[t.name] = { type: tensor.type, dims: [...tensor.dims], data: tensor.data };
  });
  return out;
}

/** A KServe v2 gRPC endpoint as a target; the model's metadata is asked first, so an unknown model or an unreachable server fails here. */
export async function createGrpcTarget(o: ServedTargetOptions): Promise<Target> {
  if (o.inputs.length === 0) throw new KilnError('E_INVALID_ARGUMENT', 'the gRPC target needs at least one input set');
  const c = new GrpcConnection(o.url);
  const label = modelLabel(o.model, o.version);
  try {
    await c.call('ModelMetadata', { name: o.model, version: o.version ?? '' }, label, { timeoutMs: CONTROL_TIMEOUT_MS });
  } catch (e) {
    c.close();
    throw e;
  }
  const requests = o.inputs.map((set) => {
    const tensors = Object.entries(set);
    return c.serialize('ModelInfer', {
      model_name: o.model,
      model_version: o.version ?? '',
      inputs: tensors.map(([name, t]) => ({ name, datatype: v2TypeOf(t.type), shape: [...t.dims] })),
      outputs: (o.outputs ?? []).map((name) => ({ name })),
      raw_input_contents: tensors.map(([, t]) => toBinary(t)),
    });
  });
  const send = (index: number): Promise<InferResponse> => c.call<InferResponse>('ModelInfer', requests[index % requests.length], label, { raw: true });
  let next = 0;
  return {
    name: 'grpc',
    description: `${label} at ${c.address} over gRPC (raw tensors)`,
    async infer(): Promise<void> {
      decodeGrpcAnswer(await send(next++));
    },
    async outputs(index: number): Promise<DecodedOutputs> {
      return decodeGrpcAnswer(await send(index));
    },
    counters(): Promise<ServerCounters> {
      return grpcServerCounters((request) => c.call('ModelStatistics', request, `the statistics of ${label}`, { timeoutMs: CONTROL_TIMEOUT_MS }), o.model, o.version);
    },
    async close(): Promise<void> {
      c.close();
    },
  };
}

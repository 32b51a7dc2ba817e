/**
 * KServe v2 over gRPC (`inference.GRPCInferenceService`, proto/grpc_service.proto) through
 * @grpc/grpc-js: health, metadata, ModelInfer with typed `contents` or `raw_input_contents`
 * (outputs always in `raw_output_contents`, as Triton answers), ModelStreamInfer, the
 * statistics and repository extensions. Errors carry Triton's status codes: NOT_FOUND for an
 * unknown model or version, INVALID_ARGUMENT for a bad request, UNAVAILABLE for a model not
 * ready or a full queue.
 */
import * as path from 'path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { KilnError, toKilnError, type KilnErrorCode } from '../errors';
import type { Feeds } from '../session';
import type { Tensor, TensorType } from '../tensor';
import { inferOptions, inputChecker, modelMetadata, outputName, reshapedOutputDims, reshapeInput, servedParameters } from './infer';
import type { ModelManager } from './models';
import { SERVER_INFO } from './http';
import { tritonStatistics } from './stats';
import { fromBinary, fromJson, toBinary, v2TypeOf, type JsonTensor } from './tensors';

/** The .proto, shipped in the package's proto/ folder (dist/lib/server -> the package root). */
export const PROTO_FILE = path.join(__dirname, '..', '..', '..', 'proto', 'grpc_service.proto');

export interface GrpcServerOptions {
  /** Largest message in bytes (default 64 MiB). */
  maxMessageBytes?: number;
  /** Largest element count of one input tensor (default 2^26). */
  maxElements?: number;
  /** Requests must carry `authorization: Bearer <token>` metadata. */
  authToken?: string;
  /** What ServerReady answers (default: whether every model is ready); false while the server drains. */
  ready?: () => boolean;
}

const STATUS: Readonly<Partial<Record<KilnErrorCode, grpc.status>>> = {
  E_INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT, E_DTYPE_MISMATCH: grpc.status.INVALID_ARGUMENT, E_SHAPE_MISMATCH: grpc.status.INVALID_ARGUMENT,
  E_NOT_FOUND: grpc.status.NOT_FOUND, E_UNAVAILABLE: grpc.status.UNAVAILABLE, E_QUEUE_FULL: grpc.status.UNAVAILABLE, E_OVERLOADED: grpc.status.UNAVAILABLE,
  E_DISPOSED: grpc.status.UNAVAILABLE, E_TIMEOUT: grpc.status.DEADLINE_EXCEEDED, E_ABORTED: grpc.status.CANCELLED,
};

const grpcError = (e: unknown): Partial<grpc.ServiceError> => {
  const k = toKilnError(e);
  return { code: STATUS[k.code] ?? grpc.status.INTERNAL, details: k.message, message: k.message };
};

/** The package definition of the service (loaded once). */
let definition: grpc.GrpcObject | undefined;
export function inferenceService(): grpc.ServiceClientConstructor {
  definition ??= grpc.loadPackageDefinition(protoLoader.loadSync(PROTO_FILE, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true }));
  return (definition.inference as grpc.GrpcObject).GRPCInferenceService as grpc.ServiceClientConstructor;
}

interface Parameter {
  parameter_choice?: string;
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  double_param?: number;
  uint64_param?: number;
}

/** InferParameter map entries as plain values. */
function parameters(map: Record<string, Parameter> | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(map ?? {})) out[k] = p.parameter_choice ? p[p.parameter_choice as keyof Parameter] : undefined;
  return out;
}

/** Plain values as an InferParameter map: strings as string_param, numbers as double_param. */
function toParameters(values: Record<string, string | number> | undefined): Record<string, Parameter> {
  const out: Record<string, Parameter> = {};
  for (const [k, v] of Object.entries(values ?? {})) out[k] = typeof v === 'string' ? { string_param: v } : { double_param: v };
  return out;
}

interface InputTensor {
  name: string;
  datatype: string;
  shape: number[];
  parameters?: Record<string, Parameter>;
  contents?: Record<string, unknown[]>;
}

/** The typed contents field of each datatype (FP16 and BF16 have none: raw contents only). */
export const CONTENTS: Readonly<Record<string, string>> = {
  BOOL: 'bool_contents', INT8: 'int_contents', INT16: 'int_contents', INT32: 'int_contents', INT64: 'int64_contents',
  UINT8: 'uint_contents', UINT16: 'uint_contents', UINT32: 'uint_contents', UINT64: 'uint64_contents',
  FP32: 'fp32_contents', FP64: 'fp64_contents', BYTES: 'bytes_contents',
};

interface InferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters?: Record<string, Parameter>;
  inputs: InputTensor[];
  outputs: { name: string }[];
  raw_input_contents: Buffer[];
}

async function infer(manager: ModelManager, req: InferRequest, maxElements: number): Promise<Record<string, unknown>> {
  const v = manager.resolve(req.model_name, req.model_version);
  if (!req.inputs?.length) throw new KilnError('E_INVALID_ARGUMENT', 'the request has no inputs');
  const raw = req.raw_input_contents ?? [];
  if (raw.length && raw.length !== req.inputs.length) throw new KilnError('E_INVALID_ARGUMENT', `raw_input_contents holds ${raw.length} entries for ${req.inputs.length} inputs: give one per input, or none`);
  const checker = inputChecker(v);
  const feeds: Record<string, Tensor> = {};
  req.inputs.forEach((t, i) => {
    const type: TensorType = checker.type(t.name);
    const tensor: JsonTensor = { name: t.name, shape: t.shape, datatype: t.datatype, data: [] };
    if (raw.length) {
      feeds[t.name] = reshapeInput(v, t.name, fromBinary(tensor, raw[i], type, maxElements));
      return;
    }
    const field = CONTENTS[t.datatype];
    if (!field) throw new KilnError('E_INVALID_ARGUMENT', `input "${t.name}": ${t.datatype} has no typed contents field: send it in raw_input_contents`);
    const values = t.contents?.[field] ?? [];
    tensor.data = t.datatype === 'BYTES' ? (values as Buffer[]).map((b) => b.toString('utf8')) : values;
    feeds[t.name] = reshapeInput(v, t.name, fromJson(tensor, type, maxElements));
  });
  const options = inferOptions(parameters(req.parameters));
  const wanted = req.outputs?.length ? req.outputs.map((o) => outputName(v, o.name)) : v.model.outputs.map((o) => o.name);
  // Every output is computed (and cached) whatever the request asks for; the outputs asked
  // for are picked from that answer, so an answer cached for one selection is right for any.
  const served = await manager.infer(v.name, String(v.version), feeds as Feeds, { ...options, withCacheInfo: true });
  const results = served.outputs;
  return {
    model_name: v.name,
    model_version: String(v.version),
    id: req.id ?? '',
    parameters: toParameters(servedParameters(served.cache)),
    outputs: wanted.map((name) => ({ name, datatype: v2TypeOf(results[name].type), shape: reshapedOutputDims(v, name, results[name].dims) })),
    raw_output_contents: wanted.map((name) => toBinary(results[name])),
  };
}

type Handler = (call: { request: unknown; metadata: grpc.Metadata }) => Promise<unknown>;

/** A gRPC server over `manager` (not bound: `bindAsync` it). */
export function createGrpcServer(manager: ModelManager, options: GrpcServerOptions = {}): grpc.Server {
  const maxBytes = options.maxMessageBytes ?? 64 * 2 ** 20;
  const maxElements = options.maxElements ?? 2 ** 26;
  const ready = options.ready ?? (() => manager.ready());
  const server = new grpc.Server({ 'grpc.max_receive_message_length': maxBytes, 'grpc.max_send_message_length': maxBytes });
  const authorized = (metadata: grpc.Metadata): void => {
    if (options.authToken !== undefined && metadata.get('authorization')[0] !== `Bearer ${options.authToken}`) {
      throw Object.assign(new Error('missing or wrong bearer token (authorization: Bearer <token>)'), { grpcCode: grpc.status.UNAUTHENTICATED });
    }
  };
  const unary = (handler: Handler, open = false): grpc.handleUnaryCall<unknown, unknown> => (call, callback) => {
    Promise.resolve()
      .then(() => (open ? undefined : authorized(call.metadata)))
      .then(() => handler(call))
      .then((r) => callback(null, r), (e: unknown) => {
        const code = (e as { grpcCode?: grpc.status }).grpcCode;
        callback(code !== undefined ? { code, details: (e as Error).message } : grpcError(e));
      });
  };
  server.addService(inferenceService().service, {
    ServerLive: unary(async () => ({ live: true }), true),
    ServerReady: unary(async () => ({ ready: ready() }), true),
    ModelReady: unary(async ({ request }) => {
      const r = request as { name: string; version: string };
      try {
        manager.resolve(r.name, r.version);
        return { ready: true };
      } catch (e) {
        const k = toKilnError(e);
        if (k.code === 'E_UNAVAILABLE') return { ready: false };
        throw k;
      }
    }),
    ServerMetadata: unary(async () => SERVER_INFO),
    ModelMetadata: unary(async ({ request }) => {
      const r = request as { name: string; version: string };
      return modelMetadata(manager, r.name, r.version);
    }),
    ModelInfer: unary(async ({ request }) => infer(manager, request as InferRequest, maxElements)),
    ModelStatistics: unary(async ({ request }) => {
      const r = request as { name: string; version: string };
      return { model_stats: manager.statistics(r.name || undefined, r.version || undefined).map(tritonStatistics) };
    }),
    RepositoryIndex: unary(async ({ request }) => {
      const r = request as { ready: boolean };
      return { models: manager.index().filter((s) => !r.ready || s.state === 'READY').map((s) => ({ name: s.name, version: s.version === undefined ? '' : String(s.version), state: s.state, reason: s.reason })) };
    }),
    RepositoryModelLoad: unary(async ({ request }) => {
      await manager.load((request as { model_name: string }).model_name);
      return {};
    }),
    RepositoryModelUnload: unary(async ({ request }) => {
      await manager.unload((request as { model_name: string }).model_name);
      return {};
    }),
    // Each request answered in its own message, in the order its answer is ready; a failure is
    // an error_message for that request, and the stream goes on.
    ModelStreamInfer: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      try {
        authorized(call.metadata);
      } catch (e) {
        call.destroy(Object.assign(new Error((e as Error).message), { code: grpc.status.UNAUTHENTICATED }));
        return;
      }
      let open = 0;
      let ended = false;
      const finish = (): void => {
        if (ended && open === 0) call.end();
      };
      call.on('data', (request: unknown) => {
        open++;
        infer(manager, request as InferRequest, maxElements).then(
          (r) => call.write({ error_message: '', infer_response: r }),
          (e: unknown) => call.write({ error_message: toKilnError(e).message, infer_response: null }),
        ).finally(() => {
          open--;
          finish();
        });
      });
      call.on('end', () => {
        ended = true;
        finish();
      });
    },
  });
  return server;
}

/**
 * KServe v2 (Open Inference Protocol) over HTTP/REST on fastify, as Triton serves it: health,
 * server and model metadata, readiness, infer with JSON tensors or Triton's binary tensor
 * extension (`Inference-Header-Content-Length`: a JSON header, then each input's raw bytes;
 * outputs as binary on request), Triton's model repository extension (index, load, unload)
 * and statistics extension, and Prometheus metrics at /metrics (stats.ts). Errors are
 * `{"error": "..."}` with Triton's statuses: 400 for a bad request, 404 for an unknown model
 * or version, 413 for a body over the limit, 503 for a model that is not ready or a full
 * queue (429 by option; with Retry-After when the batcher estimates one).
 */
import * as fs from 'fs';
import * as path from 'path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { KilnError, toKilnError, type KilnErrorCode } from '../errors';
import type { Feeds, Results } from '../session';
import type { ModelManager } from './models';
import { inferOptions, inputChecker, modelMetadata, outputName, reshapedOutputDims, reshapeInput, servedParameters } from './infer';
import { serverMetrics, tritonStatistics } from './stats';
import { fromBinary, fromJson, toBinary, toJson, type JsonTensor } from './tensors';

export interface HttpServerOptions {
  /** Largest request body in bytes (default 64 MiB): larger ones get 413 before being read. */
  bodyLimit?: number;
  /** Largest element count of one input tensor (default 2^26): more is 400 before any allocation. */
  maxElements?: number;
  /** pino logger for one line per request (with its id) and errors; none by default. */
  logger?: Logger;
  /** HTTP status for a full queue (E_QUEUE_FULL, E_OVERLOADED): 503 (Triton's, default) or 429. */
  queueFullStatus?: 429 | 503;
  /** What /v2/health/ready answers (default: whether every model is ready); false while the server drains. */
  ready?: () => boolean;
}

/** The server metadata both protocols answer with (the version is the package's). */
export const SERVER_INFO = {
  name: 'kiln',
  version: (JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version,
  extensions: ['binary_tensor_data', 'model_repository', 'statistics'],
};
const HEADER_LENGTH = 'inference-header-content-length';

/** Triton's HTTP status for each Kiln error code. */
const STATUS: Readonly<Partial<Record<KilnErrorCode, number>>> = {
  E_INVALID_ARGUMENT: 400, E_DTYPE_MISMATCH: 400, E_SHAPE_MISMATCH: 400, E_NOT_FOUND: 404,
  E_UNAVAILABLE: 503, E_QUEUE_FULL: 503, E_OVERLOADED: 503, E_DISPOSED: 503, E_TIMEOUT: 503, E_ABORTED: 400,
};

function send(reply: FastifyReply, e: unknown, queueFullStatus: 429 | 503 = 503): FastifyReply {
  const k = toKilnError(e);
  const status = k.code === 'E_QUEUE_FULL' || k.code === 'E_OVERLOADED' ? queueFullStatus : (STATUS[k.code] ?? 500);
  if (k.retryAfterMs !== undefined) reply.header('retry-after', String(Math.max(1, Math.ceil(k.retryAfterMs / 1000))));
  return reply.code(status).send({ error: k.message });
}

interface InferBody {
  id?: unknown;
  parameters?: Record<string, unknown>;
  inputs?: unknown;
  outputs?: unknown;
}

/** A KServe v2 HTTP server over `manager` (not listening: call `listen`). */
export function createHttpServer(manager: ModelManager, options: HttpServerOptions = {}): FastifyInstance {
  const maxElements = options.maxElements ?? 2 ** 26;
  const ready = options.ready ?? (() => manager.ready());
  const fail = (reply: FastifyReply, e: unknown): FastifyReply => send(reply, e, options.queueFullStatus);
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 64 * 2 ** 20,
    ...(options.logger ? { loggerInstance: options.logger as unknown as FastifyBaseLogger } : { logger: false }),
    // A client that sends its body slowly or not at all cannot hold the server: 30 s to send it.
    requestTimeout: 30_000,
  });
  // Fastify's own errors (bad JSON, body too large) in the protocol's shape.
  app.setErrorHandler((error: Error & { statusCode?: number }, _request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    reply.code(status).send({ error: status === 413 ? `request body larger than ${options.bodyLimit ?? 64 * 2 ** 20} bytes (the server's limit)` : error.message });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: `no route ${request.method} ${request.url.split('?')[0]}` }));
  // Closing: answers sent from now on close their connection, so that keep-alive clients do
  // not hold the server open once the requests in flight are answered.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onSend', async (_request, reply, payload) => {
    if (closing) reply.header('connection', 'close');
    return payload;
  });
  // Bodies are read as bytes (bounded by bodyLimit) and decoded here: a binary infer request
  // is a JSON header followed by raw tensor bytes, whatever its content type says.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

  app.get('/v2/health/live', async (_q, reply) => reply.code(200).send());
  app.get('/v2/health/ready', async (_q, reply) => reply.code(ready() ? 200 : 503).send());
  app.get('/v2', async () => SERVER_INFO);

  type Params = { name: string; version?: string };
  for (const base of ['/v2/models/:name', '/v2/models/:name/versions/:version']) {
    app.get<{ Params: Params }>(base, async (q, reply) => {
      try {
        return modelMetadata(manager, q.params.name, q.params.version);
      } catch (e) {
        return fail(reply, e);
      }
    });
    app.get<{ Params: Params }>(`${base}/ready`, async (q, reply) => {
      try {
        manager.resolve(q.params.name, q.params.version);
        return reply.code(200).send();
      } catch (e) {
        const k = toKilnError(e);
        return k.code === 'E_NOT_FOUND' || k.code === 'E_UNAVAILABLE' ? reply.code(400).send({ error: k.message }) : fail(reply, k);
      }
    });
    app.post<{ Params: Params; Body: Buffer | undefined }>(`${base}/infer`, async (q, reply) => {
      try {
        const { header, binary } = splitBody(q);
        const answer = await infer(manager, q.params, header as InferBody, binary, maxElements);
        if (answer.binary.length === 0) return reply.send(answer.header);
        const json = Buffer.from(JSON.stringify(answer.header));
        return reply.header(HEADER_LENGTH, String(json.length)).type('application/octet-stream').send(Buffer.concat([json, ...answer.binary]));
      } catch (e) {
        return fail(reply, e);
      }
    });
  }

  for (const route of ['/v2/models/stats', '/v2/models/:name/stats', '/v2/models/:name/versions/:version/stats']) {
    app.get<{ Params: Partial<Params> }>(route, async (q, reply) => {
      try {
        return { model_stats: manager.statistics(q.params.name, q.params.version).map(tritonStatistics) };
      } catch (e) {
        return fail(reply, e);
      }
    });
  }
  const metrics = serverMetrics(manager);
  app.get('/metrics', async (_q, reply) => reply.type(metrics.registry.contentType).send(await metrics.scrape()));

  app.post<{ Body: Buffer | undefined }>('/v2/repository/index', async (q, reply) => {
    let readyOnly = false;
    try {
      const body = splitBody(q).header as { ready?: unknown } | undefined;
      readyOnly = body?.ready === true;
    } catch (e) {
      return fail(reply, e);
    }
    return reply.send(manager.index().filter((s) => !readyOnly || s.state === 'READY').map((s) => ({ name: s.name, ...(s.version !== undefined ? { version: String(s.version) } : {}), state: s.state, reason: s.reason })));
  });
  for (const action of ['load', 'unload'] as const) {
    app.post<{ Params: { name: string } }>(`/v2/repository/models/:name/${action}`, async (q, reply) => {
      try {
        await (action === 'load' ? manager.load(q.params.name) : manager.unload(q.params.name));
        return reply.code(200).send();
      } catch (e) {
        return fail(reply, e);
      }
    });
  }
  return app;
}

/** A request body as its JSON header and the binary data after it (Inference-Header-Content-Length). */
function splitBody(q: FastifyRequest<{ Body: Buffer | undefined }>): { header: unknown; binary: Buffer | undefined } {
  const body = q.body && q.body.length ? q.body : undefined;
  const given = q.headers[HEADER_LENGTH];
  let length = body?.length ?? 0;
  if (given !== undefined) {
    const n = Number(given);
    if (Array.isArray(given) || !/^\d+$/.test(String(given)) || n > length) {
      throw new KilnError('E_INVALID_ARGUMENT', `Inference-Header-Content-Length ${JSON.stringify(given)} is not a length within the ${length}-byte body`);
    }
    length = n;
  }
  if (!body || length === 0) return { header: undefined, binary: undefined };
  let header: unknown;
  try {
    header = JSON.parse(body.toString('utf8', 0, length));
  } catch (e) {
    throw new KilnError('E_INVALID_ARGUMENT', `the request's JSON ${given !== undefined ? 'header ' : ''}does not parse: ${(e as Error).message}`, { cause: e });
  }
  return { header, binary: given !== undefined ? body.subarray(length) : undefined };
}

const wantsBinary = (p: unknown): boolean | undefined => {
  const v = (p as { binary_data?: unknown } | undefined)?.binary_data;
  return typeof v === 'boolean' ? v : undefined;
};

async function infer(manager: ModelManager, params: { name: string; version?: string }, body: InferBody | undefined, binary: Buffer | undefined, maxElements: number): Promise<{ header: Record<string, unknown>; binary: Buffer[] }> {
  const v = manager.resolve(params.name, params.version);
  if (!body || typeof body !== 'object' || Array.isArray(body)) throw new KilnError('E_INVALID_ARGUMENT', 'the request body must be a JSON object with "inputs"');
  if (!Array.isArray(body.inputs) || body.inputs.length === 0) throw new KilnError('E_INVALID_ARGUMENT', '"inputs" must be a non-empty array of tensors');
  const inputs = inputChecker(v);
  const feeds: Record<string, Feeds[string]> = {};
  let offset = 0;
  for (const raw of body.inputs as unknown[]) {
    const t = raw as JsonTensor;
    if (!t || typeof t !== 'object') throw new KilnError('E_INVALID_ARGUMENT', 'each input must be an object with a "name"');
    const type = inputs.type(t.name);
    const size = t.parameters?.binary_data_size;
    if (size === undefined) {
      feeds[t.name] = reshapeInput(v, t.name, fromJson(t, type, maxElements));
      continue;
    }
    if (!Number.isSafeInteger(size) || (size as number) < 0) throw new KilnError('E_INVALID_ARGUMENT', `input "${t.name}": binary_data_size must be a byte count, received ${JSON.stringify(size)}`);
    if (t.data !== undefined) throw new KilnError('E_INVALID_ARGUMENT', `input "${t.name}" has both "data" and binary_data_size`);
    const end = offset + (size as number);
    if (!binary || end > binary.length) throw new KilnError('E_INVALID_ARGUMENT', `input "${t.name}": binary_data_size ${size} goes past the end of the binary data (${binary ? binary.length - offset : 0} bytes left${binary ? '' : ': no Inference-Header-Content-Length'})`);
    feeds[t.name] = reshapeInput(v, t.name, fromBinary(t, binary.subarray(offset, end), type, maxElements));
    offset = end;
  }
  if (binary && offset !== binary.length) throw new KilnError('E_INVALID_ARGUMENT', `the body holds ${binary.length - offset} bytes after the inputs' binary data`);
  const p = body.parameters ?? {};
  if (typeof p !== 'object' || p === null) throw new KilnError('E_INVALID_ARGUMENT', '"parameters" must be an object');
  const options = inferOptions(p);
  // Outputs as binary: each output's binary_data parameter, else the request's binary_data_output.
  const allBinary = (p as { binary_data_output?: unknown }).binary_data_output === true;
  let wanted = v.model.outputs.map((o) => ({ name: o.name, binary: allBinary }));
  if (body.outputs !== undefined) {
    if (!Array.isArray(body.outputs)) throw new KilnError('E_INVALID_ARGUMENT', '"outputs" must be an array');
    wanted = (body.outputs as { name?: unknown; parameters?: unknown }[]).map((o) => ({ name: outputName(v, o?.name), binary: wantsBinary(o?.parameters) ?? allBinary }));
  }
  // Every output is computed (and cached) whatever the request asks for; the outputs asked
  // for are picked from that answer, so an answer cached for one selection is right for any.
  const served = await manager.infer(v.name, String(v.version), feeds, { ...options, withCacheInfo: true });
  const results: Results = served.outputs;
  const parameters = servedParameters(served.cache);
  const chunks: Buffer[] = [];
  const out = wanted.map(({ name, binary: asBinary }) => {
    const r = results[name];
    const t = { type: r.type, data: r.data, dims: reshapedOutputDims(v, name, r.dims) };
    if (!asBinary) return toJson(name, t);
    const bytes = toBinary(t);
    chunks.push(bytes);
    const { data: _data, ...rest } = toJson(name, { type: t.type, data: [], dims: t.dims });
    return { ...rest, parameters: { binary_data_size: bytes.length } };
  });
  return {
    header: { model_name: v.name, model_version: String(v.version), ...(typeof body.id === 'string' ? { id: body.id } : {}), ...(parameters ? { parameters } : {}), outputs: out },
    binary: chunks,
  };
}

/**
 * `kiln serve` put together: a model repository (given, made of one model file, or the
 * example Kiln writes), its ModelManager with the server's response cache, the KServe v2
 * HTTP and gRPC servers with bearer-token auth and structured logs (pino, one line per HTTP
 * request with its id), draining (readiness reports not ready while requests are still
 * served, so that a load balancer stops routing first), and a shutdown that stops taking
 * requests, answers what it took, and releases the models and the cache.
 *
 * `modelRepository` takes what KServe mounts at /mnt/models as it comes: a Triton
 * repository, a folder holding one model file, or the path of one .onnx file.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { AddressInfo } from 'net';
import pino, { type Logger } from 'pino';
import { createResponseCache, type ResponseCache, type ResponseCacheOptions } from '../cache/response-cache';
import { KilnError } from '../errors';
import { addModel, mlpModel } from '../samples';
import * as grpc from '@grpc/grpc-js';
import { createGrpcServer } from './grpc';
import { createHttpServer } from './http';
import { DEFAULT_CACHE_BYTES } from './cache-config';
import { ModelManager, type ControlMode } from './models';
import { MODEL_NAME } from './repository';

export interface ServeOptions {
  /**
   * A Triton model repository, a folder holding one model (its `model.onnx`, or its only
   * `*.onnx` file), or the path of one .onnx file; or `model`, one ONNX file; or `example`.
   */
  modelRepository?: string;
  model?: string;
  /**
   * The name a single model file is served under (default: the file's name without .onnx,
   * or, for a folder holding one model, the folder's name). Not used for a repository, whose
   * models are named by their folders.
   */
  modelName?: string;
  /** Serve the example repository (written to a temporary folder, removed on close). */
  example?: boolean;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  httpPort?: number;
  /** Default 8001; 0 picks a free port; -1: no gRPC. */
  grpcPort?: number;
  controlMode?: ControlMode;
  loadModels?: readonly string[];
  /** Requests must carry `Authorization: Bearer <token>`. */
  authToken?: string;
  /** Health endpoints answer without the token (default true: load balancers probe them). */
  healthWithoutAuth?: boolean;
  bodyLimit?: number;
  maxElements?: number;
  defaultMaxBatchSize?: number;
  /** Poll mode: re-read the repository every this many seconds (default: never). */
  repositoryPollSecs?: number;
  /** HTTP status for a full queue: 503 (default, Triton's) or 429. */
  queueFullStatus?: 429 | 503;
  /**
   * The response cache of the models whose config enables it (`response_cache { enable:
   * true }`): `{ local: { maxBytes, ttlMs? } }` or `{ redis: { url, ttlMs?, timeoutMs? } }`
   * (parseCacheConfig reads `--cache-config`). Default: a local cache of 64 MiB. Its failures
   * are logged, once per outage, and the requests run uncached.
   */
  cache?: ResponseCacheOptions;
  /** pino level (default info); 'silent' for none. */
  logLevel?: string;
  /** Where logs go (default stderr). */
  logDestination?: NodeJS.WritableStream;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  /** The gRPC address (host:port), unless disabled. */
  readonly grpc?: string;
  readonly repository: string;
  readonly manager: ModelManager;
  readonly logger: Logger;
  /** Whether drain() was called. */
  readonly draining: boolean;
  /**
   * Readiness turns false (HTTP /v2/health/ready answers 503, gRPC ServerReady false) while
   * everything else is served as before: what a load balancer needs to see to stop routing
   * here before close(). Liveness stays true.
   */
  drain(): void;
  /** Stops taking connections, waits for the requests taken, releases the models. */
  close(): Promise<void>;
}

/** The example repository: the sample MLP (dynamic batching) and the add model (no config: completed). */
export function writeExampleRepository(dir: string): void {
  const files: Record<string, string | Uint8Array> = {
    'mlp/config.pbtxt': [
      '# The sample MLP: x [N, 512] -> y [N, 10], batched up to 64 rows.',
      'name: "mlp"', 'platform: "onnxruntime_onnx"', 'max_batch_size: 64',
      'input [ { name: "x", data_type: TYPE_FP32, dims: [ 512 ] } ]',
      'output [ { name: "y", data_type: TYPE_FP32, dims: [ 10 ] } ]',
      'dynamic_batching { max_queue_delay_microseconds: 200 }', '',
    ].join('\n'),
    'mlp/1/model.onnx': mlpModel(),
    'add/1/model.onnx': addModel(),
  };
  for (const [file, content] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    fs.writeFileSync(path.join(dir, file), content);
  }
}

/** A failure-free stretch this long ends a response cache outage: the next failure is logged again. */
const OUTAGE_QUIET_MS = 10_000;

/**
 * The response cache's error handler: logs the first failure of an outage (Redis down, or
 * not answering in time) as a warning, then nothing until failures have stopped for
 * OUTAGE_QUIET_MS (a Redis client retrying its connection fails at least every second, so a
 * stretch without failures means it answers again). Requests run uncached meanwhile, and
 * every failure is counted in kiln_cache_errors_total.
 */
function outageLog(logger: Logger, also: ((error: Error) => void) | undefined): (error: Error) => void {
  let last = -Infinity;
  return (error) => {
    const t = performance.now();
    if (t - last > OUTAGE_QUIET_MS) logger.warn({ err: error }, 'response cache failed: requests run uncached until it answers again');
    last = t;
    also?.(error);
  };
}

/** What is served: a Triton repository as it is, or one model file (served from a repository Kiln makes). */
type Source = { repository: string } | { file: string; name: string };

/**
 * What `modelRepository` (or `model`) holds. A folder with .onnx files at its top is one
 * model (KServe mounts a storageUri that names a folder, or one file, this way): its
 * `model.onnx`, else its only .onnx file, served under `modelName` or the folder's name.
 * Any other folder is a Triton repository. A path to an .onnx file is that model, served
 * under `modelName` or the file's name.
 */
function servedSource(options: ServeOptions): Source {
  const given = (options.model ?? options.modelRepository) as string;
  const what = options.model !== undefined ? 'model file' : 'model repository';
  let stat: fs.Stats;
  try {
    stat = fs.statSync(given);
  } catch (e) {
    throw new KilnError('E_NOT_FOUND', options.model !== undefined ? `no such model file: ${given}` : `model repository ${given} does not exist`, { cause: e });
  }
  const named = (fallback: string, from: string): { name: string } => {
    const name = options.modelName ?? fallback;
    if (!MODEL_NAME.test(name)) {
      throw new KilnError('E_INVALID_ARGUMENT', options.modelName !== undefined
        ? `model name "${name}" is not a model name (letters, digits, '_', '-', '.', not starting with '.' or '-')`
        : `the model is served under ${from}, and "${name}" is not a model name (letters, digits, '_', '-', '.'): give one with --model-name or MODEL_NAME`);
    }
    return { name };
  };
  if (stat.isFile()) {
    if (!/\.onnx$/i.test(given)) throw new KilnError('E_INVALID_ARGUMENT', `${what} ${given} is a file, and not an .onnx model`);
    return { file: given, ...named(path.basename(given).replace(/\.onnx$/i, ''), "its file's name") };
  }
  if (options.model !== undefined) throw new KilnError('E_INVALID_ARGUMENT', `model file ${given} is a folder: serve a folder with --model-repository`);
  const entries = fs.readdirSync(given, { withFileTypes: true }).filter((e) => !e.name.startsWith('.'));
  // A folder with folders in it is a repository (one folder per model), whatever files lie beside them.
  if (entries.some((e) => fs.statSync(path.join(given, e.name)).isDirectory())) return { repository: given };
  const models = entries
    .filter((e) => /\.onnx$/i.test(e.name) && fs.statSync(path.join(given, e.name)).isFile())
    .map((e) => e.name)
    .sort();
  if (models.length === 0) return { repository: given };
  const file = models.includes('model.onnx') ? 'model.onnx' : models.length === 1 ? models[0] : undefined;
  if (file === undefined) throw new KilnError('E_INVALID_ARGUMENT', `model repository ${given} holds ${models.length} model files (${models.join(', ')}) and no model.onnx: a folder of one model holds one .onnx file (or names it model.onnx); a repository holds one folder per model`);
  return { file: path.join(given, file), ...named(path.basename(path.resolve(given)), "its folder's name") };
}

/** Puts `file` into `repository` as `<name>/1/model.onnx`: a hard link where the file system allows it, else a copy. */
function placeModel(file: string, repository: string, name: string): void {
  const target = path.join(repository, name, '1', 'model.onnx');
  fs.mkdirSync(path.dirname(target), { recursive: true });
  try {
    fs.linkSync(file, target);
  } catch {
    fs.copyFileSync(file, target);
  }
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const sources = [options.modelRepository, options.model, options.example ? 'example' : undefined].filter((x) => x !== undefined);
  if (sources.length !== 1) throw new KilnError('E_INVALID_ARGUMENT', 'serve one of: a model repository, a model file, or the example');
  if (options.modelName !== undefined && !MODEL_NAME.test(options.modelName)) {
    throw new KilnError('E_INVALID_ARGUMENT', `model name "${options.modelName}" is not a model name (letters, digits, '_', '-', '.', not starting with '.' or '-')`);
  }
  const source: Source = options.example ? { repository: '' } : servedSource(options);
  let repository = 'repository' in source ? source.repository : '';
  let temporary: string | undefined;
  if (options.example || 'file' in source) {
    temporary = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-serve-'));
    repository = temporary;
    if ('file' in source) placeModel(source.file, temporary, source.name);
    else writeExampleRepository(temporary);
  }
  const logger = pino({ level: options.logLevel ?? 'info', base: { service: 'kiln-serve' } }, (options.logDestination ?? process.stderr) as pino.DestinationStream);
  let manager: ModelManager | undefined;
  let cache: ResponseCache | undefined;
  try {
    cache = createResponseCache({ ...(options.cache ?? { local: { maxBytes: DEFAULT_CACHE_BYTES } }), onError: outageLog(logger, options.cache?.onError) });
    manager = await ModelManager.open(repository, { controlMode: options.controlMode, loadModels: options.loadModels, defaultMaxBatchSize: options.defaultMaxBatchSize, responseCache: cache });
    for (const s of manager.index()) {
      if (s.state === 'READY') logger.info({ model: s.name, version: s.version }, 'model ready');
      else if (s.reason !== 'unloaded') logger.error({ model: s.name, reason: s.reason }, 'model failed to load');
    }
    if (options.modelName !== undefined && 'repository' in source && !options.example) {
      logger.info({ modelName: options.modelName, repository }, 'the model name is not used: a repository names its models by their folders');
    }
    let draining = false;
    const opened = manager;
    const ready = (): boolean => !draining && opened.ready();
    const app = createHttpServer(manager, { bodyLimit: options.bodyLimit, maxElements: options.maxElements, logger, queueFullStatus: options.queueFullStatus, ready });
    let poller: NodeJS.Timeout | undefined;
    if (options.repositoryPollSecs !== undefined) {
      if (manager.controlMode !== 'poll') throw new KilnError('E_INVALID_ARGUMENT', 'repository polling is for the poll model control mode');
      const m = manager;
      let polling = false;
      poller = setInterval(() => {
        if (polling) return;
        polling = true;
        m.poll().then(() => undefined, (e: unknown) => logger.error({ err: e }, 'repository poll failed')).finally(() => (polling = false));
      }, options.repositoryPollSecs * 1000);
      poller.unref();
    }
    if (options.authToken !== undefined) {
      const expected = `Bearer ${options.authToken}`;
      const healthFree = options.healthWithoutAuth ?? true;
      app.addHook('onRequest', async (request, reply) => {
        if (healthFree && request.url.startsWith('/v2/health/')) return;
        if (request.headers.authorization !== expected) {
          reply.header('www-authenticate', 'Bearer');
          return reply.code(401).send({ error: 'missing or wrong bearer token (Authorization: Bearer <token>)' });
        }
      });
    }
    await app.listen({ host: options.host ?? '127.0.0.1', port: options.httpPort ?? 8000 });
    const address = app.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    logger.info({ url, repository, controlMode: manager.controlMode }, 'HTTP listening');
    let grpcServer: grpc.Server | undefined;
    let grpcAddress: string | undefined;
    if ((options.grpcPort ?? 8001) >= 0) {
      grpcServer = createGrpcServer(manager, { maxMessageBytes: options.bodyLimit, maxElements: options.maxElements, authToken: options.authToken, ready });
      const bindHost = options.host ?? '127.0.0.1';
      const g = grpcServer;
      try {
        const port = await new Promise<number>((resolve, reject) => g.bindAsync(`${bindHost.includes(':') ? `[${bindHost}]` : bindHost}:${options.grpcPort ?? 8001}`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
        grpcAddress = `${host}:${port}`;
      } catch (e) {
        await app.close();
        throw new KilnError('E_INVALID_ARGUMENT', `cannot serve gRPC on port ${options.grpcPort ?? 8001}: ${(e as Error).message}`, { cause: e });
      }
      logger.info({ address: grpcAddress }, 'gRPC listening');
    }
    const served = manager;
    const servedCache = cache;
    let closing: Promise<void> | undefined;
    return {
      url,
      port: address.port,
      grpc: grpcAddress,
      repository,
      manager: served,
      logger,
      get draining() {
        return draining;
      },
      drain() {
        draining = true;
      },
      close() {
        closing ??= (async () => {
          // Both stop taking requests; those taken are answered before the models go.
          clearInterval(poller);
          const g = grpcServer;
          await Promise.all([app.close(), g ? new Promise<void>((r) => g.tryShutdown(() => r())) : undefined]);
          await served.close();
          await servedCache.close();
          if (temporary) fs.rmSync(temporary, { recursive: true, force: true });
          logger.info('stopped');
        })();
        return closing;
      },
    };
  } catch (e) {
    await manager?.close();
    await cache?.close();
    if (temporary) fs.rmSync(temporary, { recursive: true, force: true });
    throw e;
  }
}

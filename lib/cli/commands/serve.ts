// kiln serve: a KServe v2 (Triton-compatible) inference server over HTTP and gRPC.
import { Command, Option } from 'commander';
import { DEFAULT_CACHE_BYTES, parseCacheConfig } from '../../server/cache-config';
import { startServer } from '../../server/serve';
import { choiceOption, integerOption, numberOption, repeatedOption } from '../options';

interface ServeOptions {
  modelRepository?: string;
  example?: true;
  host?: string;
  port?: number;
  grpcPort?: number;
  modelControlMode?: 'none' | 'explicit' | 'poll';
  loadModel?: string[];
  repositoryPollSecs?: number;
  queueFullHttpStatus?: 429 | 503;
  authToken?: string;
  authHealth?: true;
  exitTimeoutSecs: number;
  maxBodyBytes?: number;
  defaultMaxBatchSize?: number;
  cacheConfig?: string[];
  logLevel?: string;
}

async function serve(model: string | undefined, o: ServeOptions): Promise<void> {
  const exitTimeout = o.exitTimeoutSecs;
  const cache = o.cacheConfig ? parseCacheConfig(o.cacheConfig) : undefined;
  const server = await startServer({
    modelRepository: o.modelRepository,
    model,
    example: o.example,
    host: o.host,
    httpPort: o.port,
    grpcPort: o.grpcPort,
    controlMode: o.modelControlMode,
    loadModels: o.loadModel,
    authToken: o.authToken,
    healthWithoutAuth: !o.authHealth,
    bodyLimit: o.maxBodyBytes,
    defaultMaxBatchSize: o.defaultMaxBatchSize,
    repositoryPollSecs: o.repositoryPollSecs,
    queueFullStatus: o.queueFullHttpStatus,
    cache,
    logLevel: o.logLevel,
  });
  const ready = server.manager.index().filter((s) => s.state === 'READY');
  const lines = [`kiln serve: KServe v2 over HTTP at ${server.url}${server.grpc ? ` and gRPC at ${server.grpc}` : ''} (model repository ${server.repository}), models: ${ready.map((s) => `${s.name} v${s.version}`).join(', ') || 'none ready'}`];
  if (ready.some((s) => s.name === 'add')) {
    const body = JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: [1, 2, 3, 4] }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: [10, 20, 30, 40] }] });
    lines.push(`try: curl -s -X POST ${server.url}/v2/models/add/infer -H 'content-type: application/json' -d '${body}'`);
  }
  lines.push('stop with Ctrl-C (or SIGTERM): requests in flight are answered first');
  process.stdout.write(lines.join('\n') + '\n');
  // Stop taking connections, answer what was taken, release the models; bounded.
  const stop = (signal: string): void => {
    server.logger.info({ signal, exitTimeoutSecs: exitTimeout }, 'shutting down');
    const timer = setTimeout(() => {
      server.logger.error({ exitTimeoutSecs: exitTimeout }, 'requests still in flight at the exit timeout');
      process.exit(1);
    }, exitTimeout * 1000);
    server.close().then(() => {
      clearTimeout(timer);
      process.exit(0);
    }, (e: unknown) => {
      server.logger.error({ err: e }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

const isPort = (n: number, min: number): boolean => Number.isInteger(n) && n >= min && n < 65536;

export const serveCommand = (): Command =>
  new Command('serve')
    .summary('a KServe v2 / Triton-compatible inference server over HTTP and gRPC')
    .description('A KServe v2 (Triton-compatible) inference server over HTTP and gRPC, serving a Triton model repository ' +
      '(<model>/config.pbtxt or config.json, <model>/<version>/model.onnx; a model without config is completed from the ONNX model), ' +
      'one model file (named after the file), or --example (a repository Kiln writes: the sample MLP and add models).')
    .argument('[MODEL.onnx]', 'one model to serve, named after the file')
    .option('--model-repository <DIR>', 'a Triton model repository')
    .option('--example', 'serve the example repository')
    .option('--host <H>', 'the address to listen on (default 127.0.0.1)')
    .addOption(numberOption('--port <N>', 'HTTP port (default 8000; 0: a free port, printed)', (n) => isPort(n, 0), 'a port number (0: any free port)'))
    .addOption(numberOption('--grpc-port <N>', 'gRPC port (default 8001; 0: a free port; -1: no gRPC)', (n) => isPort(n, -1), 'a port number (0: any free port, -1: no gRPC)'))
    .addOption(choiceOption('--model-control-mode <MODE>', 'as Triton\'s; none by default', ['none', 'explicit', 'poll']))
    .addOption(repeatedOption('--load-model <NAME>', 'explicit mode: a model to load at start, repeatable (* for all)'))
    .addOption(numberOption('--repository-poll-secs <S>', 'poll mode: re-read the repository every S seconds', (n) => n > 0, 'a number of seconds > 0'))
    .addOption(numberOption('--queue-full-http-status <STATUS>', 'the HTTP status of a request refused by a full queue (default 503, as Triton)', (n) => n === 429 || n === 503, '429 or 503'))
    .addOption(new Option('--auth-token <T>', 'requests need Authorization: Bearer T').env('KILN_AUTH_TOKEN'))
    .option('--auth-health', 'require the token on /v2/health too')
    .addOption(numberOption('--exit-timeout-secs <S>', 'on SIGTERM or SIGINT, how long requests in flight may take to finish', (n) => n >= 0, 'a number of seconds >= 0').default(30))
    .addOption(numberOption('--max-body-bytes <N>', 'the largest request body (default 64 MiB)', (n) => Number.isInteger(n) && n > 0, 'a size in bytes'))
    .addOption(integerOption('--default-max-batch-size <N>', 'max_batch_size of a model without config (default 64)', 0))
    .addOption(repeatedOption('--cache-config <KIND,KEY=VALUE>', 'the response cache of the models whose config enables response_cache, as Triton\'s flag: ' +
      `local,size=BYTES[,ttl=MS] or redis,url=redis://HOST:PORT[,ttl=MS][,timeout=MS] (default: local, ${DEFAULT_CACHE_BYTES / 2 ** 20} MiB)`))
    .option('--log-level <L>', 'pino\'s level (default info; silent for none)')
    .action(serve);

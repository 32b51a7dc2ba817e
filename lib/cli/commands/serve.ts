// kiln serve: a KServe v2 (Triton-compatible) inference server over HTTP and gRPC.
import { Command, Option } from 'commander';
import type { ResponseCacheOptions } from '../../cache/response-cache';
import { KilnError } from '../../errors';
import { DEFAULT_CACHE_BYTES, parseCacheConfig } from '../../server/cache-config';
import { startServer, type RunningServer } from '../../server/serve';
import { choiceOption, exclusive, integerOption, numberOption, repeatedOption } from '../options';

interface ServeOptions {
  modelRepository?: string;
  example?: true;
  modelName?: string;
  host?: string;
  port?: number;
  httpPort?: number;
  grpcPort?: number;
  modelControlMode?: 'none' | 'explicit' | 'poll';
  loadModel?: string[];
  repositoryPollSecs?: number;
  queueFullHttpStatus?: 429 | 503;
  authToken?: string;
  authHealth?: true;
  exitTimeoutSecs: number;
  drainDelaySecs: number;
  maxBodyBytes?: number;
  defaultMaxBatchSize?: number;
  cacheConfig?: string[];
  logLevel?: string;
}

/** --cache-config's settings, a refused value read from KILN_CACHE_CONFIG saying so. */
function cacheOptions(o: ServeOptions, command: Command): ResponseCacheOptions | undefined {
  if (!o.cacheConfig) return undefined;
  try {
    return parseCacheConfig(o.cacheConfig);
  } catch (e) {
    if (!(e instanceof KilnError) || command.getOptionValueSource('cacheConfig') !== 'env') throw e;
    throw new KilnError(e.code, `${e.message} (from the environment variable KILN_CACHE_CONFIG)`, { cause: e });
  }
}

async function serve(model: string | undefined, o: ServeOptions, command: Command): Promise<void> {
  const cache = cacheOptions(o, command);
  const server = await startServer({
    modelRepository: o.modelRepository,
    model,
    modelName: o.modelName,
    example: o.example,
    host: o.host,
    // --port and --http-port are one option (refused together); either given wins over PORT.
    httpPort: o.port ?? o.httpPort,
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
  lines.push(o.drainDelaySecs > 0
    ? `stop with Ctrl-C (or SIGTERM): not ready at once, still serving for ${o.drainDelaySecs} s (a second signal skips the wait), then requests in flight are answered first`
    : 'stop with Ctrl-C (or SIGTERM): requests in flight are answered first');
  // Signals are handled before the address is printed: whoever reads it may signal at once.
  handleSignals(server, o.drainDelaySecs, o.exitTimeoutSecs);
  process.stdout.write(lines.join('\n') + '\n');
}

/**
 * The shutdown on SIGTERM or SIGINT. Draining first: readiness answers 503 at once while
 * every request is still served for `drainDelaySecs`, the time a load balancer (or
 * Kubernetes, through the readiness probe) needs to see it and stop routing here; a second
 * signal ends the wait. Then the server stops taking connections and answers the requests
 * it accepted, for at most `exitTimeoutSecs` (exit 1 past it; another signal exits at once,
 * exit 1), releases the models, exits 0.
 */
function handleSignals(server: RunningServer, drainDelaySecs: number, exitTimeoutSecs: number): void {
  let phase: 'serving' | 'draining' | 'closing' = 'serving';
  let endDrain: (() => void) | undefined;
  const close = (): void => {
    phase = 'closing';
    server.logger.info({ exitTimeoutSecs }, 'closing: no new connections, answering the requests accepted');
    const timer = setTimeout(() => {
      server.logger.error({ exitTimeoutSecs }, 'requests still in flight at the exit timeout');
      process.exit(1);
    }, exitTimeoutSecs * 1000);
    server.close().then(() => {
      clearTimeout(timer);
      process.exit(0);
    }, (e: unknown) => {
      server.logger.error({ err: e }, 'shutdown failed');
      process.exit(1);
    });
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    if (phase === 'draining') {
      server.logger.info({ signal }, 'drain delay skipped');
      endDrain?.();
      return;
    }
    if (phase === 'closing') {
      // A signal while answering what was accepted: the operator does not want to wait.
      server.logger.warn({ signal }, 'exiting now: requests still in flight are not answered');
      process.exit(1);
    }
    server.logger.info({ signal, drainDelaySecs, exitTimeoutSecs }, 'shutting down');
    if (drainDelaySecs === 0) return close();
    phase = 'draining';
    server.drain();
    server.logger.info({ drainDelaySecs }, 'draining: readiness answers 503, requests are still served');
    const timer = setTimeout(() => endDrain?.(), drainDelaySecs * 1000);
    endDrain = () => {
      endDrain = undefined;
      clearTimeout(timer);
      close();
    };
  };
  // Kept for the whole shutdown: a signal without a listener would end the process at once.
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

const isPort = (n: number, min: number): boolean => Number.isInteger(n) && n >= min && n < 65536;

export const serveCommand = (): Command => {
  const command = new Command('serve')
    .summary('a KServe v2 / Triton-compatible inference server over HTTP and gRPC')
    .description('A KServe v2 (Triton-compatible) inference server over HTTP and gRPC, serving a Triton model repository ' +
      '(<model>/config.pbtxt or config.json, <model>/<version>/model.onnx; a model without config is completed from the ONNX model), ' +
      'one model file (named after the file), or --example (a repository Kiln writes: the sample MLP and add models).\n\n' +
      'KServe and Knative conventions: --model-repository takes KServe\'s model mount as it comes (a repository, a folder holding one ' +
      'model file, or the path of one .onnx file); the environment variables PORT, GRPC_PORT, MODEL_NAME and KILN_CACHE_CONFIG stand ' +
      'for --http-port, --grpc-port, --model-name and --cache-config (a flag given wins). On SIGTERM or SIGINT the server drains: ' +
      '/v2/health/ready answers 503 (gRPC ServerReady: false) at once, /v2/health/live 200, and requests are served for ' +
      '--drain-delay-secs; then it stops taking connections, answers the requests it accepted within --exit-timeout-secs, and exits 0. ' +
      'A second signal skips the rest of the delay.')
    .argument('[MODEL.onnx]', 'one model to serve, named after the file (or --model-name)')
    .option('--model-repository <DIR>', 'a Triton model repository; or a folder holding one model (its model.onnx, or its only .onnx file), ' +
      'served under --model-name or the folder\'s name; or the path of one .onnx file')
    .addOption(new Option('--model-name <NAME>', 'the name one model file is served under (a repository names its models by their folders)').env('MODEL_NAME'))
    .option('--example', 'serve the example repository')
    .option('--host <H>', 'the address to listen on (default 127.0.0.1)')
    .addOption(numberOption('--http-port <N>', 'HTTP port (default 8000; 0: a free port, printed)', (n) => isPort(n, 0), 'a port number (0: any free port)').env('PORT'))
    .addOption(numberOption('--port <N>', 'the same as --http-port', (n) => isPort(n, 0), 'a port number (0: any free port)'))
    .addOption(numberOption('--grpc-port <N>', 'gRPC port (default 8001; 0: a free port; -1: no gRPC)', (n) => isPort(n, -1), 'a port number (0: any free port, -1: no gRPC)').env('GRPC_PORT'))
    .addOption(choiceOption('--model-control-mode <MODE>', 'as Triton\'s; none by default', ['none', 'explicit', 'poll']))
    .addOption(repeatedOption('--load-model <NAME>', 'explicit mode: a model to load at start, repeatable (* for all)'))
    .addOption(numberOption('--repository-poll-secs <S>', 'poll mode: re-read the repository every S seconds', (n) => n > 0, 'a number of seconds > 0'))
    .addOption(numberOption('--queue-full-http-status <STATUS>', 'the HTTP status of a request refused by a full queue (default 503, as Triton)', (n) => n === 429 || n === 503, '429 or 503'))
    .addOption(new Option('--auth-token <T>', 'requests need Authorization: Bearer T').env('KILN_AUTH_TOKEN'))
    .option('--auth-health', 'require the token on /v2/health too')
    .addOption(numberOption('--drain-delay-secs <S>', 'on SIGTERM or SIGINT, how long to keep serving while readiness answers 503, before closing (0: close at once)', (n) => n >= 0, 'a number of seconds >= 0').default(5))
    .addOption(numberOption('--exit-timeout-secs <S>', 'after the drain delay, how long the requests accepted may take to finish (exit 1 past it)', (n) => n >= 0, 'a number of seconds >= 0').default(30))
    .addOption(numberOption('--max-body-bytes <N>', 'the largest request body (default 64 MiB)', (n) => Number.isInteger(n) && n > 0, 'a size in bytes'))
    .addOption(integerOption('--default-max-batch-size <N>', 'max_batch_size of a model without config (default 64)', 0))
    .addOption(repeatedOption('--cache-config <KIND,KEY=VALUE>', 'the response cache of the models whose config enables response_cache, as Triton\'s flag: ' +
      `local,size=BYTES[,ttl=MS] or redis,url=redis://HOST:PORT[,ttl=MS][,timeout=MS] (default: local, ${DEFAULT_CACHE_BYTES / 2 ** 20} MiB)`).env('KILN_CACHE_CONFIG'))
    .option('--log-level <L>', 'pino\'s level (default info; silent for none)')
    .action(serve);
  return exclusive(command, 'port', 'http-port');
};

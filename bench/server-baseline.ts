/**
 * The server a Node team writes today, for bench/server.ts to measure Kiln against: fastify
 * and onnxruntime-node with ORT's default options, one `session.run` per request, the KServe
 * v2 JSON request and response shapes for FP32 tensors. Run as a child process:
 *
 *   node dist/bench/server-baseline.js REPOSITORY PORT     (prints "listening PORT" when ready)
 */
import * as fs from 'fs';
import * as path from 'path';
import Fastify from 'fastify';
import { benchCommand, integerIn } from './cli';

// onnxruntime-node is an optional peer of Kiln (installed for the tests and benchmarks).
const ort = require('onnxruntime-node') as typeof import('onnxruntime-node');

async function main(): Promise<void> {
  const program = benchCommand('server-baseline', 'fastify + onnxruntime-node serving a model repository, for bench/server.ts to measure Kiln against.')
    .argument('<repository>', 'model repository (NAME/1/model.onnx)')
    .argument('[port]', 'port on 127.0.0.1 (0: any free one)', integerIn(0, 65535), 0)
    .parse();
  const [repository, port] = program.processedArgs as [string, number];
  const sessions = new Map<string, import('onnxruntime-node').InferenceSession>();
  for (const name of fs.readdirSync(repository)) {
    const file = path.join(repository, name, '1', 'model.onnx');
    if (fs.existsSync(file)) sessions.set(name, await ort.InferenceSession.create(file));
  }
  const app = Fastify({ bodyLimit: 64 * 2 ** 20 });
  app.post<{ Params: { name: string }; Body: { inputs: { name: string; shape: number[]; datatype: string; data: number[] }[] } }>('/v2/models/:name/infer', async (q, reply) => {
    const session = sessions.get(q.params.name);
    if (!session) return reply.code(404).send({ error: `unknown model "${q.params.name}"` });
    const feeds: Record<string, import('onnxruntime-node').Tensor> = {};
    for (const i of q.body.inputs) feeds[i.name] = new ort.Tensor('float32', Float32Array.from(i.data.flat(Infinity as 1) as number[]), i.shape);
    const out = await session.run(feeds);
    return {
      model_name: q.params.name,
      outputs: Object.entries(out).map(([name, t]) => ({ name, shape: t.dims, datatype: 'FP32', data: Array.from(t.data as Float32Array) })),
    };
  });
  await app.listen({ host: '127.0.0.1', port });
  const address = app.server.address() as import('net').AddressInfo;
  process.stdout.write(`listening ${address.port}\n`);
}

main().catch((e) => {
  process.stderr.write(`${(e as Error).stack ?? e}\n`);
  process.exit(1);
});

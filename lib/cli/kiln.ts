#!/usr/bin/env node
/**
 * kiln info                      the ONNX Runtime library, its providers, the CUDA driver
 * kiln bench [options]           latency of run and runSync on a model, median and p99
 *   --model mlp|add|conv|big-output|FILE.onnx   (default mlp: a sample the package builds)
 *   --batch N (default 1)  --calls N (default 3000)  --intra N  --concurrency N (default 1)
 */
import * as fs from 'fs';
import { cuda } from '../device';
import { KilnError } from '../errors';
import { runtime } from '../runtime';
import { formatMicroseconds, quantile } from '../latency';
import { addModel, bigOutputModel, convModel, mlpModel, prng } from '../samples';
import { Session, type Feeds } from '../session';
import { ARRAY_TYPE, Tensor, type TensorType } from '../tensor';

const SAMPLES: Record<string, () => Uint8Array> = { mlp: mlpModel, add: addModel, conv: convModel, 'big-output': bigOutputModel };

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = args[i + 1];
  if (v === undefined || v.startsWith('--')) throw new KilnError('E_INVALID_ARGUMENT', `--${name} needs a value`);
  return v;
}

function intFlag(args: string[], name: string, fallback: number | undefined, min: number): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new KilnError('E_INVALID_ARGUMENT', `--${name} must be an integer >= ${min}, received ${v}`);
  return n;
}

/** Seeded inputs for every model input: the first dynamic dim is the batch, others are 1. */
function feedsFor(session: Session, batch: number): Feeds {
  const feeds: Record<string, Tensor> = {};
  const next = prng(7);
  for (const input of session.inputs) {
    let batchUsed = false;
    const dims = input.shape.map((d) => {
      if (typeof d === 'number') return d;
      if (batchUsed) return 1;
      batchUsed = true;
      return batch;
    });
    const n = dims.reduce((a, b) => a * b, 1);
    const type = input.type as TensorType;
    if (type === 'string') {
      feeds[input.name] = new Tensor('string', Array.from({ length: n }, () => 'kiln'), dims);
    } else if (type in ARRAY_TYPE) {
      const data = new ARRAY_TYPE[type as Exclude<TensorType, 'string'>](new ArrayBuffer(n * ARRAY_TYPE[type as Exclude<TensorType, 'string'>].BYTES_PER_ELEMENT), 0, n);
      if (data instanceof Float32Array || data instanceof Float64Array) {
        for (let i = 0; i < n; i++) data[i] = next() / 2;
      }
      feeds[input.name] = new Tensor(type, data as never, dims);
    } else {
      throw new KilnError('E_INVALID_ARGUMENT', `input "${input.name}" is a ${input.type}: kiln bench feeds tensors only`);
    }
  }
  return feeds;
}

function stats(us: number[]): string {
  us.sort((a, b) => a - b);
  return `median ${formatMicroseconds(quantile(us, 0.5))}  p99 ${formatMicroseconds(quantile(us, 0.99))}  (${us.length} calls)`;
}

async function bench(args: string[]): Promise<void> {
  const modelArg = flag(args, 'model') ?? 'mlp';
  const batch = intFlag(args, 'batch', 1, 1) as number;
  const calls = intFlag(args, 'calls', 3000, 1) as number;
  const concurrency = intFlag(args, 'concurrency', 1, 1) as number;
  const intra = intFlag(args, 'intra', undefined, 0);
  const model = SAMPLES[modelArg] ? SAMPLES[modelArg]() : modelArg;
  if (typeof model === 'string' && !fs.existsSync(model)) {
    throw new KilnError('E_NOT_FOUND', `--model: no sample called "${model}" (${Object.keys(SAMPLES).join(', ')}) and no such file`);
  }
  const session = await Session.create(model, intra === undefined ? {} : { intraOpThreads: intra });
  const feeds = feedsFor(session, batch);
  const info = runtime();
  process.stdout.write(`kiln bench: ${SAMPLES[modelArg] ? `sample "${modelArg}"` : modelArg}, batch ${batch}, ` +
    `ONNX Runtime ${info.version}, providers ${session.providers.join(', ')}\n`);
  for (let i = 0; i < Math.min(200, calls); i++) session.runSync(feeds);
  const sync: number[] = [];
  for (let i = 0; i < calls; i++) {
    const t0 = process.hrtime.bigint();
    session.runSync(feeds);
    sync.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  process.stdout.write(`  runSync          ${stats(sync)}\n`);
  const lat: number[] = [];
  const t0 = process.hrtime.bigint();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next++ < calls) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      lat.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`  run (${concurrency} in flight) ${stats(lat)}  ${((calls * batch) / seconds).toFixed(0)} inferences/s\n`);
  await session.dispose();
}

function info(): void {
  const rt = runtime();
  const gpus = cuda.devices();
  const lines = [
    `ONNX Runtime ${rt.version} (C API ${rt.apiVersion}) from ${rt.library}`,
    `providers: ${rt.providers.join(', ')}`,
    `global thread pools: intra-op ${rt.intraOpThreads || 'one per core'}, inter-op ${rt.interOpThreads || 'default'}, spinning ${rt.spinning ? 'on' : 'off'}`,
    gpus.problem ? `CUDA: ${gpus.problem}` : `CUDA: driver ${gpus.library} (CUDA ${gpus.driverVersion})`,
  ];
  for (const d of gpus.devices) {
    lines.push(`  cuda:${d.id} ${d.name}, ${(d.totalMemory / 2 ** 30).toFixed(1)} GiB, compute ${d.computeCapability}, ${d.multiprocessors} SMs, PCI ${d.pciBusId}`);
  }
  process.stdout.write(lines.join('\n') + '\n');
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === 'info') return info();
  if (command === 'bench') return bench(rest);
  process.stdout.write('usage: kiln info | kiln bench [--model mlp|add|conv|big-output|FILE.onnx] [--batch N] [--calls N] [--intra N] [--concurrency N]\n');
  if (command !== undefined && command !== 'help' && command !== '--help') process.exitCode = 2;
}

main(process.argv.slice(2)).catch((e: Error) => {
  process.stderr.write(`kiln: ${(e as KilnError).code ?? 'error'}: ${e.message}\n`);
  process.exit(1);
});

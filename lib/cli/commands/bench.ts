// kiln bench: latency of run and runSync on a model, median and p99.
import { Command } from 'commander';
import * as fs from 'fs';
import { KilnError } from '../../errors';
import { formatMicroseconds, quantile } from '../../latency';
import { runtime } from '../../runtime';
import { addModel, bigOutputModel, convModel, mlpModel, prng } from '../../samples';
import { Session, type Feeds } from '../../session';
import { ARRAY_TYPE, Tensor, type TensorType } from '../../tensor';
import { integerOption } from '../options';

const SAMPLES: Record<string, () => Uint8Array> = { mlp: mlpModel, add: addModel, conv: convModel, 'big-output': bigOutputModel };

interface BenchOptions {
  model: string;
  batch: number;
  calls: number;
  concurrency: number;
  intra?: number;
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

async function bench(o: BenchOptions): Promise<void> {
  const sample = Object.hasOwn(SAMPLES, o.model) ? SAMPLES[o.model] : undefined;
  if (!sample && !fs.existsSync(o.model)) {
    throw new KilnError('E_NOT_FOUND', `--model: no sample called "${o.model}" (${Object.keys(SAMPLES).join(', ')}) and no such file`);
  }
  const session = await Session.create(sample ? sample() : o.model, o.intra === undefined ? {} : { intraOpThreads: o.intra });
  const feeds = feedsFor(session, o.batch);
  const info = runtime();
  process.stdout.write(`kiln bench: ${sample ? `sample "${o.model}"` : o.model}, batch ${o.batch}, ` +
    `ONNX Runtime ${info.version}, providers ${session.providers.join(', ')}\n`);
  for (let i = 0; i < Math.min(200, o.calls); i++) session.runSync(feeds);
  const sync: number[] = [];
  for (let i = 0; i < o.calls; i++) {
    const t0 = process.hrtime.bigint();
    session.runSync(feeds);
    sync.push(Number(process.hrtime.bigint() - t0) / 1000);
  }
  process.stdout.write(`  runSync          ${stats(sync)}\n`);
  const lat: number[] = [];
  const t0 = process.hrtime.bigint();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next++ < o.calls) {
      const t = process.hrtime.bigint();
      await session.run(feeds);
      lat.push(Number(process.hrtime.bigint() - t) / 1000);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, lane));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(`  run (${o.concurrency} in flight) ${stats(lat)}  ${((o.calls * o.batch) / seconds).toFixed(0)} inferences/s\n`);
  await session.dispose();
}

export const benchCommand = (): Command =>
  new Command('bench')
    .description('latency of run and runSync on a model, median and p99')
    .option('--model <NAME|FILE.onnx>', `a sample the package builds (${Object.keys(SAMPLES).join(', ')}) or a model file`, 'mlp')
    .addOption(integerOption('--batch <N>', 'the size of the first symbolic dim of each input', 1).default(1))
    .addOption(integerOption('--calls <N>', 'runs of each kind', 1).default(3000))
    .addOption(integerOption('--intra <N>', 'intra-op threads of the session (0: one per core)', 0))
    .addOption(integerOption('--concurrency <N>', 'run calls in flight at once', 1).default(1))
    .action(bench);

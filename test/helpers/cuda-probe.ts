// A child process for test/gpu.test.ts. The CUDA driver is loaded once per process (from
// KILN_CUDA_LIBRARY, else libcuda.so.1), so every driver situation gets a process of its own.
//
//   node cuda-probe.js <scenario> [json argument]
//
// prints one JSON line (the last line of stdout) with what it saw. Scenarios:
//   devices               cuda.devices()
//   create  <cases>       for each case { providers, options? }: Session.create(addModel(), ...),
//                         then a run (its output) and a run with outputLocation 'cuda'
//   batch   <config>      loadModel(mlpModel(), config) and 8 concurrent infer() calls on
//                         inputs from prng(1..8) with 1..3 rows each (the test computes the
//                         reference)
// Errors are reported as { error: { name, code, message } }. In the JSON argument,
// { "$bigint": "1234" } stands for 1234n.
import { cuda, loadModel, Session, Tensor, type SessionOptions } from '../../lib';
import { addModel, mlpModel, prng } from '../fixtures/models';

interface ErrorReport {
  name: string;
  code: string | undefined;
  message: string;
}

function report(e: unknown): { error: ErrorReport } {
  const err = e as { name?: unknown; code?: unknown; message?: unknown };
  return {
    error: {
      name: String(err?.name),
      code: typeof err?.code === 'string' ? err.code : undefined,
      message: String(err?.message ?? e),
    },
  };
}

function parseArg(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  return JSON.parse(text, (_key, value: unknown) =>
    value !== null && typeof value === 'object' && '$bigint' in value ? BigInt((value as { $bigint: string }).$bigint) : value);
}

/** The rows of request `i` of the batch scenario (shared with the test through this rule). */
export function batchInput(i: number): { rows: number; data: Float32Array } {
  const rows = 1 + (i % 3);
  const rand = prng(i + 1);
  const data = new Float32Array(rows * 512);
  for (let k = 0; k < data.length; k++) data[k] = rand();
  return { rows, data };
}

async function create(cases: { providers?: unknown; options?: Record<string, unknown> }[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const c of cases) {
    let session: Session;
    try {
      session = await Session.create(addModel(), { ...(c.options ?? {}), providers: c.providers } as SessionOptions);
    } catch (e) {
      out.push(report(e));
      continue;
    }
    const a = new Tensor('float32', Float32Array.from({ length: 8 }, (_, i) => i), [2, 4]);
    const b = new Tensor('float32', Float32Array.from({ length: 8 }, (_, i) => 10 * i), [2, 4]);
    const result = await session.run({ a, b });
    let cudaOutput: unknown = null;
    try {
      await session.run({ a, b }, { outputLocation: 'cuda' });
      cudaOutput = 'accepted';
    } catch (e) {
      cudaOutput = report(e).error;
    }
    out.push({
      providers: session.providers,
      notes: session.providerNotes,
      deviceUndefined: session.device === undefined,
      device: session.device ?? null,
      y: Array.from(result.y.data as Float32Array),
      yDims: result.y.dims,
      cudaOutput,
    });
    await session.dispose();
  }
  return out;
}

async function batch(config: Record<string, unknown>): Promise<unknown> {
  let model;
  try {
    model = await loadModel(mlpModel(), config);
  } catch (e) {
    return report(e);
  }
  try {
    const sessions = model.sessions;
    const requests = Array.from({ length: 8 }, (_, i) => {
      const { rows, data } = batchInput(i);
      return model.infer({ x: new Tensor('float32', data, [rows, 512]) });
    });
    const results = await Promise.all(requests);
    return {
      sessions: sessions.map((s) => ({ providers: s.providers, notes: s.providerNotes, deviceUndefined: s.device === undefined })),
      distinct: new Set(sessions).size,
      instances: model.config.instances,
      kind: model.config.kind,
      outputs: results.map((r) => ({ dims: r.y.dims, data: Array.from(r.y.data as Float32Array) })),
    };
  } finally {
    await model.dispose();
  }
}

async function main(): Promise<void> {
  const [scenario, arg] = process.argv.slice(2);
  let result: unknown;
  switch (scenario) {
    case 'devices':
      result = cuda.devices();
      break;
    case 'create':
      result = await create(parseArg(arg) as { providers?: unknown }[]);
      break;
    case 'batch':
      result = await batch(parseArg(arg) as Record<string, unknown>);
      break;
    default:
      throw new Error(`unknown scenario ${JSON.stringify(scenario)}`);
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`cuda-probe failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exitCode = 1;
  });
}

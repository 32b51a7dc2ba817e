/**
 * onnxruntime-node's InferenceSession in this process: what Kiln is compared with. It is an
 * optional peer dependency, so it is imported only when asked for.
 */
import { KilnError, toKilnError } from '../../errors';
import type { ProviderName } from '../../options';
import type { InputSet, Target } from '../types';
import type { TargetOutputs } from './kiln';

type Ort = typeof import('onnxruntime-node');
type OrtSession = import('onnxruntime-node').InferenceSession;
type OrtTensor = import('onnxruntime-node').Tensor;

export interface OrtTargetOptions {
  model: string | Uint8Array;
  label?: string;
  inputs: InputSet[];
  provider?: ProviderName;
  intraOpThreads?: number;
}

/** onnxruntime-node, or E_NOT_FOUND saying how to install it. */
export async function importOrt(): Promise<Ort> {
  try {
    return await import('onnxruntime-node');
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') {
      throw new KilnError('E_NOT_FOUND', 'onnxruntime-node is not installed (npm install onnxruntime-node)', { cause: e });
    }
    throw toKilnError(e);
  }
}

/** onnxruntime-node's names of Kiln's providers. */
const EXECUTION_PROVIDER: Readonly<Record<ProviderName, string>> = { cpu: 'cpu', cuda: 'cuda', tensorrt: 'tensorrt' };

export async function createOrtTarget(o: OrtTargetOptions): Promise<Target> {
  if (!o.inputs.length) throw new KilnError('E_INVALID_ARGUMENT', 'a target needs at least one input set');
  const ort = await importOrt();
  const provider = o.provider ?? 'cpu';
  let session: OrtSession;
  try {
    const options = {
      executionProviders: [EXECUTION_PROVIDER[provider]],
      ...(o.intraOpThreads !== undefined ? { intraOpNumThreads: o.intraOpThreads } : {}),
    };
    // Narrowed for create's overloads (a path or bytes).
    session = typeof o.model === 'string' ? await ort.InferenceSession.create(o.model, options) : await ort.InferenceSession.create(o.model, options);
  } catch (e) {
    throw new KilnError('E_MODEL_LOAD', `onnxruntime-node could not load ${o.label ?? 'the model'}: ${(e as Error).message}`, { cause: e });
  }
  // The same bytes as Kiln's inputs, wrapped once (onnxruntime-node tensors do not copy).
  const feeds = o.inputs.map((set) => Object.fromEntries(Object.entries(set).map(([name, t]) => [name, new ort.Tensor(t.type as never, t.data as never, t.dims)])));
  let next = 0;
  const label = o.label ?? (typeof o.model === 'string' ? o.model : 'model bytes');
  return {
    name: 'onnxruntime-node',
    description: `${label}: onnxruntime-node ${ort.env.versions.common ?? ''} InferenceSession.run, ${provider}`.replace('  ', ' '),
    infer: async () => {
      await session.run(feeds[next++ % feeds.length]);
    },
    outputs: async (index): Promise<TargetOutputs> => {
      const results = await session.run(feeds[index % feeds.length]);
      return Object.fromEntries(Object.entries(results).map(([name, t]: [string, OrtTensor]) => [name, { type: t.type, dims: [...t.dims], data: t.data as ArrayLike<number | bigint | string> }]));
    },
    close: () => session.release(),
  };
}

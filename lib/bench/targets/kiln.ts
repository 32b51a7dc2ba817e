/**
 * Kiln in this process: a plain Session (`session.run`, one request at a time per caller) or
 * the batcher (`loadModel`: dynamic batching from a Triton-style config), on any provider.
 * The batcher's statistics (`model.stats()`) are its server-side counters.
 */
import * as fs from 'fs';
import { loadModel, type Model } from '../../batching/model';
import type { ModelConfig } from '../../batching/config';
import type { ModelStats } from '../../batching/stats';
import { KilnError } from '../../errors';
import type { ProviderName, SessionOptions } from '../../options';
import { kilnConfig } from '../../server/repository';
import { parseModelConfigJson, parseModelConfigText } from '../../server/triton-config';
import { Session, type Results } from '../../session';
import { isTensorType } from '../../tensor';
import type { InputSpec } from '../inputs';
import type { InputSet, ServerCounters, Target } from '../types';

export type TargetOutputs = Awaited<ReturnType<NonNullable<Target['outputs']>>>;

export interface KilnTargetOptions {
  /** A model file, or its bytes. */
  model: string | Uint8Array;
  /** What the description calls the model (default: the path). */
  label?: string;
  inputs: InputSet[];
  provider?: ProviderName;
  intraOpThreads?: number;
  /** Run through the batcher (loadModel) instead of a plain session. */
  batcher?: {
    /** A Triton model config (config.pbtxt, or config.json with Kiln's fields). */
    configFile?: string;
    maxBatchSize?: number;
    maxQueueDelayUs?: number;
  };
}

/** Results as the plain records `Target.outputs` returns. */
export function plainOutputs(results: Results): TargetOutputs {
  return Object.fromEntries(Object.entries(results).map(([name, t]) => [name, { type: t.type, dims: [...t.dims], data: t.data }]));
}

function sessionOptions(o: KilnTargetOptions): SessionOptions {
  return {
    ...(o.provider ? { providers: [o.provider] } : {}),
    ...(o.intraOpThreads !== undefined ? { intraOpThreads: o.intraOpThreads } : {}),
  };
}

/** The batcher's configuration: a config file's, then the flags over it. */
export function batcherConfig(o: NonNullable<KilnTargetOptions['batcher']>, session: SessionOptions): ModelConfig {
  let config: ModelConfig = {};
  if (o.configFile !== undefined) {
    if (!fs.existsSync(o.configFile)) throw new KilnError('E_NOT_FOUND', `--config: no such file: ${o.configFile}`);
    const text = fs.readFileSync(o.configFile, 'utf8');
    const triton = o.configFile.endsWith('.json') ? parseModelConfigJson(text, o.configFile) : parseModelConfigText(text, o.configFile);
    config = kilnConfig(triton, o.configFile);
  }
  if (o.maxBatchSize !== undefined) config.maxBatchSize = o.maxBatchSize;
  if (o.maxQueueDelayUs !== undefined) {
    const given = typeof config.dynamicBatching === 'object' ? config.dynamicBatching : {};
    config.dynamicBatching = { ...given, maxQueueDelayMicroseconds: o.maxQueueDelayUs };
  }
  if (Object.keys(session).length) config.session = { ...config.session, ...session };
  return config;
}

const counters = (s: ModelStats): ServerCounters => ({
  requests: s.success,
  inferenceCount: s.inferenceCount,
  executionCount: s.executionCount,
  queueUs: s.queueUs,
  computeInputUs: s.computeInputUs,
  computeInferUs: s.computeInferUs,
  computeOutputUs: s.computeOutputUs,
  batchSizes: { ...s.batchSizes },
});

/** A model's inputs as the input generators want them (tensor inputs only). */
export function tensorSpecs(inputs: Session['inputs'], where: string): InputSpec[] {
  return inputs.map((i) => {
    if (!isTensorType(i.type)) throw new KilnError('E_INVALID_ARGUMENT', `${where}: input "${i.name}" is a ${i.type}: kiln bench feeds tensors only`);
    return { name: i.name, type: i.type, shape: [...i.shape] };
  });
}

/** The inputs of a model file (loaded once on the CPU to read them). */
export async function modelInputSpecs(model: string | Uint8Array, label: string): Promise<InputSpec[]> {
  const session = await Session.create(model);
  try {
    return tensorSpecs(session.inputs, label);
  } finally {
    await session.dispose();
  }
}

export async function createKilnTarget(o: KilnTargetOptions): Promise<Target> {
  if (!o.inputs.length) throw new KilnError('E_INVALID_ARGUMENT', 'a target needs at least one input set');
  const label = o.label ?? (typeof o.model === 'string' ? o.model : 'model bytes');
  const inputs = o.inputs;
  let next = 0;
  if (!o.batcher) {
    const session = await Session.create(o.model, sessionOptions(o));
    return {
      name: 'kiln',
      description: `${label}: Kiln session.run, ${session.providers.join(', ')}`,
      infer: async () => {
        await session.run(inputs[next++ % inputs.length]);
      },
      outputs: async (index) => plainOutputs(await session.run(inputs[index % inputs.length])),
      close: () => session.dispose(),
    };
  }
  const model: Model = await loadModel(o.model, batcherConfig(o.batcher, sessionOptions(o)));
  const c = model.config;
  const batching = c.batching ? `max batch ${c.maxBatchSize}, queue delay ${c.maxQueueDelayUs} µs` : 'no dynamic batching';
  return {
    name: 'kiln-batcher',
    description: `${label}: Kiln model.infer (${batching}, ${c.instances} instance${c.instances === 1 ? '' : 's'}), ${model.sessions[0].providers.join(', ')}`,
    infer: async () => {
      await model.infer(inputs[next++ % inputs.length]);
    },
    counters: async () => counters(model.stats()),
    outputs: async (index) => plainOutputs(await model.infer(inputs[index % inputs.length])),
    close: () => model.dispose(),
  };
}

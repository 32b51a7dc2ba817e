// kiln cache-tune: a semantic cache threshold for a target false-hit rate, from a sample of requests.
import { Command, Option } from 'commander';
import * as fs from 'fs';
import { inputEmbedding } from '../../cache/semantic/embedding';
import { vectorSimilarity } from '../../cache/semantic/index';
import { suggestThreshold, type JudgedPair } from '../../cache/semantic/tune';
import { compareResults, type CompareHow } from '../../cache/semantic/verify';
import { KilnError } from '../../errors';
import { loadSamples } from '../../optimize/data';
import { Session, type Results } from '../../session';
import { choiceOption, dimOption, numberOption } from '../options';

interface CacheTuneOptions {
  samples: string;
  targetFalseHitRate: number;
  metric: 'cosine' | 'l2';
  judge: CompareHow['metric'];
  tolerance?: number;
  dim?: Record<string, number>;
}

/** Up to this many samples every pair is judged (n(n-1)/2 pairs); beyond, each sample with its nearest neighbour. */
const ALL_PAIRS_UP_TO = 64;

/** The index of the sample nearest to sample i (by `metric`), others only. */
function nearest(vectors: readonly Float32Array[], i: number, metric: 'cosine' | 'l2'): number {
  let best = -1;
  let bestSimilarity = 0;
  for (let j = 0; j < vectors.length; j++) {
    if (j === i) continue;
    const s = vectorSimilarity(vectors[i], vectors[j], metric);
    if (best < 0 || (metric === 'cosine' ? s > bestSimilarity : s < bestSimilarity)) {
      best = j;
      bestSimilarity = s;
    }
  }
  return best;
}

async function cacheTune(modelPath: string, o: CacheTuneOptions): Promise<void> {
  if (!fs.existsSync(modelPath)) throw new KilnError('E_NOT_FOUND', `no such model file: ${modelPath}`);
  const session = await Session.create(modelPath);
  let outputs: Results[];
  let vectors: Float32Array[];
  try {
    const samples = await loadSamples(o.samples, session.inputs, { dims: o.dim ?? {} });
    if (samples.length < 2) throw new KilnError('E_INVALID_ARGUMENT', `cache-tune needs at least 2 samples to pair, ${o.samples} holds ${samples.length}`);
    // The vector the semantic cache's default embedding ('input') would compute.
    vectors = samples.map((s) => inputEmbedding(s));
    outputs = [];
    for (const s of samples) outputs.push(await session.run(s));
  } finally {
    await session.dispose();
  }
  const how: CompareHow = { metric: o.judge, ...(o.tolerance === undefined ? {} : { tolerance: o.tolerance }) };
  const judged = (i: number, j: number): JudgedPair => ({ a: vectors[i], b: vectors[j], same: compareResults(outputs[j], outputs[i], how).same });
  const n = vectors.length;
  // Few samples: every pair is a lookup (both near and far pairs, so the threshold sees what
  // it must keep out). Many: each sample looks up its nearest neighbour, as a full cache would.
  const allPairs = n <= ALL_PAIRS_UP_TO;
  const pairs: JudgedPair[] = [];
  if (allPairs) {
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) pairs.push(judged(i, j));
  } else {
    for (let i = 0; i < n; i++) pairs.push(judged(i, nearest(vectors, i, o.metric)));
  }
  const s = suggestThreshold(pairs, { targetFalseHitRate: o.targetFalseHitRate, metric: o.metric });
  const pct = (x: number): string => `${(100 * x).toFixed(2)}%`;
  const verify = `{ metric: '${o.judge}'${o.tolerance === undefined ? '' : `, tolerance: ${o.tolerance}`} }`;
  process.stdout.write(
    `kiln cache-tune: ${modelPath}, ${n} samples from ${o.samples}, ${pairs.length} ${allPairs ? 'pairs (all)' : 'pairs (each sample and its nearest neighbour)'}, judged by ${o.judge}\n` +
    `  threshold:      ${s.threshold} (${o.metric}, embedding 'input')\n` +
    `  false-hit rate: ${pct(s.falseHitRate)} of hits (target ${pct(o.targetFalseHitRate)})\n` +
    `  hit rate:       ${pct(s.hitRate)} of lookups\n` +
    `  samples:        ${n}\n` +
    `  config:         semanticCache: { threshold: ${s.threshold}, metric: '${o.metric}', embedding: 'input', verify: ${verify} }\n`);
}

export function cacheTuneCommand(): Command {
  return new Command('cache-tune')
    .summary('suggest a semantic cache threshold for a target false-hit rate from sample requests')
    .description('Runs MODEL on every sample, judges pairs of samples "same" when their outputs agree (--judge), and suggests ' +
      'the semanticCache threshold on the input embedding with the most hits whose false hits per hit stay at or below the target.')
    .argument('<MODEL.onnx>', 'the model')
    .addOption(new Option('--samples <DIR>', 'sample requests: a folder of .npy/.raw files (single input) or of sub-folders with <input>.npy/.raw').makeOptionMandatory())
    .addOption(numberOption('--target-false-hit-rate <RATE>', 'highest acceptable false hits per hit (default 0.01)', (n) => n >= 0 && n < 1, 'a number in [0, 1)').default(0.01))
    .addOption(choiceOption('--metric <METRIC>', 'the cache\'s similarity metric (default cosine)', ['cosine', 'l2']).default('cosine'))
    .addOption(choiceOption('--judge <JUDGE>', 'when two samples\' outputs count as the same answer (default top1; ctc: the decoded label sequences, blank 0)', ['top1', 'cosine', 'maxError', 'ctc']).default('top1'))
    .addOption(numberOption('--tolerance <N>', 'the judge\'s tolerance (defaults: top1 0, cosine 1e-3, maxError 1e-3, ctc 0)', (n) => n >= 0, 'a number >= 0'))
    .addOption(dimOption('size of a symbolic dim, repeatable: for .raw samples'))
    .action(cacheTune);
}

/**
 * Triton's model_warmup: samples run on a version after it loads and before it takes
 * requests, so that its first requests do not pay for ONNX Runtime's first runs. Each sample
 * gives its inputs' data types and dims (without the batch dim when the model batches; the
 * sample's batch_size is put in front), filled with zeros, random values, or the raw bytes of
 * a file in the model's `warmup/` folder, and runs `count` times (default 1).
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Model } from '../batching/model';
import { KilnError, toKilnError } from '../errors';
import { randomFeeds } from '../optimize/data';
import { fromBinary, tensorTypeOfConfig, v2TypeOf } from './tensors';
import type { TritonModelConfig } from './triton-config';


/** Runs `config`'s warm-up samples on `model`; a sample that fails fails the load, named. */
export async function warmUp(model: Model, config: TritonModelConfig, modelDir: string, repositoryRoot: string, where: string): Promise<number> {
  let runs = 0;
  for (const [i, sample] of (config.modelWarmup ?? []).entries()) {
    const label = `${where}: model_warmup[${i}]${sample.name ? ` "${sample.name}"` : ''}`;
    const batch = (config.maxBatchSize ?? 0) > 0 ? [Math.max(1, sample.batchSize ?? 1)] : [];
    const feeds: Record<string, unknown> = {};
    for (const [name, input] of Object.entries(sample.inputs ?? {})) {
      const type = tensorTypeOfConfig(input.dataType);
      if (!type) throw new KilnError('E_INVALID_ARGUMENT', `${label}: input "${name}" needs a data_type`);
      const dims = [...batch, ...(input.dims ?? [])];
      if (dims.some((d) => !Number.isInteger(d) || d < 0)) throw new KilnError('E_INVALID_ARGUMENT', `${label}: input "${name}" dims [${dims}] must be sizes (no -1 in a warm-up sample)`);
      if (input.inputDataFile !== undefined) {
        const file = input.inputDataFile;
        if (file !== path.basename(file) || file === '..' || file === '.') throw new KilnError('E_INVALID_ARGUMENT', `${label}: input_data_file "${file}" must be a file name in the model's warmup folder`);
        const full = path.join(modelDir, 'warmup', file);
        let real: string;
        try {
          real = fs.realpathSync(full);
        } catch (e) {
          throw new KilnError('E_NOT_FOUND', `${label}: no warm-up data file ${full}`, { cause: e });
        }
        if (!real.startsWith(repositoryRoot + path.sep)) throw new KilnError('E_INVALID_ARGUMENT', `${label}: ${full} leads outside the model repository`);
        feeds[name] = fromBinary({ name, shape: dims, datatype: v2TypeOf(type), data: [] }, fs.readFileSync(real), type, Number.MAX_SAFE_INTEGER);
      } else {
        // Zeros, or seeded random values (randomFeeds' standard normal floats; integers zero).
        const t = randomFeeds([{ name, type, shape: dims }], { seed: i + 1 })[name];
        if (input.zeroData || !input.randomData) {
          if (type === 'string') (t.data as string[]).fill('');
          else (t.data as unknown as { fill(v: number | bigint): void }).fill(type === 'int64' || type === 'uint64' ? 0n : 0);
        }
        feeds[name] = t;
      }
    }
    for (let k = 0; k < Math.max(1, sample.count ?? 1); k++) {
      try {
        await model.infer(feeds as never);
      } catch (e) {
        const err = toKilnError(e);
        throw new KilnError(err.code, `${label} failed: ${err.message}`, { cause: e });
      }
      runs++;
    }
  }
  return runs;
}

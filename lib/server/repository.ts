/**
 * A Triton model repository: `<repo>/<model>/config.pbtxt` (or `config.json`, or no config:
 * completed from the ONNX model as Triton's auto-complete does) and numeric version folders
 * holding `model.onnx` (or the config's `default_model_filename`). Reading it touches nothing
 * outside the repository: model names, version folders and file names are checked, and a
 * model file whose real path (symbolic links followed) leaves the repository is refused.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { InputConfig, ModelConfig, OutputConfig } from '../batching/config';
import { KilnError } from '../errors';
import type { SessionOptions } from '../options';
import type { ValueInfo } from '../session';
import { configTypeOf } from './tensors';
import { parseModelConfigJson, parseModelConfigText, type TensorConfig, type TritonModelConfig } from './triton-config';

/** Triton's ONNX platform and backend names. */
const ONNX_PLATFORM = 'onnxruntime_onnx';
const ONNX_BACKEND = 'onnxruntime';

/** Model names Kiln serves: letters, digits, '_', '-', '.', not starting with '.' or '-' (no path in a name). */
export const MODEL_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface ModelVersion {
  version: number;
  /** The model file (inside the repository). */
  file: string;
}

export interface RepositoryModel {
  name: string;
  dir: string;
  /** The config file read; undefined: none, the config is to be completed from the model. */
  configFile?: string;
  config: TritonModelConfig;
  /** Every numeric version folder, ascending. */
  available: number[];
  /** The versions the version policy serves, ascending. */
  versions: ModelVersion[];
}

export type RepositoryEntry = { name: string; model: RepositoryModel } | { name: string; error: KilnError };

function realDir(dir: string): string {
  try {
    const real = fs.realpathSync(dir);
    if (!fs.statSync(real).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `model repository ${dir} is not a folder`);
    return real;
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError('E_NOT_FOUND', `model repository ${dir} does not exist`, { cause: e });
  }
}

/** The models of the repository at `dir`, each read or the error that stops it (others still load). */
export function readRepository(dir: string): RepositoryEntry[] {
  const root = realDir(dir);
  const out: RepositoryEntry[] = [];
  for (const entry of fs.readdirSync(root, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    if (entry.name.startsWith('.') || !(entry.isDirectory() || entry.isSymbolicLink())) continue;
    try {
      out.push({ name: entry.name, model: readModelDir(root, entry.name) });
    } catch (e) {
      out.push({ name: entry.name, error: e instanceof KilnError ? e : new KilnError('E_INVALID_ARGUMENT', String((e as Error).message ?? e), { cause: e }) });
    }
  }
  return out;
}

/** One model of the repository `repo` by name. */
export function readModelDir(repo: string, name: string): RepositoryModel {
  const root = realDir(repo);
  if (!MODEL_NAME.test(name)) throw new KilnError('E_INVALID_ARGUMENT', `"${name}" is not a model name (letters, digits, '_', '-' and '.', not starting with '.' or '-')`);
  const dir = path.join(root, name);
  if (!fs.existsSync(dir)) throw new KilnError('E_NOT_FOUND', `no model "${name}" in the repository ${repo}`);
  inside(root, dir, `model "${name}"`);
  if (!fs.statSync(dir).isDirectory()) throw new KilnError('E_INVALID_ARGUMENT', `${dir} is not a folder`);
  const pbtxt = path.join(dir, 'config.pbtxt');
  const json = path.join(dir, 'config.json');
  const hasPbtxt = fs.existsSync(pbtxt);
  const hasJson = fs.existsSync(json);
  if (hasPbtxt && hasJson) throw new KilnError('E_INVALID_ARGUMENT', `model "${name}" has both config.pbtxt and config.json: keep one`);
  const configFile = hasPbtxt ? pbtxt : hasJson ? json : undefined;
  let config: TritonModelConfig = {};
  if (configFile) {
    inside(root, configFile, `config of model "${name}"`);
    const text = fs.readFileSync(configFile, 'utf8');
    config = hasPbtxt ? parseModelConfigText(text, configFile) : parseModelConfigJson(text, configFile);
  }
  const where = configFile ?? dir;
  if (config.name !== undefined && config.name !== name) throw new KilnError('E_INVALID_ARGUMENT', `${where}: name "${config.name}" differs from the model's folder "${name}"`);
  const platform = config.platform ?? '';
  const backend = config.backend ?? '';
  if ((platform && platform !== ONNX_PLATFORM) || (backend && backend !== ONNX_BACKEND)) {
    throw new KilnError('E_INVALID_ARGUMENT', `${where}: Kiln serves ONNX models (platform "${ONNX_PLATFORM}", backend "${ONNX_BACKEND}"), not ${platform ? `platform "${platform}"` : `backend "${backend}"`}`);
  }
  if (config.sequenceBatching !== undefined || config.ensembleScheduling !== undefined) {
    throw new KilnError('E_INVALID_ARGUMENT', `${where}: ${config.sequenceBatching !== undefined ? 'sequence_batching' : 'ensemble_scheduling'} is not supported by Kiln`);
  }
  const fileName = config.defaultModelFilename ?? 'model.onnx';
  if (fileName !== path.basename(fileName) || fileName === '.' || fileName === '..' || fileName.includes('\\') || fileName === '') {
    throw new KilnError('E_INVALID_ARGUMENT', `${where}: default_model_filename "${fileName}" must be a file name, without a folder`);
  }
  const available = fs.readdirSync(dir, { withFileTypes: true })
    .filter((e) => /^[0-9]{1,18}$/.test(e.name) && (e.isDirectory() || e.isSymbolicLink()))
    .map((e) => Number(e.name))
    .sort((a, b) => a - b);
  const versions = servedVersions(config.versionPolicy, available, where).map((version) => {
    const file = path.join(dir, String(version), fileName);
    if (fs.existsSync(file)) inside(root, file, `model "${name}" version ${version}`);
    return { version, file };
  });
  return { name, dir, configFile, config, available, versions };
}

/** Refuses a path whose real location (links followed) is outside `root`. */
function inside(root: string, file: string, what: string): void {
  const real = fs.realpathSync(file);
  if (real !== root && !real.startsWith(root + path.sep)) throw new KilnError('E_INVALID_ARGUMENT', `${what}: ${file} leads outside the model repository`);
}

/**
 * The versions a policy serves out of `available` (ascending): latest n (default: latest 1),
 * all, or specific ones (each must exist).
 */
export function servedVersions(policy: TritonModelConfig['versionPolicy'], available: readonly number[], where: string): number[] {
  const kinds = Object.keys(policy ?? {});
  if (kinds.length > 1) throw new KilnError('E_INVALID_ARGUMENT', `${where}: version_policy holds ${kinds.join(' and ')}: give one`);
  if (policy?.all) return [...available];
  if (policy?.specific) {
    const wanted = policy.specific.versions ?? [];
    const missing = wanted.filter((v) => !available.includes(v));
    if (missing.length) throw new KilnError('E_NOT_FOUND', `${where}: version_policy specific names version${missing.length > 1 ? 's' : ''} ${missing.join(', ')}, which the model's folder does not hold (it has ${available.join(', ') || 'none'})`);
    return [...new Set(wanted)].sort((a, b) => a - b);
  }
  const n = policy?.latest?.numVersions ?? 1;
  if (n < 1) throw new KilnError('E_INVALID_ARGUMENT', `${where}: version_policy latest needs num_versions >= 1`);
  return available.slice(-n);
}

// ---------------------------------------------------------------------------------------------
// Auto-complete and Kiln's options


/**
 * `config` completed from the model's inputs and outputs, as Triton's auto-complete does for
 * ONNX: missing inputs and outputs (with their data types and dims, -1 for a dynamic dim),
 * and, when max_batch_size is not given, batching when every input and output has a dynamic
 * first dim (max_batch_size `defaultMaxBatchSize`, dynamic batching on) — else 0. Given
 * fields are kept; a given input or output the model does not have is an error.
 */
export function autoComplete(config: TritonModelConfig, inputs: readonly ValueInfo[], outputs: readonly ValueInfo[], where: string, defaultMaxBatchSize = 64): TritonModelConfig {
  const out: TritonModelConfig = structuredClone(config);
  const dynamicFirst = (v: ValueInfo): boolean => v.shape.length > 0 && typeof v.shape[0] !== 'number';
  if (out.maxBatchSize === undefined) {
    const batchable = [...inputs, ...outputs].every(dynamicFirst);
    out.maxBatchSize = batchable ? defaultMaxBatchSize : 0;
    if (batchable && out.dynamicBatching === undefined) out.dynamicBatching = {};
  }
  const batching = out.maxBatchSize > 0;
  const complete = (given: TensorConfig[] | undefined, actual: readonly ValueInfo[], kind: 'input' | 'output'): TensorConfig[] => {
    for (const g of given ?? []) {
      if (!actual.some((a) => a.name === g.name)) throw new KilnError('E_INVALID_ARGUMENT', `${where}: ${kind} "${g.name}" is not one of the model's ${kind}s (${actual.map((a) => a.name).join(', ')})`);
    }
    return actual.map((a) => {
      const g = given?.find((x) => x.name === a.name);
      const shape = batching ? a.shape.slice(1) : a.shape;
      return { ...g, name: a.name, dataType: g?.dataType ?? configTypeOf(a.type), dims: g?.dims ?? shape.map((d) => (typeof d === 'number' ? d : -1)) };
    });
  };
  out.input = complete(out.input, inputs, 'input');
  out.output = complete(out.output, outputs, 'output');
  return out;
}

/**
 * loadModel's options for a model of the repository: max_batch_size, dynamic_batching (none in
 * a config.pbtxt means no dynamic batching, as in Triton), instance groups, the inputs' and
 * outputs' Kiln fields from a config.json, and the ONNX Runtime backend's thread parameters
 * (`intra_op_thread_count`, `inter_op_thread_count`).
 */
export function kilnConfig(config: TritonModelConfig, where: string): ModelConfig {
  const c = config as TritonModelConfig & { paddingCheck?: ModelConfig['paddingCheck']; session?: SessionOptions; semanticCache?: ModelConfig['semanticCache'] };
  const out: ModelConfig = {};
  if (c.maxBatchSize !== undefined) out.maxBatchSize = c.maxBatchSize;
  if (c.dynamicBatching === undefined) {
    if ((c.maxBatchSize ?? 0) > 0) out.dynamicBatching = false;
  } else {
    out.dynamicBatching = { ...c.dynamicBatching } as ModelConfig['dynamicBatching'];
  }
  if (c.instanceGroup) {
    out.instanceGroup = c.instanceGroup.map((g) => ({
      ...(g.count !== undefined ? { count: g.count } : {}),
      ...(g.kind === 'KIND_GPU' ? { kind: 'GPU' as const } : g.kind === 'KIND_CPU' ? { kind: 'CPU' as const } : {}),
      ...(g.gpus ? { gpus: g.gpus } : {}),
    }));
  }
  const kilnFields = <T extends { name: string }>(list: TensorConfig[] | undefined, keys: readonly string[]): T[] | undefined => {
    const picked = (list ?? []).map((t) => {
      const o: Record<string, unknown> = { name: t.name };
      for (const k of keys) if ((t as unknown as Record<string, unknown>)[k] !== undefined) o[k] = (t as unknown as Record<string, unknown>)[k];
      return o as unknown as T;
    }).filter((o) => Object.keys(o).length > 1);
    return picked.length ? picked : undefined;
  };
  const input = kilnFields<InputConfig>(c.input, ['allowPadding', 'padValue', 'lengthBuckets', 'padAxes']);
  if (input) out.input = input;
  const output = kilnFields<OutputConfig>(c.output, ['cropAxes', 'keepAxes']);
  if (output) out.output = output;
  if (c.paddingCheck) out.paddingCheck = c.paddingCheck;
  // Its embedding { model: name } is resolved by the model manager.
  if (c.semanticCache) out.semanticCache = { ...c.semanticCache };
  const session: SessionOptions = { ...(c.session ?? {}) };
  for (const [key, option] of [['intra_op_thread_count', 'intraOpThreads'], ['inter_op_thread_count', 'interOpThreads']] as const) {
    const raw = c.parameters?.[key]?.stringValue;
    if (raw === undefined) continue;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < 0) throw new KilnError('E_INVALID_ARGUMENT', `${where}: parameters["${key}"] must be an integer >= 0, received "${raw}"`);
    session[option] = n;
  }
  if (Object.keys(session).length) out.session = session;
  return out;
}

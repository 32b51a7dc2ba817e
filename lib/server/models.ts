/**
 * The models a server serves out of a Triton repository: each version loaded as a Kiln
 * Model (its batcher, its sessions), with Triton's model control modes — `none` (everything
 * at start), `explicit` (only what is loaded by name, then load/unload on request) and
 * `poll` (the repository re-read on request: new and changed models loaded, removed ones
 * unloaded). A version runs its config's model_warmup samples before it takes requests. A reload loads the new versions before the old ones go; an unload stops taking
 * requests and waits for those it took (queued and running) before releasing the sessions,
 * so that no request is lost or answered twice.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { Model } from '../batching/model';
import type { CacheInfoOption, InferOptions, InferOutput, InferResult } from '../batching/model';
import type { SemanticCacheConfig } from '../batching/config';
import type { EmbeddingModel } from '../cache/semantic/embedding';
import { modelDigest } from '../cache/key';
import { defaultResponseCache, type ResponseCache } from '../cache/response-cache';
import { KilnError, toKilnError } from '../errors';
import { Session, type Feeds, type Results } from '../session';
import { MODEL_NAME, autoComplete, kilnConfig, readModelDir, readRepository, type RepositoryModel } from './repository';
import type { TritonModelConfig } from './triton-config';
import { warmUp } from './warmup';

export type ControlMode = 'none' | 'explicit' | 'poll';

export interface ModelManagerOptions {
  /** Default 'none'. */
  controlMode?: ControlMode;
  /** Models to load at start in 'explicit' mode (Triton's --load-model); '*' loads all. */
  loadModels?: readonly string[];
  /** max_batch_size given to a batchable model whose config does not say (default 64). */
  defaultMaxBatchSize?: number;
  /**
   * The response cache of the models whose config enables it (`response_cache { enable:
   * true }`); default: the process-wide one (defaultResponseCache()). Models without it get
   * no cache.
   */
  responseCache?: ResponseCache;
}

/** A version being served. */
export interface ServedVersion {
  readonly name: string;
  readonly version: number;
  /** The config as served: completed from the ONNX model where it was silent. */
  readonly config: TritonModelConfig;
  readonly model: Model;
}

/** Triton's repository index entry. */
export interface ModelStatus {
  name: string;
  version?: number;
  state: 'READY' | 'UNAVAILABLE' | 'LOADING' | 'UNLOADING';
  reason: string;
}

interface Entry {
  name: string;
  state: ModelStatus['state'];
  reason: string;
  versions: Map<number, Version>;
  /** What was read, to tell in poll mode whether the model changed. */
  signature?: string;
  /** The load or unload under way, so that a second one waits for it. */
  busy?: Promise<void>;
}

/** What the server sees of a version's requests, end to end (the batcher counts the rest). */
export interface RequestStats {
  /** Successful requests' total time in the server's infer call, µs. */
  successUs: number;
  failureCount: number;
  failureUs: number;
  /** Time of the last request answered, ms since the epoch (0: none yet). */
  lastInference: number;
}

interface Version extends ServedVersion {
  accepting: boolean;
  inflight: number;
  drained?: () => void;
  requests: RequestStats;
}

/** A version's statistics: the batcher's and the server's. */
export interface VersionStats {
  name: string;
  version: number;
  model: ReturnType<Model['stats']>;
  requests: RequestStats;
}

/** What identifies a model's files: config, version folders, model files with their sizes and times. */
function signatureOf(m: RepositoryModel): string {
  const stamp = (file: string | undefined): string => {
    if (!file || !fs.existsSync(file)) return '-';
    const s = fs.statSync(file);
    return `${s.size}:${s.mtimeMs}`;
  };
  return JSON.stringify([stamp(m.configFile), m.versions.map((v) => [v.version, stamp(v.file)])]);
}

/**
 * A served version's identity in response cache keys: its name and version, a SHA-256 of its
 * model file (a model replaced under the same version number never gets the old one's
 * answers) and of the options it is loaded with (padding, for one, can change an answer).
 * Replicas serving the same files agree on it, so they share a Redis cache.
 */
async function cacheKey(name: string, v: { version: number; file: string }, options: object): Promise<string> {
  const config = createHash('sha256').update(JSON.stringify(options)).digest('hex').slice(0, 32);
  return `${name}@${v.version}:${await modelDigest(v.file)}:config=${config}`;
}

export class ModelManager {
  readonly #repository: string;
  readonly #mode: ControlMode;
  readonly #defaultMaxBatchSize: number;
  readonly #responseCache: ResponseCache | undefined;
  readonly #models = new Map<string, Entry>();
  #closed = false;

  private constructor(repository: string, options: ModelManagerOptions) {
    this.#repository = repository;
    this.#mode = options.controlMode ?? 'none';
    this.#defaultMaxBatchSize = options.defaultMaxBatchSize ?? 64;
    this.#responseCache = options.responseCache;
  }

  /** Reads the repository and loads its models as the control mode says. */
  static async open(repository: string, options: ModelManagerOptions = {}): Promise<ModelManager> {
    const mode = options.controlMode ?? 'none';
    if (!['none', 'explicit', 'poll'].includes(mode)) throw new KilnError('E_INVALID_ARGUMENT', `model control mode must be none, explicit or poll, received ${String(mode)}`);
    if (options.loadModels?.length && mode !== 'explicit') throw new KilnError('E_INVALID_ARGUMENT', 'models to load at start are for the explicit control mode');
    const manager = new ModelManager(repository, options);
    const names = readRepository(repository).map((e) => e.name);
    const wanted = mode !== 'explicit' ? names : options.loadModels?.includes('*') ? names : (options.loadModels ?? []);
    for (const name of wanted) await manager.#load(name).catch(() => undefined); // its state says why
    return manager;
  }

  get controlMode(): ControlMode {
    return this.#mode;
  }

  /** Every model of the repository with its versions' states, as Triton's repository index. */
  index(): ModelStatus[] {
    const out: ModelStatus[] = [];
    const names = new Set([...readRepository(this.#repository).map((e) => e.name), ...this.#models.keys()]);
    for (const name of [...names].sort()) {
      const e = this.#models.get(name);
      if (!e) {
        out.push({ name, state: 'UNAVAILABLE', reason: 'unloaded' });
        continue;
      }
      if (e.versions.size === 0) out.push({ name, state: e.state, reason: e.reason });
      for (const v of [...e.versions.values()].sort((a, b) => a.version - b.version)) {
        out.push({ name, version: v.version, state: v.accepting ? (e.state === 'LOADING' ? 'READY' : e.state) : 'UNLOADING', reason: e.reason });
      }
    }
    return out;
  }

  /** Whether every model the mode asked for is ready (Triton's server readiness). */
  ready(): boolean {
    return !this.#closed && [...this.#models.values()].every((e) => e.state === 'READY' || (e.state === 'UNAVAILABLE' && e.reason === 'unloaded'));
  }

  /**
   * The version `version` (a string from a URL, or undefined: the highest served) of model
   * `name`: E_NOT_FOUND for an unknown model or version, E_UNAVAILABLE for one not ready.
   */
  resolve(name: string, version?: string): ServedVersion {
    const e = this.#models.get(name);
    if (!e) {
      const known = this.#inRepository(name);
      throw known ? new KilnError('E_UNAVAILABLE', `model "${name}" is not loaded`) : new KilnError('E_NOT_FOUND', `unknown model "${name}"`);
    }
    if (version !== undefined && version !== '' && !/^[0-9]{1,18}$/.test(version)) throw new KilnError('E_INVALID_ARGUMENT', `model "${name}": version "${version}" is not a number`);
    const accepting = [...e.versions.values()].filter((v) => v.accepting);
    if (version === undefined || version === '') {
      if (accepting.length === 0) throw new KilnError('E_UNAVAILABLE', `model "${name}" is not ready: ${e.reason || e.state.toLowerCase()}`);
      return accepting.reduce((a, b) => (b.version > a.version ? b : a));
    }
    const v = e.versions.get(Number(version));
    if (!v) throw new KilnError('E_NOT_FOUND', `model "${name}" has no version ${version} being served (${[...e.versions.keys()].sort((a, b) => a - b).join(', ') || 'none'})`);
    if (!v.accepting) throw new KilnError('E_UNAVAILABLE', `model "${name}" version ${version} is unloading`);
    return v;
  }

  /**
   * Runs a request on a served version (an unload waits for it); with `withCacheInfo: true`
   * it resolves with how it was served too (as Model.infer does).
   */
  infer<const O extends InferOptions & CacheInfoOption = {}>(name: string, version: string | undefined, feeds: Feeds, options?: O): Promise<InferOutput<O>>;
  async infer(name: string, version: string | undefined, feeds: Feeds, options: InferOptions & CacheInfoOption = {}): Promise<Results | InferResult> {
    const v = this.resolve(name, version) as Version;
    v.inflight++;
    const t0 = performance.now();
    try {
      const r = await v.model.infer(feeds, options);
      v.requests.successUs += (performance.now() - t0) * 1000;
      return r;
    } catch (e) {
      v.requests.failureCount++;
      v.requests.failureUs += (performance.now() - t0) * 1000;
      throw e;
    } finally {
      v.requests.lastInference = Date.now();
      if (--v.inflight === 0) v.drained?.();
    }
  }

  /**
   * Statistics of the versions being served: all, one model's (E_NOT_FOUND when unknown), or
   * one version's.
   */
  statistics(name?: string, version?: string): VersionStats[] {
    if (name !== undefined && !this.#models.has(name)) this.resolve(name, version); // the right error
    const out: VersionStats[] = [];
    for (const e of [...this.#models.values()].sort((a, b) => a.name.localeCompare(b.name))) {
      if (name !== undefined && e.name !== name) continue;
      for (const v of [...e.versions.values()].sort((a, b) => a.version - b.version)) {
        if (version !== undefined && version !== '' && String(v.version) !== version) continue;
        out.push({ name: v.name, version: v.version, model: v.model.stats(), requests: { ...v.requests } });
      }
    }
    if (name !== undefined && version !== undefined && version !== '' && out.length === 0) this.resolve(name, version);
    return out;
  }

  /** Loads (or reloads) a model by name (the explicit model control mode, as in Triton). */
  async load(name: string): Promise<void> {
    if (this.#mode !== 'explicit') throw new KilnError('E_INVALID_ARGUMENT', `models are loaded and unloaded on request only in the explicit model control mode (this server's is ${this.#mode})`);
    await this.#load(name);
  }

  /** Unloads a model: it stops taking requests and goes once those it took are answered. */
  async unload(name: string): Promise<void> {
    if (this.#mode !== 'explicit') throw new KilnError('E_INVALID_ARGUMENT', `models are loaded and unloaded on request only in the explicit model control mode (this server's is ${this.#mode})`);
    await this.#unload(name);
  }

  async #unload(name: string): Promise<void> {
    const e = this.#models.get(name);
    if (!e) {
      if (this.#inRepository(name)) return;
      throw new KilnError('E_NOT_FOUND', `unknown model "${name}"`);
    }
    await this.#exclusive(e, async () => {
      e.state = 'UNLOADING';
      await this.#retire([...e.versions.values()], e);
      e.state = 'UNAVAILABLE';
      e.reason = 'unloaded';
      this.#models.delete(name);
    });
  }

  /** Poll mode: re-reads the repository; loads new and changed models, unloads removed ones. */
  async poll(): Promise<void> {
    if (this.#mode !== 'poll') throw new KilnError('E_INVALID_ARGUMENT', 'the repository is polled only in the poll model control mode');
    const entries = readRepository(this.#repository);
    const present = new Set(entries.map((e) => e.name));
    for (const name of [...this.#models.keys()]) if (!present.has(name)) await this.#unload(name);
    for (const entry of entries) {
      const current = this.#models.get(entry.name);
      const signature = 'model' in entry ? signatureOf(entry.model) : undefined;
      if (!current || current.signature !== signature) await this.#load(entry.name).catch(() => undefined);
    }
  }

  /** Unloads everything (each model once its requests are answered). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all([...this.#models.values()].map((e) => this.#exclusive(e, () => this.#retire([...e.versions.values()], e))));
    this.#models.clear();
  }

  /** Whether the repository has a model folder `name` (one stat, no config read: requests ask). */
  #inRepository(name: string): boolean {
    if (!MODEL_NAME.test(name)) return false;
    try {
      return fs.statSync(path.join(this.#repository, name)).isDirectory();
    } catch {
      return false;
    }
  }

  async #exclusive(e: Entry, job: () => Promise<void>): Promise<void> {
    while (e.busy) await e.busy;
    const run = job();
    e.busy = run.then(() => undefined, () => undefined).finally(() => {
      e.busy = undefined;
    });
    return run;
  }

  async #load(name: string): Promise<void> {
    if (this.#closed) throw new KilnError('E_UNAVAILABLE', 'the server is shutting down');
    let e = this.#models.get(name);
    if (!e) {
      e = { name, state: 'LOADING', reason: '', versions: new Map() };
      this.#models.set(name, e);
    }
    const entry = e;
    await this.#exclusive(entry, async () => {
      entry.state = entry.versions.size ? entry.state : 'LOADING';
      let read: RepositoryModel;
      const fresh = new Map<number, Version>();
      try {
        read = readModelDir(this.#repository, name);
        if (read.versions.length === 0) throw new KilnError('E_NOT_FOUND', `model "${name}" has no version to serve (version folders: ${read.available.join(', ') || 'none'})`);
        for (const v of read.versions) {
          if (!fs.existsSync(v.file)) throw new KilnError('E_NOT_FOUND', `model "${name}" version ${v.version}: no model file ${v.file}`);
          const where = read.configFile ?? read.dir;
          const probe = await Session.create(v.file, { graphOptimizationLevel: 'disabled' });
          let config: TritonModelConfig;
          try {
            config = autoComplete(read.config, probe.inputs, probe.outputs, where, this.#defaultMaxBatchSize);
          } finally {
            await probe.dispose();
          }
          const options = kilnConfig(config, where);
          if (config.responseCache?.enable === true) {
            const key = await cacheKey(name, v, options);
            options.responseCache = { cache: this.#responseCache ?? defaultResponseCache(), key };
          }
          if (options.semanticCache) options.semanticCache = this.#servedSemanticCache(options.semanticCache, await cacheKey(name, v, options), where);
          const model = await Model.load(v.file, options);
          try {
            await warmUp(model, config, read.dir, fs.realpathSync(this.#repository), where);
          } catch (e) {
            await model.dispose();
            throw e;
          }
          fresh.set(v.version, { name, version: v.version, config, model, accepting: true, inflight: 0, requests: { successUs: 0, failureCount: 0, failureUs: 0, lastInference: 0 } });
        }
      } catch (error) {
        for (const v of fresh.values()) await v.model.dispose();
        const k = toKilnError(error);
        // Not a model of the repository (no such folder, not a model name): nothing to list.
        if (entry.versions.size === 0 && !this.#inRepository(name)) this.#models.delete(name);
        if (entry.versions.size === 0) {
          entry.state = 'UNAVAILABLE';
          entry.reason = k.message;
        } else {
          entry.reason = `reload failed, the previous versions are served: ${k.message}`;
        }
        throw k;
      }
      // The new versions take requests before the old ones stop.
      const old = [...entry.versions.values()];
      entry.versions = fresh;
      entry.state = 'READY';
      entry.reason = '';
      entry.signature = signatureOf(read);
      await this.#retire(old, entry);
    });
  }

  /**
   * A config's semanticCache as loadModel takes it: keyed like the response cache, and an
   * embedding `{ model: name, output }` resolved to that served model at each request (its
   * own batching; a reload of it is followed; while it is not loaded the requests run uncached).
   */
  #servedSemanticCache(config: SemanticCacheConfig, key: string, where: string): SemanticCacheConfig {
    const e = config.embedding as unknown;
    if (e === null || typeof e !== 'object' || !('model' in e)) return { ...config, key };
    const { model, output } = e as { model: unknown; output: unknown };
    if (typeof model !== 'string' || model === '') throw new KilnError('E_INVALID_ARGUMENT', `${where}: semanticCache.embedding.model must be the name of a model of the repository, received ${JSON.stringify(model)}`);
    const embedding: EmbeddingModel = { infer: (feeds) => this.infer(model, undefined, feeds as Feeds) };
    return { ...config, key, embedding: { model: embedding, output: output as string } };
  }

  /** Stops `versions` taking requests, waits for the ones they took, and releases them. */
  async #retire(versions: readonly Version[], e: Entry): Promise<void> {
    for (const v of versions) v.accepting = false;
    await Promise.all(versions.map(async (v) => {
      if (v.inflight > 0) await new Promise<void>((done) => (v.drained = done));
      await v.model.dispose();
      if (e.versions.get(v.version) === v) e.versions.delete(v.version);
    }));
  }
}

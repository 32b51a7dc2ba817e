/**
 * Target load: bytes and paths -> Session.create.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Session, type KilnErrorCode, type SessionOptions, type TensorType } from '../../../lib';
import { decodeModel, encodeModel } from '../../../lib/onnx';
import { ALL_TYPES } from '../../../lib/samples';
import { GRAPH_EDITS, graphsOf } from '../generators/graph-edits';
import { BYTE_MUTATIONS, type CorpusModel, loadCorpus, pickCorpus } from '../generators/model-bytes';
import { gc, type Numeric, type NumericCtor, place, product, randomValues, ResizableArrayBuffer } from '../generators/tensors';
import { Ctx, describeError, describeValue, type Expect } from '../judge';
import { Rng } from '../random';

interface LoadCase {
  readonly family: string;
  readonly label: string;
  /** What Session.create is given. */
  readonly source: unknown;
  readonly options?: unknown;
  readonly expect: Expect;
  /** Whether a session it makes may be run with random inputs. */
  readonly runnable: boolean;
  /** Done right after Session.create returned (the load runs meanwhile on a loader thread). */
  readonly during?: () => void;
}

/** Options mixed into some loads: valid, invalid, and ones that change how the bytes are parsed. */
const LOAD_OPTIONS: readonly unknown[] = [
  { graphOptimizationLevel: 'disabled' }, { graphOptimizationLevel: 'all' }, { graphOptimizationLevel: 'bogus' },
  { intraOpThreads: 1 }, { intraOpThreads: -1 }, { intraOpThreads: 1.5 }, { executorThreads: 2 }, { executorThreads: 0 },
  { providers: ['cpu'] }, { providers: [] }, { providers: ['bogus'] }, { providers: 'cpu' },
  { executionMode: 'parallel' }, { logLevel: 'fatal' }, { unknownOption: 1 }, null, 42, 'cpu',
  { configEntries: { 'session.load_model_format': 'ORT' } }, { configEntries: { 'session.load_model_format': 'ONNX' } },
  { configEntries: { 'session.use_ort_model_bytes_directly': '1' } }, { configEntries: { '': '' } },
];

/** The bytes of a model as one of the inputs Session.create accepts: plain, offset, shared, resizable, ArrayBuffer, pooled Buffer. */
function modelSource(rng: Rng, bytes: Uint8Array): { source: Uint8Array | ArrayBuffer; storage: string } {
  const storage = rng.weighted([[6, 'plain'], [1, 'offset'], [1, 'shared'], [1, 'resizable'], [1, 'arraybuffer'], [1, 'pooled']] as const);
  if (storage === 'arraybuffer') return { source: bytes.slice().buffer, storage };
  if (storage === 'pooled') return { source: Buffer.from(bytes), storage };
  return { source: place(rng, bytes, Uint8Array as unknown as NumericCtor, storage) as Uint8Array, storage };
}

function makeLoadCase(rng: Rng, corpus: readonly CorpusModel[], files: LoadFiles): LoadCase {
  const family = rng.weighted([
    [1, 'load-valid'], [12, 'load-bytes'], [5, 'load-graph-edit'], [1, 'load-path'], [0.5, 'load-arg'],
    [0.4, 'load-hazard-transfer'], [0.2, 'load-hazard-resize'], [0.2, 'load-hazard-scribble'],
  ] as const);
  const base = pickCorpus(rng, corpus);
  const options = rng.chance(0.1) ? rng.pick(LOAD_OPTIONS) : undefined;
  const optionsLabel = options === undefined ? '' : ` with options ${JSON.stringify(options)}`;
  // Options may be invalid: then a rejection is fine even for valid bytes.
  const validity = (valid: 'yes' | 'no' | 'maybe'): 'yes' | 'no' | 'maybe' => (options !== undefined && valid === 'yes' ? 'maybe' : valid);
  switch (family) {
    case 'load-valid': {
      const { source, storage } = modelSource(rng, base.bytes);
      return { family, label: `${base.name} as ${storage}${optionsLabel}`, source, options, expect: { valid: validity('yes') }, runnable: base.runnable };
    }
    case 'load-bytes': {
      const [, name, mutate] = rng.weighted(BYTE_MUTATIONS.map((m) => [m[0], m] as const));
      const other = pickCorpus(rng, corpus);
      const bytes = mutate(rng, base.bytes, other.bytes);
      const { source, storage } = modelSource(rng, bytes);
      return { family: name, label: `${name} of ${base.name} (${bytes.length} bytes, ${storage})${optionsLabel}`, source, options, expect: { valid: 'maybe' }, runnable: base.runnable };
    }
    case 'load-graph-edit': {
      const model = decodeModel(base.bytes);
      const graphs = graphsOf(model);
      const done: string[] = [];
      for (let k = rng.range(1, 3); k > 0; k--) {
        const [name, edit] = rng.pick(GRAPH_EDITS);
        const g = rng.pick(graphs.length > 0 ? graphs : [{}]);
        const what = edit(rng, model, g);
        if (what !== undefined) done.push(`${name}: ${what}`);
      }
      let bytes: Uint8Array;
      try {
        bytes = encodeModel(model);
      } catch (e) {
        // An edit protobufjs cannot write (e.g. an int64 out of range) is not a Kiln case.
        bytes = base.bytes;
        done.push(`(not encodable: ${(e as Error).message.slice(0, 60)}; original bytes)`);
      }
      // The family names the edits, so that a crash skips that combination only.
      const kinds = [...new Set(done.map((x) => x.split(':')[0]))].sort().join('+');
      // ONNX Runtime 1.30 itself aborts (std::terminate, onnxruntime-node too) running a Conv
      // on a rank-1 input (docs/fuzz.md, U1): models an edit turned into a Conv are not run,
      // so that the budget is not spent finding that again.
      const upstreamHazard = base.name !== 'conv' && graphsOf(model).some((g) => g.node?.some((n) => n.opType === 'Conv'));
      return {
        family: `${family}(${kinds})`, label: `${base.name}: ${done.join('; ') || 'no edit applied'}${optionsLabel}`, source: bytes, options,
        expect: { valid: 'maybe' }, runnable: base.runnable && !upstreamHazard,
      };
    }
    case 'load-path': {
      const [what, p, valid, want] = rng.pick(files.paths);
      return { family, label: `path ${what}: ${JSON.stringify(p.slice(0, 120))}`, source: p, expect: { valid, want }, runnable: false };
    }
    case 'load-arg': {
      const args: readonly (readonly [string, unknown])[] = [
        ['undefined', undefined], ['null', null], ['number', 42], ['object', {}], ['array', [1, 2]], ['Int32Array', new Int32Array(4)],
        ['DataView', new DataView(new ArrayBuffer(8))], ['Uint8ClampedArray', new Uint8ClampedArray(base.bytes)],
        ['SharedArrayBuffer', new SharedArrayBuffer(8)], ['empty Uint8Array', new Uint8Array(0)], ['function', () => base.bytes],
        ['boxed string', Object('/nowhere')], ['Symbol', Symbol('model')], ['bigint', 1n],
      ];
      const [what, source] = rng.pick(args);
      return { family, label: `argument ${what}`, source, expect: { valid: 'no' }, runnable: false };
    }
    case 'load-hazard-transfer': {
      // The caller transfers the buffer while the load reads it, then writes into what it received.
      // As for run(), whose borrowed buffers are made untransferable, the load must see the bytes
      // as they were at the call.
      const bytes = base.bytes.slice();
      return {
        family, label: `${base.name}: buffer transferred during the load, the transferred copy zeroed`, source: bytes, runnable: false,
        expect: { valid: 'yes' },
        during: () => {
          try {
            const moved = structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
            new Uint8Array(moved).fill(0);
          } catch {
            // Refusing the transfer is fine.
          }
          gc?.();
        },
      };
    }
    case 'load-hazard-resize': {
      const ab = new ResizableArrayBuffer(base.bytes.length, { maxByteLength: base.bytes.length });
      const bytes = new Uint8Array(ab);
      bytes.set(base.bytes);
      return {
        family, label: `${base.name}: resizable buffer shrunk to 0 during the load`, source: bytes, runnable: false,
        expect: { valid: 'maybe' },
        during: () => ab.resize(0),
      };
    }
    case 'load-hazard-scribble': {
      const { source, storage } = modelSource(rng, base.bytes);
      const view = source instanceof ArrayBuffer ? new Uint8Array(source) : source;
      return {
        family, label: `${base.name} (${storage}): the caller's own bytes zeroed during the load`, source, runnable: false,
        expect: { valid: 'maybe' },
        during: () => view.fill(0),
      };
    }
  }
}

/** Paths for load-path: [what, path, validity, code Kiln should give]. */
interface LoadFiles {
  readonly dir: string;
  readonly paths: readonly (readonly [string, string, 'yes' | 'no' | 'maybe', KilnErrorCode | undefined])[];
}

/** Writes the files of load-path under `parent` (the supervisor's run folder: removed even after a crash). */
function makeLoadFiles(corpus: readonly CorpusModel[], parent: string): LoadFiles {
  const dir = fs.mkdtempSync(path.join(parent, 'kiln-fuzz-'));
  const valid = path.join(dir, 'add.onnx');
  fs.writeFileSync(valid, corpus[0].bytes);
  const empty = path.join(dir, 'empty.onnx');
  fs.writeFileSync(empty, new Uint8Array(0));
  const junk = path.join(dir, 'junk.onnx');
  fs.writeFileSync(junk, new Rng(7).bytes(4096));
  const truncated = path.join(dir, 'truncated.onnx');
  fs.writeFileSync(truncated, corpus[0].bytes.subarray(0, corpus[0].bytes.length >> 1));
  const loop = path.join(dir, 'loop');
  try {
    fs.symlinkSync(path.join(dir, 'loop2'), loop);
    fs.symlinkSync(loop, path.join(dir, 'loop2'));
  } catch {
    // No symlinks here: that path is then just missing.
  }
  return {
    dir,
    paths: [
      ['valid', valid, 'yes', undefined],
      ['valid, relative with ..', path.relative(process.cwd(), path.join(dir, '..', path.basename(dir), 'add.onnx')), 'yes', undefined],
      ['missing', path.join(dir, 'missing.onnx'), 'no', 'E_NOT_FOUND'],
      ['directory', dir, 'no', 'E_MODEL_LOAD'],
      ['empty file', empty, 'no', 'E_MODEL_LOAD'],
      ['random bytes', junk, 'no', 'E_MODEL_LOAD'],
      ['truncated', truncated, 'no', 'E_MODEL_LOAD'],
      ['trailing slash', `${valid}/`, 'no', undefined],
      ['symlink loop', loop, 'no', undefined],
      ['character device', '/dev/zero', 'no', 'E_MODEL_LOAD'],
      ['proc file', '/proc/self/status', 'no', 'E_MODEL_LOAD'],
      ['empty string', '', 'no', undefined],
      ['very long', `${dir}/${'x'.repeat(5000)}`, 'no', undefined],
      // Node's own fs refuses paths with NUL bytes (ERR_INVALID_ARG_VALUE): a C API would stop at the NUL.
      ['NUL byte after a valid path', `${valid}\0.txt`, 'no', 'E_INVALID_ARGUMENT'],
      ['NUL byte only', '\0', 'no', undefined],
      ['file URL', `file://${valid}`, 'no', undefined],
    ],
  };
}

/** Feeds for any session from its metadata: symbolic dims small, element counts capped. */
function feedsFromMetadata(rng: Rng, session: Session): Record<string, { type: TensorType; data: Numeric | string[]; dims: number[] }> | undefined {
  const feeds: Record<string, { type: TensorType; data: Numeric | string[]; dims: number[] }> = {};
  for (const input of session.inputs) {
    const type = input.type;
    if (!(ALL_TYPES as readonly string[]).includes(type)) return undefined;
    const dims = input.shape.map((d) => (typeof d === 'number' ? d : rng.range(0, 3)));
    const n = product(dims);
    if (!Number.isSafeInteger(n) || n > 1 << 16) return undefined;
    feeds[input.name] = { type: type as TensorType, data: randomValues(rng, type as TensorType, n, true), dims };
  }
  return feeds;
}

export class LoadFuzzer {
  readonly #corpus = loadCorpus();
  readonly #files: LoadFiles;

  constructor(parent: string) {
    this.#files = makeLoadFiles(this.#corpus, parent);
  }

  async iteration(ctx: Ctx): Promise<void> {
    const c = makeLoadCase(ctx.rng, this.#corpus, this.#files);
    if (ctx.skipped(c.family)) {
      ctx.tally.count('skipped', ctx.iteration, c);
      return;
    }
    const { value: session } = await ctx.begin(c, c.expect, 'async', () => {
      const p = Session.create(c.source as Uint8Array, c.options as SessionOptions);
      c.during?.();
      return p;
    });
    if (!(session instanceof Session)) {
      if (session !== undefined) ctx.finding(c, 'wrong-result', `Session.create resolved with ${describeValue(session)}`);
      return;
    }
    await this.#exercise(ctx, c, session);
  }

  /** A loaded session: its metadata must be readable, it may be run, and it must dispose. */
  async #exercise(ctx: Ctx, c: LoadCase, session: Session): Promise<void> {
    const info = { family: c.family, label: `${c.label}: metadata` };
    try {
      const meta = JSON.stringify({ inputs: session.inputs, outputs: session.outputs, providers: session.providers, notes: session.providerNotes, device: session.device });
      if (session.providers.length === 0) ctx.finding(info, 'wrong-result', `a loaded session names no provider: ${meta.slice(0, 300)}`);
    } catch (e) {
      ctx.finding(info, 'metadata', `reading a loaded session's metadata threw ${describeError(e)}`);
    }
    const runFamily = `${c.family}/run`;
    if (c.runnable && ctx.rng.chance(0.4) && !ctx.skipped(runFamily)) {
      const feeds = feedsFromMetadata(ctx.rng, session);
      if (feeds) {
        const sync = ctx.rng.chance(0.5);
        await ctx.begin({ family: runFamily, label: `${c.label}: ${sync ? 'runSync' : 'run'} with random inputs` }, { valid: 'maybe' },
          sync ? 'sync' : 'async', () => (sync ? session.runSync(feeds) : session.run(feeds)));
      }
    }
    await ctx.begin({ family: c.family, label: `${c.label}: dispose` }, { valid: 'yes' }, 'async', () => session.dispose());
    await ctx.begin({ family: c.family, label: `${c.label}: runSync after dispose` }, { valid: 'no', want: 'E_DISPOSED' }, 'sync', () => session.runSync({}));
  }

  async teardown(): Promise<void> {
    fs.rmSync(this.#files.dir, { recursive: true, force: true });
  }
}

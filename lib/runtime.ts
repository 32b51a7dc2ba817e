/**
 * The process-wide ONNX Runtime: which library is loaded and how its global thread pools
 * are sized. Created on first use with defaults, or explicitly with configure().
 */
import * as fs from 'fs';
import * as path from 'path';
import { native, type NativeRuntimeInfo } from './binding';
import { KilnError, toKilnError } from './errors';
import { LOG_LEVELS, OptionReader, type LogLevel } from './options';

export interface RuntimeOptions {
  /** Path of libonnxruntime; default $KILN_ORT_LIBRARY, else the one inside onnxruntime-node. */
  library?: string;
  /** Global intra-op pool size shared by sessions that do not ask for their own (0: one per core). */
  intraOpThreads?: number;
  interOpThreads?: number;
  /** Let the global pools spin while idle (off: a spinning pool steals the event loop's core). */
  spinning?: boolean;
  logLevel?: LogLevel;
}

export type RuntimeInfo = NativeRuntimeInfo;

let info: RuntimeInfo | undefined;

/** The libonnxruntime Kiln loads by default: the one packed next to the prebuilt addon, else the one in the onnxruntime-node package, if installed. */
export function bundledLibrary(): string | undefined {
  // The packed package carries the library next to its prebuilt addon (scripts/prebuild.js).
  const packed = path.join(__dirname, '..', '..', 'prebuilds', `${process.platform}-${process.arch}`);
  const own = libraryIn(packed);
  if (own) return own;
  let dir: string;
  try {
    dir = path.dirname(require.resolve('onnxruntime-node/package.json'));
  } catch {
    return undefined;
  }
  return libraryIn(path.join(dir, 'bin', 'napi-v6', process.platform, process.arch));
}

/** The ONNX Runtime library in `dir`, if there is one. */
function libraryIn(dir: string): string | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return undefined;
  }
  const lib = names.find((n) => /^libonnxruntime\.so\.\d+$/.test(n) || /^libonnxruntime\.\d[\d.]*\.dylib$/.test(n) || n === 'onnxruntime.dll');
  return lib ? path.join(dir, lib) : undefined;
}

function resolveLibrary(explicit?: string): string {
  const lib = explicit ?? process.env.KILN_ORT_LIBRARY ?? bundledLibrary();
  if (!lib) {
    throw new KilnError(
      'E_PROVIDER_UNAVAILABLE',
      'no ONNX Runtime library found: KILN_ORT_LIBRARY is not set, this installation has no prebuilt library for ' +
        `${process.platform}-${process.arch}` + ' (prebuilds/), and onnxruntime-node (which ships libonnxruntime) is not installed' +
        '; install onnxruntime-node (npm install onnxruntime-node --onnxruntime-node-install=skip) or set KILN_ORT_LIBRARY to the path of libonnxruntime',
    );
  }
  if (!fs.existsSync(lib)) {
    throw new KilnError('E_PROVIDER_UNAVAILABLE', `ONNX Runtime library not found at ${lib}` +
      (process.env.KILN_ORT_LIBRARY === lib ? ' (from KILN_ORT_LIBRARY)' : ''));
  }
  return lib;
}

/**
 * Creates the runtime with these settings. Call it before the first session; once the
 * runtime exists, a call that changes the library or the thread pools is an error, and
 * `logLevel` (the environment's default) no longer applies.
 */
export function configure(options: RuntimeOptions = {}): RuntimeInfo {
  const r = OptionReader.of(options, '', ['library', 'intraOpThreads', 'interOpThreads', 'spinning', 'logLevel']);
  const library = r.string('library');
  const intra = r.int('intraOpThreads', 0, 1024);
  const inter = r.int('interOpThreads', 0, 1024);
  const spinning = r.bool('spinning');
  const log = r.oneOf('logLevel', Object.keys(LOG_LEVELS) as LogLevel[]);
  if (info) {
    const same = (library === undefined || path.resolve(library) === info.library) &&
      (intra === undefined || intra === info.intraOpThreads) &&
      (inter === undefined || inter === info.interOpThreads) &&
      (spinning === undefined || spinning === info.spinning);
    if (!same) throw new KilnError('E_INVALID_ARGUMENT', 'the ONNX Runtime environment already exists; configure() must be called before the first session');
    return info;
  }
  try {
    info = native().init({
      library: path.resolve(resolveLibrary(library)),
      intraOpThreads: intra,
      interOpThreads: inter,
      spinning,
      logLevel: log === undefined ? undefined : LOG_LEVELS[log],
    });
  } catch (e) {
    throw toKilnError(e);
  }
  return info;
}

/** The runtime, created with defaults if nothing created it yet. */
export function runtime(): RuntimeInfo {
  return info ?? configure();
}

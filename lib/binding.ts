/**
 * Loads the native addon and declares its surface. The addon is found by node-gyp-build
 * (a prebuild for this platform, else the local build); if it cannot load, the error says
 * why and what to do, and is thrown on first use rather than at import.
 */
import * as path from 'path';
import { KilnError } from './errors';

export interface NativeValueInfo {
  name: string;
  kind: 'tensor' | 'sequence' | 'map' | 'optional' | 'sparse_tensor' | 'unknown';
  type: number; // ONNX element type; 0 when not a tensor or not supported
  shape: number[]; // -1 for dynamic dims
  symbolic: string[];
}

export interface NativeMetadata {
  inputs: NativeValueInfo[];
  outputs: NativeValueInfo[];
  providers: string[];
  providerNotes: string[];
  /** The CUDA device a device-IO session runs on; -1 for host IO. */
  device: number;
}

export interface NativeProvider {
  name: 'cpu' | 'cuda' | 'tensorrt';
  options: [string, string][];
}

export interface NativeSessionConfig {
  providers: NativeProvider[];
  intraOpThreads?: number;
  interOpThreads?: number;
  spinning?: boolean;
  graphOptimizationLevel?: number;
  parallelExecution?: boolean;
  optimizedModelPath?: string;
  profilePrefix?: string;
  logLevel?: number;
  configEntries?: [string, string][];
  executorThreads: number;
  executorSpinMicroseconds: number;
  deviceIo?: boolean;
}

/**
 * [outputIndex, preallocated data | null | 'cuda', dims | null, ...]; null fetches every
 * output; 'cuda' leaves that output on the session's device (a device handle comes back).
 */
export type NativeFetches = unknown[] | null;
/**
 * The arguments of run and runSync: (fetches, cancelId | undefined, data0, dims0, data1,
 * dims1, ...) with one (data, dims) pair per model input in the model's order. Positional
 * arguments cost the addon far less than reading nested arrays.
 */
export type NativeRunArgs = [NativeFetches, number | undefined, ...unknown[]];
/** Per input: null, or [padValue, ...the non-batch dims every request is padded to]. */
export type NativePadding = (number[] | null)[] | null;
/** runBatch: (fetches, cancelId, requests, padding, then each request's (data, dims) pairs in turn). */
export type NativeBatchArgs = [NativeFetches, number | undefined, number, NativePadding, ...unknown[]];
/** [data, dims, data, dims, ...] in fetch order; run() and runBatch() append the run's time in ORT and the batch gather's (µs). */
export type NativeResults = unknown[];

export interface NativeSession {
  metadata(): NativeMetadata;
  run(...args: NativeRunArgs): Promise<NativeResults>;
  runSync(...args: NativeRunArgs): NativeResults;
  runBatch(...args: NativeBatchArgs): Promise<NativeResults>;
  cancel(cancelId: number): boolean;
  dispose(): Promise<void>;
  endProfiling(): string;
}

export interface NativeRuntimeInfo {
  library: string;
  version: string;
  apiVersion: number;
  providers: string[];
  intraOpThreads: number;
  interOpThreads: number;
  spinning: boolean;
}

export interface NativeRuntimeConfig {
  library: string;
  intraOpThreads?: number;
  interOpThreads?: number;
  spinning?: boolean;
  logLevel?: number;
}

export interface NativeAddon {
  NativeSession: { load(model: string | Uint8Array, config: NativeSessionConfig): Promise<NativeSession> };
  init(config: NativeRuntimeConfig): NativeRuntimeInfo;
  initialized(): boolean;
  /** A request's own block of a padded batch output (a copy: the block is not contiguous). */
  crop<T extends ArrayBufferView>(data: T, dims: readonly number[], row: number, shape: readonly number[]): T;
  /** Delivers finished runs now; `keepPolling` says whether another call follows soon. */
  poll(keepPolling: boolean): void;
  cudaDevices(): {
    driverVersion: number;
    library: string;
    problem: string;
    devices: { id: number; name: string; totalMemory: number; computeCapability: string; multiprocessors: number; pciBusId: string }[];
  };
  /** Frees a device tensor's memory (once no run uses it); false when already released. */
  deviceRelease(handle: unknown): boolean;
  /** A device tensor's bytes, copied to the host. */
  deviceDownload(handle: unknown): ArrayBuffer;
}

const root = path.resolve(__dirname, '..', '..');
let addon: NativeAddon | undefined;
let loadError: KilnError | undefined;

/** Why the addon failed to load and what to do, as a user can act on it (exported for tests). */
export function explainLoadError(e: Error): KilnError {
  const msg = e.message;
  let why = 'the native addon could not be loaded';
  let fix = 'reinstall kiln (npm install kiln) so that a prebuilt binary or a local build is present';
  if (/No native build was found/.test(msg)) {
    why = `no prebuilt binary for ${process.platform}-${process.arch} (node ${process.versions.node}, N-API ${process.versions.napi}) and no local build`;
    fix = 'build from source: install a C++17 compiler and python3, then run `npm rebuild kiln`';
  } else if (/GLIBC_|GLIBCXX_/.test(msg)) {
    why = 'the C/C++ runtime of this system is older than the one the binary was built for';
    fix = 'build from source on this system (`npm rebuild kiln --build-from-source`) or use a newer distribution';
  } else if (/invalid ELF header|wrong ELF class|cannot open shared object/.test(msg)) {
    why = 'the binary does not match this platform or a library it needs is missing';
    fix = 'reinstall kiln on this machine rather than copying node_modules from another one';
  }
  return new KilnError('E_PROVIDER_UNAVAILABLE', `kiln: ${why}: ${msg}\n  fix: ${fix}`, { cause: e });
}

export function native(): NativeAddon {
  if (addon) return addon;
  if (loadError) throw loadError;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const load = require('node-gyp-build') as (dir: string) => NativeAddon;
    addon = load(root);
    return addon;
  } catch (e) {
    loadError = explainLoadError(e as Error);
    throw loadError;
  }
}

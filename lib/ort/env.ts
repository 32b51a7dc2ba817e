/**
 * onnxruntime-common's `env`: the log level of the process-wide runtime, read when the first
 * session is created (as onnxruntime-node reads it), and versions.
 */
import { native } from '../binding';
import type { LogLevel } from '../options';
import { configure, runtime } from '../runtime';

/** The onnxruntime-common API this facade follows. */
const COMMON_VERSION = '1.30.0';

export interface Env {
  /** Applies when the runtime is created, by the first session; later changes have no effect. */
  logLevel?: LogLevel;
  readonly versions: {
    readonly common: string;
    /** Version of the ONNX Runtime library Kiln loaded; undefined until the runtime exists. */
    readonly node?: string;
  };
}

function loadedVersion(): string | undefined {
  // Reading a version must not create the runtime (that would fix its settings) or throw.
  try {
    return native().initialized() ? runtime().version : undefined;
  } catch {
    return undefined;
  }
}

export const env: Env = {
  logLevel: undefined,
  versions: Object.freeze({
    common: COMMON_VERSION,
    get node(): string | undefined {
      return loadedVersion();
    },
  }),
};

/** Creates the runtime with env's settings if nothing created it yet. */
export function applyEnv(): void {
  configure(env.logLevel === undefined ? {} : { logLevel: env.logLevel });
}

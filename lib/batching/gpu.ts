/**
 * GPU instance groups: Triton places `count` instances on each of `gpus`; in Kiln each is a
 * session of its own, so each has its own CUDA stream (device IO creates one per session)
 * and batches on different instances overlap on the device. TensorRT gets optimization
 * profiles from the batching configuration unless the caller gave its own.
 */
import { readFile } from 'fs/promises';
import { decodeModel } from '../onnx';
import type { ProviderSpec, SessionOptions, ShapeProfile } from '../options';

/** min/opt/max shapes per input for a TensorRT engine serving batches of 1..maxBatchSize. */
export interface Profiles {
  profileMinShapes: ShapeProfile;
  profileOptShapes: ShapeProfile;
  profileMaxShapes: ShapeProfile;
}

/**
 * Profiles from the model's inputs: the batch dim spans 1..maxBatchSize and is optimised for
 * the largest preferred batch size (else maxBatchSize); undefined when an input's other dims
 * are not fixed (TensorRT then needs the caller's own profiles) or the model does not batch.
 */
export async function tensorRtProfiles(model: string | Uint8Array | ArrayBuffer, maxBatchSize: number, preferred: readonly number[]): Promise<Profiles | undefined> {
  if (maxBatchSize <= 0) return undefined;
  const bytes = typeof model === 'string' ? new Uint8Array(await readFile(model)) : model instanceof Uint8Array ? model : new Uint8Array(model);
  const graph = decodeModel(bytes).graph ?? {};
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const opt = preferred.length > 0 ? Math.min(Math.max(...preferred), maxBatchSize) : maxBatchSize;
  const out: Profiles = { profileMinShapes: {}, profileOptShapes: {}, profileMaxShapes: {} };
  let any = false;
  for (const input of graph.input ?? []) {
    if (!input.name || initializers.has(input.name)) continue;
    const dims = input.type?.tensorType?.shape?.dim;
    if (!dims || dims.length === 0 || dims[0].dimValue !== undefined) return undefined;
    const rest: number[] = [];
    for (const d of dims.slice(1)) {
      if (d.dimValue === undefined || d.dimValue <= 0n) return undefined;
      rest.push(Number(d.dimValue));
    }
    out.profileMinShapes[input.name] = [1, ...rest];
    out.profileOptShapes[input.name] = [opt, ...rest];
    out.profileMaxShapes[input.name] = [maxBatchSize, ...rest];
    any = true;
  }
  return any ? out : undefined;
}

/** The providers of an instance on `device`: the caller's list (default CUDA) aimed at it. */
export function providersFor(device: number, providers: readonly ProviderSpec[] | undefined, profiles: Profiles | undefined): ProviderSpec[] {
  const list = providers ?? ['cuda'];
  return list.map((p): ProviderSpec => {
    const spec = (typeof p === 'string' ? { name: p } : p) as Exclude<ProviderSpec, string>;
    if (spec.name === 'cpu') return spec;
    if (spec.name === 'tensorrt') {
      const own = spec.profileMinShapes !== undefined || spec.profileOptShapes !== undefined || spec.profileMaxShapes !== undefined;
      const defined = Object.fromEntries(Object.entries(spec).filter(([, v]) => v !== undefined)) as typeof spec;
      return { ...(own || !profiles ? {} : profiles), ...defined, deviceId: device };
    }
    return { ...spec, deviceId: device };
  });
}

/** Whether `options` asks for TensorRT anywhere in its provider list. */
export function wantsTensorRt(options: SessionOptions): boolean {
  return (options.providers ?? []).some((p) => (typeof p === 'string' ? p : p.name) === 'tensorrt');
}

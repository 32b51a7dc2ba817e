/**
 * CUDA devices and tensors that stay on them. The CUDA driver is loaded at run time, so the
 * same binary serves machines with and without a GPU: `cuda.devices()` says which.
 */
import { native } from './binding';
import { KilnError, toKilnError } from './errors';
import { ARRAY_TYPE, elementCount, formatShape, wrapTensor, type Tensor, type TensorType } from './tensor';

export interface CudaDevice {
  id: number;
  name: string;
  /** Bytes of device memory. */
  totalMemory: number;
  /** e.g. '9.0' */
  computeCapability: string;
  multiprocessors: number;
  pciBusId: string;
}

export interface CudaDevices {
  /** The CUDA version the driver supports, e.g. '12.4'; null when no driver loads. */
  driverVersion: string | null;
  /** The driver library loaded (or tried): libcuda.so.1, or KILN_CUDA_LIBRARY. */
  library: string;
  devices: CudaDevice[];
  /** Why there are no devices (no driver, no device, driver too old); absent when CUDA is usable. */
  problem?: string;
}

export const cuda = {
  /** The machine's CUDA devices, or why there are none. Never throws for a missing GPU. */
  devices(): CudaDevices {
    const raw = native().cudaDevices();
    const out: CudaDevices = {
      driverVersion: raw.driverVersion > 0 ? `${Math.floor(raw.driverVersion / 1000)}.${Math.floor((raw.driverVersion % 1000) / 10)}` : null,
      library: raw.library,
      devices: raw.devices,
    };
    if (raw.problem) out.problem = raw.problem;
    return out;
  },
};

const INTERNAL = Symbol('kiln.device');

/**
 * An output kept on a CUDA device (`outputLocation: 'cuda'`). Feed it to a session on the
 * same device and no byte crosses the bus; `download()` copies it to the host. Its device
 * memory is freed by `dispose()` (or when it is garbage-collected); a run using it as an input
 * keeps it alive until the run ends.
 */
export class DeviceTensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly dims: readonly number[];
  readonly location = 'cuda' as const;
  /** The CUDA device holding the data. */
  readonly device: number;
  #handle: unknown;

  /** @internal created by runs with outputLocation: 'cuda' */
  constructor(token: symbol, type: T, dims: readonly number[], device: number, handle: unknown) {
    if (token !== INTERNAL) throw new KilnError('E_INVALID_ARGUMENT', 'device tensors are created by runs with outputLocation: \'cuda\'');
    this.type = type;
    this.dims = Object.freeze([...dims]);
    this.device = device;
    this.#handle = handle;
  }

  /** @internal */
  static _wrap<T extends TensorType>(type: T, dims: readonly number[], device: number, handle: unknown): DeviceTensor<T> {
    return new DeviceTensor(INTERNAL, type, dims, device, handle);
  }

  get disposed(): boolean {
    return this.#handle === undefined;
  }

  /** @internal the native handle, for feeds */
  _handle(label: string): unknown {
    if (this.#handle === undefined) throw new KilnError('E_DISPOSED', `${label}: the device tensor was disposed`);
    return this.#handle;
  }

  /** Copies the data to the host (blocks the calling thread for the copy). */
  download(): Tensor<T> {
    const handle = this._handle('download');
    let bytes: ArrayBuffer;
    try {
      bytes = native().deviceDownload(handle);
    } catch (e) {
      throw toKilnError(e);
    }
    const Ctor = ARRAY_TYPE[this.type as Exclude<TensorType, 'string'>] as unknown as new (b: ArrayBuffer, o: number, n: number) => Tensor<T>['data'];
    return wrapTensor(this.type, new Ctor(bytes, 0, elementCount(this.dims, 'device tensor')) as Tensor<T>['data'], this.dims);
  }

  /** Frees the device memory now (runs still using it finish first). Idempotent. */
  dispose(): void {
    if (this.#handle === undefined) return;
    native().deviceRelease(this.#handle);
    this.#handle = undefined;
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return `DeviceTensor(${this.type} ${formatShape(this.dims)} on cuda:${this.device}${this.disposed ? ', disposed' : ''})`;
  }
}

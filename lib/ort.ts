/**
 * kiln/ort: onnxruntime-common's API (as onnxruntime-node 1.30 exposes it) over Kiln, so code
 * written for onnxruntime-node runs on Kiln by changing its import. Errors are KilnErrors.
 */
import type { TensorType } from './tensor';
import type { Tensor } from './ort/tensor';

export { InferenceSession } from './ort/session';
export type { FeedsType, FetchesType, ReturnType, ValueMetadata, TensorValueMetadata, NonTensorValueMetadata } from './ort/session';
export { Tensor } from './ort/tensor';
export type { ArrayInput, TensorLocation } from './ort/tensor';
export type { ExecutionProviderConfig, ExecutionProviderOption, RunOptions, SessionOptions } from './ort/options';
export { env } from './ort/env';
export type { Env } from './ort/env';
export { KilnError } from './errors';

/** onnxruntime-common's names for a tensor of one type and for any value. */
export type TypedTensor<T extends TensorType> = Tensor<T>;
export type OnnxValue = Tensor;

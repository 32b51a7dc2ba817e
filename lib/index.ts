export { Session } from './session';
export type { DeviceResults, Feeds, Fetches, Results, RunOptions, ValueInfo, ValueType } from './session';
export { cuda, DeviceTensor } from './device';
export type { CudaDevice, CudaDevices } from './device';
export { Tensor } from './tensor';
export type { TensorData, TensorDataTypes, TensorLike, TensorType } from './tensor';
export { KilnError } from './errors';
export type { KilnErrorCode } from './errors';
export { configure, runtime, bundledLibrary } from './runtime';
export type { RuntimeInfo, RuntimeOptions } from './runtime';
export type {
  CpuProviderOptions, CudaProviderOptions, GraphOptimizationLevel, LogLevel, ProviderName, ProviderSpec,
  SessionOptions, ShapeProfile, TensorRtProviderOptions,
} from './options';
export { Model, loadModel } from './batching/model';
export type { CacheInfo, CacheInfoOption, InferOptions, InferOutput, InferResult } from './batching/model';
export type { DynamicBatching, InputConfig, InstanceGroup, ModelConfig, QueuePolicy, ResolvedConfig, SemanticCacheConfig, SemanticEmbedding } from './batching/config';
export type { ModelCacheStats, ModelStats } from './batching/stats';
export { ResponseCache, createResponseCache, defaultResponseCache } from './cache/response-cache';
export { SemanticCache } from './cache/semantic';
export type { SemanticCacheOptions, SemanticCacheStats } from './cache/semantic';
export type { SemanticCacheCounters } from './cache/semantic/model-cache';
export type { CacheCounters, CacheOutcome, ResponseCacheOptions, ResponseCacheStats } from './cache/response-cache';
export type { CacheStore, CacheStoreStats, LocalStoreOptions } from './cache/store';
export type { RedisStoreOptions } from './cache/redis-store';
export * as optimize from './optimize';

/**
 * Model optimization tools: ONNX Runtime's offline graph optimization, INT8 quantization
 * (dynamic, static QDQ, accuracy-aware tuning), FP16 conversion, and the model and sample
 * IO they share. `kiln optimize`, `kiln quantize` and `kiln fp16` are these functions.
 */
export { readModel, writeModel, initializersOf } from './io';
export type { WriteOptions } from './io';
export { quantize, optimizeBytes, optimizeBytes as optimizeModel, writeTensorRtTable } from './quantize';
export type { QuantizeOptions, QuantizeResult, TuningReport } from './quantize';
export { quantizeDynamic, nodeName } from './dynamic';
export type { DynamicOptions, QuantizeReport } from './dynamic';
export { decomposeGemm, quantizeStatic, staticCandidates, STATIC_OP_TYPES } from './static';
export type { Candidate, StaticOptions } from './static';
export { calibrate } from './calibrate';
export type { CalibrationMethod, CalibrationOptions, CalibrationPass, Range } from './calibrate';
export { acceptable, checkFloor, compareOutputs, outputsOf, referenceEvaluator } from './evaluate';
export type { Evaluator, FloorCheck, Metric, Tolerance } from './evaluate';
export { upgradeOpset } from './opset';
export { fuseAffineConv, fuseConvAffine, fuseHardSwish } from './fusions';
export { opCounts } from './graph';
export { addValueTypes, convertFloat16, float16Bits, float16Value, toFloat16Array, FLOAT16_BLOCKED_OPS } from './fp16';
export type { Float16Options, Float16Report } from './fp16';
export { loadSamples, randomFeeds, readNpy, writeNpy } from './data';
export type { SampleOptions } from './data';

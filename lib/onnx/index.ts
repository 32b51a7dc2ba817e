export { Attr, DEFAULT_OPSET, GraphBuilder, attr, irVersionFor } from './builder';
export type { AttrValue, BuildOptions, Dim, NodeOptions } from './builder';
export { decodeModel, encodeModel } from './proto';
export { tensorFromProto, tensorProto } from './tensor-proto';
export * from './types';

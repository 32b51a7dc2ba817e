/** Quantizing weights: symmetric int8 per channel (or per tensor), and int32 biases. */

export interface QuantizedWeight {
  data: Int8Array;
  /** One per channel (length 1 per tensor). */
  scales: Float32Array;
}

/**
 * Symmetric int8 quantization of `w` (row-major `dims`) along `axis`: each channel's scale is
 * its largest magnitude / 127, values round to nearest and clamp to [-127, 127] (keeping the
 * range symmetric, as the integer kernels expect). `axis` -1: one scale for the tensor.
 */
export function quantizeWeight(w: Float32Array, dims: readonly number[], axis: number): QuantizedWeight {
  const channels = axis < 0 ? 1 : dims[axis];
  const inner = axis < 0 ? w.length : dims.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channelOf = (i: number): number => (axis < 0 ? 0 : Math.floor(i / inner) % channels);
  const max = new Float32Array(channels);
  for (let i = 0; i < w.length; i++) {
    const c = channelOf(i);
    const v = Math.abs(w[i]);
    if (v > max[c]) max[c] = v;
  }
  const scales = new Float32Array(channels);
  for (let c = 0; c < channels; c++) scales[c] = max[c] > 0 ? max[c] / 127 : 1;
  const data = new Int8Array(w.length);
  for (let i = 0; i < w.length; i++) {
    const q = Math.round(w[i] / scales[channelOf(i)]);
    data[i] = q > 127 ? 127 : q < -127 ? -127 : q;
  }
  return { data, scales };
}

/** The transpose of a 2-D row-major matrix. */
export function transpose2d(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c];
  return out;
}

/** A bias as int32 in the units of input scale × weight scale (per channel), zero point 0. */
export function quantizeBias(bias: Float32Array, inputScale: number, weightScales: Float32Array): { data: Int32Array; scales: Float32Array } {
  const scales = new Float32Array(bias.length);
  const data = new Int32Array(bias.length);
  for (let c = 0; c < bias.length; c++) {
    const s = inputScale * weightScales[weightScales.length === 1 ? 0 : c];
    scales[c] = s > 0 ? s : 1;
    const q = Math.round(bias[c] / scales[c]);
    data[c] = Math.max(-2147483647, Math.min(2147483647, q));
  }
  return { data, scales };
}

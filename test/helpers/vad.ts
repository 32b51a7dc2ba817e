import * as path from 'path';

/** Silero VAD works on 16 kHz mono audio in 512-sample frames (32 ms). */
export const SAMPLE_RATE = 16000;
export const FRAME_SAMPLES = 512;
/** v5/v6 expect the last 64 samples of the previous frame prepended (silero-vad's OnnxWrapper). */
export const CONTEXT_SAMPLES = 64;

const vadDist = path.join(path.dirname(require.resolve('@ricky0123/vad-web/package.json')), 'dist');
export const VAD_MODELS = {
  legacy: path.join(vadDist, 'silero_vad_legacy.onnx'),
  v5: path.join(vadDist, 'silero_vad_v5.onnx'),
  v6: path.join(vadDist, 'silero_vad_v6.onnx'),
} as const;

/**
 * The two Silero graph interfaces: 'v5' (v5 and v6: input [1,64+512], state [2,1,128] -> output,
 * stateN) and 'legacy' (v4: input [1,512], h and c [2,1,64] -> output, hn, cn). Both take sr as an
 * int64 scalar.
 */
export type SileroInterface = 'v5' | 'legacy';

/** A feed as a plain tensor-like object; callers wrap it for their runtime if it needs to. */
export interface VadFeed {
  readonly type: 'float32' | 'int64';
  readonly data: Float32Array | BigInt64Array;
  readonly dims: readonly number[];
}
export interface VadOutput {
  readonly data: unknown;
  readonly dims: readonly number[];
}
export type VadRun = (feeds: Record<string, VadFeed>) => Promise<Record<string, VadOutput>>;

/** Tells the interface apart by input names, so a session's `inputs` is enough. */
export function sileroInterface(inputNames: readonly string[]): SileroInterface {
  if (inputNames.includes('state')) return 'v5';
  if (inputNames.includes('h') && inputNames.includes('c')) return 'legacy';
  throw new Error(`not a Silero VAD graph: inputs ${inputNames.join(', ')}`);
}

function float32Of(outputs: Record<string, VadOutput>, name: string): { data: Float32Array; dims: readonly number[] } {
  const out = outputs[name];
  if (out === undefined || !(out.data instanceof Float32Array)) throw new Error(`VAD output ${name} missing or not float32`);
  // Copied: a runtime may hand out views of buffers it reuses on the next run.
  return { data: out.data.slice(), dims: out.dims.slice() };
}

const SR_FEED: VadFeed = { type: 'int64', data: BigInt64Array.of(BigInt(SAMPLE_RATE)), dims: [] };

function initialState(kind: SileroInterface): Record<string, VadFeed> {
  const zeros = (size: number): VadFeed => ({ type: 'float32', data: new Float32Array(2 * size), dims: [2, 1, size] });
  return kind === 'v5' ? { state: zeros(128) } : { h: zeros(64), c: zeros(64) };
}

/**
 * One audio stream through a Silero model: keeps the recurrent state (and v5 context) between
 * frames. Await each push before the next; streams are independent, so run many for concurrency.
 */
export class SileroStream {
  readonly kind: SileroInterface;
  private readonly run: VadRun;
  private state: Record<string, VadFeed>;
  private context = new Float32Array(CONTEXT_SAMPLES);

  constructor(run: VadRun, kind: SileroInterface = 'v5') {
    this.run = run;
    this.kind = kind;
    this.state = initialState(kind);
  }

  /** Starts a new stream: zero state and context. */
  reset(): void {
    this.state = initialState(this.kind);
    this.context = new Float32Array(CONTEXT_SAMPLES);
  }

  /** Speech probability of one FRAME_SAMPLES frame. */
  async push(frame: Float32Array): Promise<number> {
    if (frame.length !== FRAME_SAMPLES) throw new Error(`VAD frame must have ${FRAME_SAMPLES} samples, got ${frame.length}`);
    let input = frame;
    if (this.kind === 'v5') {
      input = new Float32Array(CONTEXT_SAMPLES + FRAME_SAMPLES);
      input.set(this.context);
      input.set(frame, CONTEXT_SAMPLES);
      this.context = frame.slice(FRAME_SAMPLES - CONTEXT_SAMPLES);
    }
    const out = await this.run({ input: { type: 'float32', data: input, dims: [1, input.length] }, sr: SR_FEED, ...this.state });
    const next = (name: string): VadFeed => ({ type: 'float32', ...float32Of(out, name) });
    this.state = this.kind === 'v5' ? { state: next('stateN') } : { h: next('hn'), c: next('cn') };
    return float32Of(out, 'output').data[0];
  }
}

/** Speech probability of each frame, in order, through one fresh stream. */
export async function vadProbabilities(run: VadRun, frames: Iterable<Float32Array>, kind: SileroInterface = 'v5'): Promise<number[]> {
  const stream = new SileroStream(run, kind);
  const probs: number[] = [];
  for (const frame of frames) probs.push(await stream.push(frame));
  return probs;
}

/** Splits a signal into whole FRAME_SAMPLES frames (a trailing partial frame is dropped). */
export function toFrames(signal: Float32Array): Float32Array[] {
  const frames: Float32Array[] = [];
  for (let i = 0; i + FRAME_SAMPLES <= signal.length; i += FRAME_SAMPLES) frames.push(signal.slice(i, i + FRAME_SAMPLES));
  return frames;
}

/** Deterministic uniform PRNG in [-1, 1) (mulberry32), so test audio is identical on every run. */
export function noiseSource(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 2 ** 32) * 2 - 1;
  };
}

/** Low-level white noise (a quiet room/microphone floor); amplitude 0 gives digital silence. */
export function silence(samples: number, amplitude = 0.002, seed = 1): Float32Array {
  const rand = noiseSource(seed);
  const out = new Float32Array(samples);
  for (let i = 0; i < samples; i++) out[i] = amplitude * rand();
  return out;
}

/** Formants (F1-F3, Hz) of five vowels; a fixed F4 is added in synthesis. */
const VOWEL_FORMANTS: readonly (readonly [number, number, number])[] = [
  [730, 1090, 2440], // a
  [270, 2290, 3010], // i
  [530, 1840, 2480], // e
  [570, 840, 2410], // o
  [300, 870, 2240], // u
];
const FORMANT_BANDWIDTHS = [80, 100, 150, 250];
const F4 = 3500;

export interface SpeechOptions {
  /** Mean pitch in Hz. */
  f0?: number;
  /** Syllable length in ms (~5 syllables/s is conversational). */
  syllableMs?: number;
  /** Peak amplitude of the result. */
  peak?: number;
  seed?: number;
}

/** Klatt resonator: a two-pole band-pass with unity gain at DC; coefficients recomputed per sample. */
class Resonator {
  private y1 = 0;
  private y2 = 0;
  step(x: number, freq: number, bandwidth: number): number {
    const c = -Math.exp((-2 * Math.PI * bandwidth) / SAMPLE_RATE);
    const b = 2 * Math.exp((-Math.PI * bandwidth) / SAMPLE_RATE) * Math.cos((2 * Math.PI * freq) / SAMPLE_RATE);
    const y = (1 - b - c) * x + b * this.y1 + c * this.y2;
    this.y2 = this.y1;
    this.y1 = y;
    return y;
  }
}

/** Rosenberg glottal flow pulse at phase p in [0,1): opening, closing, then closed. */
function glottalFlow(p: number): number {
  const open = 0.4;
  const close = 0.6;
  if (p < open) return 0.5 * (1 - Math.cos((Math.PI * p) / open));
  if (p < close) return Math.cos(((Math.PI / 2) * (p - open)) / (close - open));
  return 0;
}

/**
 * Synthetic babble that Silero scores as speech: consonant-vowel syllables from a cascade formant
 * synthesizer. Why each part is there (measured): a steady vowel scores low on v6 and legacy;
 * formants gliding between vowels, a falling pitch per syllable and a short fricative onset are
 * what make every model score it > 0.5.
 */
export function speechLike(samples: number, options: SpeechOptions = {}): Float32Array {
  const { f0 = 120, syllableMs = 180, peak = 0.5, seed = 7 } = options;
  const rand = noiseSource(seed);
  const syllable = Math.round((SAMPLE_RATE * syllableMs) / 1000);
  const onset = 0.15; // fraction of a syllable that is the fricative consonant
  const resonators = FORMANT_BANDWIDTHS.map(() => new Resonator());
  const out = new Float32Array(samples);
  let phase = 0;
  let prevFlow = 0;
  let prevNoise = 0;
  for (let i = 0; i < samples; i++) {
    const s = Math.floor(i / syllable);
    const t = (i % syllable) / syllable;
    const from = VOWEL_FORMANTS[(s + VOWEL_FORMANTS.length - 1) % VOWEL_FORMANTS.length];
    const to = VOWEL_FORMANTS[s % VOWEL_FORMANTS.length];
    const formants = [...from.map((f, k) => f + (to[k] - f) * t), F4];

    const pitch = f0 * (1.15 - 0.3 * t) * (1 + 0.1 * Math.sin((2 * Math.PI * 0.7 * i) / SAMPLE_RATE));
    phase = (phase + pitch / SAMPLE_RATE) % 1;
    const flow = glottalFlow(phase);
    const voicing = t < onset ? 0 : Math.sqrt(Math.sin((Math.PI * (t - onset)) / (1 - onset)));
    // Differentiated flow models lip radiation; a little aspiration noise rides on the voicing.
    let x = (flow - prevFlow + 0.03 * rand()) * voicing;
    prevFlow = flow;
    for (let k = 0; k < resonators.length; k++) x = resonators[k].step(x, formants[k], FORMANT_BANDWIDTHS[k]);

    const noise = rand();
    const fricative = t < onset ? 0.05 * (noise - prevNoise) * Math.sin((Math.PI * t) / onset) : 0;
    prevNoise = noise;
    out[i] = x + fricative;
  }
  let max = 0;
  for (const v of out) max = Math.max(max, Math.abs(v));
  for (let i = 0; i < samples; i++) out[i] *= peak / max;
  return out;
}

import { strict as assert } from 'assert';
import { Session } from '../lib';
import { OCR_MODELS, clsDecode, clsPreprocess, ctcDecode, detBoxes, detPreprocess, loadKeys, recPreprocess, rotate180, type FloatTensor } from '../support/ppocr';
import { inkBox, renderText } from '../support/text-image';
import { FRAME_SAMPLES, SAMPLE_RATE, VAD_MODELS, sileroInterface, silence, speechLike, toFrames, vadProbabilities, type VadFeed } from './helpers/vad';

// --- Runtime adapter: the only code here that knows the runtime's API. ---

type Feed = FloatTensor | VadFeed;
interface Output {
  readonly data: unknown;
  readonly dims: readonly number[];
}
interface Model {
  readonly inputNames: string[];
  run(feeds: Record<string, Feed>): Promise<Record<string, Output>>;
  dispose(): Promise<void>;
}

async function load(file: string): Promise<Model> {
  const session = await Session.create(file);
  return {
    inputNames: session.inputs.map((i) => i.name),
    run: (feeds) => session.run(feeds),
    dispose: () => session.dispose(),
  };
}

// --- Checks, in terms of the adapter. ---

/** The single float32 output of a run. */
function only(outputs: Record<string, Output>): { data: Float32Array; dims: readonly number[] } {
  const values = Object.values(outputs);
  assert.equal(values.length, 1);
  const [{ data, dims }] = values;
  assert.ok(data instanceof Float32Array, 'output is float32');
  return { data, dims };
}

/** ASCII and digits: DejaVu Sans has no CJK glyphs. */
const LINES = ['Hello World', 'KILN 2026', 'ONNX Runtime 1.30', 'quick brown fox'];

describe('real models', function () {
  this.timeout(60000);

  describe('PP-OCRv4 recognizer', () => {
    const keys = loadKeys();
    let rec: Model;
    before(async () => {
      rec = await load(OCR_MODELS.rec);
    });
    after(() => rec.dispose());

    for (const line of LINES) {
      it(`reads "${line}" from a rendered image`, async () => {
        const out = only(await rec.run({ x: recPreprocess(renderText(line)) }));
        const { text, confidence } = ctcDecode(out.data, out.dims, keys);
        assert.equal(text, line);
        assert.ok(confidence > 0.9, `confidence ${confidence}`);
      });
    }
  });

  describe('PP-OCR direction classifier', () => {
    let cls: Model;
    before(async () => {
      cls = await load(OCR_MODELS.cls);
    });
    after(() => cls.dispose());

    for (const line of LINES) {
      it(`tells upright from rotated "${line}"`, async () => {
        const img = renderText(line);
        const upright = only(await cls.run({ x: clsPreprocess(img) }));
        const rotated = only(await cls.run({ x: clsPreprocess(rotate180(img)) }));
        assert.equal(clsDecode(upright.data, upright.dims).angle, 0);
        assert.equal(clsDecode(rotated.data, rotated.dims).angle, 180);
      });
    }
  });

  describe('PP-OCRv4 detector', () => {
    it('boxes a text line on a blank page', async () => {
      const det = await load(OCR_MODELS.det);
      try {
        const page = renderText('KILN 2026', { padding: 80 });
        const input = detPreprocess(page);
        const out = only(await det.run({ x: input.tensor }));
        const boxes = detBoxes(out.data, out.dims, { scaleX: input.scaleX, scaleY: input.scaleY });
        const ink = inkBox(page);
        assert.ok(ink);
        assert.equal(boxes.length, 1, JSON.stringify(boxes));
        const [box] = boxes;
        // Covers the ink (a few pixels' slack) without spilling far into the margin.
        const slack = 4;
        assert.ok(box.x0 <= ink.x0 + slack && box.y0 <= ink.y0 + slack && box.x1 >= ink.x1 - slack && box.y1 >= ink.y1 - slack, JSON.stringify({ box, ink }));
        assert.ok(box.x0 >= ink.x0 - 20 && box.y0 >= ink.y0 - 20 && box.x1 <= ink.x1 + 20 && box.y1 <= ink.y1 + 20, JSON.stringify({ box, ink }));
      } finally {
        await det.dispose();
      }
    });
  });

  for (const version of ['v5', 'v6', 'legacy'] as const) {
    describe(`Silero VAD ${version}`, () => {
      // A fresh recurrent state needs a few frames to settle (v6 scores the first frame of a
      // noise floor 0.12); every check skips the first 10 frames (320 ms) after a change.
      const settle = 10;
      let vad: Model;
      before(async () => {
        vad = await load(VAD_MODELS[version]);
      });
      after(() => vad.dispose());
      const probabilities = (signal: Float32Array): Promise<number[]> =>
        vadProbabilities((feeds) => vad.run(feeds), toFrames(signal), sileroInterface(vad.inputNames));

      it('scores synthetic speech above 0.5', async () => {
        const probs = (await probabilities(speechLike(3 * SAMPLE_RATE))).slice(settle);
        assert.ok(Math.min(...probs) > 0.5, `min ${Math.min(...probs)}`);
      });

      it('scores silence and a quiet noise floor below 0.1', async () => {
        for (const amplitude of [0, 0.002, 0.01]) {
          const probs = (await probabilities(silence(SAMPLE_RATE, amplitude))).slice(settle);
          assert.ok(Math.max(...probs) < 0.1, `amplitude ${amplitude}: max ${Math.max(...probs)}`);
        }
      });

      it('follows speech starting and stopping within one stream', async () => {
        const frames = Math.floor(SAMPLE_RATE / FRAME_SAMPLES);
        const second = frames * FRAME_SAMPLES;
        const signal = new Float32Array(3 * second);
        signal.set(silence(second), 0);
        signal.set(speechLike(second), second);
        signal.set(silence(second, 0.002, 2), 2 * second);
        const probs = await probabilities(signal);
        const lead = Math.max(...probs.slice(settle, frames));
        const speech = Math.min(...probs.slice(frames + settle, 2 * frames));
        const tail = Math.max(...probs.slice(2 * frames + settle));
        assert.ok(lead < 0.1 && speech > 0.5 && tail < 0.1, JSON.stringify({ lead, speech, tail }));
      });
    });
  }
});

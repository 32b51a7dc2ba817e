// Triton model repositories for `kiln serve`: config.pbtxt (protobuf text format) and
// config.json read against Triton's schema with errors naming file, line and field; version
// folders and policies; configs completed from the ONNX model; nothing read outside the
// repository; the result loads as a Kiln model and answers as a plain session does.
import { strict as assert } from 'assert';
import * as fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Session, loadModel, type Feeds } from '../lib';
import { addModel, mlpModel, prng } from '../lib/samples';
import { parseTextFormat } from '../lib/server/pbtxt';
import { autoComplete, kilnConfig, readModelDir, readRepository, servedVersions } from '../lib/server/repository';
import { parseModelConfigJson, parseModelConfigText } from '../lib/server/triton-config';
import { assertKilnError, thrown } from './helpers/assert-error';
import { writeFiles } from '../support/repository';

/** A config as Triton's documentation writes them: comments, nested messages, lists, maps. */
const MLP_CONFIG = `# The MLP, batched.
name: "mlp"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { all { } }
input [
  {
    name: "x"
    data_type: TYPE_FP32
    dims: [ 512 ]
  }
]
output [ { name: "y", data_type: TYPE_FP32, dims: [ 10 ] } ]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  priority_levels: 2
  default_priority_level: 2
  default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 50000 max_queue_size: 64 }
  priority_queue_policy { key: 1 value: { timeout_action: DELAY allow_timeout_override: true } }
}
instance_group [ { count: 2, kind: KIND_CPU } ]
parameters { key: "intra_op_thread_count" value: { string_value: "1" } }
parameters: { key: "note" value { string_value: 'say \\"hi\\"\\n' } }
response_cache { enable: true }
optimization { execution_accelerators { cpu_execution_accelerator: [ { name: "openvino" } ] } }
`;

/** MLP_CONFIG's dynamic_batching, as read (Triton's structure and Kiln's options agree). */
const MLP_BATCHING = {
  preferredBatchSize: [4, 8],
  maxQueueDelayMicroseconds: 100,
  priorityLevels: 2,
  defaultPriorityLevel: 2,
  defaultQueuePolicy: { timeoutAction: 'REJECT', defaultTimeoutMicroseconds: 50000, maxQueueSize: 64 },
  priorityQueuePolicy: { 1: { timeoutAction: 'DELAY', allowTimeoutOverride: true } },
};

describe('model repository', function () {
  this.timeout(60_000);
  let dir: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-repo-'));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Writes files under a fresh repository folder; returns its path. */
  function repo(name: string, files: Record<string, string | Uint8Array>): string {
    const root = path.join(dir, name);
    writeFiles(root, files);
    return root;
  }

  describe('config.pbtxt', () => {
    it("reads Triton's text format into Triton's structure (camelCase, enums by name, maps as records)", () => {
      const c = parseModelConfigText(MLP_CONFIG, 'config.pbtxt');
      assert.deepEqual(c, {
        name: 'mlp',
        platform: 'onnxruntime_onnx',
        maxBatchSize: 8,
        versionPolicy: { all: {} },
        input: [{ name: 'x', dataType: 'TYPE_FP32', dims: [512] }],
        output: [{ name: 'y', dataType: 'TYPE_FP32', dims: [10] }],
        dynamicBatching: MLP_BATCHING,
        instanceGroup: [{ count: 2, kind: 'KIND_CPU' }],
        parameters: { intra_op_thread_count: { stringValue: '1' }, note: { stringValue: 'say "hi"\n' } },
        responseCache: { enable: true },
        optimization: { executionAccelerators: { cpuExecutionAccelerator: { name: 'openvino' } } },
      });
    });

    it('the text format: numbers in every notation, repeated scalar fields, adjacent strings, < > messages, separators', () => {
      const m = parseTextFormat('a: 0x1F b: -010 c: 1.5e3f d: -inf e: "x" \'y\' f < g: 1; > h: 2, h: 3 i: []', 'f.pbtxt');
      const value = (name: string): unknown[] => m.fields.filter((f) => f.name === name).map((f) => (f.value.kind === 'message' ? f.value.fields.length : f.value.value));
      assert.deepEqual(value('a'), [31]);
      assert.deepEqual(value('b'), [-8]);
      assert.deepEqual(value('c'), [1500]);
      assert.deepEqual(value('d'), [-Infinity]);
      assert.deepEqual(value('e'), ['xy']);
      assert.deepEqual(value('f'), [1]);
      assert.deepEqual(value('h'), [2, 3]);
      assert.deepEqual(value('i'), []);
      assert.deepEqual(parseModelConfigText('input { name: "a" dims: 3 dims: 4 }', 'c').input, [{ name: 'a', dims: [3, 4] }]);
    });

    // Each error names the file, the line and the field's path, with what was wrong.
    const BAD: [what: string, text: string, message: string][] = [
      ['an unknown field', 'name: "m"\ninput [ { name: "x" }, {\n  name: "y"\n  dimz: [ 1 ] } ]', "c.pbtxt:4: input[1].dimz: no such field in Triton's ModelInput"],
      ['a string where an integer goes', 'max_batch_size: "8"', 'c.pbtxt:1: max_batch_size: expected an integer, found "8"'],
      ['an unknown data type', 'input { name: "x"\n data_type: TYPE_FP33 }', 'c.pbtxt:2: input[0].data_type: "TYPE_FP33" is not one of TYPE_INVALID'],
      ['a negative unsigned value', 'dynamic_batching { max_queue_delay_microseconds: -5 }', 'c.pbtxt:1: dynamic_batching.max_queue_delay_microseconds: expected an integer >= 0, found -5'],
      ['a field given twice', 'max_batch_size: 1\nmax_batch_size: 2', 'c.pbtxt:2: max_batch_size: given twice'],
      ['a message where a value goes', 'name { }', 'c.pbtxt:1: name: expected a value, found a message'],
      ['an unclosed message', 'input {\n name: "x"\n', 'c.pbtxt:2: "}" expected before the end of the file (the message opened on line 1)'],
      ['an unclosed string', 'name: "abc\n', 'c.pbtxt:1: a string is not closed on its line'],
      ['a missing colon', 'name "x"', 'c.pbtxt:1: ":" or "{" expected after the field name "name"'],
      ['messages nested too deep', 'optimization ' + '{ a '.repeat(70) + '}'.repeat(70), 'c.pbtxt:1: messages nested more than 64 deep'],
    ];
    for (const [what, text, message] of BAD) {
      it(`${what}: E_INVALID_ARGUMENT naming file, line and field`, () => {
        const e = thrown(() => parseModelConfigText(text, 'c.pbtxt'));
        assertKilnError(e, 'E_INVALID_ARGUMENT', message);
      });
    }
  });

  it('any text: a config or E_INVALID_ARGUMENT, never another failure', () => {
    const pieces = fc.constantFrom('name', 'input', 'dims', 'max_batch_size', 'data_type', 'TYPE_FP32', ':', '{', '}', '[', ']', '<', '>', ',', ';', '"x"', "'y", '"\\q"', '1', '-2', '0x', '1e', 'inf', '#c\n', '\n', ' ', 'key', 'value', 'parameters', 'string_value');
    fc.assert(fc.property(fc.array(pieces, { maxLength: 40 }), fc.string({ maxLength: 20 }), (parts, noise) => {
      for (const text of [parts.join(' '), parts.join('') + noise]) {
        try {
          parseModelConfigText(text, 'f.pbtxt');
        } catch (e) {
          assertKilnError(e, 'E_INVALID_ARGUMENT', 'f.pbtxt:');
        }
      }
    }), { numRuns: 2000, seed: 12 });
  });

  describe('config.json', () => {
    it("takes Triton's fields in camelCase or snake_case, and Kiln's additions as given", () => {
      const c = parseModelConfigJson(JSON.stringify({
        max_batch_size: 16,
        input: [{ name: 'x', dataType: 'TYPE_FP32', dims: [-1], allowPadding: true, lengthBuckets: [8, 16] }],
        dynamicBatching: { maxQueueDelayMicroseconds: '250', maxLatencyMs: 5 },
        paddingCheck: { action: 'warn' },
      }), 'config.json');
      assert.deepEqual(c, {
        maxBatchSize: 16,
        input: [{ name: 'x', dataType: 'TYPE_FP32', dims: [-1], allowPadding: true, lengthBuckets: [8, 16] }],
        dynamicBatching: { maxQueueDelayMicroseconds: 250, maxLatencyMs: 5 },
        paddingCheck: { action: 'warn' },
      });
      assertKilnError(thrown(() => parseModelConfigJson('{"input": [{"name": "x", "dimz": [1]}]}', 'config.json')), 'E_INVALID_ARGUMENT', "config.json: input[0].dimz: no such field in Triton's ModelInput");
      assertKilnError(thrown(() => parseModelConfigJson('{"maxBatchSize": 1,}', 'config.json')), 'E_INVALID_ARGUMENT', 'config.json: not valid JSON');
    });
  });

  describe('layout, versions and policies', () => {
    it('versions are numeric folders in numeric order; latest n, all and specific choose among them', () => {
      assert.deepEqual(servedVersions(undefined, [1, 3, 10], 'c'), [10]);
      assert.deepEqual(servedVersions({ latest: { numVersions: 2 } }, [1, 3, 10], 'c'), [3, 10]);
      assert.deepEqual(servedVersions({ all: {} }, [1, 3, 10], 'c'), [1, 3, 10]);
      assert.deepEqual(servedVersions({ specific: { versions: [10, 1] } }, [1, 3, 10], 'c'), [1, 10]);
      assertKilnError(thrown(() => servedVersions({ specific: { versions: [2] } }, [1, 3], 'c')), 'E_NOT_FOUND', 'c: version_policy specific names version 2, which the model\'s folder does not hold (it has 1, 3)');
      const root = repo('versions', { 'm/1/model.onnx': addModel(), 'm/3/model.onnx': addModel(), 'm/10/model.onnx': addModel(), 'm/latest/model.onnx': addModel(), 'm/config.pbtxt': 'version_policy { latest { num_versions: 2 } }' });
      const m = readModelDir(root, 'm');
      assert.deepEqual(m.available, [1, 3, 10], 'a folder that is not a number is no version');
      assert.deepEqual(m.versions.map((v) => v.version), [3, 10]);
      assert.equal(m.versions[1].file, path.join(fs.realpathSync(root), 'm', '10', 'model.onnx'));
    });

    it('a repository of several models: each read on its own, a broken one reported without stopping the others', () => {
      const root = repo('several', {
        'mlp/config.pbtxt': MLP_CONFIG, 'mlp/1/model.onnx': mlpModel(), 'mlp/2/model.onnx': mlpModel(),
        'add/1/model.onnx': addModel(),
        'trt/config.pbtxt': 'platform: "tensorrt_plan"', 'trt/1/model.plan': 'x',
        'renamed/config.pbtxt': 'name: "other"', 'renamed/1/model.onnx': addModel(),
        '.hidden/1/model.onnx': addModel(),
      });
      const entries = readRepository(root);
      assert.deepEqual(entries.map((e) => e.name), ['add', 'mlp', 'renamed', 'trt']);
      const byName = Object.fromEntries(entries.map((e) => [e.name, e]));
      assert.ok('model' in byName.mlp && 'model' in byName.add);
      assert.deepEqual(byName.mlp.model.versions.map((v) => v.version), [1, 2], 'version_policy all');
      assert.equal(byName.add.model.configFile, undefined, 'no config: to be completed from the model');
      assert.ok('error' in byName.trt);
      assertKilnError(byName.trt.error, 'E_INVALID_ARGUMENT', 'Kiln serves ONNX models (platform "onnxruntime_onnx", backend "onnxruntime"), not platform "tensorrt_plan"');
      assert.ok('error' in byName.renamed);
      assertKilnError(byName.renamed.error, 'E_INVALID_ARGUMENT', 'name "other" differs from the model\'s folder "renamed"');
    });

    it('nothing outside the repository is read: names, file names and links that leave it are refused', () => {
      const outside = repo('outside', { 'secret/1/model.onnx': addModel(), 'secret.onnx': addModel() });
      const root = repo('guarded', {
        'dots/config.pbtxt': 'default_model_filename: "../../x.onnx"', 'dots/1/model.onnx': addModel(),
        'ok/1/model.onnx': addModel(),
      });
      fs.symlinkSync(path.join(outside, 'secret'), path.join(root, 'linked'));
      fs.mkdirSync(path.join(root, 'filelink', '1'), { recursive: true });
      fs.symlinkSync(path.join(outside, 'secret.onnx'), path.join(root, 'filelink', '1', 'model.onnx'));
      assertKilnError(thrown(() => readModelDir(root, '..')), 'E_INVALID_ARGUMENT', '".." is not a model name');
      assertKilnError(thrown(() => readModelDir(root, 'ok/../../outside')), 'E_INVALID_ARGUMENT', 'is not a model name');
      assertKilnError(thrown(() => readModelDir(root, 'dots')), 'E_INVALID_ARGUMENT', 'default_model_filename "../../x.onnx" must be a file name, without a folder');
      assertKilnError(thrown(() => readModelDir(root, 'linked')), 'E_INVALID_ARGUMENT', 'leads outside the model repository');
      assertKilnError(thrown(() => readModelDir(root, 'filelink')), 'E_INVALID_ARGUMENT', 'model "filelink" version 1: ');
      assertKilnError(thrown(() => readModelDir(root, 'missing')), 'E_NOT_FOUND', 'no model "missing" in the repository');
      assert.equal(readModelDir(root, 'ok').versions[0].version, 1);
    });
  });

  describe('completing and loading', () => {
    it("a model without config is completed from the ONNX model, as Triton's auto-complete does", async () => {
      const session = await Session.create(addModel());
      const c = autoComplete({}, session.inputs, session.outputs, 'add');
      await session.dispose();
      assert.deepEqual(c, {
        maxBatchSize: 64,
        dynamicBatching: {},
        input: [{ name: 'a', dataType: 'TYPE_FP32', dims: [4] }, { name: 'b', dataType: 'TYPE_FP32', dims: [4] }],
        output: [{ name: 'y', dataType: 'TYPE_FP32', dims: [4] }],
      });
      // A given max_batch_size 0 keeps the batch dim in dims; a given input keeps its fields.
      const plain = autoComplete({ maxBatchSize: 0, input: [{ name: 'b', dims: [-1, 4] }] }, [{ name: 'a', type: 'float32', shape: ['N', 4] }, { name: 'b', type: 'float32', shape: ['N', 4] }], [{ name: 'y', type: 'float32', shape: ['N', 4] }], 'add');
      assert.deepEqual(plain.input, [{ name: 'a', dataType: 'TYPE_FP32', dims: [-1, 4] }, { name: 'b', dataType: 'TYPE_FP32', dims: [-1, 4] }]);
      assert.equal(plain.dynamicBatching, undefined);
      assertKilnError(thrown(() => autoComplete({ input: [{ name: 'z' }] }, [{ name: 'a', type: 'float32', shape: ['N'] }], [], 'cfg')), 'E_INVALID_ARGUMENT', 'cfg: input "z" is not one of the model\'s inputs (a)');
    });

    it("Kiln's options from a Triton config: no dynamic_batching means none; thread parameters go to the session", () => {
      const where = 'config.pbtxt';
      assert.deepEqual(kilnConfig(parseModelConfigText(MLP_CONFIG, where), where), {
        maxBatchSize: 8,
        dynamicBatching: MLP_BATCHING,
        instanceGroup: [{ count: 2, kind: 'CPU' }],
        session: { intraOpThreads: 1 },
      });
      assert.deepEqual(kilnConfig(parseModelConfigText('max_batch_size: 4', where), where), { maxBatchSize: 4, dynamicBatching: false });
      assertKilnError(thrown(() => kilnConfig(parseModelConfigText('parameters { key: "intra_op_thread_count" value { string_value: "two" } }', where), where)), 'E_INVALID_ARGUMENT', 'config.pbtxt: parameters["intra_op_thread_count"] must be an integer >= 0, received "two"');
    });

    it('a repository model loads with its options and answers as a plain session on the same file does', async () => {
      const root = repo('loads', { 'mlp/config.pbtxt': MLP_CONFIG, 'mlp/1/model.onnx': mlpModel() });
      const m = readModelDir(root, 'mlp');
      const options = kilnConfig(m.config, m.configFile as string);
      const model = await loadModel(m.versions[0].file, options);
      const session = await Session.create(m.versions[0].file);
      try {
        const rand = prng(5);
        const rows: Feeds[] = Array.from({ length: 12 }, () => ({ x: { type: 'float32', data: Float32Array.from({ length: 512 }, rand), dims: [1, 512] } }));
        const batched = await Promise.all(rows.map((r) => model.infer(r)));
        for (let i = 0; i < rows.length; i++) {
          const want = (await session.run(rows[i])).y.data as Float32Array;
          assert.deepEqual(Array.from(batched[i].y.data as Float32Array), Array.from(want), `row ${i}`);
        }
      } finally {
        await model.dispose();
        await session.dispose();
      }
    });
  });
});

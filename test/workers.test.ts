// worker_threads: the addon is context-aware; workers load, run and exit concurrently,
// including while their runs are in flight (onnxruntime-node crashes there, its #24486).
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { Session, Tensor } from '../lib';
import { addModel } from './fixtures/models';

interface Report { id: number; done: number; wrong: number; exiting: boolean; error?: string }

function runWorker(data: object): Promise<{ reports: Report[]; exitCode: number }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(path.join(__dirname, 'helpers', 'worker-entry.js'), { workerData: data });
    const reports: Report[] = [];
    w.on('message', (m: Report) => reports.push(m));
    w.on('error', reject);
    w.on('exit', (exitCode) => resolve({ reports, exitCode }));
  });
}

describe('worker threads', function () {
  this.timeout(60000);

  it('several workers create sessions and run concurrently with correct results', async () => {
    const model = addModel();
    const results = await Promise.all([0, 1, 2, 3].map((id) => runWorker({ model, runs: 500, concurrency: 16, id, exitEarly: false })));
    for (const { reports, exitCode } of results) {
      assert.equal(exitCode, 0);
      assert.equal(reports.length, 1, JSON.stringify(reports));
      assert.equal(reports[0].error, undefined);
      assert.equal(reports[0].done, 500);
      assert.equal(reports[0].wrong, 0);
    }
  });

  it('workers that exit with runs in flight leave the process healthy', async () => {
    const model = addModel();
    for (let round = 0; round < 3; round++) {
      const results = await Promise.all([0, 1, 2, 3].map((id) => runWorker({ model, runs: 1e9, concurrency: 32, id, exitEarly: true })));
      for (const { reports, exitCode } of results) {
        assert.equal(exitCode, 0);
        assert.equal(reports[0].error, undefined);
        assert.equal(reports[0].exiting, true);
        assert.equal(reports[0].wrong, 0);
      }
    }
    // The main thread's sessions still work afterwards.
    const s = await Session.create(model);
    const out = await s.run({ a: new Tensor('float32', new Float32Array(4).fill(2), [1, 4]), b: new Tensor('float32', new Float32Array(4).fill(3), [1, 4]) });
    assert.deepEqual(Array.from(out.y.data as Float32Array), [5, 5, 5, 5]);
    await s.dispose();
  });

  it('terminate() during runs is clean', async () => {
    const w = new Worker(path.join(__dirname, 'helpers', 'worker-entry.js'), { workerData: { model: addModel(), runs: 1e9, concurrency: 32, id: 9, exitEarly: false } });
    await new Promise((r) => setTimeout(r, 300));
    const code = await w.terminate();
    assert.equal(code, 1);
  });

  it('a process exiting with runs in flight on the main thread and in workers exits cleanly', () => {
    const r = spawnSync(process.execPath, [path.join(__dirname, 'helpers', 'exit-in-flight.js')], { encoding: 'utf8', timeout: 30000 });
    assert.equal(r.signal, null, `killed by ${r.signal}: ${r.stderr}`);
    assert.equal(r.status, 0, r.stderr);
  });
});

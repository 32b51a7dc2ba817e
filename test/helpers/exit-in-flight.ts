// A process that exits while runs are in flight on its main thread and in workers; the
// test checks that it exits cleanly (code 0, no crash, no hang).
import * as path from 'path';
import { Worker } from 'worker_threads';
import { Session, Tensor } from '../../lib';
import { addModel, mlpModel } from '../fixtures/models';

async function main(): Promise<void> {
  const model = addModel();
  for (let id = 0; id < 3; id++) {
    new Worker(path.join(__dirname, 'worker-entry.js'), { workerData: { model, runs: 1e9, concurrency: 8, id, exitEarly: false } });
  }
  const s = await Session.create(mlpModel());
  const x = new Tensor('float32', new Float32Array(32 * 512), [32, 512]);
  for (let i = 0; i < 16; i++) void s.run({ x });
  setTimeout(() => process.exit(0), 50);
}

void main();

// Runs inside a worker_thread: loads a model, keeps `concurrency` runs in flight, reports
// each result it checked, and exits (or is terminated) with runs still in flight.
import { parentPort, workerData } from 'worker_threads';
import { Session, Tensor } from '../../lib';

interface Job { model: Uint8Array; runs: number; concurrency: number; id: number; exitEarly: boolean }

async function main(): Promise<void> {
  const job = workerData as Job;
  const s = await Session.create(job.model);
  let done = 0;
  let wrong = 0;
  const one = async (i: number): Promise<void> => {
    const v = job.id * 1000 + i;
    const out = await s.run({
      a: new Tensor('float32', new Float32Array(4).fill(v), [1, 4]),
      b: new Tensor('float32', new Float32Array(4).fill(0.5), [1, 4]),
    });
    if ((out.y.data as Float32Array)[3] !== v + 0.5) wrong++;
    done++;
  };
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < job.runs) await one(next++);
  };
  const lanes = Array.from({ length: job.concurrency }, lane);
  if (job.exitEarly) {
    // Leave while runs are queued and executing: the environment's cleanup must cope.
    setTimeout(() => {
      parentPort?.postMessage({ id: job.id, done, wrong, exiting: true });
      process.exit(0);
    }, 5);
  }
  await Promise.all(lanes);
  parentPort?.postMessage({ id: job.id, done, wrong, exiting: false });
}

main().catch((e: Error) => parentPort?.postMessage({ error: `${e.message}\n${e.stack}` }));

/**
 * Worker of bench/load's open loop: posts [from, to) ranges of schedule indices as they fall
 * due, sleeping in between (Atomics.wait, sub-millisecond). The thread under test then waits
 * for requests as a server waits for sockets, instead of spinning on timers and taking the
 * core that Kiln's executor threads need.
 */
import { parentPort } from 'worker_threads';

export interface TickerStart {
  /** Absolute time (performance.timeOrigin + now(), ms) of the schedule's zero. */
  start: number;
  /** Send times, ms from `start`, ascending. */
  schedule: Float64Array;
}

const clock = (): number => performance.timeOrigin + performance.now();

function tick({ start, schedule }: TickerStart): void {
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; i < schedule.length; ) {
    const wait = start + schedule[i] - clock();
    if (wait > 0) Atomics.wait(sleeper, 0, 0, wait);
    const elapsed = clock() - start;
    const from = i;
    while (i < schedule.length && schedule[i] <= elapsed) i++;
    if (i > from) parentPort?.postMessage([from, i]);
  }
}

parentPort?.once('message', (m: TickerStart) => tick(m));

// Progress of a long step (calibration, tuning) on stderr.
import { SingleBar } from 'cli-progress';

/** Width of the stage names ("calibration: histograms"). */
const STAGE_WIDTH = 24;

export interface Progress {
  update(stage: string, done: number, total: number): void;
  /** Closes the stage shown; `completed`: it finished, even if before its total. */
  end(completed: boolean): void;
}

/**
 * A bar per stage redrawn in place (cli-progress) when `stream` is a terminal, else a line
 * every 10% that reads well in a log. A stage's total may be an upper bound (tuning's is): a
 * stage that completes early is shown as done after what it did.
 */
export function progressReporter(stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Progress {
  const tty = stream.isTTY === true;
  let stage = '';
  let bar: SingleBar | undefined;
  let lastTenth = -1;
  let open = false;
  let last = { done: 0, total: 0 };
  const end = (completed: boolean): void => {
    if (!open) return;
    const early = completed && last.done < last.total;
    if (bar) {
      if (early) bar.setTotal(last.done);
      bar.stop();
      bar = undefined;
    } else if (early) {
      stream.write(`  ${stage} done after ${last.done} of at most ${last.total}\n`);
    }
    open = false;
  };
  return {
    update(next, done, total) {
      if (next !== stage) {
        end(true);
        stage = next;
        lastTenth = -1;
      }
      const t = Math.max(1, total);
      const d = Math.min(done, t);
      last = { done: d, total: t };
      open = true;
      if (tty) {
        if (!bar) {
          bar = new SingleBar({
            stream,
            format: `  ${stage.padEnd(STAGE_WIDTH)} [{bar}] {percentage}% ({value}/{total})`,
            barsize: 30,
            barCompleteChar: '#',
            barIncompleteChar: '.',
          });
          bar.start(t, d);
        } else {
          bar.setTotal(t);
          bar.update(d);
        }
        return;
      }
      const tenth = Math.floor((d / t) * 10);
      if (tenth > lastTenth) {
        lastTenth = tenth;
        stream.write(`  ${stage} ${Math.round((d / t) * 100)}% (${d}/${t})\n`);
      }
    },
    end,
  };
}

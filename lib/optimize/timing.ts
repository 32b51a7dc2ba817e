/**
 * Latency of models side by side, for choices that must weigh speed (tuning's fallbacks):
 * each model in its own session on one intra-op thread (steadier than a pool on a shared
 * machine, and what ranks the candidates), runs interleaved in short rounds whose order
 * rotates, so that drift hits every model alike; medians.
 */
import { quantile } from '../latency';
import { Session, type Feeds } from '../session';

export const TIMING_SESSION_OPTIONS = { intraOpThreads: 1, interOpThreads: 1 } as const;

/** A session for timing `model` (dispose it). */
export function timingSession(model: Uint8Array): Promise<Session> {
  return Session.create(model, TIMING_SESSION_OPTIONS);
}

/** Median µs per run of each session on `feeds`: `runs` each after two warm-up runs. */
export function interleavedMedians(sessions: readonly Session[], feeds: Feeds, runs: number): number[] {
  const samples = sessions.map(() => [] as number[]);
  for (const s of sessions) for (let i = 0; i < 2; i++) s.runSync(feeds);
  const round = Math.max(1, Math.min(5, Math.floor(runs / 4)));
  for (let r = 0; samples[0].length < runs; r++) {
    const k = Math.min(round, runs - samples[0].length);
    for (let j = 0; j < sessions.length; j++) {
      const at = (j + r) % sessions.length;
      for (let i = 0; i < k; i++) {
        const t0 = process.hrtime.bigint();
        sessions[at].runSync(feeds);
        samples[at].push(Number(process.hrtime.bigint() - t0) / 1000);
      }
    }
  }
  return samples.map((s) => quantile(s.sort((a, b) => a - b), 0.5));
}

/** Runs per model for a measurement of about `budgetMs` in all, from one run's µs (10 to 200). */
export function runsFor(perRunUs: number, models: number, budgetMs: number): number {
  return Math.max(10, Math.min(200, Math.floor((budgetMs * 1000) / Math.max(1, perRunUs * models))));
}

/**
 * A throwaway HAProxy (Debian's haproxy) in front of `kiln serve` replicas, for tests and
 * benchmarks: a generated configuration, a frontend on a free loopback port, the replicas as
 * one backend whose health check is KServe v2's readiness endpoint, and a stats socket (a
 * UNIX socket in the helper's temporary folder) through which the test reads each replica's
 * state as HAProxy sees it. Started in the foreground (-db) as a child process, stopped by
 * the caller.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { freePort } from './ports';

export interface Replica {
  /** The server's name in HAProxy (letters, digits, '-', '_'). */
  name: string;
  port: number;
}

export interface HaproxyOptions {
  replicas: readonly Replica[];
  /** Milliseconds between two health checks of a replica (default 100). */
  interMs?: number;
  /** Failed checks in a row that mark a replica down (default 2). */
  fall?: number;
  /** Passed checks in a row that mark it up again (default 2). */
  rise?: number;
  /** HAProxy's threads (default 1: on a two-core machine the replicas need the cores). */
  threads?: number;
  /**
   * A connection to a replica per request, closed after the answer (default true; see the
   * configuration below for why). false: HAProxy's default, idle connections reused.
   */
  serverClose?: boolean;
}

/** A replica's state as HAProxy's statistics tell it: UP, DOWN, or a transition (`UP 1/2`, `DOWN 1/2`), MAINT, no check. */
export type ReplicaState = string;

/** What HAProxy's statistics count for a replica (since HAProxy started). */
export interface ReplicaCounters {
  state: ReplicaState;
  /** Connections to it that failed and were tried again (`wretr`). */
  retries: number;
  /** Requests meant for it that were sent to another replica instead (`wredis`). */
  redispatches: number;
}

export interface Haproxy {
  /** The frontend: http://127.0.0.1:PORT. */
  readonly url: string;
  /** The generated configuration, as given to haproxy. */
  readonly config: string;
  /** haproxy's process id (for its CPU time). */
  readonly pid: number;
  /** Each replica's state, by name. */
  states(): Promise<Record<string, ReplicaState>>;
  /** Each replica's state and retry counters, by name. */
  counters(): Promise<Record<string, ReplicaCounters>>;
  /** Resolves once HAProxy reports the replica `state` (polled every 20 ms, at most `timeoutMs`). */
  waitFor(name: string, state: 'UP' | 'DOWN', timeoutMs?: number): Promise<void>;
  /** Ends haproxy and removes its folder. */
  stop(): Promise<void>;
}

/** The response header HAProxy adds: the name of the replica that answered. */
export const REPLICA_HEADER = 'x-kiln-replica';

function configuration(o: Required<Omit<HaproxyOptions, 'replicas'>> & { replicas: readonly Replica[]; frontendPort: number; socket: string }): string {
  return [
    'global',
    `  stats socket ${o.socket} mode 600 level admin`,
    `  nbthread ${o.threads}`,
    '',
    'defaults',
    '  mode http',
    '  timeout connect 1s',
    '  timeout client 30s',
    '  timeout server 30s',
    // A request whose connection to a replica failed (refused: the replica is gone, and the
    // checks have not marked it down yet) never reached it: HAProxy tries again (retry-on
    // stays at its default, conn-failure, so a request that was sent is never sent twice),
    // and `option redispatch 1` makes every retry pick another replica rather than wait for
    // the same one. Requests a replica had accepted when it died are not retried: they fail,
    // and the tests count them.
    '  retries 2',
    '  option redispatch 1',
    '',
    'frontend kiln',
    `  bind 127.0.0.1:${o.frontendPort}`,
    '  default_backend replicas',
    '',
    'backend replicas',
    '  balance roundrobin',
    // A connection to a replica per request, closed after its answer: no idle connection to
    // a replica is kept for another request. With reuse (HAProxy's default), a request that
    // HAProxy sends over an idle connection to a replica that has just died fails, and HAProxy
    // closes the client's connection unanswered for the client to retry; with a connection per
    // request, a dead replica refuses the connection and the request goes to another one
    // (retries, above), so that only the requests a replica was answering are lost with it.
    ...(o.serverClose ? ['  option http-server-close'] : []),
    // KServe v2 readiness: a draining replica answers 503 and is taken out of the rotation
    // after `fall` checks, while it still serves what it is sent.
    '  option httpchk GET /v2/health/ready',
    '  http-check expect status 200',
    `  default-server check inter ${o.interMs}ms fall ${o.fall} rise ${o.rise}`,
    `  http-response set-header ${REPLICA_HEADER} %[srv_name]`,
    ...o.replicas.map((r) => `  server ${r.name} 127.0.0.1:${r.port}`),
    '',
  ].join('\n');
}

/** One command on the stats socket; its whole answer. */
function ask(socket: string, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    let text = '';
    c.setTimeout(2000, () => c.destroy(new Error(`haproxy's stats socket did not answer "${command}"`)));
    c.on('connect', () => c.write(`${command}\n`));
    c.on('data', (d: Buffer) => (text += d.toString()));
    c.on('end', () => resolve(text));
    c.on('error', reject);
  });
}

/** Starts haproxy in front of `replicas` and waits until its stats socket answers and the frontend listens. */
export async function startHaproxy(options: HaproxyOptions): Promise<Haproxy> {
  for (const r of options.replicas) if (!/^[A-Za-z0-9_-]+$/.test(r.name)) throw new Error(`replica name "${r.name}": letters, digits, '-' and '_'`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-haproxy-'));
  const frontendPort = await freePort();
  const socket = path.join(dir, 'stats.sock');
  const config = configuration({ replicas: options.replicas, interMs: options.interMs ?? 100, fall: options.fall ?? 2, rise: options.rise ?? 2, threads: options.threads ?? 1, serverClose: options.serverClose ?? true, frontendPort, socket });
  const file = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(file, config);
  const child: ChildProcess = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  let exited = false;
  const exit = new Promise<void>((resolve) => child.on('exit', () => {
    exited = true;
    resolve();
  }));
  const stop = async (): Promise<void> => {
    if (!exited) {
      child.kill('SIGTERM');
      await exit;
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const counters = async (): Promise<Record<string, ReplicaCounters>> => {
    const csv = (await ask(socket, 'show stat')).trim().split('\n');
    const header = csv[0].replace(/^# /, '').split(',');
    const [px, sv, st, wretr, wredis] = ['pxname', 'svname', 'status', 'wretr', 'wredis'].map((c) => header.indexOf(c));
    const out: Record<string, ReplicaCounters> = {};
    for (const line of csv.slice(1)) {
      const f = line.split(',');
      if (f[px] === 'replicas' && f[sv] !== 'BACKEND') out[f[sv]] = { state: f[st], retries: Number(f[wretr] || 0), redispatches: Number(f[wredis] || 0) };
    }
    return out;
  };
  const states = async (): Promise<Record<string, ReplicaState>> => Object.fromEntries(Object.entries(await counters()).map(([name, c]) => [name, c.state]));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (exited) {
      await stop();
      throw new Error(`haproxy exited at start: ${stderr}`);
    }
    const up = await states().then(() => new Promise<boolean>((resolve) => {
      const c = net.connect(frontendPort, '127.0.0.1', () => {
        c.destroy();
        resolve(true);
      });
      c.on('error', () => resolve(false));
    }), () => false);
    if (up) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start in 10 s: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url: `http://127.0.0.1:${frontendPort}`,
    config,
    pid: child.pid as number,
    states,
    counters,
    async waitFor(name, state, timeoutMs = 15_000) {
      const until = Date.now() + timeoutMs;
      let last: ReplicaState | undefined;
      while ((last = (await states())[name]) !== state) {
        if (Date.now() > until) throw new Error(`haproxy did not see replica ${name} ${state} in ${timeoutMs} ms (it is ${last})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    stop,
  };
}


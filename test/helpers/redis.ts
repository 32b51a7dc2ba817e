/**
 * A throwaway redis-server for tests: on a free loopback port, no persistence, stopped after.
 * `pause()` / `resume()` stop and continue the process (SIGSTOP / SIGCONT): a server that
 * holds connections open but does not answer. `restart()` brings an empty one back on the
 * same port (clients reconnect to the same URL).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { freePort } from '../../support/ports';

export interface RedisServer {
  readonly url: string;
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
  /** Stops it if running and starts an empty one on the same port. */
  restart(): Promise<void>;
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => done(d.toString().startsWith('+PONG')));
  });
}

/** redis-server on `port`, once it answers PING; `stop` ends it (also when stopped with pause()). */
async function launch(port: number): Promise<{ stop(): Promise<void>; child: ChildProcess }> {
  const child: ChildProcess = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async (): Promise<void> => {
    if (exited) return;
    child.kill('SIGCONT');
    child.kill('SIGTERM');
    await once(child, 'exit');
  };
  const deadline = Date.now() + 10_000;
  while (!(await answersPing(port))) {
    if (exited || Date.now() > deadline) {
      await stop();
      throw new Error(`redis-server on port ${port} did not answer PING`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return { stop, child };
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let current = await launch(port);
  return {
    url: `redis://127.0.0.1:${port}`,
    pause: () => void current.child.kill('SIGSTOP'),
    resume: () => void current.child.kill('SIGCONT'),
    stop: () => current.stop(),
    restart: async () => {
      await current.stop();
      current = await launch(port);
    },
  };
}

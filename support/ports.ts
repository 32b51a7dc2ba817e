/** Loopback ports for the servers tests start. */
import { once } from 'node:events';
import net from 'node:net';

/** A port that was free a moment ago on 127.0.0.1 (bound to 0, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  server.close();
  await once(server, 'close');
  return port;
}

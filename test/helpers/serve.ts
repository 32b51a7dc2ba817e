/** A `kiln serve` started in-process for a test, with a gRPC client, and the requests the cache tests send it. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as grpc from '@grpc/grpc-js';
import { inferenceService } from '../../lib/server/grpc';
import { startServer, type RunningServer } from '../../lib/server/serve';

type Client = grpc.Client & Record<string, (request: unknown, callback: (e: grpc.ServiceError | null, r: unknown) => void) => void>;

export interface ServedRepository {
  server: RunningServer;
  /** A unary gRPC call of the inference service. */
  call<T>(method: string, request: unknown): Promise<T>;
  /** Closes the client and the server, and removes the repository folder. */
  close(): Promise<void>;
}

/** Serves the repository `dir` on 127.0.0.1, HTTP and gRPC on free ports, with a gRPC client. */
export async function serveRepository(dir: string): Promise<ServedRepository> {
  const server = await startServer({ modelRepository: dir, httpPort: 0, grpcPort: 0, logLevel: 'silent' });
  const client = new (inferenceService())(server.grpc as string, grpc.credentials.createInsecure()) as unknown as Client;
  return {
    server,
    call: <T>(method: string, request: unknown): Promise<T> => new Promise((resolve, reject) => client[method](request, (e, r) => (e ? reject(e) : resolve(r as T)))),
    async close() {
      client.close();
      await server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The JSON answer of a 200 to an [N, 512] float32 request for input "x" of `model`. */
export async function inferX<A>(url: string, model: string, x: number[], parameters?: Record<string, unknown>): Promise<A> {
  const body = { inputs: [{ name: 'x', shape: [x.length / 512, 512], datatype: 'FP32', data: x }], ...(parameters ? { parameters } : {}) };
  const r = await fetch(`${url}/v2/models/${model}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, await r.clone().text());
  return (await r.json()) as A;
}

export { metric } from '../../support/prometheus';

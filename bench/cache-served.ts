/**
 * bench/cache's contenders served by `kiln serve` in a child process: one model repository
 * with the recognizer four times (no cache, response cache, semantic cache, both), requests
 * over HTTP with binary tensors from this process, the outcome read from each answer's
 * `kiln_cache` parameter, inference runs from the statistics extension and what the caches
 * hold from the Prometheus metrics.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { decodeHttpAnswer, encodeHttpRequest } from '../lib/bench/targets/http';
import { countersFromStatistics } from '../lib/bench/targets/server-counters';
import { Tensor } from '../lib/tensor';
import { startKiln } from '../support/kiln-process';
import { OCR_MODELS, type FloatTensor } from '../support/ppocr';
import { metric } from '../support/prometheus';
import { writeFiles } from '../support/repository';

export interface Answer {
  /** The first output, as the recognizer's [1, steps, classes] scores. */
  y: { data: Float32Array; dims: number[] };
  outcome: string;
}

export interface ContenderClient {
  infer(x: FloatTensor, partition?: string): Promise<Answer>;
  /** Rows inferred so far (the statistics extension's inference_count, or model.stats()). */
  inferenceCount(): Promise<number>;
  /** What the caches hold: bytes per entry of each cache that has entries. */
  bytesPerEntry(): Promise<{ exact?: number; semantic?: number }>;
}

export interface ServedContenders {
  /** The server's HTTP address. */
  url: string;
  clients: Record<string, ContenderClient>;
  /** Stops the server (SIGTERM, no drain delay: it answers what it accepted) and removes the repository. */
  close(): Promise<void>;
}

const HEADER_LENGTH = 'inference-header-content-length';

/**
 * Starts `kiln serve` on a free loopback port with one model per contender (`name`: its
 * caches), a local response cache of `cacheBytes`, and returns HTTP clients for them.
 */
export async function serveContenders(contenders: Record<string, { exact: boolean; semantic?: { threshold: number; capacity: number } }>, cacheBytes: number): Promise<ServedContenders> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-bench-cache-'));
  const model = fs.readFileSync(OCR_MODELS.rec);
  const files: Record<string, string | Uint8Array> = {};
  for (const [name, c] of Object.entries(contenders)) {
    files[`${name}/1/model.onnx`] = model;
    files[`${name}/config.json`] = JSON.stringify({
      ...(c.exact ? { response_cache: { enable: true } } : {}),
      ...(c.semantic ? { semanticCache: { threshold: c.semantic.threshold, capacity: c.semantic.capacity } } : {}),
    });
  }
  writeFiles(dir, files);
  const server = await startKiln(['--model-repository', dir, '--port', '0', '--grpc-port', '-1', '--cache-config', `local,size=${cacheBytes}`,
    '--log-level', 'warn', '--drain-delay-secs', '0']);
  const url = server.url;
  const metrics = async (): Promise<string> => (await fetch(`${url}/metrics`)).text();
  const client = (name: string): ContenderClient => ({
    async infer(x, partition) {
      const { body, headers } = encodeHttpRequest({ x: new Tensor('float32', x.data, x.dims) }, undefined, true, partition === undefined ? undefined : { partition });
      const r = await fetch(`${url}/v2/models/${name}/infer`, { method: 'POST', headers, body });
      const bytes = Buffer.from(await r.arrayBuffer());
      if (r.status !== 200) throw new Error(`${name}: HTTP ${r.status}: ${bytes.toString()}`);
      const answerHeaders = Object.fromEntries(r.headers.entries());
      const length = Number(answerHeaders[HEADER_LENGTH] ?? bytes.length);
      const header = JSON.parse(bytes.toString('utf8', 0, length)) as { parameters?: { kiln_cache?: string } };
      const outputs = decodeHttpAnswer({ status: r.status, headers: answerHeaders, body: bytes });
      const first = Object.values(outputs)[0];
      return { y: { data: first.data as Float32Array, dims: first.dims }, outcome: header.parameters?.kiln_cache ?? 'none' };
    },
    async inferenceCount() {
      const answer = await (await fetch(`${url}/v2/models/${name}/stats`)).json();
      return countersFromStatistics(answer, name).inferenceCount;
    },
    async bytesPerEntry() {
      const text = await metrics();
      const per = (cache: string): number | undefined => {
        const labels = `model="${name}",version="1",cache="${cache}"`;
        const entries = metric(text, 'kiln_cache_entries', labels);
        const bytes = metric(text, 'kiln_cache_bytes', labels);
        return entries && bytes !== undefined ? bytes / entries : undefined;
      };
      return { exact: per('response'), semantic: per('semantic') };
    },
  });
  return {
    url,
    clients: Object.fromEntries(Object.keys(contenders).map((name) => [name, client(name)])),
    async close() {
      server.child.kill('SIGTERM');
      const code = await server.exit;
      fs.rmSync(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error(`kiln serve exited ${code}: ${server.stderr()}`);
    },
  };
}

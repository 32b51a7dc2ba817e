/**
 * Target http: kiln serve's HTTP server, in-process, with mutated KServe v2 requests.
 */
import * as path from 'path';
import { Session } from '../../../lib';
import { addModel } from '../../../lib/samples';
import { createHttpServer } from '../../../lib/server/http';
import { ModelManager } from '../../../lib/server/models';
import { writeExampleRepository } from '../../../lib/server/serve';
import { Ctx, describeError, WATCHDOG_MS, within } from '../judge';
import { Rng } from '../random';

/** The example repository served in-process; requests over loopback. */
export class HttpFuzzer {
  static async create(scratch: string): Promise<HttpFuzzer> {
    const dir = path.join(scratch, 'repository');
    writeExampleRepository(dir);
    const manager = await ModelManager.open(dir);
    const app = createHttpServer(manager, { bodyLimit: 2 ** 20, maxElements: 2 ** 16 });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const reference = await Session.create(addModel());
    return new HttpFuzzer(manager, app, `http://127.0.0.1:${(app.server.address() as import('net').AddressInfo).port}`, reference);
  }

  private constructor(
    private readonly manager: ModelManager,
    private readonly app: Awaited<ReturnType<typeof createHttpServer>>,
    private readonly base: string,
    private readonly reference: Session,
  ) {}

  /** A request: a valid add or mlp infer, mutated or replaced by random JSON or bytes. */
  #request(rng: Rng): { route: string; body: Buffer | string; header?: string; label: string; valid?: { a: number[]; b: number[] } } {
    const route = rng.weighted([[6, '/v2/models/add/infer'], [2, '/v2/models/mlp/infer'], [1, '/v2/models/add/versions/1/infer'], [1, `/v2/models/${rng.pick(['..%2Fadd', 'add%00', 'nope', ''])}/infer`], [1, '/v2/repository/index'], [1, '/v2/models/add/versions/x/infer']] as const);
    const a = Array.from({ length: 4 }, () => rng.int(100) - 50);
    const b = Array.from({ length: 4 }, () => rng.int(100) - 50);
    const body: { inputs: Record<string, unknown>[]; parameters?: unknown; outputs?: unknown } = { inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', data: a }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: b }] };
    const kind = rng.weighted([[3, 'valid'], [4, 'mutated'], [1, 'json'], [1, 'bytes'], [1, 'binary']] as const);
    const junk = (): unknown => rng.pick<unknown>([null, -1, 0, 1e300, 2 ** 53, 'FP16', 'BYTES', 'x', [], [[]], [1e9, 1e9], {}, true, [null], ['a'], [-1, 4]]);
    if (kind === 'valid') return { route, body: JSON.stringify(body), label: `${route} valid a=${a} b=${b}`, valid: route.includes('/add/') ? { a, b } : undefined };
    if (kind === 'mutated') {
      const field = rng.pick(['inputs', 'parameters', 'outputs', 'name', 'shape', 'datatype', 'data', 'binary_data_size'] as const);
      const value = junk();
      if (field === 'inputs' || field === 'parameters' || field === 'outputs') (body as Record<string, unknown>)[field] = value;
      else if (field === 'binary_data_size') body.inputs[rng.int(2)].parameters = { binary_data_size: value };
      else body.inputs[rng.int(2)][field] = value;
      return { route, body: JSON.stringify(body), label: `${route} ${field}=${JSON.stringify(value)}` };
    }
    if (kind === 'json') {
      const value = rng.pick<unknown>([null, [], {}, 'inputs', { inputs: {} }, { inputs: [1, 2] }, { inputs: [{}] }, 12]);
      return { route, body: JSON.stringify(value), label: `${route} json ${JSON.stringify(value)}` };
    }
    const bytes = Buffer.from(Array.from({ length: rng.int(200) }, () => rng.int(256)));
    if (kind === 'bytes') return { route, body: bytes, label: `${route} ${bytes.length} random bytes` };
    // Binary: a header naming binary_data_size with lying lengths.
    const header = Buffer.from(JSON.stringify({ inputs: [{ name: 'a', shape: [1, 4], datatype: 'FP32', parameters: { binary_data_size: rng.pick([16, 15, 0, 1000]) } }, { name: 'b', shape: [1, 4], datatype: 'FP32', data: b }] }));
    const length = rng.pick([header.length, header.length + rng.int(40), rng.int(header.length), -1]);
    return { route, body: Buffer.concat([header, bytes.subarray(0, rng.int(40))]), header: String(length), label: `${route} binary, header length ${length}` };
  }

  async iteration(ctx: Ctx): Promise<void> {
    const family = 'http';
    if (ctx.skipped(family)) return;
    const rng = ctx.rng;
    const requests = Array.from({ length: rng.range(1, 8) }, (_, i) => this.#request(rng.fork(i)));
    await Promise.all(requests.map(async (r) => {
      const info = { family, label: r.label };
      ctx.step(info);
      let status: number;
      let text: string;
      try {
        const res = await within(fetch(this.base + r.route, { method: 'POST', headers: { 'content-type': 'application/json', ...(r.header === undefined ? {} : { 'inference-header-content-length': r.header }) }, body: r.body }), WATCHDOG_MS);
        status = res.status;
        text = await res.text();
      } catch (e) {
        ctx.finding(info, 'hang', `no answer: ${describeError(e)}`);
        return;
      }
      ctx.tally.count(`http ${status}`, ctx.iteration, info);
      if (status >= 500) ctx.finding(info, 'server-error', `HTTP ${status}: ${text.slice(0, 300)}`);
      else if (status >= 400) {
        let error: unknown;
        try {
          error = (JSON.parse(text) as { error?: unknown }).error;
        } catch {
          error = undefined;
        }
        if (typeof error !== 'string') ctx.finding(info, 'bad-error-body', `HTTP ${status} without a JSON {error}: ${text.slice(0, 300)}`);
      } else if (r.valid) {
        const want = Array.from((await this.reference.run({ a: { type: 'float32', data: Float32Array.from(r.valid.a), dims: [1, 4] }, b: { type: 'float32', data: Float32Array.from(r.valid.b), dims: [1, 4] } })).y.data as Float32Array);
        const got = (JSON.parse(text) as { outputs?: { data?: number[] }[] }).outputs?.[0]?.data;
        if (JSON.stringify(got) !== JSON.stringify(want)) ctx.finding(info, 'wrong-answer', `got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
      } else if (status !== 200) {
        ctx.finding(info, 'odd-status', `HTTP ${status}`);
      }
    }));
  }

  async teardown(): Promise<void> {
    await this.app.close();
    await this.manager.close();
    await this.reference.dispose();
  }
}

/**
 * A second process for the response cache tests: loads the model at argv[2] with a Redis
 * response cache at argv[3], infers x = [1, 2, 3, 4] once and prints how it was served.
 */
import { createResponseCache, loadModel } from '../../lib';

async function main(): Promise<void> {
  const [path, url] = process.argv.slice(2);
  const cache = createResponseCache({ redis: { url, timeoutMs: 1000 } });
  const model = await loadModel(path, { responseCache: cache });
  const r = await model.infer({ x: { type: 'float32', data: Float32Array.of(1, 2, 3, 4), dims: [1, 4] } }, { withCacheInfo: true });
  process.stdout.write(JSON.stringify({ outcome: r.cache.outcome, y: [...(r.outputs.y.data as Float32Array)], executions: model.stats().executionCount }));
  await cache.close();
  await model.dispose();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

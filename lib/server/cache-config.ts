/**
 * `kiln serve --cache-config`: Triton's flag form for the server's response cache, as the
 * options createResponseCache takes. Each flag is `KIND,KEY=VALUE[,KEY=VALUE...]`; flags may
 * repeat (Triton passes one setting per flag), their settings merging when they name the
 * same kind:
 *
 *   local,size=BYTES[,ttl=MS]                         in-process, LRU under a byte budget
 *   redis,url=redis://HOST:PORT[,ttl=MS][,timeout=MS] shared by every server using it
 *   redis,host=HOST,port=PORT                         Triton's spelling of the same
 */
import type { ResponseCacheOptions } from '../cache/response-cache';
import { KilnError } from '../errors';

/** The local cache that models enabling response_cache get when the server is given no --cache-config. */
export const DEFAULT_CACHE_BYTES = 64 * 1024 * 1024;

const KEYS: Readonly<Record<string, readonly string[]>> = {
  local: ['size', 'ttl'],
  redis: ['url', 'host', 'port', 'ttl', 'timeout'],
};

const invalid = (flag: string, what: string): KilnError => new KilnError('E_INVALID_ARGUMENT', `--cache-config ${JSON.stringify(flag)}: ${what}`);

/** The cache options that one or more --cache-config values say. */
export function parseCacheConfig(flags: string | readonly string[]): ResponseCacheOptions {
  const list = typeof flags === 'string' ? [flags] : flags;
  if (list.length === 0) throw new KilnError('E_INVALID_ARGUMENT', '--cache-config needs a value: local,size=BYTES or redis,url=redis://HOST:PORT');
  let kind: string | undefined;
  const settings = new Map<string, { value: string; flag: string }>();
  for (const flag of list) {
    const [head, ...pairs] = flag.split(',').map((s) => s.trim());
    if (!(head in KEYS)) throw invalid(flag, `the cache kind must be local or redis, received ${JSON.stringify(head)}`);
    if (kind !== undefined && kind !== head) throw invalid(flag, `a server has one cache, and an earlier --cache-config named ${kind}`);
    kind = head;
    if (pairs.length === 0) throw invalid(flag, `give the ${head} cache's settings after the kind (${KEYS[head].map((k) => `${k}=...`).join(', ')})`);
    for (const pair of pairs) {
      const eq = pair.indexOf('=');
      const key = eq > 0 ? pair.slice(0, eq) : pair;
      if (eq <= 0 || eq === pair.length - 1) throw invalid(flag, `settings are KEY=VALUE, received ${JSON.stringify(pair)}`);
      if (!KEYS[head].includes(key)) throw invalid(flag, `the ${head} cache takes ${KEYS[head].join(', ')}, not ${JSON.stringify(key)}`);
      if (settings.has(key)) throw invalid(flag, `${key} is given more than once`);
      settings.set(key, { value: pair.slice(eq + 1), flag });
    }
  }
  const integer = (key: string, what: string, min: number): number | undefined => {
    const s = settings.get(key);
    if (!s) return undefined;
    const n = /^\d+$/.test(s.value) ? Number(s.value) : NaN;
    if (!Number.isSafeInteger(n) || n < min) throw invalid(s.flag, `${key} must be ${what}, received ${JSON.stringify(s.value)}`);
    return n;
  };
  const ttlMs = integer('ttl', 'a time to live in milliseconds >= 1', 1);
  if (kind === 'local') {
    const maxBytes = integer('size', 'a size in bytes >= 1', 1);
    if (maxBytes === undefined) throw invalid(list[0], 'the local cache needs size=BYTES');
    return { local: { maxBytes, ...(ttlMs !== undefined ? { ttlMs } : {}) } };
  }
  const timeoutMs = integer('timeout', 'a time in milliseconds >= 1', 1);
  const url = settings.get('url');
  const host = settings.get('host');
  const port = integer('port', 'a port number', 1);
  if (port !== undefined && port > 65535) throw invalid(settings.get('port')!.flag, `port must be a port number, received ${port}`);
  if (url && (host || port !== undefined)) throw invalid(url.flag, 'give url, or host and port, not both');
  if (url && !/^rediss?:\/\/[^\s]+$/.test(url.value)) throw invalid(url.flag, `url must be a redis:// or rediss:// URL, received ${JSON.stringify(url.value)}`);
  if (!url && !host) throw invalid(list[0], 'the redis cache needs url=redis://HOST:PORT (or host=HOST,port=PORT)');
  const address = url ? url.value : `redis://${host!.value.includes(':') ? `[${host!.value}]` : host!.value}:${port ?? 6379}`;
  return { redis: { url: address, ...(ttlMs !== undefined ? { ttlMs } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}) } };
}

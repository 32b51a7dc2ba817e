/**
 * A response cache store in Redis, so that processes (replicas of `kiln serve`) share one
 * cache. Built so that Redis being slow or down never holds a request up: each command is
 * bounded by `timeoutMs`, commands fail at once while the client is disconnected (no
 * offline queue) and the client reconnects in the background.
 */
import { createClient, RESP_TYPES } from 'redis';
import { KilnError } from '../errors';
import type { CacheStore } from './store';

export interface RedisStoreOptions {
  /** redis:// (or rediss://) URL. */
  url: string;
  /** Entries expire this long after they were stored (default: never). */
  ttlMs?: number;
  /** The longest a lookup or store waits for Redis (default 50 ms). */
  timeoutMs?: number;
  /** Prepended to every key (default 'kiln:cache:'). */
  prefix?: string;
  /** Called with the client's connection errors (reconnects are retried in the background). */
  onError?: (error: Error) => void;
}

/** Reconnect attempts back off to at most this interval while Redis is down. */
const MAX_RECONNECT_MS = 1000;

export class RedisStore implements CacheStore {
  readonly kind = 'redis';
  readonly #client;
  readonly #prefix: string;
  readonly #ttlMs: number | undefined;
  readonly #timeoutMs: number;
  /** The first connection, while it is being made: commands wait for it (bounded). */
  #connecting: Promise<unknown> | undefined;

  constructor(options: RedisStoreOptions) {
    this.#prefix = options.prefix ?? 'kiln:cache:';
    this.#ttlMs = options.ttlMs;
    this.#timeoutMs = options.timeoutMs ?? 50;
    this.#client = createClient({
      url: options.url,
      disableOfflineQueue: true,
      socket: { connectTimeout: Math.max(this.#timeoutMs, 1000), reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, MAX_RECONNECT_MS) },
      commandOptions: { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer }, timeout: this.#timeoutMs },
    });
    this.#client.on('error', (e: Error) => {
      this.#connecting = undefined;
      options.onError?.(e);
    });
    this.#connecting = this.#client.connect().then(() => {
      this.#connecting = undefined;
    }, () => undefined);
  }

  async get(key: string): Promise<Uint8Array | undefined> {
    await this.#ready();
    const value = await this.#bounded(this.#client.get(this.#prefix + key));
    return value === null ? undefined : (value as unknown as Buffer);
  }

  async set(key: string, value: Uint8Array, ttlMs = this.#ttlMs, _owner?: string): Promise<void> {
    await this.#ready();
    const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
    await this.#bounded(this.#client.set(this.#prefix + key, bytes, ttlMs === undefined ? undefined : { expiration: { type: 'PX', value: ttlMs } }));
  }

  stats(): undefined {
    return undefined;
  }

  async close(): Promise<void> {
    if (this.#client.isReady) await this.#client.close();
    else if (this.#client.isOpen) this.#client.destroy();
  }

  /** Waits for the first connection, at most timeoutMs; afterwards a disconnected client fails commands at once. */
  async #ready(): Promise<void> {
    if (this.#connecting) await this.#bounded(this.#connecting);
  }

  /** `p`, or E_TIMEOUT after timeoutMs (node-redis's own command timeout does not cover every wait). */
  #bounded<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new KilnError('E_TIMEOUT', `redis did not answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

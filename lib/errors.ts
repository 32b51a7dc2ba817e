/**
 * The stable error codes, the one list: the native core's codes (native/core/error.cc) and
 * the fuzzer's judge are checked against it by test/errors.test.ts. See docs/architecture.md
 * "Errors".
 */
export const ERROR_CODES = [
  'E_INVALID_ARGUMENT',
  'E_DTYPE_MISMATCH',
  'E_SHAPE_MISMATCH',
  'E_MODEL_LOAD',
  'E_PROVIDER_UNAVAILABLE',
  'E_QUEUE_FULL',
  'E_TIMEOUT',
  'E_ABORTED',
  'E_OVERLOADED',
  'E_DISPOSED',
  'E_NOT_FOUND',
  'E_ACCURACY',
  'E_UNAVAILABLE',
  'E_ORT',
] as const;

export type KilnErrorCode = (typeof ERROR_CODES)[number];

const CODES: ReadonlySet<string> = new Set<string>(ERROR_CODES);

/** Whether `code` is one of the stable codes. */
export function isErrorCode(code: unknown): code is KilnErrorCode {
  return typeof code === 'string' && CODES.has(code);
}

export class KilnError extends Error {
  readonly code: KilnErrorCode;
  /** For E_QUEUE_FULL and E_OVERLOADED: how long to wait before retrying, as estimated by the batcher. */
  readonly retryAfterMs?: number;
  constructor(code: KilnErrorCode, message: string, options?: { cause?: unknown; retryAfterMs?: number }) {
    super(message, options);
    this.name = 'KilnError';
    this.code = code;
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

/**
 * Turns whatever a failure threw into a KilnError created here (so that its stack points at
 * the JS caller rather than at the addon): a native error carrying one of the stable codes
 * keeps it; a system error (Node's errno codes, its message without the errno prefix) is
 * E_NOT_FOUND for a path that does not exist, E_INVALID_ARGUMENT for a path the caller
 * cannot use (permissions, a folder for a file, ...), and E_UNAVAILABLE for a resource the
 * system cannot provide now (disk full, too many open files, I/O errors); anything else is
 * E_ORT.
 */
/** Errno codes that say something about the path the caller gave (see toKilnError). */
const SYSTEM_ERRORS: Readonly<Record<string, KilnErrorCode>> = {
  ENOENT: 'E_NOT_FOUND', ENOTDIR: 'E_NOT_FOUND',
  EACCES: 'E_INVALID_ARGUMENT', EPERM: 'E_INVALID_ARGUMENT', EISDIR: 'E_INVALID_ARGUMENT', EEXIST: 'E_INVALID_ARGUMENT',
  ENAMETOOLONG: 'E_INVALID_ARGUMENT', ELOOP: 'E_INVALID_ARGUMENT', EINVAL: 'E_INVALID_ARGUMENT', EROFS: 'E_INVALID_ARGUMENT',
  ENOTEMPTY: 'E_INVALID_ARGUMENT', EXDEV: 'E_INVALID_ARGUMENT',
};

export function toKilnError(e: unknown): KilnError {
  if (e instanceof KilnError) return e;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  if (isErrorCode(code)) return new KilnError(code, message);
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) && typeof (e as NodeJS.ErrnoException).syscall === 'string') {
    return new KilnError(SYSTEM_ERRORS[code] ?? 'E_UNAVAILABLE', message.replace(/^E[A-Z0-9]+: /, ''), { cause: e });
  }
  return new KilnError('E_ORT', message, e instanceof Error ? { cause: e } : undefined);
}

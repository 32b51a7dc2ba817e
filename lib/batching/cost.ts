/**
 * The cost of a batch as a function of its size, fitted by least squares over the most
 * recent executions (BentoML's adaptive batching keeps the same linear model).
 */
export class BatchCostModel {
  readonly #sizes: number[] = [];
  readonly #ms: number[] = [];
  readonly #window: number;
  #a = 0;
  #b = 0;

  constructor(window = 64) {
    this.#window = window;
  }

  get samples(): number {
    return this.#sizes.length;
  }

  observe(size: number, ms: number): void {
    this.#sizes.push(size);
    this.#ms.push(ms);
    if (this.#sizes.length > this.#window) {
      this.#sizes.shift();
      this.#ms.shift();
    }
    this.#fit();
  }

  /** Predicted milliseconds for a batch of `size` rows; 0 before any observation. */
  predict(size: number): number {
    return Math.max(0, this.#a + this.#b * size);
  }

  #fit(): void {
    const n = this.#sizes.length;
    let sx = 0, sy = 0, sxx = 0, sxy = 0;
    for (let i = 0; i < n; i++) {
      sx += this.#sizes[i];
      sy += this.#ms[i];
      sxx += this.#sizes[i] * this.#sizes[i];
      sxy += this.#sizes[i] * this.#ms[i];
    }
    const den = n * sxx - sx * sx;
    if (n < 2 || den === 0) {
      // One distinct size seen: nothing says how cost grows with size; assume it does not
      // (assuming proportional growth would refuse bursts that batching absorbs).
      this.#a = sy / n;
      this.#b = 0;
      return;
    }
    this.#b = Math.max(0, (n * sxy - sx * sy) / den);
    this.#a = (sy - this.#b * sx) / n;
  }
}

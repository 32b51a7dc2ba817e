// Formatting of the model commands' reports.

export const formatBytes = (n: number): string => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);

/** after / before as "1.23x", or "-" when it has no meaning. */
export const ratio = (after: number, before: number): string => (before > 0 && Number.isFinite(after / before) ? `${(after / before).toFixed(2)}x` : '-');

/** Rows as aligned columns: the first column left-aligned, the rest right-aligned. */
export function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => indent + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('   ').trimEnd()).join('\n') + '\n';
}

/** "3 eval samples", "1 eval sample" */
export const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? '' : 's'}`;

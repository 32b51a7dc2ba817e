/** Reading Prometheus' text exposition (what `kiln serve` answers at /metrics). */

/** One sample's value: the line `name{labels} value`, labels written as the server writes them; undefined when absent. */
export function metric(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

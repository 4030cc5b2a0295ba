import { errText } from "../util/errors.js";
/**
 * A small metrics registry rendered in Prometheus' text exposition format (0.0.4): counters,
 * gauges (set, or read at scrape time) and histograms, each with optional labels. No global
 * registry: many peels in one process each keep their own.
 */

export type Labels = Readonly<Record<string, string>>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples(): Promise<string[]> | string[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function labelText(labels: Labels | undefined, extra?: [string, string]): string {
  const pairs = Object.entries(labels ?? {});
  if (extra) pairs.push(extra);
  if (pairs.length === 0) return "";
  const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
  return `{${pairs.map(([k, v]) => `${k}="${esc(v)}"`).join(",")}}`;
}

const keyOf = (labels: Labels | undefined) => JSON.stringify(Object.entries(labels ?? {}).sort());

function number(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Number.POSITIVE_INFINITY) return "+Inf";
  if (v === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(v);
}

export class Counter {
  private readonly values = new Map<string, { labels: Labels | undefined; value: number }>();
  inc(labels?: Labels, by = 1): void {
    const k = keyOf(labels);
    const cur = this.values.get(k);
    if (cur) cur.value += by;
    else this.values.set(k, { labels, value: by });
  }
  get(labels?: Labels): number {
    return this.values.get(keyOf(labels))?.value ?? 0;
  }
  /** @internal */
  lines(name: string): string[] {
    if (this.values.size === 0) return [`${name} 0`];
    return [...this.values.values()].map((s) => `${name}${labelText(s.labels)} ${number(s.value)}`);
  }
}

export class Gauge {
  private readonly values = new Map<string, { labels: Labels | undefined; value: number }>();
  set(value: number, labels?: Labels): void {
    this.values.set(keyOf(labels), { labels, value });
  }
  /** @internal */
  lines(name: string): string[] {
    return [...this.values.values()].map((s) => `${name}${labelText(s.labels)} ${number(s.value)}`);
  }
}

export class Histogram {
  private readonly series = new Map<
    string,
    { labels: Labels | undefined; counts: number[]; sum: number; n: number }
  >();
  constructor(readonly buckets: readonly number[]) {}
  observe(value: number, labels?: Labels): void {
    const k = keyOf(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { labels, counts: this.buckets.map(() => 0), sum: 0, n: 0 };
      this.series.set(k, s);
    }
    this.buckets.forEach((b, i) => {
      if (value <= b) s.counts[i]!++;
    });
    s.sum += value;
    s.n++;
  }
  /** @internal */
  lines(name: string): string[] {
    const out: string[] = [];
    for (const s of this.series.values()) {
      this.buckets.forEach((b, i) => {
        out.push(`${name}_bucket${labelText(s.labels, ["le", number(b)])} ${s.counts[i]}`);
      });
      out.push(`${name}_bucket${labelText(s.labels, ["le", "+Inf"])} ${s.n}`);
      out.push(`${name}_sum${labelText(s.labels)} ${number(s.sum)}`);
      out.push(`${name}_count${labelText(s.labels)} ${s.n}`);
    }
    return out;
  }
}

/** Seconds, from a fast state run to a long one. */
export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** What a read-at-scrape family returns: one value, or values per label set. */
type ReadFn = () => number | readonly [Labels, number][] | Promise<number | readonly [Labels, number][]>;

export class Metrics {
  private readonly families = new Map<string, Family>();

  private add(f: Family): void {
    if (!NAME.test(f.name)) throw new Error(`bad metric name ${JSON.stringify(f.name)}`);
    if (this.families.has(f.name)) throw new Error(`metric ${f.name} is registered twice`);
    this.families.set(f.name, f);
  }

  counter(name: string, help: string): Counter {
    const c = new Counter();
    this.add({ name, help, type: "counter", samples: () => c.lines(name) });
    return c;
  }

  gauge(name: string, help: string): Gauge {
    const g = new Gauge();
    this.add({ name, help, type: "gauge", samples: () => g.lines(name) });
    return g;
  }

  /** A gauge read when scraped: `read` returns one value, or values per label set. */
  gaugeFn(name: string, help: string, read: ReadFn): void {
    this.addRead(name, help, "gauge", read);
  }

  /**
   * A counter kept by another part (the reactor counts its own reactions and drops) and read
   * when scraped, so the part needs no knowledge of metrics.
   */
  counterFn(name: string, help: string, read: ReadFn): void {
    this.addRead(name, help, "counter", read);
  }

  private addRead(name: string, help: string, type: "gauge" | "counter", read: ReadFn): void {
    this.add({
      name,
      help,
      type,
      samples: async () => {
        const v = await read();
        if (typeof v === "number") return [`${name} ${number(v)}`];
        return v.map(([l, x]) => `${name}${labelText(l)} ${number(x)}`);
      },
    });
  }

  histogram(name: string, help: string, buckets: readonly number[] = DURATION_BUCKETS): Histogram {
    const h = new Histogram(buckets);
    this.add({ name, help, type: "histogram", samples: () => h.lines(name) });
    return h;
  }

  /** The exposition text; a gauge whose read fails is left out with a comment, never the scrape. */
  async render(): Promise<string> {
    const out: string[] = [];
    for (const f of this.families.values()) {
      let lines: string[];
      try {
        lines = await f.samples();
      } catch (err) {
        out.push(`# ${f.name} unavailable: ${errText(err).replace(/\n/g, " ")}`);
        continue;
      }
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`, ...lines);
    }
    return `${out.join("\n")}\n`;
  }
}

/** A binary min-heap ordered by `compare` (negative: `a` comes first). */
export class MinHeap<T> {
  private readonly a: T[] = [];

  constructor(private readonly compare: (a: T, b: T) => number) {}

  get size(): number {
    return this.a.length;
  }

  push(v: T): void {
    const a = this.a;
    a.push(v);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.compare(a[p]!, v) <= 0) break;
      a[i] = a[p]!;
      i = p;
    }
    a[i] = v;
  }

  pop(): T | undefined {
    const a = this.a;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const c = r < a.length && this.compare(a[r]!, a[l]!) < 0 ? r : l;
        if (this.compare(a[c]!, last) >= 0) break;
        a[i] = a[c]!;
        i = c;
      }
      a[i] = last;
    }
    return top;
  }
}

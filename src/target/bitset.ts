/** Fixed-size bit sets over peel slots: and/or/not over 50,000 peels is a few thousand word ops. */
export class Bitset {
  readonly words: Uint32Array;

  constructor(readonly size: number) {
    this.words = new Uint32Array((size + 31) >>> 5);
  }

  add(i: number): void {
    this.words[i >>> 5]! |= 1 << (i & 31);
  }

  has(i: number): boolean {
    return (this.words[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  clone(): Bitset {
    const b = new Bitset(this.size);
    b.words.set(this.words);
    return b;
  }

  andInPlace(o: Bitset): this {
    const w = this.words;
    const ow = o.words;
    for (let i = 0; i < w.length; i++) w[i]! &= ow[i]!;
    return this;
  }

  orInPlace(o: Bitset): this {
    const w = this.words;
    const ow = o.words;
    for (let i = 0; i < w.length; i++) w[i]! |= ow[i]!;
    return this;
  }

  andNotInPlace(o: Bitset): this {
    const w = this.words;
    const ow = o.words;
    for (let i = 0; i < w.length; i++) w[i]! &= ~ow[i]!;
    return this;
  }

  count(): number {
    let n = 0;
    for (let x of this.words) {
      x -= (x >>> 1) & 0x55555555;
      x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
      n += (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
    }
    return n;
  }

  isEmpty(): boolean {
    for (const x of this.words) if (x !== 0) return false;
    return true;
  }

  forEach(fn: (i: number) => void): void {
    const w = this.words;
    for (let wi = 0; wi < w.length; wi++) {
      let x = w[wi]!;
      while (x !== 0) {
        const low = x & -x;
        fn((wi << 5) + 31 - Math.clz32(low));
        x ^= low;
      }
    }
  }
}

/**
 * The master's in-memory view of the fleet for target resolution. Each peel lives in a numbered
 * slot; sub-expressions evaluate to bit sets over slots and combine with and/or/not.
 *
 * Cheap answers first: exact ids and `L@` are map lookups, `G@`/`I@` use per-path postings
 * (lower-cased value → slots) built the first time a path is asked for and kept current by
 * `upsert`, id globs with a literal prefix scan only that range of the sorted ids. Inside an
 * `and`, once the candidates are few, costly children are answered by running the compiled
 * matcher on those candidates instead of over the fleet.
 */
import type { DataSource, PeelView, TargetNode } from "./ast.js";
import { Bitset } from "./bitset.js";
import { comparator, factReading, readPath, type ValueTokens, valueTokens } from "./data.js";
import { globLiteralPrefix, globToRegExp, hasGlobChars } from "./glob.js";
import { type Cidr, type Ip, parseIp } from "./ip.js";
import { compilePredicate, IP_FACT_KEYS, idRegex, mustCidr, type PeelPredicate } from "./matcher.js";
import { type ParseOptions, parseTarget } from "./parse.js";

type Data = Record<string, unknown>;
type DataNode = Extract<TargetNode, { kind: "data" }>;

/**
 * The slots holding one token: a bare number while there is only one (unique values such as
 * hostnames and addresses are most of the tokens, and a Set each would dominate memory).
 */
type Slots = number | Set<number>;

interface Posting {
  source: DataSource;
  path: string[];
  values: Map<string, Slots>;
  keys: Map<string, Slots>;
  /** Slots whose value is a scalar or a list: the ones `!=` may match. */
  comparable: Set<number>;
  /** What each slot contributed, so an update can take it back out. */
  bySlot: (ValueTokens | undefined)[];
  /** Feeds the address table for `S@`. */
  isAddress: boolean;
  /** Bit sets of the big value entries; dropped when the entry changes. */
  bits: Map<string, Bitset>;
}

/**
 * Every peel address, sorted, for `S@`: a prefix is a contiguous range, so a lookup is two binary
 * searches plus a walk over the matching slots. IPv4 is kept as parallel integer arrays: the walk
 * is the hot loop, and integer loads keep it on V8's fast path (a float-packed version ran 5x
 * slower whenever it deoptimised).
 */
interface AddressTable {
  v4: Uint32Array;
  v4Slots: Int32Array;
  v6: { ip: bigint; slot: number }[];
}

const SLOT_BITS = 21;

/** Entries at least this big are kept as bit sets too: cheaper to OR, smaller than the Set. */
const BITS_MIN = 256;

/** Candidates at most this fraction of the fleet are filtered one by one instead. */
const FILTER_FRACTION = 1 / 8;
const PARSE_CACHE = 256;

function addSlot(map: Map<string, Slots>, token: string, slot: number): void {
  const cur = map.get(token);
  if (cur === undefined) map.set(token, slot);
  else if (typeof cur === "number") {
    if (cur !== slot) map.set(token, new Set([cur, slot]));
  } else cur.add(slot);
}

/** Empty entries are dropped: they would make every later glob walk more tokens. */
function deleteSlot(map: Map<string, Slots>, token: string, slot: number): void {
  const cur = map.get(token);
  if (cur === undefined) return;
  if (typeof cur === "number") {
    if (cur === slot) map.delete(token);
    return;
  }
  cur.delete(slot);
  if (cur.size === 1) map.set(token, cur.values().next().value!);
}

function addSlots(slots: Slots | undefined, out: Bitset): void {
  if (slots === undefined) return;
  if (typeof slots === "number") out.add(slots);
  else for (const s of slots) out.add(s);
}

function sameTokens(a: ValueTokens, b: ValueTokens): boolean {
  if (
    a.comparable !== b.comparable ||
    a.values.length !== b.values.length ||
    a.keys.length !== b.keys.length
  ) {
    return false;
  }
  for (let i = 0; i < a.values.length; i++) if (a.values[i] !== b.values[i]) return false;
  for (let i = 0; i < a.keys.length; i++) if (a.keys[i] !== b.keys[i]) return false;
  return true;
}

/** First index in a sorted array whose element is >= x. */
function lowerBound(xs: ArrayLike<number>, x: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (xs[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Literal start of an id regex (always anchored at the start), or "" when there is none. */
function regexLiteralPrefix(source: string): string {
  if (source.includes("|")) return "";
  const body = source.startsWith("^") ? source.slice(1) : source;
  const m = /^[A-Za-z0-9_-]*/.exec(body)![0];
  const next = body[m.length];
  // `web?` or `web*`: the last literal is optional.
  return next === "?" || next === "*" || next === "{" ? m.slice(0, -1) : m;
}

export class TargetIndex {
  private readonly slots: (PeelView | undefined)[] = [];
  private readonly slotOf = new Map<string, number>();
  private readonly free: number[] = [];
  private readonly postings = new Map<string, Posting>();
  private readonly parsed = new Map<string, TargetNode>();
  private readonly predicates = new WeakMap<TargetNode, PeelPredicate>();
  /** Rebuilt on the first query after a peel joins or leaves. */
  private order: { ids: string[]; slots: number[]; live: Bitset } | undefined;
  /** Rebuilt on the first `S@` after an address changes. */
  private addrTable: AddressTable | undefined;

  constructor(private readonly parseOptions: ParseOptions = {}) {}

  get size(): number {
    return this.slotOf.size;
  }

  has(id: string): boolean {
    return this.slotOf.has(id);
  }

  get(id: string): PeelView | undefined {
    const s = this.slotOf.get(id);
    return s === undefined ? undefined : this.slots[s];
  }

  /**
   * Adds or replaces a peel. `settings` left undefined keeps what the peel had. The objects are
   * held by reference: replace them through `upsert`, never mutate them in place.
   */
  upsert(id: string, facts: Data, settings?: Data): void {
    let slot = this.slotOf.get(id);
    const old = slot === undefined ? undefined : this.slots[slot];
    if (slot === undefined) {
      slot = this.free.pop() ?? this.slots.length;
      this.slotOf.set(id, slot);
      this.order = undefined;
    }
    const peel: PeelView = { id, facts, settings: settings ?? old?.settings };
    this.slots[slot] = peel;
    for (const p of this.postings.values()) {
      const changed = p.source === "facts" ? old?.facts !== facts : old?.settings !== peel.settings;
      if (changed || !old) this.reindex(p, slot, peel);
    }
  }

  remove(id: string): boolean {
    const slot = this.slotOf.get(id);
    if (slot === undefined) return false;
    for (const p of this.postings.values()) this.unindex(p, slot);
    this.slotOf.delete(id);
    this.slots[slot] = undefined;
    this.free.push(slot);
    this.order = undefined;
    return true;
  }

  /** Ids matching the expression, sorted. Throws TargetSyntaxError on bad input. */
  resolve(expr: string | TargetNode): string[] {
    const ast = typeof expr === "string" ? this.parse(expr) : expr;
    const order = this.ordered();
    return this.toIds(this.evaluate(ast, undefined), order);
  }

  private parse(expr: string): TargetNode {
    let ast = this.parsed.get(expr);
    if (!ast) {
      ast = parseTarget(expr, this.parseOptions);
      if (this.parsed.size >= PARSE_CACHE) this.parsed.delete(this.parsed.keys().next().value!);
      this.parsed.set(expr, ast);
    }
    return ast;
  }

  private ordered(): { ids: string[]; slots: number[]; live: Bitset } {
    if (this.order && this.order.live.size === this.slots.length) return this.order;
    const pairs = [...this.slotOf.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const live = new Bitset(this.slots.length);
    for (const [, s] of pairs) live.add(s);
    this.order = { ids: pairs.map((p) => p[0]), slots: pairs.map((p) => p[1]), live };
    return this.order;
  }

  private toIds(bits: Bitset, order: { ids: string[]; slots: number[] }): string[] {
    const n = bits.count();
    if (n * 16 < order.ids.length) {
      const out: string[] = [];
      bits.forEach((s) => {
        out.push(this.slots[s]!.id);
      });
      return out.sort();
    }
    const out: string[] = [];
    for (let i = 0; i < order.slots.length; i++) if (bits.has(order.slots[i]!)) out.push(order.ids[i]!);
    return out;
  }

  private newSet(): Bitset {
    return new Bitset(this.slots.length);
  }

  private predicate(node: TargetNode): PeelPredicate {
    let p = this.predicates.get(node);
    if (!p) {
      p = compilePredicate(node);
      this.predicates.set(node, p);
    }
    return p;
  }

  /** Relative cost of answering a node over the whole fleet; orders the children of `and`. */
  private cost(node: TargetNode): number {
    switch (node.kind) {
      case "list":
        return 1;
      case "glob":
        return !hasGlobChars(node.pattern) ? 1 : globLiteralPrefix(node.pattern) ? 3 : 5;
      case "regex":
        return regexLiteralPrefix(node.source) ? 3 : 5;
      case "data":
        return node.op === ":" && node.splits.every((s) => !hasGlobChars(s.value)) ? 2 : 4;
      case "cidr":
        return 3;
      case "not":
        return this.cost(node.child);
      case "and":
        return Math.min(...node.children.map((c) => this.cost(c)));
      case "or":
        return Math.max(...node.children.map((c) => this.cost(c)));
    }
  }

  /** The node's matches, intersected with `cand` when given. */
  private evaluate(node: TargetNode, cand: Bitset | undefined): Bitset {
    if (node.kind === "and") {
      const children = [...node.children].sort((a, b) => this.cost(a) - this.cost(b));
      let acc = cand;
      for (const c of children) {
        acc = this.evaluate(c, acc);
        if (acc.isEmpty()) break;
      }
      return acc!;
    }
    if (node.kind === "or") {
      const acc = this.newSet();
      for (const c of node.children) {
        const rest = (cand ? cand.clone() : this.ordered().live.clone()).andNotInPlace(acc);
        if (rest.isEmpty()) break;
        acc.orInPlace(this.evaluate(c, rest));
      }
      return acc;
    }
    if (node.kind === "not") {
      const base = (cand ?? this.ordered().live).clone();
      return base.andNotInPlace(this.evaluate(node.child, cand));
    }
    // `S@` is a range walk over sorted addresses: cheaper than re-parsing each candidate's.
    const filter = cand && node.kind !== "cidr" && this.cost(node) >= 3;
    if (filter && cand.count() <= this.slotOf.size * FILTER_FRACTION) {
      const pred = this.predicate(node);
      const out = this.newSet();
      cand.forEach((s) => {
        if (pred(this.slots[s]!)) out.add(s);
      });
      return out;
    }
    const full = this.leaf(node);
    return cand ? full.andInPlace(cand) : full;
  }

  private leaf(node: TargetNode): Bitset {
    const out = this.newSet();
    switch (node.kind) {
      case "list":
        for (const id of node.ids) {
          const s = this.slotOf.get(id);
          if (s !== undefined) out.add(s);
        }
        return out;
      case "glob": {
        if (!hasGlobChars(node.pattern)) {
          const s = this.slotOf.get(node.pattern);
          if (s !== undefined) out.add(s);
          return out;
        }
        // `*` (and `**`) match every peel: no need to test each id.
        if (/^\*+$/.test(node.pattern)) return out.orInPlace(this.ordered().live);
        const re = globToRegExp(node.pattern) as RegExp;
        this.scanIds(globLiteralPrefix(node.pattern), (id) => re.test(id), out);
        return out;
      }
      case "regex": {
        const re = idRegex(node.source);
        this.scanIds(regexLiteralPrefix(node.source), (id) => re.test(id), out);
        return out;
      }
      case "data":
        for (const split of node.splits) this.dataSplit(node, split.path, split.value, out);
        return out;
      case "cidr":
        this.cidrRange(mustCidr(node.cidr), out);
        return out;
      default:
        throw new Error(`target: ${node.kind} is not a leaf`);
    }
  }

  private addressTable(): AddressTable {
    if (this.addrTable) return this.addrTable;
    if (this.slots.length >= 2 ** SLOT_BITS) throw new Error("target: too many peels for the address table");
    const v4: number[] = [];
    const v6: { ip: bigint; slot: number }[] = [];
    const parsed = new Map<string, Ip | null>();
    for (const key of IP_FACT_KEYS) {
      const { bySlot } = this.posting("facts", [key]);
      for (let slot = 0; slot < bySlot.length; slot++) {
        for (const t of bySlot[slot]?.values ?? []) {
          let ip = parsed.get(t);
          if (ip === undefined) {
            ip = parseIp(t) ?? null;
            parsed.set(t, ip);
          }
          if (ip?.family === 4) v4.push(ip.value * 2 ** SLOT_BITS + slot);
          else if (ip?.family === 6) v6.push({ ip: ip.value, slot });
        }
      }
    }
    v6.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
    // Packing `address * 2^SLOT_BITS + slot` into one float lets a native typed-array sort order
    // the pairs; they are unpacked once here, never in the lookup.
    const packed = Float64Array.from(v4).sort();
    const addrs = new Uint32Array(packed.length);
    const slots = new Int32Array(packed.length);
    for (let i = 0; i < packed.length; i++) {
      const slot = packed[i]! % 2 ** SLOT_BITS;
      slots[i] = slot;
      addrs[i] = (packed[i]! - slot) / 2 ** SLOT_BITS;
    }
    this.addrTable = { v4: addrs, v4Slots: slots, v6 };
    return this.addrTable;
  }

  private cidrRange(cidr: Cidr, out: Bitset): void {
    const table = this.addressTable();
    if (cidr.family === 4) {
      const v = table.v4;
      const slots = table.v4Slots;
      const end = lowerBound(v, cidr.network + (~cidr.mask >>> 0) + 1);
      const words = out.words;
      for (let i = lowerBound(v, cidr.network); i < end; i++) {
        const s = slots[i]!;
        words[s >>> 5]! |= 1 << (s & 31);
      }
      return;
    }
    const hi = cidr.network | (~cidr.mask & ((1n << 128n) - 1n));
    const v = table.v6;
    let lo = 0;
    let top = v.length;
    while (lo < top) {
      const mid = (lo + top) >>> 1;
      if (v[mid]!.ip < cidr.network) lo = mid + 1;
      else top = mid;
    }
    for (let i = lo; i < v.length && v[i]!.ip <= hi; i++) out.add(v[i]!.slot);
  }

  /** ORs the slots holding a value token into `out`. */
  private orToken(p: Posting, token: string, out: Bitset): void {
    const set = p.values.get(token);
    if (set === undefined) return;
    if (typeof set === "number" || set.size < BITS_MIN) {
      addSlots(set, out);
      return;
    }
    let bits = p.bits.get(token);
    if (!bits || bits.size !== out.size) {
      bits = new Bitset(out.size);
      for (const s of set) bits.add(s);
      p.bits.set(token, bits);
    }
    out.orInPlace(bits);
  }

  /** Tests ids starting with `prefix` (binary search in the sorted ids), or all ids. */
  private scanIds(prefix: string, test: (id: string) => boolean, out: Bitset): void {
    const { ids, slots } = this.ordered();
    let lo = 0;
    if (prefix) {
      let hi = ids.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (ids[mid]! < prefix) lo = mid + 1;
        else hi = mid;
      }
    }
    for (let i = lo; i < ids.length; i++) {
      const id = ids[i]!;
      if (prefix && !id.startsWith(prefix)) break;
      if (test(id)) out.add(slots[i]!);
    }
  }

  private dataSplit(node: DataNode, path: string[], value: string, out: Bitset): void {
    const p = this.posting(node.source, path);
    if (node.op === ":") {
      if (!hasGlobChars(value)) {
        const t = value.toLowerCase();
        this.orToken(p, t, out);
        addSlots(p.keys.get(t), out);
        return;
      }
      const re = globToRegExp(value, true) as RegExp;
      for (const t of p.values.keys()) if (re.test(t)) this.orToken(p, t, out);
      for (const [t, set] of p.keys) if (re.test(t)) addSlots(set, out);
      return;
    }
    const test = comparator(node.op, value);
    if (node.op !== "!=") {
      for (const t of p.values.keys()) if (test(t)) this.orToken(p, t, out);
      return;
    }
    const equal = this.newSet();
    for (const [t, set] of p.values) if (test(t)) addSlots(set, equal);
    for (const s of p.comparable) if (!equal.has(s)) out.add(s);
  }

  private posting(source: DataSource, path: string[]): Posting {
    const key = `${source}\u0000${path.join("\u0000")}`;
    let p = this.postings.get(key);
    if (!p) {
      p = {
        source,
        path,
        values: new Map(),
        keys: new Map(),
        comparable: new Set(),
        bySlot: [],
        bits: new Map(),
        isAddress:
          source === "facts" && path.length === 1 && (IP_FACT_KEYS as readonly string[]).includes(path[0]!),
      };
      for (let s = 0; s < this.slots.length; s++) {
        const peel = this.slots[s];
        if (peel) this.reindex(p, s, peel);
      }
      this.postings.set(key, p);
    }
    return p;
  }

  private unindex(p: Posting, slot: number): void {
    const old = p.bySlot[slot];
    if (!old) return;
    for (const t of old.values) {
      deleteSlot(p.values, t, slot);
      if (p.bits.size > 0) p.bits.delete(t);
    }
    for (const t of old.keys) deleteSlot(p.keys, t, slot);
    p.comparable.delete(slot);
    p.bySlot[slot] = undefined;
    if (p.isAddress) this.addrTable = undefined;
  }

  private reindex(p: Posting, slot: number, peel: PeelView): void {
    const root = p.source === "facts" ? peel.facts : peel.settings;
    const tokens = valueTokens(p.source === "facts" ? factReading(root, p.path) : readPath(root, p.path));
    const old = p.bySlot[slot];
    // Most fact updates change little: leaving equal entries alone keeps the caches warm.
    if (old && sameTokens(old, tokens)) return;
    this.unindex(p, slot);
    if (tokens.values.length === 0 && tokens.keys.length === 0 && !tokens.comparable) return;
    for (const t of tokens.values) {
      addSlot(p.values, t, slot);
      if (p.bits.size > 0) p.bits.delete(t);
    }
    for (const t of tokens.keys) addSlot(p.keys, t, slot);
    if (tokens.comparable) p.comparable.add(slot);
    p.bySlot[slot] = tokens;
    if (p.isAddress) this.addrTable = undefined;
  }
}

/**
 * Settings on the master side.
 *
 * SettingsPublisher (the lease holder only): reads the operator's tree, cuts the secrets out,
 * publishes the sanitized files to `settings-files`, and seals each peel's secrets into
 * `secrets` `<peel>` for the curve key the peel published as its `curve_pub` fact. A peel is
 * re-sealed when its facts or the tree change, and only when what it should hold differs from
 * what the bucket holds.
 *
 * SettingsView (every master): follows the published tree and resolves each peel's settings
 * (placeholders kept, no secrets) into the TargetIndex, so `I@` targets see what peels see.
 */
import { createHash } from "node:crypto";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import { subjects } from "../bus/names.js";
import {
  deletePeelSecrets,
  type FetchedSettingsTree,
  fetchSettingsTree,
  publishSettingsTree,
  readSealedSecrets,
  type SettingsPublishResult,
} from "../settings/bus.js";
import { sealForPeel } from "../settings/crypto.js";
import { isCurvePublicKey } from "../settings/keys.js";
import type { PreparedSettings } from "../settings/pipeline.js";
import { peelSecretIds, resolveSettingsDetailed } from "../settings/resolve.js";
import { openExtractedSecrets, sanitizeSettingsTree } from "../settings/sanitize.js";
import { checkSecretTargets } from "../settings/secret-targets.js";
import { readSettingsTree } from "../settings/source.js";
import { errText } from "../util/errors.js";
import { isENOENT } from "../util/files.js";
import type { FleetView } from "./fleet-view.js";

export const SETTINGS_PUBLISH_SUBJECT = subjects.admin("settings.publish");
export const SETTINGS_PUBLISHER_LEASE = "settings-publisher";

export interface SettingsPublishSummary extends SettingsPublishResult {
  /** Peels whose sealed blob was (re)written by this call. */
  sealed: string[];
  /** False when the master has no curve key: settings went out, secrets did not. */
  secretsSealed: boolean;
}

function sameSecrets(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  return ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

export interface SettingsPublisherOptions {
  files: KV;
  secrets: KV;
  dir: string;
  masterId: string;
  /** Undefined: the master has no curve key, so it publishes settings but never seals secrets. */
  masterCurve: KeyPair | undefined;
  /** Where the missing key was looked for, for the log line. */
  masterCurvePath: string;
  fleet: FleetView;
  log: (msg: string) => void;
}

export class SettingsPublisher {
  private prepared: PreparedSettings | undefined;
  private fingerprint: string | undefined;
  /** Log lines already written, so an interval does not repeat the same complaint. */
  private readonly said = new Set<string>();

  constructor(private readonly o: SettingsPublisherOptions) {}

  private once(key: string, msg: string): void {
    if (this.said.has(key)) return;
    this.said.add(key);
    this.o.log(msg);
  }

  /** Reads and sanitizes the tree; opens its secrets when the master has its curve key. */
  private async prepare(): Promise<PreparedSettings> {
    let raw: Record<string, string>;
    try {
      raw = await readSettingsTree(this.o.dir);
      this.said.delete("missing-dir");
    } catch (err) {
      if (!isENOENT(err)) throw err;
      this.once("missing-dir", `settings dir ${this.o.dir} does not exist; publishing no settings`);
      raw = {};
    }
    const tree = sanitizeSettingsTree(raw);
    await checkSecretTargets(tree.files, tree.secrets);
    const n = Object.keys(tree.secrets).length;
    let plaintexts: Record<string, string> = {};
    if (n > 0 && this.o.masterCurve) plaintexts = openExtractedSecrets(this.o.masterCurve, tree.secrets);
    else if (n > 0) {
      this.once(
        "no-curve",
        `refusing to publish secrets: no master curve key at ${this.o.masterCurvePath} ` +
          `(create it with \`zester settings keygen\`); settings are published without the ${n} encrypted value(s)`,
      );
    }
    return { files: tree.files, secrets: tree.secrets, plaintexts };
  }

  /** Publishes the tree and re-seals every peel when the tree (or a secret) changed. */
  async publish(): Promise<SettingsPublishSummary> {
    const prepared = await this.prepare();
    const result = await publishSettingsTree(this.o.files, prepared.files, {
      master: this.o.masterId,
      log: this.o.log,
    });
    const empty = Object.keys(prepared.files).length === 0;
    const sealed: string[] = [];
    // An empty tree was not published, so there is nothing new to seal against.
    if (!empty) {
      const fp = createHash("sha256")
        .update(JSON.stringify([prepared.files, prepared.plaintexts]))
        .digest("hex");
      this.prepared = prepared;
      if (fp !== this.fingerprint) {
        for (const id of this.o.fleet.peels()) {
          const facts = this.o.fleet.index.get(id)?.facts;
          if (facts && (await this.sealPeel(id, facts))) sealed.push(id);
        }
        this.fingerprint = fp;
      }
    }
    if (sealed.length > 0) this.o.log(`sealed secrets for ${sealed.length} peel(s)`);
    return { ...result, sealed, secretsSealed: this.o.masterCurve !== undefined };
  }

  /**
   * Seals one peel's secrets when they differ from what the bucket holds for it. Returns whether
   * it wrote. Never throws: one peel's problem must not stop the others.
   */
  async sealPeel(id: string, facts: Readonly<Record<string, unknown>>): Promise<boolean> {
    const prepared = this.prepared;
    const curve = this.o.masterCurve;
    if (!prepared || !curve) return false;
    const pub = facts.curve_pub;
    try {
      const ids = await peelSecretIds({
        files: prepared.files,
        facts,
        peelId: id,
        secrets: prepared.secrets,
      });
      if (typeof pub !== "string" || !isCurvePublicKey(pub)) {
        if (ids.length > 0) {
          this.once(
            `no-pub:${id}`,
            `cannot seal secrets for ${id}: it has published no valid curve_pub fact (an older peel?)`,
          );
        }
        return false;
      }
      this.said.delete(`no-pub:${id}`);
      const wanted: Record<string, string> = {};
      for (const sid of ids) wanted[sid] = prepared.plaintexts[sid]!;
      const current = await readSealedSecrets(this.o.secrets, id, curve, pub);
      if (current !== undefined && sameSecrets(current, wanted)) return false;
      // No blob and nothing to deliver: leave it absent. Any other blob (stale key, other
      // master, other secrets) is replaced, or the peel would fail on a blob it cannot open.
      if (current === undefined && ids.length === 0) {
        const raw = await this.o.secrets.get(id);
        if (raw === null || raw.operation !== "PUT") return false;
      }
      await this.o.secrets.put(id, sealForPeel(curve, pub, wanted));
      this.said.delete(`seal:${id}`);
      return true;
    } catch (err) {
      this.once(`seal:${id}`, `cannot seal secrets for ${id}: ${errText(err)}`);
      return false;
    }
  }

  /** A peel left the fleet: its blob goes too. */
  async forgetPeel(id: string): Promise<void> {
    await deletePeelSecrets(this.o.secrets, id).catch((err: unknown) =>
      this.o.log(`cannot remove the secrets of ${id}: ${errText(err)}`),
    );
  }
}

/** Follows `settings-files` and keeps every peel's resolved settings in the TargetIndex. */
export class SettingsView {
  private tree: FetchedSettingsTree | undefined;
  private chain: Promise<void> = Promise.resolve();
  private stopWatch: (() => void) | undefined;
  private unlisten: (() => void) | undefined;
  private stopped = false;
  private readonly lastError = new Map<string, string>();

  constructor(
    private readonly kv: KV,
    private readonly fleet: FleetView,
    private readonly log: (msg: string) => void,
  ) {}

  /** The published revision the index reflects (0: none). */
  get rev(): number {
    return this.tree?.rev ?? 0;
  }

  /** Loads the published tree, resolves every known peel, then follows changes. */
  async start(): Promise<void> {
    this.unlisten = this.fleet.onFacts((id, facts) => {
      if (facts) this.enqueue(() => this.resolvePeel(id));
      else this.lastError.delete(id);
    });
    const w = await this.kv.watch({ key: "revision" });
    this.stopWatch = () => w.stop();
    void (async () => {
      for await (const e of w) {
        if (e.operation === "PUT") this.enqueue(() => this.refresh());
      }
    })().catch((err: unknown) => {
      if (!this.stopped) this.log(`settings revision watch ended: ${errText(err)}`);
    });
    this.enqueue(() => this.refresh());
    await this.idle();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unlisten?.();
    this.stopWatch?.();
    await this.chain;
  }

  /** Resolves once every queued resolution has run (tests, and callers that just published). */
  async idle(): Promise<void> {
    let last: Promise<void>;
    do {
      last = this.chain;
      await last;
    } while (last !== this.chain);
  }

  private enqueue(work: () => Promise<void>): void {
    this.chain = this.chain.then(async () => {
      if (this.stopped) return;
      try {
        await work();
      } catch (err) {
        this.log(`settings view: ${errText(err)}`);
      }
    });
  }

  /** Fetches the tree when it changed and re-resolves every peel. */
  private async refresh(): Promise<void> {
    const before = this.tree;
    let tree: FetchedSettingsTree;
    try {
      tree = await fetchSettingsTree(this.kv, before ? { previous: before } : {});
    } catch (err) {
      this.log(`cannot read published settings: ${errText(err)}; I@ targets keep the previous settings`);
      return;
    }
    if (before && tree === before) return;
    this.tree = tree;
    for (const id of this.fleet.peels()) await this.resolvePeel(id);
  }

  private async resolvePeel(id: string): Promise<void> {
    const files = this.tree?.files;
    if (!files) return;
    const view = this.fleet.index.get(id);
    if (!view) return;
    const facts = view.facts;
    let settings: Record<string, unknown>;
    try {
      settings = (await resolveSettingsDetailed({ files, facts, peelId: id, keepPlaceholders: true }))
        .settings;
      this.lastError.delete(id);
    } catch (err) {
      const msg = errText(err);
      if (this.lastError.get(id) !== msg) {
        this.log(`settings of ${id} do not resolve (I@ sees none for it): ${msg}`);
        this.lastError.set(id, msg);
      }
      settings = {};
    }
    // Newer facts arrived meanwhile: their own resolution is queued behind this one.
    if (this.fleet.index.get(id)?.facts !== facts) return;
    this.fleet.index.upsert(id, facts, settings);
  }
}

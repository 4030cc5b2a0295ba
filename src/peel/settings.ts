/**
 * The peel's settings: fetched from `settings-files` and its own `secrets` key before each state
 * run, resolved with its facts, and kept as a last-known-good snapshot for when the bus is away.
 *
 * Two kinds of failure are kept apart on purpose. The bus being unreachable is an outage: the
 * snapshot carries the peel through it, and the return says so. A tree or secret that does not
 * resolve (bad template, unopenable blob, altered manifest) is an error in what the master
 * published: the run fails with it, because enforcing with stale or empty values would hide it.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { KV } from "@nats-io/kv";
import type { KeyPair } from "@nats-io/nkeys";
import type { Facts } from "../facts/index.js";
import {
  type FetchedSettingsTree,
  fetchSettingsTree,
  getOwnSecrets,
  SettingsIntegrityError,
} from "../settings/bus.js";
import { NoSnapshotError } from "../settings/errors.js";
import { maskSecrets, secretMasker } from "../settings/placeholders.js";
import { loadSnapshot, saveSnapshot } from "../settings/snapshot.js";
import { errText } from "../util/errors.js";
import { isENOENT, writeFileAtomic } from "../util/files.js";

/** Where the settings of a run came from. */
export type SettingsSource = "bus" | "snapshot";

export interface RunSettings {
  settings: Record<string, unknown>;
  source: SettingsSource;
  /** Why the snapshot was used (bus unreachable, fetch failed), when it was. */
  warning?: string;
  /** settings-files revision they were resolved from (bus only). */
  rev?: number;
  /** When the snapshot was written (snapshot only). */
  savedAt?: string;
}

export interface SettingsBuckets {
  files: KV;
  secrets: KV;
}

export interface PeelSettingsOptions {
  peelId: string;
  cacheDir: string;
  curve: KeyPair;
  /** Trusted master curve public key(s); empty: any sealed secret fails to open, with that reason. */
  masterCurvePub: readonly string[];
  /** The open buckets, or undefined while the peel is not connected. */
  buckets: () => SettingsBuckets | undefined;
  facts: () => Promise<Facts>;
  /** A fetch slower than this counts as the bus being unreachable. */
  fetchTimeoutMs: number;
  /**
   * With no snapshot to fall back on, a failed fetch (a disconnect mid-request, JetStream still
   * electing a leader) is tried again until this much time has passed since the first try
   * (default 2 × fetchTimeoutMs): a short blip must not fail a peel's first run.
   */
  retryBudgetMs?: number;
}

/** Pause between fetch retries while there is no snapshot to fall back on. */
const FETCH_RETRY_PAUSE_MS = 250;

/** Opened secret plaintexts of the snapshot, kept beside it (0600) so output stays masked offline. */
export const SNAPSHOT_SECRETS_FILE = "settings-secrets.json";

export class PeelSettings {
  private tree: FetchedSettingsTree | undefined;
  private last: RunSettings | undefined;
  /** Every plaintext this peel opened (current and earlier): masking a rotated secret still matters. */
  private readonly plaintexts = new Set<string>();
  private mask: (s: string) => string = (s) => s;
  private inflight: Promise<RunSettings> | undefined;
  private background: Promise<void> | undefined;
  private savedJson: string | undefined;

  constructor(private readonly opts: PeelSettingsOptions) {}

  /** Loads the snapshot's secrets so masking works before the first resolution. */
  async init(): Promise<void> {
    this.remember(await this.readSnapshotSecrets());
  }

  /** Replaces every known secret plaintext with `****` in a string or a plain data structure. */
  masked<T>(value: T): T {
    if (this.plaintexts.size === 0) return value;
    return maskSecrets(value, this.plaintexts);
  }

  maskText(s: string): string {
    return this.mask(s);
  }

  /** The settings of the latest resolution, without fetching (snapshot or `{}` when none). */
  async lastKnown(): Promise<Record<string, unknown>> {
    if (this.last) return this.last.settings;
    try {
      return (await loadSnapshot(this.opts.cacheDir)).settings;
    } catch {
      return {};
    }
  }

  /**
   * Fresh settings for a run. Concurrent callers share one resolution. Throws the resolution
   * error (SettingsError, SecretError, SettingsIntegrityError), or, when the bus is unreachable
   * and no snapshot exists, an Error saying both.
   */
  resolve(): Promise<RunSettings> {
    // A run never takes a background resolution's answer: that one may have started before the
    // master sealed the new secrets of the revision that triggered it. It waits and fetches anew.
    this.inflight ??= (async () => {
      await this.background?.catch(() => {});
      return this.resolveOnce();
    })().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /**
   * A resolution for the parts that follow settings between runs (beacons, basket): never shared
   * with a run's, and never at the same time as one (both save the snapshot).
   */
  resolveInBackground(): Promise<RunSettings> {
    const p = (async () => {
      await this.inflight?.catch(() => {});
      return this.resolveOnce();
    })();
    const settled = p.then(
      () => {},
      () => {},
    );
    this.background = settled;
    void settled.then(() => {
      if (this.background === settled) this.background = undefined;
    });
    return p;
  }

  private async resolveOnce(): Promise<RunSettings> {
    const deadline = Date.now() + (this.opts.retryBudgetMs ?? 2 * this.opts.fetchTimeoutMs);
    // Only a fetch that started connected is retried: a peel that is offline answers at once.
    const connected = this.opts.buckets() !== undefined;
    for (;;) {
      const fetched = await this.fetch();
      if ("tree" in fetched) return this.resolveFetched(fetched.tree, fetched.blob);
      try {
        return await this.fromSnapshot(fetched.reason);
      } catch (err) {
        if (!(err instanceof NoSnapshotError) || !connected || Date.now() >= deadline) throw err;
      }
      await new Promise((r) => setTimeout(r, FETCH_RETRY_PAUSE_MS));
    }
  }

  private async fetch(): Promise<
    { tree: FetchedSettingsTree; blob: string | undefined } | { reason: string }
  > {
    const buckets = this.opts.buckets();
    if (!buckets) return { reason: "not connected to NATS" };
    try {
      const [tree, blob] = await withTimeout(
        Promise.all([
          fetchSettingsTree(buckets.files, this.tree ? { previous: this.tree } : {}),
          getOwnSecrets(buckets.secrets, this.opts.peelId),
        ]),
        this.opts.fetchTimeoutMs,
        `fetching settings took longer than ${this.opts.fetchTimeoutMs} ms`,
      );
      return { tree, blob };
    } catch (err) {
      if (err instanceof SettingsIntegrityError) throw err;
      return { reason: `cannot fetch settings: ${errText(err)}` };
    }
  }

  private async resolveFetched(tree: FetchedSettingsTree, blob: string | undefined): Promise<RunSettings> {
    this.tree = tree;
    // The resolver pulls in the YAML parser, templates and targeting: loaded at the first run,
    // not by an idle peel.
    const { resolvePeelSettings } = await import("../settings/pipeline.js");
    const res = await resolvePeelSettings({
      files: tree.files,
      facts: await this.opts.facts(),
      peelId: this.opts.peelId,
      peelCurve: this.opts.curve,
      masterCurvePub: this.opts.masterCurvePub,
      ...(blob !== undefined ? { blob } : {}),
    });
    const secrets = Object.values(res.secrets);
    this.remember(secrets);
    await this.save(res.settings, secrets);
    this.last = { settings: res.settings, source: "bus", rev: tree.rev };
    return this.last;
  }

  private async fromSnapshot(reason: string): Promise<RunSettings> {
    let snap: Awaited<ReturnType<typeof loadSnapshot>>;
    try {
      snap = await loadSnapshot(this.opts.cacheDir);
    } catch (err) {
      if (err instanceof NoSnapshotError) throw new NoSnapshotError(`${reason}, and ${err.message}`);
      throw new Error(`${reason}, and the settings snapshot cannot be used: ${errText(err)}`);
    }
    this.remember(await this.readSnapshotSecrets());
    return {
      settings: snap.settings,
      source: "snapshot",
      warning: `${reason}; using the last-known-good settings saved at ${snap.savedAt}`,
      savedAt: snap.savedAt,
    };
  }

  private remember(values: Iterable<string>): void {
    let added = false;
    for (const v of values) {
      if (v === "" || this.plaintexts.has(v)) continue;
      this.plaintexts.add(v);
      added = true;
    }
    if (added) this.mask = secretMasker(this.plaintexts);
  }

  private async save(settings: Record<string, unknown>, secrets: string[]): Promise<void> {
    const json = JSON.stringify([settings, secrets]);
    if (json === this.savedJson) return;
    // Secrets first: a snapshot must never exist without what masks its values.
    await writeFileAtomic(
      join(this.opts.cacheDir, SNAPSHOT_SECRETS_FILE),
      `${JSON.stringify({ v: 1, secrets })}\n`,
      { mode: 0o600 },
    );
    await saveSnapshot(this.opts.cacheDir, settings);
    this.savedJson = json;
  }

  private async readSnapshotSecrets(): Promise<string[]> {
    let text: string;
    try {
      text = await readFile(join(this.opts.cacheDir, SNAPSHOT_SECRETS_FILE), "utf8");
    } catch (err) {
      if (isENOENT(err)) return [];
      throw err;
    }
    try {
      const data = JSON.parse(text) as { secrets?: unknown };
      return Array.isArray(data.secrets)
        ? data.secrets.filter((s): s is string => typeof s === "string")
        : [];
    } catch {
      return [];
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  // The losing fetch may still reject later; nobody waits for it.
  p.catch(() => {});
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

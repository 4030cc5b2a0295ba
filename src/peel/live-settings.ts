/**
 * Settings that take effect without a state run: the parts of a peel configured by settings
 * (basket functions, beacons) follow the published tree as soon as a new settings revision
 * appears, and start from the last-known-good snapshot, so they run offline after a restart too.
 */
import type { KV } from "@nats-io/kv";
import { REVISION_KEY } from "../bus/file-tree.js";
import { errText } from "../util/errors.js";
import type { PeelLogger } from "./peel.js";
import type { RunSettings } from "./settings.js";

export type SettingsListener = (settings: Record<string, unknown>) => void;

export interface LiveSettingsOptions {
  /** Fresh resolution (bus, or snapshot while it is away). */
  resolve: () => Promise<RunSettings>;
  /** The latest settings without fetching (snapshot after a restart, `{}` when none). */
  lastKnown: () => Promise<Record<string, unknown>>;
  log: PeelLogger;
}

export class LiveSettings {
  private readonly listeners: SettingsListener[] = [];
  private current: string | undefined;
  private stopWatch: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly opts: LiveSettingsOptions) {}

  onChange(l: SettingsListener): void {
    this.listeners.push(l);
  }

  /** Hands the last-known settings to the listeners (at start, before any connection). */
  async init(): Promise<void> {
    this.deliver(await this.opts.lastKnown());
  }

  /** Watches the settings revision on a (re)connection; every new revision is resolved and delivered. */
  async watch(files: KV): Promise<void> {
    this.stopWatch?.();
    const w = await files.watch({ key: REVISION_KEY });
    this.stopWatch = () => w.stop();
    void (async () => {
      for await (const e of w) if (e.operation === "PUT") this.refresh();
    })().catch((err: unknown) => this.opts.log.warn(`settings revision watch ended: ${errText(err)}`));
  }

  /** Resolves now and delivers what changed; resolutions run one at a time. */
  refresh(): Promise<void> {
    this.chain = this.chain.then(async () => {
      try {
        this.deliver((await this.opts.resolve()).settings);
      } catch (err) {
        // A tree that does not resolve keeps what runs now running: the last good settings stay.
        this.opts.log.warn(
          `settings did not resolve, beacons and basket keep the previous ones: ${errText(err)}`,
        );
      }
    });
    return this.chain;
  }

  stop(): void {
    this.stopWatch?.();
    this.stopWatch = undefined;
  }

  idle(): Promise<void> {
    return this.chain;
  }

  private deliver(settings: Record<string, unknown>): void {
    const json = JSON.stringify(settings);
    if (json === this.current) return;
    this.current = json;
    for (const l of this.listeners) {
      try {
        l(settings);
      } catch (err) {
        this.opts.log.error(`applying new settings failed: ${errText(err)}`);
      }
    }
  }
}

/**
 * The basket as one peel runs it: a publisher fed by the peel's live settings, and the reader
 * its templates and `basket.get` calls use.
 */
import type { KV } from "@nats-io/kv";
import type { BasketReader } from "../../modules/basket.js";
import type { ModuleContext } from "../../modules/types.js";
import type { PeelLogger } from "../peel.js";
import { basketConfig } from "./config.js";
import { BasketPublisher } from "./publisher.js";

export interface PeelBasketOptions {
  peel: string;
  log: PeelLogger;
  /** A module context for measuring (this peel's facts and latest settings). */
  context: () => Promise<ModuleContext>;
  /** basket and facts buckets while connected. */
  buckets: () => { basket: KV; facts: KV } | undefined;
  onWrite?: (fn: string) => void;
}

export class PeelBasket {
  readonly publisher: BasketPublisher;
  readonly reader: BasketReader;

  constructor(opts: PeelBasketOptions) {
    // Targeting and the module registry load at the first use, not in every idle peel.
    this.reader = {
      get: async (target, fn) => {
        const kv = opts.buckets();
        if (!kv) throw new Error("basket.get: not connected to NATS (the basket is read from the bus)");
        return (await import("./reader.js")).basketRows(kv, target, fn);
      },
    };
    this.publisher = new BasketPublisher({
      peel: opts.peel,
      log: opts.log,
      bucket: () => opts.buckets()?.basket,
      measure: async (spec) =>
        (await import("../../modules/basket.js")).measureBasketFunction(spec, await opts.context()),
      ...(opts.onWrite ? { onWrite: opts.onWrite } : {}),
    });
  }

  configure(settings: Record<string, unknown>): void {
    this.publisher.configure(basketConfig(settings));
  }

  onConnected(): void {
    this.publisher.onConnected();
  }

  stop(): Promise<void> {
    return this.publisher.stop();
  }
}

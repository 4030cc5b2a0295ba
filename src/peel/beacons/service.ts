/**
 * `service`: running-state of named services. With `onchangeonly` an event only when a service
 * starts or stops (and, with `emitatstartup`, the first state seen); without it, one event per
 * service every interval. Data: `{service, running, previous}` (`previous` null at first sight).
 */
import { serviceBackend } from "../../modules/service.js";
import { suggestion } from "../../util/suggest.js";
import { type BeaconData, type BeaconModule, boolOption, isMapping } from "./types.js";

const SERVICE_KEYS = ["onchangeonly", "emitatstartup"] as const;

interface Watched {
  name: string;
  onchangeonly: boolean;
  emitatstartup: boolean;
  last: boolean | undefined;
}

export const beacon: BeaconModule = {
  doc: "Running-state of services: `services: {nginx: {onchangeonly: true}}`; data {service, running, previous}.",
  keys: ["services"],
  create(options, ctx) {
    const raw = options.services;
    if (!isMapping(raw) || Object.keys(raw).length === 0)
      throw new Error("services must be a mapping of service names to options ({} for none)");
    const watched: Watched[] = Object.entries(raw).map(([name, o]) => {
      const opts = o === null || o === undefined ? {} : o;
      if (!isMapping(opts)) throw new Error(`services.${name} must be a mapping`);
      for (const k of Object.keys(opts)) {
        if (!(SERVICE_KEYS as readonly string[]).includes(k))
          throw new Error(`services.${name}: unknown option "${k}"${suggestion(k, SERVICE_KEYS)}`);
      }
      return {
        name,
        onchangeonly: boolOption(opts.onchangeonly, `services.${name}.onchangeonly`, false),
        emitatstartup: boolOption(opts.emitatstartup, `services.${name}.emitatstartup`, true),
        last: undefined,
      };
    });
    return {
      async poll() {
        const backend = await serviceBackend({ facts: await ctx.facts() });
        const out: BeaconData[] = [];
        for (const w of watched) {
          const running = await backend.running(w.name);
          const previous = w.last;
          w.last = running;
          const first = previous === undefined;
          if (w.onchangeonly && (first ? !w.emitatstartup : previous === running)) continue;
          out.push({ service: w.name, running, previous: previous ?? null });
        }
        return out;
      },
    };
  },
};

/**
 * Crontabs, per user: the whole crontab text (or none). Restoring installs the previous text
 * with `crontab -u USER -`, or removes a crontab the run created.
 */
import { createHash } from "node:crypto";
import { unifiedDiff } from "../../modules/diff.js";
import { checkRun, unchanged } from "../../modules/support.js";
import type { Plan } from "../../modules/types.js";
import { run } from "../../util/exec.js";
import type { Observed, PreImage } from "../record.js";
import type { RevertKind } from "./kind.js";

/** The crontab text, or undefined when the user has none. */
async function readCrontab(user: string): Promise<string | undefined> {
  const res = await run(["crontab", "-l", "-u", user]);
  if (res.retcode === 0) return res.stdout;
  if (/no crontab for/i.test(res.stderr)) return undefined;
  checkRun(`crontab -l -u ${user}`, res);
  return undefined;
}

const state = (text: string | undefined): Observed =>
  text === undefined ? { crontab: null } : { crontab: createHash("sha256").update(text).digest("hex") };

async function restoreCrontab(user: string, pre: PreImage): Promise<Plan> {
  const want = (pre.data as { text?: string } | undefined)?.text;
  const now = await readCrontab(user);
  if (now === want) return unchanged(`Crontab of ${user} is as before the run`);
  return {
    changes: { user, crontab: want === undefined ? "removed" : "restored" },
    comment:
      want === undefined
        ? `Crontab of ${user} removed (the run created it)`
        : `Crontab of ${user} restored as before the run`,
    diff: unifiedDiff(now ?? "", want ?? "", `crontab of ${user}`, `crontab of ${user}`),
    apply: async () => {
      if (want === undefined) checkRun(`crontab -r -u ${user}`, await run(["crontab", "-r", "-u", user]));
      else checkRun(`crontab -u ${user} -`, await run(["crontab", "-u", user, "-"], { input: want }));
      return undefined;
    },
  };
}

export const crontabKind: RevertKind = {
  observe: async (ref) => state(await readCrontab(ref.key)),
  async capture(ref) {
    const text = await readCrontab(ref.key);
    return text === undefined ? { state: state(text) } : { state: state(text), data: { text } };
  },
  restore: (ref, pre) => restoreCrontab(ref.key, pre),
};

/**
 * The `locale` family: generated locales (Debian's locale-gen).
 *
 * plan() asks `locale -a` what is available and reads /etc/locale.gen once. A missing locale is
 * enabled in /etc/locale.gen (uncommented, or added from /usr/share/i18n/SUPPORTED) and apply()
 * runs `locale-gen --keep-existing`, then checks the locale really became available.
 */
import { run } from "../util/exec.js";
import { unifiedDiff } from "./diff.js";
import {
  applying,
  checkRun,
  guard,
  joinText,
  readTextOrUndefined,
  replaceFile,
  reqStr,
  requireTool,
  StateError,
  splitText,
  unchanged,
  withRevertDocs,
} from "./support.js";
import type { ExecFunction, ModuleFamily, Params, Plan, StateFunction } from "./types.js";

const LOCALE_GEN = "/etc/locale.gen";
const SUPPORTED = "/usr/share/i18n/SUPPORTED";

/** glibc's spelling of a locale name: `en_US.UTF-8` and `en_US.utf8` are the same locale. */
export function normalizeLocale(name: string): string {
  const m = /^([^.@]+)(?:\.([^@]+))?(@.+)?$/.exec(name);
  if (!m) return name;
  const codeset = m[2] ? `.${m[2].toLowerCase().replace(/[^a-z0-9]/g, "")}` : "";
  return `${m[1]}${codeset}${m[3] ?? ""}`;
}

async function availableLocales(): Promise<string[]> {
  const res = await run(["locale", "-a"]).catch(() => undefined);
  if (!res) throw new StateError("the locale command is not installed; cannot list available locales");
  checkRun("locale -a", res);
  return res.stdout.split("\n").filter((l) => l !== "");
}

/** The locale.gen entry `<name> <charset>` for a locale, from a commented or live line. */
function findEntry(lines: readonly string[], name: string, commented: boolean): number {
  const want = normalizeLocale(name);
  return lines.findIndex((l) => {
    const m = (commented ? /^#\s*(\S+)\s+(\S+)\s*$/ : /^\s*([^#\s]\S*)\s+(\S+)\s*$/).exec(l);
    return m !== null && normalizeLocale(m[1]!) === want;
  });
}

async function planPresent(params: Params): Promise<Plan> {
  // Salt on Debian also takes the locale.gen / SUPPORTED form, "en_US.UTF-8 UTF-8": the locale is
  // its first word (Salt would compare the whole and regenerate on every run).
  const entry = reqStr(params, "name").trim();
  const m = /^([A-Za-z0-9_][A-Za-z0-9_.@-]*)(?:\s+([A-Z0-9_-]*[0-9-][A-Z0-9_-]*))?$/.exec(entry);
  if (!m) throw new StateError(`"${entry}" is not a locale name (expected e.g. en_US.UTF-8)`);
  const name = m[1]!;
  const available = (await availableLocales()).map(normalizeLocale);
  if (available.includes(normalizeLocale(name))) return unchanged(`Locale ${name} is already available`);
  await requireTool("locale-gen", `generate the locale ${name}`);

  const before = (await readTextOrUndefined(LOCALE_GEN)) ?? "";
  const text = splitText(before);
  let after: string | undefined;
  if (findEntry(text.lines, name, false) < 0) {
    const commented = findEntry(text.lines, name, true);
    if (commented >= 0) {
      const lines = [...text.lines];
      lines[commented] = lines[commented]!.replace(/^#\s*/, "");
      after = joinText({ lines, eol: text.eol });
    } else {
      const supported = splitText((await readTextOrUndefined(SUPPORTED)) ?? "").lines;
      const entry = supported[findEntry(supported, name, false)];
      if (entry === undefined) {
        throw new StateError(
          `Locale ${name} is not supported on this machine (it is not listed in ${SUPPORTED})`,
        );
      }
      after = joinText({ lines: [...text.lines, entry.trim()], eol: true });
    }
  }
  const changes: Record<string, unknown> = { locale: name, generated: true };
  if (after !== undefined) changes.locale_gen = LOCALE_GEN;
  const plan: Plan = {
    changes,
    comment: `Locale ${name} would be generated`,
    undo: { cannot: "the locales locale-gen compiled are not kept" },
    apply: applying(async () => {
      if (after !== undefined) await replaceFile(LOCALE_GEN, after);
      const res = await run(["locale-gen", "--keep-existing"]);
      checkRun("locale-gen", res);
      if (!(await availableLocales()).map(normalizeLocale).includes(normalizeLocale(name))) {
        return {
          result: false,
          comment: `locale-gen ran but ${name} is still not available: ${res.stdout.trim().replace(/\s+/g, " ")}`,
        };
      }
      return { comment: `Locale ${name} generated` };
    }),
  };
  if (after !== undefined) plan.diff = unifiedDiff(before, after, LOCALE_GEN, LOCALE_GEN);
  return plan;
}

/** Debian's system locale file (what update-locale and localectl write). */
const DEFAULT_LOCALE = "/etc/default/locale";
const LANG_RE = /^\s*LANG=(.*)$/;

function unquote(v: string): string {
  const t = v.trim();
  return /^(["']).*\1$/.test(t) ? t.slice(1, -1) : t;
}

/** The system LANG, or "" when it is not set (Salt's locale.get_locale). */
async function systemLang(file: string): Promise<string> {
  const text = (await readTextOrUndefined(file)) ?? "";
  for (const l of splitText(text).lines) {
    const m = LANG_RE.exec(l);
    if (m) return unquote(m[1]!);
  }
  return "";
}

/**
 * Salt's locale.system on Debian: the LANG line of /etc/default/locale is replaced (or added), as
 * update-locale does; the rest of the file (LC_* lines, comments) is kept.
 */
async function planSystem(params: Params): Promise<Plan> {
  const name = reqStr(params, "name");
  if (!/^[A-Za-z0-9_][A-Za-z0-9_.@-]*$/.test(name)) {
    throw new StateError(`"${name}" is not a locale name (expected e.g. en_US.UTF-8)`);
  }
  const file = DEFAULT_LOCALE;
  const current = await systemLang(file);
  if (current === name) return unchanged(`System locale ${name} already set`);
  const before = (await readTextOrUndefined(file)) ?? "";
  const text = splitText(before);
  const lines = [...text.lines];
  const at = lines.findIndex((l) => LANG_RE.test(l));
  let after: string;
  if (at >= 0) {
    lines[at] = `LANG=${name}`;
    after = joinText({ lines, eol: text.eol });
  } else after = joinText({ lines: [...lines, `LANG=${name}`], eol: true });
  return {
    changes: { locale: name },
    comment: `System locale ${name} needs to be set`,
    diff: unifiedDiff(before, after, file, file),
    undo: { refs: [{ kind: "file", key: file }] },
    apply: applying(async () => {
      await replaceFile(file, after);
      return { comment: `Set system locale ${name}` };
    }),
  };
}

const system: StateFunction = {
  doc:
    "Sets the system default locale (LANG in /etc/default/locale, as update-locale and localectl " +
    "write it on Debian). The locale should be generated first (locale.present).",
  primary: "name",
  footprint: () => ({ writes: [DEFAULT_LOCALE] }),
  params: {
    name: { type: "string", doc: "Locale name, e.g. en_US.UTF-8.", required: true, aliases: ["locale"] },
  },
  plan: (params) => guard(() => planSystem(params)),
};

const present: StateFunction = {
  doc:
    "Ensures a locale is generated and available: enables it in /etc/locale.gen and runs locale-gen " +
    "(Debian and Ubuntu). Fails when locale-gen is missing or the locale is not supported.",
  primary: "name",
  footprint: () => ({ writes: ["locale", "/etc/locale.gen", "/usr/lib/locale"] }),
  params: {
    name: { type: "string", doc: "Locale name, e.g. en_US.UTF-8.", required: true, aliases: ["locale"] },
  },
  plan: (params) => guard(() => planPresent(params)),
};

const exec: Record<string, ExecFunction> = {
  avail: {
    doc: "Returns true when a locale is available (generated) on this machine.",
    params: { name: { type: "string", doc: "Locale name, e.g. en_US.UTF-8.", required: true } },
    positional: ["name"],
    readOnly: true,
    run: async (params) =>
      (await availableLocales()).map(normalizeLocale).includes(normalizeLocale(String(params.name))),
  },
  get_locale: {
    doc: "Returns the system default locale (LANG in /etc/default/locale), or an empty string.",
    params: {},
    readOnly: true,
    run: () => systemLang(DEFAULT_LOCALE),
  },
  list_avail: {
    doc: "Returns the locales available on this machine (`locale -a`).",
    params: {},
    readOnly: true,
    run: () => availableLocales(),
  },
};

export const family: ModuleFamily = {
  name: "locale",
  doc: "Generated locales.",
  states: withRevertDocs(
    { present, system },
    {
      present: "cannot be reverted: the locales locale-gen compiled are not kept.",
      system: "Restores the previous bytes of the system locale file (/etc/default/locale).",
    },
  ),
  exec,
};

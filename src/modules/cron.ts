/**
 * The `cron` family: entries and environment lines in a user's crontab.
 *
 * plan() reads the crontab once (`crontab -l -u USER`), computes the complete new crontab text by
 * editing only the lines this state owns, and apply() installs exactly that text through
 * `crontab -u USER -`. Every other line stays byte for byte.
 *
 * A managed entry may carry a marker comment on the line above it,
 * `# <comment> ZESTER_CRON_IDENTIFIER:<identifier>`, so an entry can be found again after its
 * command or schedule changed (Salt's SALT_CRON_IDENTIFIER).
 */
import { run } from "../util/exec.js";
import { unifiedDiff } from "./diff.js";
import {
  applying,
  bool,
  checkRun,
  ensureNewline,
  guard,
  joinText,
  reqStr,
  requireTool,
  StateError,
  splitText,
  str,
  type TextLines,
  unchanged,
  withRevertDocs,
} from "./support.js";
import { readAccounts } from "./system/accounts.js";
import type { ExecFunction, ModuleFamily, ParamSpec, Params, Plan, StateFunction } from "./types.js";

export const CRON_MARKER = "ZESTER_CRON_IDENTIFIER:";
/** The identifier written when a comment is given without an identifier. */
const NO_ID = "NO ID SET";

const SPECIALS = ["@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

const MARKER_RE = new RegExp(`^#\\s*(.*?)\\s*${CRON_MARKER}(.*)$`);
const ENV_RE = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/;
const SPECIAL_RE = /^\s*(@[a-z]+)\s+(.*)$/;
const JOB_RE = /^\s*([^\s#]\S*)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*)$/;

/** A job line of the crontab, with the marker line above it if there is one. */
interface Job {
  index: number;
  markerIndex?: number;
  identifier?: string;
  command: string;
}

function jobCommand(line: string): string | undefined {
  if (ENV_RE.test(line)) return undefined;
  const special = SPECIAL_RE.exec(line);
  if (special) return special[2]!;
  const job = JOB_RE.exec(line);
  return job ? job[6]! : undefined;
}

/** Salt's prefix of a job that is kept in the crontab but switched off (`commented: true`). */
const DISABLED = "#DISABLED#";

export function parseJobs(lines: readonly string[]): Job[] {
  const jobs: Job[] = [];
  lines.forEach((line, index) => {
    const command = jobCommand(line.startsWith(DISABLED) ? line.slice(DISABLED.length) : line);
    if (command === undefined) return;
    const job: Job = { index, command };
    const marker = index > 0 ? MARKER_RE.exec(lines[index - 1]!) : null;
    if (marker) {
      job.markerIndex = index - 1;
      const id = marker[2]!.trim();
      if (id !== NO_ID) job.identifier = id;
    }
    jobs.push(job);
  });
  return jobs;
}

/** The crontab of a user as text; a user without a crontab has an empty one. */
async function readCrontab(user: string): Promise<string> {
  await requireTool("crontab", "manage crontabs");
  const res = await run(["crontab", "-l", "-u", user]);
  if (res.retcode === 0) return res.stdout;
  if (/no crontab for/i.test(res.stderr)) return "";
  checkRun(`crontab -l -u ${user}`, res);
  return "";
}

async function checkUser(params: Params): Promise<string> {
  const user = reqStr(params, "user");
  if (!(await readAccounts()).users.has(user)) throw new StateError(`user "${user}" does not exist`);
  return user;
}

/** Installs a crontab; cron refuses a last line without a newline, so one is added. */
async function writeCrontab(user: string, text: string): Promise<void> {
  checkRun(`crontab -u ${user} -`, await run(["crontab", "-u", user, "-"], { input: ensureNewline(text) }));
}

/** The plan for replacing the crontab `before` with `after`. */
function crontabPlan(
  user: string,
  before: string,
  after: TextLines,
  changes: Record<string, unknown>,
  what: string,
): Plan {
  const text = joinText(after);
  if (text === before) return unchanged(`${what} is already in the crontab of ${user}`);
  return {
    changes: { user, ...changes },
    comment: `Crontab of ${user} would be updated: ${what}`,
    diff: unifiedDiff(before, text, `crontab of ${user}`, `crontab of ${user}`),
    undo: { refs: [{ kind: "crontab", key: user }] },
    apply: applying(async () => {
      await writeCrontab(user, text);
      return { comment: `Crontab of ${user} updated: ${what}` };
    }),
  };
}

function cronField(params: Params, key: string): string {
  const v = str(params, key) ?? "*";
  if (!/^[0-9A-Za-z*/,?LW#-]+$/.test(v)) {
    throw new StateError(`${key}: ${JSON.stringify(v)} is not a valid cron time field`);
  }
  return v;
}

function commandParam(params: Params): string {
  const cmd = reqStr(params, "name");
  if (/[\r\n]/.test(cmd)) throw new StateError("name (the command) must be a single line");
  if (cmd.trim() !== cmd) throw new StateError("name (the command) must not start or end with whitespace");
  return cmd;
}

function identifierParam(params: Params): string | undefined {
  const id = str(params, "identifier");
  if (id === undefined || id === "") return undefined;
  if (/[\r\n]/.test(id) || id.trim() !== id) throw new StateError("identifier must be a single trimmed line");
  return id;
}

/** Finds the entries a state owns: by identifier when given, else un-identified jobs with the command. */
function matching(jobs: readonly Job[], command: string, identifier: string | undefined): Job[] {
  if (identifier !== undefined) {
    const byId = jobs.filter((j) => j.identifier === identifier);
    if (byId.length > 0) return byId;
  }
  return jobs.filter((j) => j.identifier === undefined && j.command === command);
}

function removeJobs(lines: readonly string[], jobs: readonly Job[]): string[] {
  const drop = new Set<number>();
  for (const j of jobs) {
    drop.add(j.index);
    if (j.markerIndex !== undefined) drop.add(j.markerIndex);
  }
  return lines.filter((_, i) => !drop.has(i));
}

async function planPresent(params: Params): Promise<Plan> {
  const command = commandParam(params);
  const identifier = identifierParam(params);
  const special = str(params, "special");
  if (special !== undefined && !SPECIALS.includes(special)) {
    throw new StateError(`special must be one of ${SPECIALS.join(", ")}, got ${JSON.stringify(special)}`);
  }
  const comment = str(params, "comment");
  if (comment !== undefined && /[\r\n]/.test(comment)) throw new StateError("comment must be a single line");
  const schedule =
    special ?? ["minute", "hour", "daymonth", "month", "dayweek"].map((k) => cronField(params, k)).join(" ");
  const jobLine = `${bool(params, "commented", false) ? DISABLED : ""}${schedule} ${command}`;
  const want: string[] = [];
  if (identifier !== undefined || comment) {
    want.push(`# ${comment ? `${comment} ` : ""}${CRON_MARKER}${identifier ?? NO_ID}`);
  }
  want.push(jobLine);

  const user = await checkUser(params);
  const before = await readCrontab(user);
  const text = splitText(before);
  const found = matching(parseJobs(text.lines), command, identifier);
  let after: TextLines;
  if (found.length === 0) {
    after = { lines: [...text.lines, ...want], eol: true };
    return crontabPlan(user, before, after, { added: jobLine }, `"${jobLine}" added`);
  }
  // The first match is rewritten where it stands; duplicates of it are dropped.
  const first = found[0]!;
  const start = first.markerIndex ?? first.index;
  const lines = [...text.lines];
  lines.splice(start, first.index - start + 1, ...want);
  const shift = want.length - (first.index - start + 1);
  const rest = found.slice(1).map((j) => ({
    ...j,
    index: j.index + shift,
    ...(j.markerIndex !== undefined ? { markerIndex: j.markerIndex + shift } : {}),
  }));
  after = { lines: removeJobs(lines, rest), eol: text.eol };
  const changes: Record<string, unknown> = { old: text.lines[first.index], new: jobLine };
  return crontabPlan(user, before, after, changes, `"${jobLine}"`);
}

async function planAbsent(params: Params): Promise<Plan> {
  const command = commandParam(params);
  const identifier = identifierParam(params);
  const user = await checkUser(params);
  const before = await readCrontab(user);
  const text = splitText(before);
  const found = matching(parseJobs(text.lines), command, identifier);
  if (found.length === 0) return unchanged(`"${command}" is not in the crontab of ${user}`);
  const after = { lines: removeJobs(text.lines, found), eol: text.eol };
  return crontabPlan(
    user,
    before,
    after,
    { removed: found.map((j) => text.lines[j.index]) },
    `"${command}" removed`,
  );
}

function envName(params: Params): string {
  const name = reqStr(params, "name");
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new StateError(`"${name}" is not a valid environment variable name`);
  }
  return name;
}

function envLines(lines: readonly string[], name: string): number[] {
  const out: number[] = [];
  lines.forEach((l, i) => {
    if (ENV_RE.exec(l)?.[1] === name) out.push(i);
  });
  return out;
}

async function planEnvPresent(params: Params): Promise<Plan> {
  const name = envName(params);
  const value = str(params, "value");
  if (value === undefined) throw new StateError("value is required");
  if (/[\r\n]/.test(value)) throw new StateError("value must be a single line");
  // cron reads a bare `NAME=` as a broken job line; an empty value must be quoted.
  const want = `${name}=${value === "" ? '""' : value}`;
  const user = await checkUser(params);
  const before = await readCrontab(user);
  const text = splitText(before);
  const existing = envLines(text.lines, name);
  const lines = [...text.lines];
  const changes: Record<string, unknown> = { [name]: value };
  if (existing.length > 0) {
    const first = existing[0]!;
    if (lines[first] !== want) changes.old = lines[first];
    lines[first] = want;
    const drop = new Set(existing.slice(1));
    return crontabPlan(
      user,
      before,
      { lines: lines.filter((_, i) => !drop.has(i)), eol: text.eol },
      changes,
      want,
    );
  }
  // A variable applies to the jobs below it, so it goes above the first job (and its marker).
  const firstJob = parseJobs(lines)[0];
  const at = firstJob ? (firstJob.markerIndex ?? firstJob.index) : lines.length;
  lines.splice(at, 0, want);
  return crontabPlan(user, before, { lines, eol: at === text.lines.length ? true : text.eol }, changes, want);
}

async function planEnvAbsent(params: Params): Promise<Plan> {
  const name = envName(params);
  const user = await checkUser(params);
  const before = await readCrontab(user);
  const text = splitText(before);
  const existing = new Set(envLines(text.lines, name));
  if (existing.size === 0) return unchanged(`${name} is not set in the crontab of ${user}`);
  const after = { lines: text.lines.filter((_, i) => !existing.has(i)), eol: text.eol };
  return crontabPlan(user, before, after, { removed: name }, `${name} removed`);
}

const userParam: ParamSpec = { type: "string", doc: "Whose crontab.", default: "root" };
const nameParam: ParamSpec = {
  type: "string",
  doc: "The command of the cron job.",
  required: true,
  aliases: ["command", "cmd"],
};
const identifierParam_: ParamSpec = {
  type: "string",
  doc: "Stable id written in a marker comment above the job, so it is found again when its command changes.",
};
const timeField = (what: string): ParamSpec => ({
  type: ["string", "integer"],
  doc: `${what} (cron syntax).`,
  default: "*",
});

const present: StateFunction = {
  doc:
    "Ensures a cron job is in a user's crontab. The job is found by identifier, or by its command, and " +
    "rewritten in place when its schedule or comment differ; other lines are kept exactly.",
  primary: "name",
  footprint: (p) => ({ writes: [`crontab:${String(p.user ?? "root")}`], reads: ["userdb"] }),
  params: {
    name: nameParam,
    user: userParam,
    minute: timeField("Minute"),
    hour: timeField("Hour"),
    daymonth: timeField("Day of the month"),
    month: timeField("Month"),
    dayweek: timeField("Day of the week"),
    special: { type: "string", doc: "A schedule like @reboot, @daily or @hourly; replaces the time fields." },
    comment: { type: "string", doc: "Comment written in the marker line above the job." },
    commented: {
      type: "boolean",
      doc: "Keep the job in the crontab but switched off: its line starts with #DISABLED# (Salt's spelling).",
      default: false,
    },
    identifier: identifierParam_,
  },
  plan: (params) => guard(() => planPresent(params)),
};

const absent: StateFunction = {
  doc: "Ensures a cron job is not in a user's crontab (found by identifier, or by its command).",
  primary: "name",
  footprint: (p) => ({ writes: [`crontab:${String(p.user ?? "root")}`], reads: ["userdb"] }),
  params: {
    name: nameParam,
    user: userParam,
    identifier: identifierParam_,
    special: {
      type: "string",
      doc: "Accepted for Salt compatibility; the job is found by command or identifier.",
    },
  },
  plan: (params) => guard(() => planAbsent(params)),
};

const envPresent: StateFunction = {
  doc: "Ensures an environment line NAME=value in a user's crontab (added above the first job).",
  primary: "name",
  footprint: (p) => ({ writes: [`crontab:${String(p.user ?? "root")}`], reads: ["userdb"] }),
  params: {
    name: { type: "string", doc: "Variable name, e.g. MAILTO or PATH.", required: true },
    value: { type: ["string", "number"], doc: "Value of the variable.", required: true },
    user: userParam,
  },
  plan: (params) => guard(() => planEnvPresent(params)),
};

const envAbsent: StateFunction = {
  doc: "Ensures an environment variable is not set in a user's crontab.",
  primary: "name",
  footprint: (p) => ({ writes: [`crontab:${String(p.user ?? "root")}`], reads: ["userdb"] }),
  params: {
    name: { type: "string", doc: "Variable name.", required: true },
    user: userParam,
  },
  plan: (params) => guard(() => planEnvAbsent(params)),
};

const exec: Record<string, ExecFunction> = {
  raw_cron: {
    doc: "Returns a user's crontab as text (empty when the user has none).",
    params: { user: { type: "string", doc: "Whose crontab.", required: true } },
    positional: ["user"],
    readOnly: true,
    run: async (params) => readCrontab(await checkUser(params)),
  },
};

const CRON_REVERT =
  "Restores the user's whole crontab as it was before the run (or removes it when there was none); refused when the crontab changed since the run.";

export const family: ModuleFamily = {
  name: "cron",
  doc: "Cron jobs and environment lines in users' crontabs, edited through the crontab command.",
  states: withRevertDocs(
    { present, absent, env_present: envPresent, env_absent: envAbsent },
    { present: CRON_REVERT, absent: CRON_REVERT, env_present: CRON_REVERT, env_absent: CRON_REVERT },
  ),
  exec,
};

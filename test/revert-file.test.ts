/**
 * state.revert for the file family through `zester local`, on the real file system: a run that
 * edits, creates, removes and re-owns files is applied, then reverted, and every byte, mode and
 * owner is as before; a resource changed again since the run is refused (force=true reverts it).
 */
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RevertStore } from "../src/revert/store.js";
import { requireBuilt } from "./support/built.js";
import { type CliResult, runCli } from "./support/cli.js";

const ROOT = resolve(import.meta.dirname, "..");
const BIN = join(ROOT, "dist/bin/zester.js");
const isRoot = process.getuid?.() === 0;

let tmp: string;
let states: string;
let root: string;

function zester(...args: string[]): Promise<CliResult> {
  return runCli(
    BIN,
    ["local", "--states-dir", states, "--no-cache", "--revert-dir", join(tmp, "revert"), ...args],
    {
      env: { NO_COLOR: "1" },
    },
  );
}

function json(r: CliResult): Record<string, unknown>[] {
  try {
    return JSON.parse(r.stdout) as Record<string, unknown>[];
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

type Result = {
  name: string;
  result: boolean;
  changed: boolean;
  comment: string;
  skipped: boolean;
  pending?: boolean;
  diff?: string;
};
const results = (r: CliResult) => json(r)[0]!.results as Result[];
const byName = (r: CliResult, name: string) => {
  const x = results(r).find((s) => s.name === name);
  if (!x) throw new Error(`no result ${name} in ${JSON.stringify(results(r).map((s) => s.name))}`);
  return x;
};

/** Everything a revert must put back: bytes, mode, owner, link target, or absence. */
async function snapshot(paths: string[]): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const p of paths) {
    const st = await lstat(p).catch(() => undefined);
    if (!st) out[p] = "absent";
    else if (st.isSymbolicLink()) out[p] = { link: await readlink(p), uid: st.uid };
    else if (st.isDirectory()) out[p] = { dir: true, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    else
      out[p] = {
        bytes: (await readFile(p)).toString("base64"),
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
      };
  }
  return out;
}

beforeAll(async () => {
  requireBuilt(BIN);
  tmp = await mkdtemp(join(tmpdir(), "zester-revert-file-"));
  states = join(tmp, "states");
  root = join(tmp, "root");
  await mkdir(states, { recursive: true });
}, 120_000);

afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
});

async function freshRoot(): Promise<string[]> {
  await rm(root, { recursive: true, force: true });
  await mkdir(root, { recursive: true });
  await writeFile(join(root, "app.conf"), "port = 80\nworkers = 2\n");
  await chmod(join(root, "app.conf"), 0o640);
  if (isRoot) await chown(join(root, "app.conf"), 65534, 65534);
  await writeFile(join(root, "hosts"), "127.0.0.1 localhost\n");
  await writeFile(join(root, "old.txt"), "remove me\n");
  await chmod(join(root, "old.txt"), 0o600);
  await symlink("app.conf", join(root, "current"));
  return [
    join(root, "app.conf"),
    join(root, "hosts"),
    join(root, "old.txt"),
    join(root, "current"),
    join(root, "new"),
    join(root, "new/deep"),
    join(root, "new/deep/file.txt"),
    join(root, "data"),
  ];
}

const SLS = (r: string) => `
app-conf:
  file.managed:
    - name: ${r}/app.conf
    - contents: |
        port = 8080
        workers = 16
    - mode: "0644"
    - user: root
    - group: root
app-conf-line:
  file.line:
    - name: ${r}/app.conf
    - content: "debug = true"
    - mode: ensure
    - after: "workers = 16"
    - require:
      - file: app-conf
hosts-entry:
  file.append:
    - name: ${r}/hosts
    - text: "10.0.0.5 db"
created:
  file.managed:
    - name: ${r}/new/deep/file.txt
    - contents: fresh
    - makedirs: true
data-dir:
  file.directory:
    - name: ${r}/data
    - mode: "0750"
old-gone:
  file.absent:
    - name: ${r}/old.txt
current-link:
  file.symlink:
    - name: ${r}/current
    - target: hosts
announce:
  cmd.run:
    - name: "true"
`;

describe("state.revert, file family (zester local)", () => {
  it("apply then revert leaves every byte, mode, owner and absence as before; --test changes nothing", async () => {
    const paths = await freshRoot();
    await writeFile(join(states, "web.sls"), SLS(root));
    const before = await snapshot(paths);

    const applied = await zester("--format", "json", "state.apply", "web");
    expect(applied.code, applied.stdout + applied.stderr).toBe(0);
    const rec = json(applied)[0]!;
    const note = rec.revert as { run: string; states: number; cannot: number };
    expect(note.states).toBe(7);
    expect(note.cannot).toBe(1);
    const after = await snapshot(paths);
    expect(after).not.toEqual(before);

    const listed = json(await zester("--format", "json", "state.runs")) as unknown as { run: string }[];
    expect(listed.map((r) => r.run)).toContain(note.run);

    const dry = await zester("--format", "json", "--test", "state.revert", note.run);
    expect(dry.code, dry.stdout).toBe(0);
    expect(await snapshot(paths)).toEqual(after);
    const dryConf = byName(dry, "file.managed:app-conf");
    expect(dryConf.pending).toBe(true);
    // Both states on app.conf are judged in order: the line state first, then the managed one.
    expect(byName(dry, "file.line:app-conf-line").diff).toContain("-debug = true");
    expect(dryConf.diff).toContain("+port = 80\n");
    expect(dryConf.diff).toContain("-port = 8080\n");

    const done = await zester("--format", "json", "state.revert", note.run);
    expect(done.code, done.stdout).toBe(0);
    const order = results(done).map((s) => s.name);
    expect(order.indexOf("file.line:app-conf-line")).toBeLessThan(order.indexOf("file.managed:app-conf"));
    const cmd = byName(done, "cmd.run:announce");
    expect(cmd.skipped).toBe(true);
    expect(cmd.comment).toMatch(/^cannot be reverted: /);
    expect(await snapshot(paths)).toEqual(before);

    // Reverting again finds everything as before the run and changes nothing.
    const again = await zester("--format", "json", "state.revert", note.run);
    expect(again.code).toBe(0);
    expect(results(again).filter((s) => s.changed)).toEqual([]);
    expect(await snapshot(paths)).toEqual(before);
  });

  it("refuses a resource changed again since the run, reverts the rest; force=true reverts it too", async () => {
    const paths = await freshRoot();
    await writeFile(join(states, "web.sls"), SLS(root));
    const before = await snapshot(paths);
    const applied = await zester("--format", "json", "state.apply", "web");
    expect(applied.code).toBe(0);
    const id = (json(applied)[0]!.revert as { run: string }).run;

    await writeFile(join(root, "hosts"), "127.0.0.1 localhost\n10.0.0.5 db\n10.0.0.6 cache\n");
    const refused = await zester("--format", "json", "state.revert", id);
    expect(refused.code).toBe(2);
    const hosts = byName(refused, "file.append:hosts-entry");
    expect(hosts.result).toBe(false);
    expect(hosts.comment).toContain(`refused: file ${join(root, "hosts")} changed since the run (content`);
    expect(hosts.comment).toContain("force=true");
    expect(await readFile(join(root, "hosts"), "utf8")).toContain("10.0.0.6 cache");
    // The other states were reverted.
    expect(byName(refused, "file.managed:created").changed).toBe(true);
    const text = await zester("state.revert", id);
    expect(text.stdout).toContain("refused: file");

    const forced = await zester("--format", "json", "state.revert", id, "force=true");
    expect(forced.code, forced.stdout).toBe(0);
    expect(await snapshot(paths)).toEqual(before);
  });

  it("names an unknown run id and how to list runs", async () => {
    const r = await zester("--format", "json", "state.revert", "3N1icV4mJvoN69iJWGiGRWFN1fR");
    expect(r.code).toBe(2);
    expect(json(r)[0]!.error).toMatch(/no run 3N1icV4mJvoN69iJWGiGRWFN1fR is kept here.*state\.runs/);
    const usage = await zester("state.revert");
    expect(usage.code).toBe(1);
    expect(usage.stderr).toContain("state.runs");
  });

  it("a dry run keeps nothing; a run without changes keeps nothing", async () => {
    await freshRoot();
    await writeFile(join(states, "web.sls"), SLS(root));
    const dry = await zester("--format", "json", "--test", "state.apply", "web");
    expect(json(dry)[0]!.revert).toBeUndefined();
    const noop = await zester("--format", "json", "test.nop", "x");
    expect(json(noop)[0]!.revert).toBeUndefined();
  });
});

describe("state.revert: what cannot be kept, and zester doc", () => {
  it("a pre-image that cannot be kept fails the state before it changes anything", async () => {
    await freshRoot();
    const big = join(root, "big.bin");
    const bytes = Buffer.alloc(100_000, 7);
    await writeFile(big, bytes);
    const bad = ["local", "--no-cache", "--revert-dir", "/dev/null/revert", "--format", "json"];
    const r = await runCli(BIN, [...bad, "file.managed", big, "contents=small"], { env: { NO_COLOR: "1" } });
    expect(r.code).toBe(2);
    expect(results(r)[0]!.comment).toMatch(
      /^Not applied: the pre-image for state.revert could not be kept: /,
    );
    expect((await readFile(big)).equals(bytes)).toBe(true);
    // A small file needs no blob: the run applies, and its return says why it cannot be reverted.
    const small = await runCli(BIN, [...bad, "file.managed", join(root, "hosts"), "contents=x"], {
      env: { NO_COLOR: "1" },
    });
    expect(small.code, small.stdout).toBe(0);
    expect((json(small)[0]!.revert as { error: string }).error).toMatch(
      /could not be stored in \/dev\/null\/revert/,
    );
  });

  it("zester doc says what each state's revert restores, and what cannot be reverted", async () => {
    const file = await runCli(BIN, ["doc", "file.managed"]);
    expect(file.stdout).toMatch(/ {2}Revert:\n {4}Restores the file's previous bytes, mode and owner/);
    const cmd = await runCli(BIN, ["doc", "cmd.run"]);
    expect(cmd.stdout).toMatch(/ {2}Revert:\n {4}cannot be reverted: a command's effects are unknown/);
  });
});

describe("revert store limits", () => {
  it("keeps large contents as blobs, drops them with their run past the limits", async () => {
    const dir = join(tmp, "store");
    const store = new RevertStore(dir, { inlineBytes: 16, maxRuns: 2, maxBlobBytes: 1024 * 1024 });
    const small = await store.keep(Buffer.from("tiny"));
    expect("inline" in small).toBe(true);
    const big = await store.keep(Buffer.alloc(1000, 1));
    expect("blob" in big).toBe(true);
    expect((await store.content(big)).length).toBe(1000);
    const runs = ["a", "b", "c"];
    for (const [i, id] of runs.entries()) {
      await store.save({
        v: 1,
        id,
        fun: "state.apply",
        machine: "m",
        started_at: `2026-01-0${i + 1}T00:00:00Z`,
        finished_at: `2026-01-0${i + 1}T00:00:01Z`,
        states: [
          {
            name: "file.managed:x",
            id: "x",
            fun: "file.managed",
            seq: 1,
            refs: [
              {
                ref: { kind: "file", key: "/x" },
                before: { state: null, data: { content: id === "a" ? big : small } },
              },
            ],
          },
        ],
      } as never);
    }
    expect((await store.list()).map((r) => r.id)).toEqual(["c", "b"]);
    // Run a was the only one referencing the blob: it went with it.
    await expect(store.content(big)).rejects.toThrow(/gone/);
    const huge = await new RevertStore(dir, { maxContentBytes: 10 }).keep(Buffer.alloc(100_000));
    expect("dropped" in huge).toBe(true);
    expect((await stat(join(dir, "runs"))).mode & 0o777).toBe(0o700);
  });
});

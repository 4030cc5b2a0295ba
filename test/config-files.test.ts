/**
 * Config files for the daemons: every option as flag, `ZESTER_*` env and file key, one precedence
 * (flag > env > file > default), unknown keys and bad values refused with where they are, and
 * `--print-config` naming each value's origin.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadMasterConfig, MASTER_OPTIONS } from "../src/cli/master-daemon.js";
import { loadPeelConfig } from "../src/cli/peel-daemon.js";
import { formatConfig, loadConfig } from "../src/config/load.js";
import { defaultPeelId, hostForPeelId, peelIdForHost } from "../src/peel/identity.js";
import { runMain } from "./support/cli.js";

let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "zester-config-"));
});

afterAll(async () => {
  await rm(work, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(work, name);
  await writeFile(path, text);
  return path;
}

describe("precedence: flag > env > file > default", () => {
  it("takes each option from the strongest source and remembers which one", async () => {
    const f = await file(
      "master.yaml",
      "# a master\npublish_interval: 5\ndefault_timeout: 7\nunreachable_after: 3\nstates_dir: /srv/a\n",
    );
    const cfg = loadMasterConfig(["--config", f, "--default-timeout", "9"], {
      ZESTER_UNREACHABLE_AFTER: "4",
      ZESTER_DEFAULT_TIMEOUT: "8",
    });
    expect(cfg.values.publish_interval).toBe(5);
    expect(cfg.origins.publish_interval).toEqual({ kind: "file", path: f, line: 2 });
    expect(cfg.values.unreachable_after).toBe(4);
    expect(cfg.origins.unreachable_after).toEqual({ kind: "env", name: "ZESTER_UNREACHABLE_AFTER" });
    expect(cfg.values.default_timeout).toBe(9);
    expect(cfg.origins.default_timeout).toEqual({ kind: "flag", flag: "--default-timeout" });
    expect(cfg.values.states_dir).toBe("/srv/a");
    expect(cfg.values.enroll_rate).toBe(20);
    expect(cfg.origins.enroll_rate).toEqual({ kind: "default" });
  });

  it("the scale, reactor, health and nodegroup options come from master.yaml like every other", async () => {
    const f = await file(
      "scale.yaml",
      [
        "replicas: 3",
        "reactor: false",
        "reactor_max_age: 60",
        "health_listen: 127.0.0.1:9641",
        "log_format: json",
        "nodegroups:",
        "  web: 'web-* and G@os:linux'",
        "  db: [db-01, db-02]",
        "",
      ].join("\n"),
    );
    const cfg = loadMasterConfig(["--config", f], { ZESTER_REACTOR_MAX_AGE: "120" });
    expect(cfg.values.replicas).toBe("3");
    expect(cfg.origins.replicas).toEqual({ kind: "file", path: f, line: 1 });
    expect(cfg.values.reactor).toBe(false);
    expect(cfg.values.reactor_max_age).toBe(120);
    expect(cfg.origins.reactor_max_age).toEqual({ kind: "env", name: "ZESTER_REACTOR_MAX_AGE" });
    expect(cfg.values.health_listen).toBe("127.0.0.1:9641");
    expect(cfg.values.log_format).toBe("json");
    expect(cfg.values.nodegroups).toEqual({ web: "web-* and G@os:linux", db: "L@db-01,db-02" });
    const printed = await runMain(["master", "--config", f, "--print-config", "--replicas", "5"]);
    expect(printed.code).toBe(0);
    expect(printed.out).toMatch(/^replicas: "?5"? +# flag --replicas$/m);
    expect(printed.out).toMatch(new RegExp(`^reactor: false +# file ${f}:2$`, "m"));
    expect(printed.out).toMatch(/^log_format: json +# file /m);
  });

  it("finds the file through the program's env variable; an empty env value counts as unset", async () => {
    const f = await file("by-env.yaml", "publish_interval: 11\n");
    const cfg = loadMasterConfig([], { ZESTER_MASTER_CONFIG: f, ZESTER_PUBLISH_INTERVAL: "" });
    expect(cfg.values.publish_interval).toBe(11);
    expect(cfg.files).toEqual([f]);
  });

  it("an absent default file is no error; an absent named one is", async () => {
    const missing = join(work, "nope.yaml");
    const cfg = loadConfig({
      program: "x",
      options: MASTER_OPTIONS,
      argv: [],
      env: {},
      defaultFile: missing,
    });
    expect(cfg.files).toEqual([]);
    expect(() => loadMasterConfig(["--config", missing], {})).toThrow(
      `cannot read config file ${missing}: ENOENT`,
    );
  });

  it("zester-peel reads ZESTER_AUTH_DIR and every other option from env, file and flag alike", async () => {
    const f = await file(
      "peel.yaml",
      "id: web-01\nenforce_every: 30m\nenforce_sls: [base, web]\nenforce_test: true\n",
    );
    const cfg = loadPeelConfig(["--config", f, "--enroll-replace"], { ZESTER_AUTH_DIR: "/tmp/auth-x" });
    expect(cfg.values.auth_dir).toBe("/tmp/auth-x");
    expect(cfg.origins.auth_dir).toEqual({ kind: "env", name: "ZESTER_AUTH_DIR" });
    expect(cfg.values.id).toBe("web-01");
    expect(cfg.values.enforce_every).toBe(1_800_000);
    expect(cfg.values.enforce_sls).toEqual(["base", "web"]);
    expect(cfg.values.enforce_test).toBe(true);
    expect(cfg.values.enroll_replace).toBe(true);
    const env = loadPeelConfig([], { ZESTER_ENFORCE_TEST: "yes", ZESTER_ENFORCE_SLS: "a, b" });
    expect(env.values.enforce_test).toBe(true);
    expect(env.values.enforce_sls).toEqual(["a", "b"]);
  });
});

describe("bad input names where it is", () => {
  it("an unknown file key: file:line:column and a did-you-mean, every one of them", async () => {
    const f = await file("typo.yaml", "publish_interval: 5\npublish_intreval: 3\nnats-url: tls://x:4222\n");
    expect(() => loadMasterConfig(["--config", f], {})).toThrow(
      `${f}:2:1: unknown key "publish_intreval" (did you mean "publish_interval"?)\n` +
        `${f}:3:1: unknown key "nats-url" (did you mean "nats_url"?)`,
    );
  });

  it("a bad value in the file, in env and on a flag", async () => {
    const f = await file("bad-value.yaml", "enroll_rate: lots\n");
    expect(() => loadMasterConfig(["--config", f], {})).toThrow(
      `${f}:1:14: enroll_rate must be a whole number ≥ 0, not "lots"`,
    );
    expect(() => loadMasterConfig([], { ZESTER_PUBLISH_INTERVAL: "-1" })).toThrow(
      'ZESTER_PUBLISH_INTERVAL must be a positive number of seconds, not "-1"',
    );
    expect(() => loadPeelConfig(["--enforce-every", "often"], {})).toThrow(
      '--enforce-every must be a duration such as 30s, 5m or 1h, not "often"',
    );
    expect(() => loadPeelConfig([], { ZESTER_ENFORCE_TEST: "maybe" })).toThrow(
      'ZESTER_ENFORCE_TEST must be true or false, not "maybe"',
    );
  });

  it("YAML syntax errors and a file that is not a mapping", async () => {
    const broken = await file("broken.yaml", "publish_interval: 5\nnats_url: a: b\n");
    expect(() => loadMasterConfig(["--config", broken], {})).toThrow(
      `${broken}:2:11: Nested mappings are not allowed in compact mappings`,
    );
    const list = await file("list.yaml", "- a\n- b\n");
    expect(() => loadMasterConfig(["--config", list], {})).toThrow(
      `${list}:1:1: expected a mapping of option names to values`,
    );
    const dup = await file("dup.yaml", "publish_interval: 5\npublish_interval: 6\n");
    expect(() => loadMasterConfig(["--config", dup], {})).toThrow(new RegExp(`^${dup}:2:1: .*unique`));
  });

  it("the daemons' own name prefixes their messages, once, with a non-zero exit", async () => {
    const r = await runMain(["master", "--publish-intervl", "3"]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      'zester-master: unknown option --publish-intervl (did you mean "--publish-interval"?); see zester-master --help\n',
    );
    const p = await runMain(["peel-daemon", "--nats-url", "tls://127.0.0.1:1", "--id", "web.example.com"]);
    expect(p.code).toBe(1);
    expect(p.err).toBe(
      'zester-peel: invalid peel id "web.example.com": use 1-128 characters from A-Z a-z 0-9 _ -, starting ' +
        "with a letter or digit (no dots: the id is a NATS subject token); for this host name use " +
        "--id web_example_com (dots as _)\n",
    );
    const sub = await runMain(["peel", "list", "--bogus"]);
    expect(sub.code).toBe(1);
    expect(sub.err).toBe("zester peel: unknown option '--bogus'\n");
  });
});

describe("the CLI's connection", () => {
  it("a refused connection names the URL it tried", async () => {
    const auth = join(work, "cli-auth");
    await (await import("node:fs/promises")).mkdir(auth, { recursive: true });
    await writeFile(join(auth, "admin.creds"), "");
    const r = await runMain(["peel", "list", "--nats-url", "tls://127.0.0.1:1", "--auth-dir", auth]);
    expect(r.code).toBe(1);
    expect(r.err).toBe(
      "zester: cannot connect to tls://127.0.0.1:1: connection refused (set --nats-url or nats_url)\n",
    );
  });
});

describe("--print-config", () => {
  it("prints every option with its value and origin, as YAML a config file could hold", async () => {
    const f = await file("print.yaml", "publish_interval: 5\n");
    const r = await runMain(["master", "--config", f, "--print-config", "--enroll-rate", "3"]);
    expect(r.code).toBe(0);
    const lines = r.out.split("\n");
    expect(lines[0]).toBe("# zester-master: effective configuration (flag > env > file > default)");
    expect(lines[1]).toBe(`# files read: ${f}`);
    expect(lines).toContain(`publish_interval: 5${" ".repeat(21)}  # file ${f}:1`);
    expect(lines).toContain(`enroll_rate: 3${" ".repeat(26)}  # flag --enroll-rate`);
    expect(lines).toContain(`states_dir: /srv/zester/states${" ".repeat(10)}  # default`);
    expect(lines).toContain(`# id:${" ".repeat(35)}  # unset: <hostname>-<pid>`);
  });

  it("never shows a secret, and shows durations as they would be written", async () => {
    const cfg = loadPeelConfig(["--enroll-token", "s3cret", "--enforce-every", "90m"], {});
    const out = formatConfig("zester-peel", (await import("../src/cli/peel-daemon.js")).PEEL_OPTIONS, cfg);
    expect(out).not.toContain("s3cret");
    expect(out).toMatch(/^enroll_token: "<hidden>" +# flag --enroll-token$/m);
    expect(out).toMatch(/^enforce_every: 90m +# flag --enforce-every$/m);
  });
});

describe("peel identity", () => {
  it("maps an FQDN to an id and back: dots become _, which host names never contain", () => {
    expect(peelIdForHost("web.example.com")).toBe("web_example_com");
    expect(hostForPeelId("web_example_com")).toBe("web.example.com");
    expect(peelIdForHost("web-01")).toBe("web-01");
    expect(peelIdForHost("odd_name.example.com")).toBeUndefined();
    expect(peelIdForHost("bad name")).toBeUndefined();
  });

  it("defaults to the FQDN when the hostname has dots, else to the hostname", async () => {
    expect(await defaultPeelId("db.prod.example.net")).toEqual({
      id: "db_prod_example_net",
      from: "db.prod.example.net",
      source: "fqdn",
    });
    const plain = await defaultPeelId("zester-test-host-without-hosts-entry");
    expect(plain).toEqual({
      id: "zester-test-host-without-hosts-entry",
      from: "zester-test-host-without-hosts-entry",
      source: "hostname",
    });
    await expect(defaultPeelId("bad name")).rejects.toThrow(
      'cannot make a peel id from this machine\'s name "bad name": pass --id ID',
    );
  });
});

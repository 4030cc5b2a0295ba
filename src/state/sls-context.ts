/**
 * The names Salt puts in every sls template's context besides grains and pillar: where the file
 * is (tpl*), which sls it is (sls, sls*path), the environment and a minimal minion `opts`.
 * Values follow Salt's generate_sls_context: for `p/init.sls`, `slspath` and `tpldir` are `p`;
 * for a top-level `x.sls`, `tpldir` is `.` and `slspath` is empty.
 */
import { join } from "node:path";

export const SALTENV = "base";

export interface SlsContext {
  sls: string;
  /** Absolute path of the file. */
  tplpath: string;
  /** Path relative to the tree root. */
  tplfile: string;
  tpldir: string;
  tpldot: string;
  /** First directory of tpldir: the formula's root in `{% from tplroot ~ "/map.jinja" ... %}`. */
  tplroot: string;
  slspath: string;
  slsdotpath: string;
  slscolonpath: string;
  sls_path: string;
  saltenv: string;
  opts: Record<string, unknown>;
}

/** Salt's minion options that formulas read; everything else a formula asks of `opts` is absent. */
export function minimalOpts(treeDir: string, id: string | undefined): Record<string, unknown> {
  return {
    ...(id === undefined ? {} : { id }),
    saltenv: SALTENV,
    pillarenv: null,
    file_client: "local",
    renderer: "jinja|yaml",
    file_roots: { [SALTENV]: [treeDir] },
    state_top: "top.sls",
    __role: "minion",
    // Formulas (libsaltcli.jinja) tell a minion run from salt-ssh or the API by this.
    __cli: "salt-minion",
  };
}

/** Context names for the file `file` (relative to `treeDir`) of sls `ref`. */
export function slsContext(ref: string, file: string, treeDir: string, id?: string): SlsContext {
  const slash = file.lastIndexOf("/");
  const dir = slash < 0 ? "" : file.slice(0, slash);
  return {
    sls: ref,
    tplpath: join(treeDir, file),
    tplfile: file,
    tpldir: dir === "" ? "." : dir,
    tpldot: dir.replaceAll("/", "."),
    tplroot: dir === "" ? "." : dir.split("/")[0]!,
    slspath: dir,
    slsdotpath: dir.replaceAll("/", "."),
    slscolonpath: dir.replaceAll("/", ":"),
    sls_path: dir.replaceAll("/", "_"),
    saltenv: SALTENV,
    opts: minimalOpts(treeDir, id),
  };
}

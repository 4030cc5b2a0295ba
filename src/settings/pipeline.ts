/**
 * The settings pipeline in three calls, one per place it runs:
 *
 *   master, on tree change:       prepareSettingsTree(dir, masterCurve) → publish `files` to KV settings-files
 *   master, per peel (and when its facts or the tree change):
 *                                 sealSettingsForPeel(prepared, masterCurve, peel) → KV secrets `<peel>`
 *   peel, after sync:             resolvePeelSettings({...}) → settings (+ secrets for masking)
 */
import type { KeyPair } from "@nats-io/nkeys";
import { openPeelSecrets, sealForPeel } from "./crypto.js";
import { SecretError } from "./errors.js";
import { placeholderPaths } from "./placeholders.js";
import {
  peelSecretIds,
  type ResolveSettingsOptions,
  resolveSettingsDetailed,
  type SettingsRef,
} from "./resolve.js";
import { type ExtractedSecret, openExtractedSecrets, sanitizeSettingsTree } from "./sanitize.js";
import { readSettingsTree } from "./source.js";

export interface PreparedSettings {
  /** Relative path → sanitized text: safe to publish to every peel. */
  files: Record<string, string>;
  /** Placeholder id → where the secret came from. */
  secrets: Record<string, ExtractedSecret>;
  /** Placeholder id → plaintext. Master memory only: never publish or log. */
  plaintexts: Record<string, string>;
}

/** Reads, sanitizes and opens a settings tree. Throws SettingsError / SecretError with locations. */
export async function prepareSettingsTree(dir: string, masterCurve: KeyPair): Promise<PreparedSettings> {
  const tree = sanitizeSettingsTree(await readSettingsTree(dir));
  const plaintexts =
    Object.keys(tree.secrets).length > 0 ? openExtractedSecrets(masterCurve, tree.secrets) : {};
  return { files: tree.files, secrets: tree.secrets, plaintexts };
}

export interface PeelForSealing {
  id: string;
  facts: Readonly<Record<string, unknown>>;
  /** The peel's curve public key (X...). */
  curvePub: string;
}

/** The blob for KV `secrets` key `<peel>`: only the secrets of files this peel's top.zy matches. */
export async function sealSettingsForPeel(
  prepared: PreparedSettings,
  masterCurve: KeyPair,
  peel: PeelForSealing,
): Promise<string> {
  const ids = await peelSecretIds({
    files: prepared.files,
    facts: peel.facts,
    peelId: peel.id,
    secrets: prepared.secrets,
  });
  const chosen: Record<string, string> = {};
  for (const id of ids) chosen[id] = prepared.plaintexts[id]!;
  return sealForPeel(masterCurve, peel.curvePub, chosen);
}

export interface PeelResolveOptions extends Omit<ResolveSettingsOptions, "secrets" | "keepPlaceholders"> {
  peelCurve: KeyPair;
  /** Trusted master curve public key(s). */
  masterCurvePub: string | readonly string[];
  /** This peel's value from KV `secrets`; undefined when the master has sealed nothing for it. */
  blob?: string | Uint8Array;
}

export interface PeelSettings {
  settings: Record<string, unknown>;
  refs: SettingsRef[];
  /** Placeholder id → plaintext: hand to maskSecrets for every output. */
  secrets: Record<string, string>;
}

/** Opens the peel's blob (if any) and resolves. Throws SettingsError or SecretError. */
export async function resolvePeelSettings(opts: PeelResolveOptions): Promise<PeelSettings> {
  const { peelCurve, masterCurvePub, blob, ...rest } = opts;
  let secrets: Record<string, string> | undefined;
  try {
    secrets = blob === undefined ? undefined : openPeelSecrets(peelCurve, masterCurvePub, blob);
  } catch (err) {
    if (!(err instanceof SecretError)) throw err;
    // Say which settings the failure takes away; an altered blob is an error even if none need it.
    const res = await resolveSettingsDetailed({ ...rest, keepPlaceholders: true });
    const paths = placeholderPaths(res.settings).map((p) => p.path);
    const which = paths.length > 0 ? `; settings keys that need it: ${paths.join(", ")}` : "";
    throw new SecretError(`${err.message}${which}`, paths);
  }
  const res = await resolveSettingsDetailed({ ...rest, ...(secrets ? { secrets } : {}) });
  return { settings: res.settings, refs: res.refs, secrets: secrets ?? {} };
}

/**
 * Errors of the settings pipeline. Tree problems (template, YAML, top.zy, missing refs) carry
 * file:line:column diagnostics like state compile errors; secret problems name the settings key
 * they affect, because a secret that silently turned into an empty string would deploy a broken
 * (or open) service.
 */
import { CompileError, type Diagnostic, formatDiagnostic } from "../state/diagnostics.js";

/** The settings tree could not be resolved; every problem found is listed. */
export class SettingsError extends CompileError {
  override name = "SettingsError";
  constructor(diagnostics: Diagnostic[]) {
    super(diagnostics);
    const n = diagnostics.length;
    this.message = `${n} settings error${n === 1 ? "" : "s"}:\n${diagnostics.map(formatDiagnostic).join("\n\n")}`;
  }
}

/** A secret could not be delivered: unopenable, tampered, or missing for a key path. */
export class SecretError extends Error {
  override name = "SecretError";
  constructor(
    message: string,
    /** Dotted settings key paths the failure affects (empty when it concerns the whole blob). */
    readonly keyPaths: readonly string[] = [],
  ) {
    super(message);
  }
}

/** The peel has no last-known-good settings yet: it never resolved them while connected. */
export class NoSnapshotError extends Error {
  override name = "NoSnapshotError";
}

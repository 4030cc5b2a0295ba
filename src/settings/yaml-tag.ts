/**
 * The `!encrypted` YAML tag as the resolver sees it. On a peel, files come sanitized from the
 * master, so a tag that survived means the value is still sealed to the master's key and the
 * peel cannot use it: that is a YAML error at the tag's position, not a silent empty value.
 * Masterless runs that hold the master curve key pass `open` and get the plaintext instead.
 */
import type { ScalarTag } from "yaml";
import { errText } from "../util/errors.js";
import { ENC_VALUE } from "./crypto.js";

export const ENCRYPTED_TAG = "!encrypted";

export function encryptedTag(open?: (value: string) => string): ScalarTag {
  return {
    tag: ENCRYPTED_TAG,
    // Never chosen when stringifying: plaintexts must not be written back out as tagged values.
    identify: () => false,
    resolve(value, onError) {
      const text = value.trim();
      if (!ENC_VALUE.test(text)) {
        onError(
          "!encrypted must be followed by ENC[nkey,<base64>] (make one with `zester settings encrypt`)",
        );
        return value;
      }
      if (!open) {
        onError(
          "this !encrypted value was not sanitized by a master: it is sealed to the master's key and " +
            "a peel cannot open it (publish the settings tree through the master)",
        );
        return value;
      }
      try {
        return open(text);
      } catch (err) {
        onError(`!encrypted value cannot be opened: ${errText(err)}`);
        return value;
      }
    },
  };
}

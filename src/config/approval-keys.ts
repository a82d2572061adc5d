import { readFileSync } from "node:fs";
import { KeyError, parsePublicKeyPem, type VerificationKey } from "../signing/ed25519-keys.js";

/**
 * The governance key ring, from any of:
 * - CLAWSHIELD_PUBLIC_KEY: one PEM key, as the original documents; its id is
 *   the first 16 hex digits of its fingerprint;
 * - OPENEXEC_APPROVAL_KEYS: JSON {"key-id": "PEM", ...}, for rotation;
 * - OPENEXEC_APPROVAL_KEYS_FILE: a file holding that JSON.
 * Problems are appended to `problems`; the ring is only used when there are none.
 */
export function loadApprovalKeys(
  read: (name: string) => string | undefined,
  problems: string[],
): Map<string, VerificationKey> {
  const keys = new Map<string, VerificationKey>();
  const add = (source: string, pem: unknown, keyId?: string) => {
    if (typeof pem !== "string") {
      problems.push(`${source}: each key must be a PEM string`);
      return;
    }
    try {
      const key = parsePublicKeyPem(pem, keyId);
      if (keys.has(key.keyId)) problems.push(`${source}: key id "${key.keyId}" appears twice in the key ring`);
      keys.set(key.keyId, key);
    } catch (error) {
      if (!(error instanceof KeyError)) throw error;
      problems.push(`${source}${keyId === undefined ? "" : ` key "${keyId}"`}: ${error.message}`);
    }
  };
  const addRing = (source: string, json: string) => {
    let ring: unknown;
    try {
      ring = JSON.parse(json);
    } catch {
      problems.push(`${source} must be JSON: {"key-id": "-----BEGIN PUBLIC KEY-----...", ...}`);
      return;
    }
    if (ring === null || typeof ring !== "object" || Array.isArray(ring)) {
      problems.push(`${source} must be a JSON object of key id to PEM`);
      return;
    }
    for (const [keyId, pem] of Object.entries(ring)) add(source, pem, keyId);
  };

  const single = read("CLAWSHIELD_PUBLIC_KEY");
  if (single !== undefined) add("CLAWSHIELD_PUBLIC_KEY", single);
  const inline = read("OPENEXEC_APPROVAL_KEYS");
  if (inline !== undefined) addRing("OPENEXEC_APPROVAL_KEYS", inline);
  const file = read("OPENEXEC_APPROVAL_KEYS_FILE");
  if (file !== undefined) {
    try {
      addRing(`OPENEXEC_APPROVAL_KEYS_FILE (${file})`, readFileSync(file, "utf8"));
    } catch (error) {
      problems.push(
        `OPENEXEC_APPROVAL_KEYS_FILE: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? "error"}`,
      );
    }
  }
  return keys;
}

import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { parsePublicKeyPem } from "../signing/ed25519-keys.js";

export const keygenHelp = `Usage: openexec keygen [--out PREFIX]

Creates an Ed25519 key pair for signing approvals (the governance side).
With --out, writes PREFIX.key.pem (private, mode 0600) and PREFIX.pub.pem and
prints the key id; without it, prints the key id and both PEMs.
Give the public key to the executor as CLAWSHIELD_PUBLIC_KEY (or in
OPENEXEC_APPROVAL_KEYS under its key id); keep the private key with the signer.
`;

export async function keygenCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: "string" }, help: { type: "boolean", short: "h" } } });
  if (values.help) {
    process.stdout.write(keygenHelp);
    return 0;
  }
  const { publicKey, privateKey } = generateKeyPairSync("ed25519");
  const publicPem = publicKey.export({ format: "pem", type: "spki" }).toString();
  const privatePem = privateKey.export({ format: "pem", type: "pkcs8" }).toString();
  const { keyId, fingerprint } = parsePublicKeyPem(publicPem);
  if (values.out !== undefined) {
    writeFileSync(`${values.out}.key.pem`, privatePem, { mode: 0o600, flag: "wx" });
    writeFileSync(`${values.out}.pub.pem`, publicPem, { flag: "wx" });
    process.stdout.write(
      `${JSON.stringify({ key_id: keyId, fingerprint, private_key: `${values.out}.key.pem`, public_key: `${values.out}.pub.pem` })}\n`,
    );
    return 0;
  }
  process.stdout.write(`# key id: ${keyId}\n# fingerprint: ${fingerprint}\n${privatePem}${publicPem}`);
  return 0;
}

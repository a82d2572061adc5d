/**
 * OPENEXEC_CORS_ORIGINS: the web origins whose pages may call this server
 * from a browser, each exactly as a browser sends it in `Origin`
 * (scheme://host[:port], lower case, no default port, no path). An origin is
 * compared as a string, so an entry in any other spelling would never match:
 * it is reported as a problem instead of being silently useless. No
 * wildcards and no `null` (sandboxed frames and file: pages send `null`, so
 * allowing it would allow them all).
 */
export function parseCorsOrigins(raw: string | undefined, problems: string[]): ReadonlySet<string> {
  const origins = new Set<string>();
  if (raw === undefined) return origins;
  for (const entry of raw
    .split(",")
    .map((origin) => origin.trim())
    .filter((origin) => origin !== "")) {
    const problem = originProblem(entry);
    if (problem === undefined) origins.add(entry);
    else problems.push(`OPENEXEC_CORS_ORIGINS: "${entry}" ${problem}`);
  }
  return origins;
}

function originProblem(entry: string): string | undefined {
  if (entry.includes("*")) return "is a wildcard; list each origin exactly (scheme://host[:port])";
  if (entry === "null") return "is the opaque origin of sandboxed and file: pages and cannot be allowed";
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return "is not an origin (scheme://host[:port])";
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return "must start with http:// or https://";
  if (url.origin !== entry) {
    return `must be written as a browser sends it: ${url.origin} (no path, user, query or default port; lower case)`;
  }
  return undefined;
}

import { appendFile, readFile } from "node:fs/promises";

/**
 * Stands in for an external ticket system: a JSON Lines file, one line per
 * change. Like a real tracker's API it takes an idempotency key with every
 * change and applies each key once: a second request with a key it has seen
 * gets the first answer back and changes nothing.
 */
export interface TicketLine {
  readonly idempotency_key: string;
  readonly op: "create" | "close";
  readonly ticket_id: string;
  readonly title?: string;
  readonly priority?: string;
}

export class TicketSystem {
  constructor(readonly path: string) {}

  async lines(): Promise<TicketLine[]> {
    let text: string;
    try {
      text = await readFile(this.path, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw error;
    }
    return text
      .split("\n")
      .filter((line) => line !== "")
      .map((line) => JSON.parse(line) as TicketLine);
  }

  /** Applies `line` unless its idempotency key was applied before; returns the line that stands. */
  async apply(line: TicketLine, signal: AbortSignal): Promise<TicketLine> {
    const seen = (await this.lines()).find((l) => l.idempotency_key === line.idempotency_key);
    if (seen !== undefined) return seen;
    // The last moment to back out: after this the change is made.
    signal.throwIfAborted();
    await appendFile(this.path, `${JSON.stringify(line)}\n`);
    return line;
  }
}

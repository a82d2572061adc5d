/** The limits every request is held to; each is configurable (docs/CONFIGURATION.md). */
export interface RequestLimits {
  /** Largest request body, in bytes. */
  readonly maxBodyBytes: number;
  /** Deepest nesting of a payload (the payload object itself is level 1); results may go one deeper. */
  readonly maxJsonDepth: number;
  /** Longest nonce, in characters. */
  readonly maxNonceLength: number;
  /** Longest a handler may run before it is recorded as failed. */
  readonly handlerTimeoutMs: number;
}

export const defaultRequestLimits: RequestLimits = {
  maxBodyBytes: 1024 * 1024,
  maxJsonDepth: 32,
  maxNonceLength: 128,
  handlerTimeoutMs: 5000,
};

/** The characters a nonce may use: URL- and log-safe, no spaces, no quotes. */
export const nonceCharacters = /^[A-Za-z0-9._:-]+$/;

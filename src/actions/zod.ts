import * as z from "zod";

// zod 4 compiles a fast path for object schemas with `new Function` when it
// may. OpenExec validates untrusted payloads and never generates code to do
// it (SECURITY.md, "Actions"): every zod 4 copy in the process reads this
// one global setting, so the operator's own zod is interpreted too.
z.config({ jitless: true });

export { z };

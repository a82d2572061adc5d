# syntax=docker/dockerfile:1
# The OpenExec server image: docs/DEPLOYMENT.md#container-image.
#
#   docker build -t openexec .
#   docker run --rm -p 5000:5000 -v openexec-data:/var/lib/openexec openexec
#
# scripts/image-smoke.mjs runs this file's build-stage RUN commands, and starts
# the runtime stage's ENTRYPOINT + CMD with its ENV, outside Docker in a clean
# directory (CI runs it after `npm test`): keep every RUN a plain shell command.

# Build: the full Debian image has python3, make and g++, which better-sqlite3's
# native build needs when no prebuilt binary fits. `npm ci` installs every
# dependency, runs their install scripts (package.json's allowScripts names the
# three the build needs: better-sqlite3, esbuild, @bufbuild/buf; node:20's npm 10
# runs install scripts by default) and the package's `prepare`; `npm run build`
# compiles src/ and gen/ to dist/; `npm prune --omit=dev` then removes the dev
# dependencies and keeps the compiled better-sqlite3, so the runtime stage
# needs no compiler.
FROM node:20-bookworm AS build
WORKDIR /app
COPY . .
RUN npm ci --no-audit --no-fund
RUN npm run build
RUN npm prune --omit=dev --no-audit --no-fund

# Runtime: production dependencies and the compiled server only; no npm in the
# process tree (node is PID 1 and receives SIGTERM itself, so a stop drains).
FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production
ENV OPENEXEC_DB_URL=sqlite:////var/lib/openexec/openexec.db
WORKDIR /app
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
# The ledger (and, without OPENEXEC_RECEIPT_KEY, its receipt key file) lives on
# the volume, owned by the unprivileged user the server runs as ("node", 1000).
RUN mkdir -p /var/lib/openexec && chown 1000:1000 /var/lib/openexec && chmod 700 /var/lib/openexec
USER 1000:1000
VOLUME /var/lib/openexec
EXPOSE 5000
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve", "--host", "0.0.0.0"]

# syntax=docker/dockerfile:1
# The Flowmetal image: the built CLI and library, production dependencies (tsx included: program modules
# may be .ts) and the examples. compose.yaml runs three nodes from it; the NATS servers use the official
# nats image.
#
#   docker build -t flowmetal .
#   docker run --rm flowmetal node --nats nats://user:pass@nats-1:4222 --name node-a examples/order.ts
#
# Your own programs: mount them (-v ./programs:/app/programs:ro) and name them on the command line; they
# import "flowmetal", which resolves to /app/dist through the package's self-reference.

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# Everything tsconfig.json compiles (test/bench and the test/support it uses are part of the build).
COPY tsconfig.json ./
COPY protocol ./protocol
COPY node ./node
COPY cluster ./cluster
COPY connectors ./connectors
COPY test ./test
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:20-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY examples ./examples
# The image's own unprivileged user (uid 1000); it owns nothing here, so the app cannot rewrite itself.
USER node
ENTRYPOINT ["node", "dist/node/cli/main.js"]
CMD ["help"]

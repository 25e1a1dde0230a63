# Badge Bridge container image: a static Go binary on a distroless, non-root base.
#
#   docker build -t badge-bridge:dev \
#     --build-arg VERSION=$(git describe --tags --always | sed 's/^v//') \
#     --build-arg COMMIT=$(git rev-parse HEAD) .
#
# Releases (.github/workflows/release.yml) build it for linux/amd64 and linux/arm64 with VERSION
# the tag without its "v", as GoReleaser's binaries print it. scripts/image-check.sh builds the
# same layout (static binary at /bridge, CA certificates, USER 65532:65532, ENTRYPOINT /bridge,
# CMD run) FROM scratch with buildah, where no base image can be pulled, and runs it as 65532.
#
# Needs BuildKit (Docker 23+, buildx, or podman/buildah) for the build-cache mount and the
# cross-compiling --platform line; multi-arch: docker buildx build --platform linux/amd64,linux/arm64 .
#
# Pin the base images by digest in release pipelines (golang:1.26-bookworm@sha256:…,
# gcr.io/distroless/static-debian12:nonroot@sha256:…). go.mod asks for go 1.26.8 and the official
# golang images set GOTOOLCHAIN=local, so an older 1.26 image fails the build instead of downloading.

ARG GO_VERSION=1.26

# ---- build ------------------------------------------------------------------------------------
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION}-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src

# Modules first, as their own layer: it is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG VERSION=dev
ARG COMMIT=""
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/bridge ./cmd/bridge

# ---- run --------------------------------------------------------------------------------------
# Distroless static: CA certificates, tzdata and /etc/passwd with nonroot (65532); no shell, no
# package manager. There is no HEALTHCHECK (nothing to run it with): Kubernetes probes GET /healthz
# and /readyz instead.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=""
LABEL org.opencontainers.image.title="Badge Bridge" \
      org.opencontainers.image.description="Open edX certificates to Open Badges on a Badgr-compatible host" \
      org.opencontainers.image.source="https://github.com/badgebridge/bridge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"

COPY --from=build /out/bridge /bridge

# Numeric, so Kubernetes' runAsNonRoot can verify it (a user *name* cannot be checked).
USER 65532:65532

# 8080: public listener (BRIDGE_HTTP_ADDR, default :8080): webhooks, /healthz, /readyz.
# 8081: admin listener: admin API, dashboard, /metrics, /healthz, /readyz.
# BRIDGE_ADMIN_ADDR defaults to 127.0.0.1:8081, reachable only from inside the container, so a
# container must set BRIDGE_ADMIN_ADDR=:8081 for probes and Prometheus to reach it (the Helm chart
# does). Never publish 8081 to the internet.
EXPOSE 8080 8081

ENTRYPOINT ["/bridge"]
# run = web + workers in one process; the Helm chart runs "serve" and "work" as separate Deployments.
CMD ["run"]

# leader-sidecar container image: a native AOT build, then only the binary on a minimal non-root base.
#
# Both base images are build arguments without defaults, so this file names no registry; pass
# Microsoft's .NET images from whichever registry or mirror you use (deploy/README.md has the full
# command):
#   SDK_IMAGE      the .NET 10 SDK image with the native AOT toolchain, tag 10.0-noble-aot
#   RUNTIME_IMAGE  the .NET runtime-deps image, chiseled, tag 10.0-noble-chiseled
# Without them the build stops at the first FROM: its base name is blank.

ARG SDK_IMAGE
ARG RUNTIME_IMAGE
# The lease stores linked into the binary: all (the default), or some joined by "+", such as
# --build-arg LEADER_SIDECAR_STORES=kubernetes: a smaller binary that uses less memory
# (docs/BENCHMARKS.md, "Footprint"); asked for a store it lacks, it says so and exits 2.
ARG LEADER_SIDECAR_STORES=all

# --- build -----------------------------------------------------------------------------------------
# The -aot SDK tags add clang and zlib1g-dev, which native AOT links with.
FROM ${SDK_IMAGE} AS build
WORKDIR /src
# The whole repository (.dockerignore keeps out bin/, obj/, artifacts/ and .git): the build needs
# Directory.Build.props, Directory.Packages.props, global.json and proto/ beside src/.
COPY . .
# Exactly the publish that scripts/test runs and whose binary the end-to-end tests exercise, apart
# from the output directory. It builds for the architecture it runs on, so one Dockerfile builds
# both: `docker buildx build --platform linux/amd64,linux/arm64 ...` runs this stage once per
# platform (the arm64 one under QEMU emulation where the builder is x64, which is slow). The test
# suite instead cross-compiles with `-r linux-arm64` and runs the arm64 binary under qemu-user
# (scripts/arm64-smoke).
RUN dotnet publish src/Sidecar -c Release -p:LeaderSidecarStores=${LEADER_SIDECAR_STORES:-all} -o /out

# --- runtime ---------------------------------------------------------------------------------------
# Chiseled runtime-deps: libc, libssl (for HTTPS to the API server) and CA certificates, no shell, no
# package manager. No ICU is needed: the binary is built with invariant globalization.
FROM ${RUNTIME_IMAGE}
# Only the executable; the publish directory also holds debug symbols (.dbg, .pdb) we do not ship.
COPY --from=build /out/leader-sidecar /leader-sidecar
# The base image's non-root "app" user, by number: the kubelet can verify runAsNonRoot only for a
# numeric user. An app container that talks to the gRPC unix socket (created 0600) runs as this uid.
USER 1654
# No EXPOSE: by default every surface listens on loopback only (HTTP 127.0.0.1:4040, gRPC
# 127.0.0.1:4041). In a pod, --probe-address opens the probe/metrics listener on the pod IP.
ENTRYPOINT ["/leader-sidecar"]

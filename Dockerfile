# syntax=docker/dockerfile:1
# The `pipeline` binary with the CPU libtorch it links, for every deploy/ manifest:
#   docker build -t ghcr.io/example/autoscale-pipeline:0.1.0 .
# The runtime image finds libtorch through the loader's cache (ldconfig), not through the build
# machine's paths baked into the binary, so it runs wherever it is copied.

FROM rust:1.94-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-venv && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# libtorch 2.13.0 (CPU) from PyPI's torch wheel into .venv, as on a developer's machine.
RUN scripts/libtorch.sh
RUN cargo build --release --bin pipeline
# What the binary loads: libtorch's CPU libraries, and the two CUDA runtime stubs libtorch_cpu
# names, kept in the wheel's relative layout (libtorch_cpu finds them through $ORIGIN/../../nvidia).
RUN mkdir -p /out/torch/lib /out/nvidia/cu13/lib \
 && cp -L .libtorch/lib/libtorch_cpu.so .libtorch/lib/libtorch.so .libtorch/lib/libc10.so .libtorch/lib/libgomp.so.1 /out/torch/lib/ \
 && cp -L .libtorch/../nvidia/cu13/lib/libcudart.so.13 .libtorch/../nvidia/cu13/lib/libcupti.so.13 /out/nvidia/cu13/lib/ \
 && cp target/release/pipeline /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/torch /opt/pipeline/torch
COPY --from=build /out/nvidia /opt/pipeline/nvidia
RUN echo /opt/pipeline/torch/lib > /etc/ld.so.conf.d/pipeline.conf && ldconfig
COPY --from=build /out/pipeline /usr/local/bin/pipeline
# A project folder with the pipeline files and SQL; artifacts/ is a volume or an emptyDir
# (with --store s3://… the cache and registry live in the bucket).
WORKDIR /project
COPY pipelines pipelines
COPY sql sql
RUN mkdir -p artifacts && chown 65532:65532 artifacts
USER 65532:65532
# Sanity check at build time: the binary starts and libtorch loads.
RUN pipeline --version
ENTRYPOINT ["pipeline"]
CMD ["--help"]

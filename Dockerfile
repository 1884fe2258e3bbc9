# The gpufleet image that deploy/ names (ghcr.io/gpufleet/gpufleet): one image, every subcommand.
#   docker build -t ghcr.io/gpufleet/gpufleet:0.1.0 .
#   docker run --rm ghcr.io/gpufleet/gpufleet:0.1.0 --help
# Stage 1 builds the wheel (the build step generates the gRPC modules with grpcio-tools);
# stage 2 installs only the wheel and its runtime dependencies, and runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY gpufleet gpufleet
COPY scheduler scheduler
COPY autoscaler autoscaler
COPY proto proto
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin gpufleet
# numba writes its kernel cache next to the code unless told otherwise; the root filesystem is read-only.
ENV NUMBA_CACHE_DIR=/tmp/numba-cache PYTHONDONTWRITEBYTECODE=1
USER 65532:65532
ENTRYPOINT ["gpufleet"]
CMD ["--help"]

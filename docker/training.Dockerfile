# syntax=docker/dockerfile:1.7
# The jobs image: training and tuning on Ray (local or KubeRay RayJob), materialisation, drift and
# retraining. Extras `training` (torch CPU, Ray Tune, LightGBM, MLflow, transformers, Feast) and
# `monitoring` (Evidently).
# Build from the repository root: docker build -f docker/training.Dockerfile -t portfolio-os/training:0.1.0 .

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# The constraints pin torch==2.13.0+cpu, a local version only the PyTorch CPU index serves:
# never a multi-GB CUDA build.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
COPY pyproject.toml README.md ./
COPY feature_repo feature_repo
COPY api api
COPY training training
COPY serving serving
COPY monitoring monitoring
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX_URL}" \
      -c requirements/constraints.txt ".[training,monitoring]" \
    && pip check

FROM python:3.11.14-slim-bookworm AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp \
    PORTFOLIO_OS_DATA_DIR=/data \
    FEAST_USAGE=False \
    DO_NOT_TRACK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    HF_HUB_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0
# wget: KubeRay's default head/worker probes call it inside the Ray containers.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portfolio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin portfolio \
    && mkdir -p /data /config \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
# The demo configurations, for `python -m training demo` inside the image.
COPY configs /app/configs
WORKDIR /app
USER 10001:10001
# No HEALTHCHECK: the jobs run to completion (their exit code is the health signal) and Ray's
# processes are probed by KubeRay; Kubernetes ignores Docker HEALTHCHECKs anyway.
HEALTHCHECK NONE
CMD ["python", "-m", "training", "--help"]

# The jobs image: training and tuning on Ray (local or KubeRay RayJob), backtest jobs (the chart's KubeRay
# RayCluster), materialisation, drift and retraining -- every runtime extra (serving, serving-text, training
# with Ray, monitoring). The training extra installs ray[default,tune]: `default` brings Ray's dashboard, whose
# Job Submission API the gateway submits backtests to and the RayJob's submitter uses, and whose agent
# answers KubeRay's probes.
# Build from the repository root with `make images` (scripts/images.py), or by hand:
#   docker build -f docker/training.Dockerfile -t portfolio-os/training:dev .
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and venv (the official slim image, or the
# registry-free one from scripts/base_image.sh). /opt/venv/bin/python is the only Python used.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# One requirements file per extra, from pyproject.toml's dependency lists only (docker/requirements.py).
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml docker/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml /reqs

# Dependencies only, pinned by requirements/constraints.txt: cached until a dependency changes.
# The index settings arrive as build arguments of this stage only (never in the final image).
# Up to the first install this stage is the same in every Dockerfile (same lines, same defaults), and
# the model server, text model server and jobs images install the same groups in the same order, so
# they share those layers (the `serving` layer is built once).
FROM ${BASE_IMAGE} AS deps
ARG PIP_INDEX_URL
# torch==2.13.0+cpu (constraints) is served by the PyTorch CPU index, never a multi-GB CUDA build;
# `make images` replaces this with the machine's own indexes.
ARG PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
COPY requirements/constraints.txt /src/constraints.txt
# Each group is a layer of its own, in the same order in every Dockerfile, so the images share them;
# each layer copies only its own requirements file, so another group's change leaves it cached.
COPY --from=requirements /reqs/serving.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/serving.txt \
    && /opt/venv/bin/pip check
COPY --from=requirements /reqs/serving-text.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/serving-text.txt \
    && /opt/venv/bin/pip check
COPY --from=requirements /reqs/training.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/training.txt \
    && /opt/venv/bin/pip check
COPY --from=requirements /reqs/monitoring.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/monitoring.txt \
    && /opt/venv/bin/pip check

# What no job needs, dropped before the runtime copies the venv: the installers, torch's C++ headers
# and CMake files (nothing compiles here), Arrow's headers; debug symbols are stripped from every shared
# library (binutils lives in this throwaway stage only) but auditwheel's vendored ones (<package>.libs/:
# patchelf rewrote those, and strip breaks their layout). Test suites stay: some libraries of this
# image import their own `tests` packages.
FROM deps AS venv
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools wheel pip \
    && cd /opt/venv/lib/python3.11/site-packages \
    && rm -rf torch/include torch/share/cmake pyarrow/include pyarrow/src \
    && find /opt/venv -type f -name "*.so*" -not -path "*.libs/*" -exec sh -c \
       'for f; do strip --strip-unneeded "$f" 2>/dev/null || echo "left as is (not ELF): $f"; done' sh {} +

FROM ${BASE_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PORTFOLIO_OS_DATA_DIR=/data \
    FEAST_USAGE=False \
    DO_NOT_TRACK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    HF_HUB_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0
# wget: KubeRay's default head/worker probes call it inside the Ray containers; libgomp1: LightGBM's
# OpenMP runtime (neither base image has it). apt's lists and its package caches (pkgcache.bin and
# srcpkgcache.bin, about 75 MB that apt-get update writes) go in the same layer.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends wget libgomp1 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
    && groupadd --system --gid 10001 portfolio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin portfolio \
    && mkdir -p /data /config \
    && chown 10001:10001 /data
COPY --from=venv /opt/venv /opt/venv
# The project (every package but the gateway's `api`) last, straight into the venv (what
# `pip install --no-deps .` would put there, less the metadata nothing reads): a code-only change
# rebuilds these small layers and nothing else.
COPY feature_repo /opt/venv/lib/python3.11/site-packages/feature_repo
COPY training /opt/venv/lib/python3.11/site-packages/training
COPY serving /opt/venv/lib/python3.11/site-packages/serving
COPY monitoring /opt/venv/lib/python3.11/site-packages/monitoring
# The demo configurations, for `python -m training demo` inside the image.
COPY configs /app/configs
WORKDIR /app
USER 10001:10001
# No HEALTHCHECK: the jobs run to completion (their exit code is the health signal) and Ray's
# processes are probed by KubeRay; Kubernetes ignores Docker HEALTHCHECKs anyway.
HEALTHCHECK NONE
CMD ["python", "-m", "training", "--help"]

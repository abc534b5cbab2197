# The text model server image: the sentiment_text KServe predictor (`python -m serving.sentiment_text`),
# whose MLflow pyfunc runs a transformer with torch (CPU build) and transformers, or ONNX Runtime.
# Build from the repository root with `make images` (scripts/images.py), or by hand:
#   docker build -f docker/text-model-server.Dockerfile -t portfolio-os/text-model-server:dev .
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and venv (the official slim image, or the
# registry-free one from scripts/base_image.sh). /opt/venv/bin/python is the only Python used.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# One requirements file per extra, from pyproject.toml's dependency lists only (docker/requirements.py).
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml docker/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml /reqs

# Dependencies only, pinned by requirements/constraints.txt: cached until a dependency changes.
# The index settings arrive as build arguments of this stage only (never in the final image).
FROM ${BASE_IMAGE} AS deps
ARG PIP_INDEX_URL
# torch==2.13.0+cpu (constraints) is served by the PyTorch CPU index, never a multi-GB CUDA build;
# `make images` replaces this with the machine's own indexes. Same line in every image sharing
# the `serving` layer, so that layer is built once.
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

# What no running service needs, dropped before the runtime copies the venv: the installers, the
# packages' own test suites, and what the predictors, `feast serve` and `mlflow server` never import
# (MLflow's plotting and scikit-learn extras, SQLAlchemy's mypy plugin, Arrow Flight and headers).
FROM deps AS venv
RUN /opt/venv/bin/python -m pip uninstall --yes --quiet \
       scikit-learn matplotlib fonttools pillow mypy setuptools wheel pip \
    && find /opt/venv/lib/python3.11/site-packages -depth -type d -name tests -exec rm -rf {} + \
    && cd /opt/venv/lib/python3.11/site-packages/pyarrow \
    && rm -rf include src libarrow_flight.so* _flight.*.so flight.py

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
# libgomp1: LightGBM's OpenMP runtime (neither base image has it).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 portfolio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin portfolio \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=venv /opt/venv /opt/venv
# The packages this image runs, last, straight into the venv (what `pip install --no-deps .` would
# put there, less the metadata nothing reads): a code-only change rebuilds these small layers only.
COPY feature_repo /opt/venv/lib/python3.11/site-packages/feature_repo
COPY serving /opt/venv/lib/python3.11/site-packages/serving
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
CMD ["python", "-m", "serving.sentiment_text", "--host", "127.0.0.1", "--http_port", "8080"]

# syntax=docker/dockerfile:1.7
# The model server image: one KServe predictor per model (`python -m serving.<name>`), loading its
# champion from MLflow; torch (CPU build) and transformers run the sentiment_text transformer. The
# same image runs the Feast feature server (`feast serve`, from the `features` extra the `serving`
# extra includes) and the dev-only in-chart MLflow server.
# Build from the repository root: docker build -f docker/model-server.Dockerfile -t portfolio-os/model-server:0.1.0 .

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
      -c requirements/constraints.txt ".[serving]" \
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
RUN groupadd --system --gid 10001 portfolio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin portfolio \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=builder /opt/venv /opt/venv
# The Feast repo folder (feature_store*.yaml) for `feast --chdir /app/feature_repo serve`.
COPY feature_repo /app/feature_repo
WORKDIR /app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/live', timeout=2)"]
CMD ["python", "-m", "serving.technical", "--host", "127.0.0.1", "--http_port", "8080"]

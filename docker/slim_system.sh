#!/bin/sh
# The gateway's operating system: a Debian bookworm root filesystem (scripts/base_image.sh's or the
# official python slim image) less what only installs, upgrades or builds software.
#
# Runs as the last step of docker/gateway.Dockerfile's `system` stage, whose whole filesystem the
# runtime copies in one layer (FROM scratch): what goes here is gone from the image, not hidden
# under a whiteout. The image is never upgraded in place (a new image is built), so nothing in it
# needs a package manager; docker/check_libraries.sh then proves, with the venv in place, that
# every program and shared library left still finds every library it links.
#
#   docker/slim_system.sh        # as root, in the stage; removes itself
set -eu

# Packages whose files go (listed by dpkg before dpkg goes): the package tools and their keyrings,
# perl (only debconf and the package scripts use it), the user-management tools (the `portfolio`
# user exists by now), the ext4 and block-device tools and the rest of util-linux (a container mounts
# nothing; systemd's and udev's client libraries go with them), the wheels `python -m venv` seeds a
# venv with, lib2to3 and distutils (nothing in the venv imports them; numpy.distutils is removed
# with the venv's build tools), and the TLS and crypto libraries only apt's https transport and
# gpgv link (Python's own TLS, libssl and libcrypto, stays); login and PAM (nobody logs in); the
# system time-zone database (Python's zoneinfo falls back to the `tzdata` package pandas requires;
# with no /etc/localtime the C library's local time is UTC, as in any container without TZ); and
# Berkeley DB, whose only user is the stdlib's dbm.ndbm (removed below: `dbm` falls back to dbm.dumb).
PACKAGES="apt libapt-pkg6.0 dpkg debconf debian-archive-keyring gpgv perl-base adduser passwd
  libsemanage2 libsemanage-common libsepol2 e2fsprogs logsave libss2 libext2fs2
  python3-pip-whl python3-setuptools-whl python3-lib2to3 python3-distutils
  libgnutls30 libp11-kit0 libtasn1-6 libnettle8 libhogweed6 libidn2-0 libunistring2
  util-linux util-linux-extra bsdutils mount sysvinit-utils init-system-helpers libsmartcols1
  libsystemd0 libudev1 libgcrypt20 libgpg-error0
  login libpam-modules libpam-modules-bin libpam-runtime libpam0g tzdata libdb5.3"

if command -v dpkg-query >/dev/null 2>&1; then
  # The whole list first: dpkg-query itself is among the files that go.
  for package in $PACKAGES; do
    dpkg-query --listfiles "$package" 2>/dev/null || true
  done >/tmp/slim-files
  while read -r path; do
    # Files and links to files only: a directory (or usrmerge's /lib -> usr/lib) may hold another
    # package's files.
    if [ ! -d "$path" ] && { [ -f "$path" ] || [ -L "$path" ]; }; then rm -f "$path"; fi
  done </tmp/slim-files
fi

# The package databases and caches, debconf's perl modules, logs; Python's documentation topics
# (help() only), its regression tests, IDLE, turtle demos and ensurepip (a venv's seed) on either base.
rm -rf /etc/localtime /etc/timezone /usr/lib/python3.11/lib-dynload/_dbm.cpython-311-x86_64-linux-gnu.so \
  /var/lib/dpkg /var/lib/apt /var/cache/apt /var/cache/debconf /var/log/* /etc/apt /etc/dpkg \
  /usr/share/perl5 /usr/lib/x86_64-linux-gnu/perl-base /usr/share/lintian /usr/share/bash-completion \
  /usr/share/python-wheels /usr/share/keyrings \
  /usr/lib/python3.11/pydoc_data /usr/lib/python3.11/test /usr/lib/python3.11/idlelib \
  /usr/lib/python3.11/turtledemo /usr/lib/python3.11/ensurepip /usr/lib/python3.11/lib2to3 \
  /usr/local/lib/python3.11/pydoc_data /usr/local/lib/python3.11/test /usr/local/lib/python3.11/idlelib \
  /usr/local/lib/python3.11/turtledemo /usr/local/lib/python3.11/ensurepip /usr/local/lib/python3.11/lib2to3 \
  /tmp/* /var/tmp/* "$0"

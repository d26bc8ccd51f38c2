#!/usr/bin/env bash
# Builds a local image that stands in for python:3.11-slim-bookworm where no registry is reachable:
# Debian bookworm (minbase) with Debian's Python 3.11 and a venv first on PATH, so that `python` and
# `pip` behave as in the official image (Debian's own Python is "externally managed"). Python's headers
# (python3-dev) are included as the official image has them, so that sdists with C extensions build.
#   images/standin-base.sh [IMAGE]     (default localhost/prodml-python-standin:3.11-bookworm)
# Needs root, debootstrap and podman; takes 1-4 minutes (network, CPU). Reuses IMAGE if it exists.
set -euo pipefail
IMAGE=${1:-localhost/prodml-python-standin:3.11-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
VENV=/opt/python

if [ "$(id -u)" != 0 ]; then
    echo "images/standin-base.sh needs root (debootstrap and rootful podman); run it as root." >&2
    exit 2
fi
if podman image exists "$IMAGE"; then
    echo "==> $IMAGE exists"
    exit 0
fi
ROOTFS=$(mktemp -d "${TMPDIR:-/tmp}/prodml-standin.XXXXXX")
trap 'rm -rf "$ROOTFS"' EXIT
echo "==> debootstrap bookworm into $ROOTFS"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,python3-dev,ca-certificates \
    bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || { tail -20 "$ROOTFS.log"; exit 1; }
rm -f "$ROOTFS.log"
chroot "$ROOTFS" python3 -m venv "$VENV"
# apt lists and caches are not in the official slim image either.
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb
echo "==> podman import $IMAGE"
tar -C "$ROOTFS" -c . | podman import \
    --change "ENV PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" \
    --change 'CMD ["python3"]' \
    --quiet - "$IMAGE" >/dev/null
podman run --rm "$IMAGE" sh -c 'python --version && pip --version'

#!/bin/sh
# Makes sure a Debian 12 base image exists under TAG (default
# debian:bookworm-slim). On a machine that can pull, `docker pull` gets it;
# where no registry is reachable, it is built from Debian's packages with
# debootstrap and imported under the same tag, so the project's Dockerfiles
# build unchanged in both places.
# Usage: tools/base-image.sh [TAG]
set -eu
tag=${1:-debian:bookworm-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
    exit 0
fi
if [ "${MOONGATE_NO_PULL:-}" != 1 ] && timeout 60 docker pull "$tag" >/dev/null 2>&1; then
    echo "base-image: pulled $tag" >&2
    exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    else
        echo "base-image: debootstrap is missing: sudo apt-get install -y debootstrap" >&2
        exit 1
    fi
fi

root=$(mktemp -d /tmp/moongate-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM
echo "base-image: building $tag with debootstrap from $mirror (a few minutes)" >&2
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    rm -f "$root.log"
    exit 1
}
rm -f "$root.log"
# Keep it slim, as the official image is: no package lists, caches or docs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
       "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
       "$root"/var/log/*.log "$root"/tmp/*
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$mirror" "$mirror" > "$root/etc/apt/sources.list"
tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "base-image: imported $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)" >&2

#!/usr/bin/env bash
# Builds the image for one architecture with buildah — no Docker engine, no registry — and writes
# the OCI archive target/image/realtime-<arch>.oci.tar.
#
#   docker/build-image.sh amd64|arm64
#
# It runs docker/Dockerfile as `docker buildx build --platform linux/<arch>` would. The one base
# image that Dockerfile pulls, debian:trixie-slim (for the build platform), can't be pulled
# here, so it is made first from Debian's packages with debootstrap and stored under the same
# name; see docker/README.md for what differs. Needs root (buildah with chroot isolation and the
# vfs storage driver; debootstrap). Heavy steps run under `nice -n 19`.
#
# Environment: IMAGE_STORE (default target/image/containers) holds buildah's images and layers;
# REBUILD_BASE=1 makes the base image again.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-}
case "$arch" in
  amd64 | arm64) ;;
  *) echo "usage: docker/build-image.sh amd64|arm64" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "build-image.sh: run as root (buildah chroot builds, debootstrap)" >&2; exit 1; }

need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  nice -n 19 apt-get update -qq
  nice -n 19 apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

out_dir=target/image
store=${IMAGE_STORE:-$out_dir/containers}
mkdir -p "$out_dir" "$store"
store=$(cd "$store" && pwd)
bh() { buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs "$@"; }

debian_release=trixie
base=docker.io/library/debian:$debian_release-slim
build_arch=$(dpkg --print-architecture)

# The build stages' base image, for the build platform: a minbase debootstrap with the apt
# sources of Debian's official image (deb822, main, updates and security).
if [ "${REBUILD_BASE:-0}" = 1 ] || ! bh inspect --type image "$base" >/dev/null 2>&1; then
  echo "== making $base ($build_arch) with debootstrap"
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  nice -n 19 debootstrap --variant=minbase --arch="$build_arch" "$debian_release" "$mnt" \
    http://deb.debian.org/debian >"$out_dir/debootstrap.log" 2>&1 \
    || { tail -20 "$out_dir/debootstrap.log" >&2; exit 1; }
  rm -f "$mnt/etc/apt/sources.list"
  cat >"$mnt/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $debian_release $debian_release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $debian_release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -rf "$mnt"/var/lib/apt/lists/* "$mnt"/var/cache/apt/*.bin "$mnt"/var/cache/apt/archives/*.deb
  find "$mnt/dev" -mindepth 1 -delete
  bh umount "$ctr" >/dev/null
  bh config --arch "$build_arch" --os linux --cmd bash \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bh commit --quiet --rm "$ctr" "$base" >/dev/null
fi

echo "== building linux/$arch from docker/Dockerfile"
tag=localhost/realtime:$arch
# BUILDPLATFORM/BUILDARCH: BuildKit sets them; buildah 1.28 leaves them empty (and would look for
# a base image of the target's architecture).
# build_ca: this machine reaches crates.io through a proxy that only the host's CA bundle trusts.
# No --layers: with the vfs driver every cached layer is a full copy of its stage's file tree
# (1–2 GB for the toolchain). The cargo registry and target directory persist in the
# Dockerfile's cache mounts, so a rebuild recompiles only what changed.
nice -n 19 buildah --root "$store/root" --runroot "$store/run" --storage-driver vfs \
  build --isolation chroot --layers=false --pull-never \
  --platform "linux/$arch" \
  --build-arg BUILDPLATFORM="linux/$build_arch" --build-arg BUILDARCH="$build_arch" \
  -f docker/Dockerfile --ignorefile docker/Dockerfile.dockerignore \
  --secret id=build_ca,src=/etc/ssl/certs/ca-certificates.crt \
  -t "$tag" .

bh rm --all >/dev/null
bh rmi --prune >/dev/null 2>&1 || true

archive=$out_dir/realtime-$arch.oci.tar
rm -f "$archive"
bh push --quiet "$tag" "oci-archive:$archive:realtime:$arch"
echo "== wrote $archive ($(du -h "$archive" | cut -f1) compressed)"

#!/usr/bin/env bash
# Builds the Debian package jitd_<version>-1_<arch>.deb with debhelper.
# The version is project(jitd VERSION ...) in CMakeLists.txt; packaging/debian/changelog's top
# entry must carry it (checked here, so the two cannot drift).
# The tracked files (`git ls-files`, as they are in the work tree) are copied to a temporary
# directory with packaging/debian as debian/, and built there with `dpkg-buildpackage -b`,
# without tests (CI runs them once, on the plain build). Runs as root, in CI or in a minimal
# Debian 12 chroot: it installs the build dependencies first (scripts/install-deps.sh).
# Usage: scripts/package.sh [OUTPUT_DIR]   (default: $JITD_PACKAGE_DIR, else build-package/)
# The last line of stdout is the .deb's absolute path; the build's own output goes to stderr.
set -euo pipefail
out=${1:-${JITD_PACKAGE_DIR:-}}
[ -z "$out" ] || out=$(realpath -m -- "$out")  # relative to where the caller stands
cd "$(dirname "$0")/.."
out=${out:-$PWD/build-package}

scripts/install-deps.sh >&2

version=$(sed -nE 's/^project\(jitd VERSION ([0-9][0-9.]*)[ )].*/\1/p' CMakeLists.txt)
if [ -z "$version" ]; then
  echo "package: no 'project(jitd VERSION x.y.z ...)' in CMakeLists.txt" >&2
  exit 1
fi
changelog_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "${changelog_version%-*}" != "$version" ]; then
  echo "package: packaging/debian/changelog's top entry is $changelog_version but" \
    "CMakeLists.txt says $version: add an entry (dch -c packaging/debian/changelog" \
    "-v $version-1)" >&2
  exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/jitd-package.XXXXXX")
trap 'rm -rf "$work"' EXIT
source_dir=$work/jitd-$version
mkdir "$source_dir"
# Tracked files only: no build directories or other local leftovers reach the package.
git ls-files -z | tar --null --files-from=- --create --file=- | tar --extract --file=- \
  --directory="$source_dir"
cp -r packaging/debian "$source_dir/debian"

arch=$(dpkg-architecture -qDEB_HOST_ARCH)
(
  cd "$source_dir"
  DEB_BUILD_OPTIONS="nocheck parallel=${JITD_PACKAGE_JOBS:-$(nproc)}" \
    dpkg-buildpackage -b -us -uc >&2
)
deb=jitd_${changelog_version}_${arch}.deb
if [ ! -f "$work/$deb" ]; then
  echo "package: dpkg-buildpackage made no $deb (made: $(ls "$work"))" >&2
  exit 1
fi
mkdir -p "$out"
cp "$work/$deb" "$out/"
realpath "$out/$deb"

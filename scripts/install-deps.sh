#!/usr/bin/env bash
# Installs jitd's build and test dependencies from Debian 12's own packages.
# Idempotent: asks apt only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  libnftnl-dev libmnl-dev libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libcli11-dev libmicrohttpd-dev libcurl4-openssl-dev libsystemd-dev libexpected-dev
  libssl-dev  # HMAC-SHA256 of webhook deliveries (libcrypto)
  libgtest-dev libgmock-dev libnetfilter-conntrack-dev zlib1g-dev
  # The eBPF backend: libbpf to load and attach, bpftool for vmlinux.h and the skeleton at build
  # time (bpf/CMakeLists.txt) and for the kernel tests to read pinned maps.
  libbpf-dev bpftool
  # What the tests and benchmarks run or read; tests/kernel/lab.py and kernel_test_support.cpp
  # check for each up front. ip, nft, conntrack, python3, setpriv (util-linux, for jitctl as
  # another user) and /etc/protocols (netbase: without it nft prints "6" for "tcp").
  iproute2 nftables conntrack python3 util-linux netbase
  # iptables-nft and iptables-legacy: kernel.nft_conflicts loads their rules like ufw would.
  iptables
  curl  # README's API examples
  # promtool checks jitd's /metrics and tests/kernel/test_metrics.py runs a real Prometheus server
  # in its namespace. Without recommends (node_exporter) it is about 100 MB of Go binaries.
  prometheus
  # trafgen (netsniff-ng) crafts the SYN flood of tests/bench/flood.py (ctest bench.flood_smoke):
  # spoofed sources over a /16 at a protected port, sent from a throw-away namespace.
  netsniff-ng
  # Fuzzing and sanitizers (scripts/test.sh, scripts/fuzz.sh): clang with libFuzzer and its
  # sanitizer runtimes (libclang-rt is only recommended by clang), llvm-symbolizer for readable
  # reports; nm (binutils) for the no-shell check.
  clang libclang-rt-14-dev llvm binutils
  # The Debian package (scripts/package.sh, tests/package/check_package.py): dpkg-buildpackage
  # (dpkg-dev) with debhelper and its bash-completion addon (no fakeroot: the package declares
  # Rules-Requires-Root: no); the man pages are generated from --help (help2man) and docs/*.md
  # (go-md2man, python3); lintian checks the package; systemd-analyze (systemd) verifies the
  # units and rates their sandbox; man (man-db) renders the man pages as lintian does.
  dpkg-dev debhelper bash-completion help2man go-md2man lintian systemd man-db
  # The VM test (tests/vm/run): mmdebstrap builds a Debian 12 image, mke2fs -d (e2fsprogs)
  # turns it into a disk without loop devices or mounts, debugfs puts the run's SSH key in,
  # qemu boots it (TCG: no /dev/kvm needed), ssh/scp drive it, ansible-playbook runs the
  # packaging/examples/ansible playbook against it.
  mmdebstrap qemu-system-x86 e2fsprogs openssh-client ansible-core
)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root to install them" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

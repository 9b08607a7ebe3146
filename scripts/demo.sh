#!/usr/bin/env bash
# Self-contained demo of jitd's main job, run as root on a fresh Debian 12 machine:
# installs the dependencies, builds, then inside two network namespaces it creates
# (a "VM" running jitd and sshd-like listener, and an "admin laptop"), shows
#   blocked → grant → connected → expired
# with real TCP connections. The host's own ruleset is never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target jitd jitctl >/dev/null

tag=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
vm=jitd-demo-$tag-vm laptop=jitd-demo-$tag-laptop
work=$(mktemp -d /tmp/jitd-demo-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns del "$vm" 2>/dev/null || true
  ip netns del "$laptop" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
try_ssh() {  # a real TCP round trip from the laptop to port 22 of the VM
  if ip netns exec "$laptop" python3 "$root/tests/kernel/netpeer.py" connect tcp 10.99.0.1 22 \
      --source 10.99.0.2 --timeout 1 2>/dev/null; then
    echo "   laptop 10.99.0.2 → vm:22  CONNECTED"
  else
    echo "   laptop 10.99.0.2 → vm:22  blocked"
  fi
}

say "Two network namespaces: '$vm' (10.99.0.1) and '$laptop' (10.99.0.2)"
ip netns add "$vm"
ip netns add "$laptop"
ip link add "jd$tag" netns "$vm" type veth peer name "jl$tag" netns "$laptop"
ip -n "$vm" addr add 10.99.0.1/24 dev "jd$tag"
ip -n "$laptop" addr add 10.99.0.2/24 dev "jl$tag"
for ns in "$vm" "$laptop"; do ip -n "$ns" link set lo up; done
ip -n "$vm" link set "jd$tag" up
ip -n "$laptop" link set "jl$tag" up
ip netns exec "$vm" python3 tests/kernel/netpeer.py serve --tcp 22 > "$work/listener.out" &
pids+=($!)
sleep 0.5

say "Before jitd: port 22 is open to everyone"
try_ssh

mkdir -p "$work/policies.d"
cp packaging/policies.d/10-management.yaml "$work/policies.d/"
cat > "$work/jitd.yaml" <<CONF
socketPath: $work/jitd.sock
socketGroup: ""
policyDirectory: $work/policies.d
stateDirectory: $work/state
nftTable: jitd
CONF
say "Policy (packaging/policies.d/10-management.yaml), checked with jitd --validate"
build/jitd --config "$work/jitd.yaml" --validate
ip netns exec "$vm" build/jitd --config "$work/jitd.yaml" > "$work/jitd.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$work/jitd.sock" ] && break; sleep 0.1; done
jitctl() { build/jitctl --socket "$work/jitd.sock" "$@"; }

say "jitd started: deny by default"
try_ssh
jitctl policy

say "The admin asks for 8 seconds of SSH from 10.99.0.2"
jitctl grant --port 22 --source 10.99.0.2 --duration 8s --reason "demo: patch openssl"
try_ssh
jitctl list
echo "   the kernel's own view (nft list set inet jitd grants4, in the VM's namespace):"
ip netns exec "$vm" nft list set inet jitd grants4 | sed 's/^/   /'

say "Waiting for the kernel to end the grant"
sleep 9
try_ssh
echo "   audit log ($work/state/audit.jsonl):"
sed 's/^/   /' "$work/state/audit.jsonl"

say "Done. The namespaces are removed on exit; the host's ruleset was never touched."
cat <<'NEXT'

To run jitd for real on this host (this changes the host's firewall):
  sudo cmake --install build          # /usr/local/sbin/jitd, /usr/local/bin/jitctl
  sudo install -D -m 0644 packaging/jitd.yaml /etc/jitd/jitd.yaml
  sudo install -D -m 0644 packaging/policies.d/10-management.yaml /etc/jitd/policies.d/10-management.yaml
  sudo jitd --validate                # file:line:col: message for every error
  sudo groupadd --system jitd         # members may request and revoke
  sudo install -m 0644 systemd/jitd.service /etc/systemd/system/ && sudo systemctl enable --now jitd
  Keep a permanent allow-list entry for your own management host before you lock down port 22.
NEXT

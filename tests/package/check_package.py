#!/usr/bin/env python3
"""Checks the Debian package that scripts/package.sh builds, without installing it.

Usage: tests/package/check_package.py PATH/TO/jitd_VERSION_ARCH.deb

Installing it here would start jitd in the host's network namespace, so everything is checked
on the extracted package: its file list, conffiles, dependencies, maintainer scripts (prerm is
run with a stand-in jitd), man pages, bash completion, lintian, and the systemd units
(`systemd-analyze verify`, `systemd-analyze security`, and an ordering-cycle check with
cloud-init's and ifupdown's units). The VM test installs, upgrades and removes it for real.
Exits 1 naming every failed check.

lintian warnings left on purpose (`lintian --fail-on error` must pass; there are no
overrides):
  initial-upload-closes-no-bugs   the 0.1.0-1 changelog entry closes no Debian bug: jitd is
                                  not in Debian, there is no ITP bug to close.
and, as info (-I): package-supports-alternative-init-but-no-init.d-script (jitd needs
systemd: socket activation, sd_notify, the watchdog; the units are its only supported
service manager) and spelling-error-in-binary "userA users" (a false positive: bytes of
machine code in /usr/sbin/jitd that happen to read "userA").
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MAX_EXPOSURE = 2.5

EXPECTED_FILES = {
    "/etc/jitd/jitd.yaml",
    "/etc/jitd/policies.d/10-management.yaml.example",
    "/lib/systemd/system/jitd.service",
    "/lib/systemd/system/jitd.socket",
    "/usr/bin/jitctl",
    "/usr/sbin/jitd",
    "/usr/share/bash-completion/completions/jitctl",
    # The unit drop-in for backend: ebpf (tests/vm/run installs it in the guest).
    "/usr/share/jitd/systemd/jitd-ebpf.conf",
    # The unit drop-in for IP sockets: metricsListen and webhooks.
    "/usr/share/jitd/systemd/jitd-tcp.conf",
    "/usr/share/doc/jitd/README.md.gz",
    "/usr/share/doc/jitd/api.md.gz",
    "/usr/share/doc/jitd/changelog.Debian.gz",
    "/usr/share/doc/jitd/copyright",
    "/usr/share/doc/jitd/operations.md.gz",
    "/usr/share/doc/jitd/policy.md.gz",
    "/usr/share/doc/jitd/security.md.gz",
    "/usr/share/man/man1/jitctl.1.gz",
    "/usr/share/man/man5/jitd.yaml.5.gz",
    "/usr/share/man/man8/jitd.8.gz",
}
EXPECTED_CONFFILES = {"/etc/jitd/jitd.yaml", "/etc/jitd/policies.d/10-management.yaml.example"}
# Libraries jitd and jitctl link; dpkg-shlibdeps must find each of them on its own.
SHLIB_PACKAGES = ["libc6", "libnftnl11", "libmnl0", "libsystemd0", "libmicrohttpd12",
                  "libnetfilter-conntrack3", "libcurl4", "libyaml-cpp0.7", "zlib1g"]
# Units of other packages whose ordering meets jitd's at boot (tests/package/units/).
FOREIGN_UNITS = ["cloud-init-local.service", "cloud-init.service", "networking.service"]

failures = []


def check(condition, message, detail=""):
    """Prints the check; on failure also the detail, and remembers it."""
    if not condition and detail:
        message = f"{message}: {detail}"
    print(("ok    " if condition else "FAIL  ") + message)
    if not condition:
        failures.append(message)
    return condition


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def check_contents(deb):
    listing = run(["dpkg-deb", "--contents", deb]).stdout.splitlines()
    files = set()
    for line in listing:
        mode, path = line.split()[0], line.split(None, 5)[5]
        if not mode.startswith("d"):
            files.add(path.removeprefix(".").split(" -> ")[0])
    missing, extra = EXPECTED_FILES - files, files - EXPECTED_FILES
    check(not missing, "file list: every expected file", f"missing {sorted(missing)}")
    check(not extra, "file list: nothing else", f"unexpected {sorted(extra)}")
    check(not [f for f in files if f.startswith("/usr/local")], "file list: nothing in /usr/local")
    check(not [f for f in files if re.search(r"test|fuzz|bench", Path(f).name)],
          "file list: no test, fuzz or benchmark binaries")


def check_control(deb, control_dir):
    conffiles = set((control_dir / "conffiles").read_text().split())
    check(conffiles == EXPECTED_CONFFILES, f"conffiles are {sorted(EXPECTED_CONFFILES)}",
          f"found {sorted(conffiles)}")
    depends = run(["dpkg-deb", "--field", deb, "Depends"]).stdout.strip()
    names = {re.split(r"[ (]", d.strip())[0] for d in depends.split(",")}
    check(all(p in names for p in SHLIB_PACKAGES),
          f"Depends (from dpkg-shlibdeps) has {SHLIB_PACKAGES}", f"Depends: {depends}")
    source_control = (REPO / "packaging/debian/control").read_text()
    hand_listed = re.search(r"^Depends:\s*(.*)$", source_control, re.M).group(1).strip()
    # passwd: postinst's groupadd (required priority, but not Essential); no library by hand.
    check(hand_listed == "${shlibs:Depends}, ${misc:Depends}, passwd",
          "debian/control lists no library by hand (only passwd, for groupadd)",
          f"Depends: {hand_listed}")


def check_maintainer_scripts(control_dir):
    prerm = (control_dir / "prerm").read_text()
    stop = prerm.find("deb-systemd-invoke stop")
    uninstall = prerm.find("/usr/sbin/jitd --uninstall")
    check(stop >= 0 and uninstall > stop,
          "prerm runs jitd --uninstall after the units are stopped")
    # prerm for real, with a stand-in jitd that records its arguments (and fails, to check
    # that a failure does not fail the removal). /run/systemd/system does not exist here, so
    # the stop snippet does nothing.
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp, "calls")
        stub = Path(tmp, "jitd")
        stub.write_text(f'#!/bin/sh\necho "$@" >>{log}\necho "stand-in failure" >&2\nexit 1\n')
        stub.chmod(0o755)
        script = Path(tmp, "prerm")
        script.write_text(prerm.replace("/usr/sbin/jitd", str(stub)))
        upgrade = run(["sh", "-e", str(script), "upgrade", "0.1.0-2"])
        check(upgrade.returncode == 0 and not log.exists(),
              "prerm upgrade: exit 0, jitd --uninstall not run")
        remove = run(["sh", "-e", str(script), "remove"])
        calls = log.read_text().split("\n")[0] if log.exists() else ""
        check(calls == "--uninstall", "prerm remove: runs jitd --uninstall", f"ran {calls!r}")
        check(remove.returncode == 0 and "stand-in failure" in remove.stderr,
              "prerm remove: a failing jitd --uninstall is reported and the removal goes on")

    # An upgrade keeps the table and every live grant: the units are not stopped before the
    # new files are unpacked, only restarted after (jitd hands its table to the new jitd).
    check(re.search(r'\[ "\$1" = remove \][^\n]*\n\s*deb-systemd-invoke stop', prerm),
          "prerm stops the units on remove only, not on upgrade")
    postinst = (control_dir / "postinst").read_text()
    check("_dh_action=restart" in postinst, "postinst restarts the units after an upgrade")
    group = postinst.find("groupadd --system jitd")
    check(group >= 0 and "getent group jitd" in postinst[:group],
          "postinst creates the jitd group when it is missing")
    check(0 <= group < postinst.find("deb-systemd-invoke"),
          "postinst creates the group before the units start (SocketGroup=jitd)")
    postrm = (control_dir / "postrm").read_text()
    check(re.search(r'if \[ "\$1" = purge \]; then\s+rm -rf /var/lib/jitd\s', postrm),
          "postrm purge removes /var/lib/jitd")
    check("groupdel" not in postrm and "delgroup" not in postrm, "postrm keeps the jitd group")


def check_man_pages(root):
    env = dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80", MANROFFSEQ="")
    for page in ["man1/jitctl.1.gz", "man5/jitd.yaml.5.gz", "man8/jitd.8.gz"]:
        path = root / "usr/share/man" / page
        # As lintian renders them: any groff warning is a failure.
        result = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(path)], env=env)
        text = run(["man", "-l", str(path)], env=env).stdout
        check(result.returncode == 0 and not result.stderr.strip() and "NAME" in text
              and len(text) > 1000, f"{page} renders without warnings", result.stderr.strip())
        # A table row packaging/man/tables-to-lists.py failed to take apart shows its markup.
        check("T{" not in text and "T}" not in text, f"{page}: no table markup left")


def check_completion(root):
    completion = root / "usr/share/bash-completion/completions/jitctl"
    check(run(["bash", "-n", str(completion)]).returncode == 0, "bash completion: bash -n clean")
    script = (f"source /usr/share/bash-completion/bash_completion; source {completion}; "
              'COMP_WORDS=(jitctl "$1"); COMP_CWORD=1; COMP_LINE="jitctl $1"; '
              'COMP_POINT=${#COMP_LINE}; _jitctl; echo "${COMPREPLY[*]}"')
    words = run(["bash", "-c", script, "-", "rev"]).stdout.strip()
    check(words == "revoke", "bash completion: 'jitctl rev<TAB>' → revoke", f"got {words!r}")


def check_lintian(deb):
    result = run(["lintian", "--fail-on", "error", deb])
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EWIPX]: ", line)]
    for tag in tags:
        print(f"      {tag}")
    check(result.returncode == 0 and not [t for t in tags if t.startswith("E:")],
          "lintian: no errors")


def settings(unit_file):
    """KEY -> [values] of a unit file, in order; comments and section headers skipped."""
    found = {}
    for line in unit_file.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def check_unit_contract(root):
    """What docs/operations.md ("Service hardening") promises and the daemon relies on."""
    service = settings(root / "lib/systemd/system/jitd.service")
    socket = settings(root / "lib/systemd/system/jitd.socket")
    check(service.get("CapabilityBoundingSet") == ["CAP_NET_ADMIN"],
          "jitd.service: capability bounding set is CAP_NET_ADMIN alone",
          str(service.get("CapabilityBoundingSet")))
    absent = ["ExecStartPre", "PartOf", "RuntimeDirectory", "ProcSubset", "PrivateUsers",
              "PrivateNetwork", "BindsTo"]
    present = [key for key in absent if key in service]
    check(not present, f"jitd.service: none of {absent}", f"found {present}")
    check(service.get("ExecStart") == ["/usr/sbin/jitd"] and service.get("Type") == ["notify"]
          and "WatchdogSec" in service, "jitd.service: Type=notify, ExecStart=/usr/sbin/jitd, "
          "WatchdogSec=")
    check(socket.get("ListenStream") == ["/run/jitd/jitd.sock"]
          and socket.get("SocketGroup") == ["jitd"] and socket.get("SocketMode") == ["0660"],
          "jitd.socket: /run/jitd/jitd.sock, group jitd, mode 0660 (jitd.yaml's defaults)")
    for name, unit in [("jitd.service", service), ("jitd.socket", socket)]:
        check(unit.get("DefaultDependencies") == ["no"], f"{name}: DefaultDependencies=no")
    # Protection before any interface comes up, like nftables.service.
    ordering = {key: " ".join(service.get(key, [])).split() for key in ("Before", "After", "Wants")}
    check("network-pre.target" in ordering["Before"] and "network-pre.target" in ordering["Wants"]
          and "network-pre.target" not in ordering["After"]
          and {"local-fs.target", "nftables.service"} <= set(ordering["After"]),
          "jitd.service: Before= and Wants=network-pre.target, After=local-fs.target "
          "nftables.service", str(ordering))


def unit_root(extracted, directory):
    """A root for systemd-analyze: the package's files, plus /bin/sh for ExecReload=."""
    shutil.copytree(extracted, directory, symlinks=True)
    (directory / "bin").mkdir(exist_ok=True)
    shutil.copy(os.path.realpath("/bin/sh"), directory / "bin/sh")
    return directory


def check_units(extracted, tmp):
    root = unit_root(extracted, tmp / "verify")
    # MANPATH: Documentation=man:... must name pages the package ships.
    env = dict(os.environ, MANPATH=str(root / "usr/share/man"))
    result = run(["systemd-analyze", "verify", f"--root={root}", "jitd.service", "jitd.socket"],
                 env=env)
    output = (result.stdout + result.stderr).strip()
    check(result.returncode == 0 and not output, "systemd-analyze verify: clean", output)

    result = run(["systemd-analyze", "security", "--offline=yes", f"--root={root}",
                  "--no-pager", "jitd.service"])
    found = re.search(r"Overall exposure level for jitd\.service: ([0-9.]+)", result.stdout)
    exposure = float(found.group(1)) if found else None
    for line in result.stdout.splitlines():
        if line.startswith("✗"):
            print(f"      {' '.join(line.split())}")
    check(exposure is not None and exposure <= MAX_EXPOSURE,
          f"systemd-analyze security: exposure {exposure} <= {MAX_EXPOSURE}")


def cycles(extracted, directory, socket_text=None):
    """Ordering cycles `systemd-analyze verify` finds booting into default.target with
    systemd's own units, jitd's and cloud-init's and ifupdown's, all enabled."""
    root = unit_root(extracted, directory)
    units = root / "lib/systemd/system"
    for unit in Path("/lib/systemd/system").iterdir():
        if (units / unit.name).exists():
            continue
        if unit.is_dir() and not unit.is_symlink():
            shutil.copytree(unit, units / unit.name, symlinks=True)
        else:
            shutil.copy(unit, units / unit.name, follow_symlinks=False)
    for unit in FOREIGN_UNITS:
        shutil.copy(HERE / "units" / unit, units / unit)
    if socket_text is not None:
        (units / "jitd.socket").write_text(socket_text)
    enabled = {"sysinit.target": ["jitd.service"], "sockets.target": ["jitd.socket"],
               "multi-user.target": FOREIGN_UNITS}
    for target, wanted in enabled.items():
        wants = root / f"etc/systemd/system/{target}.wants"
        wants.mkdir(parents=True, exist_ok=True)
        for unit in wanted:
            (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    result = run(["systemd-analyze", "verify", "--man=no", f"--root={root}", "default.target"])
    return [line for line in (result.stdout + result.stderr).splitlines() if "cycle" in line]


def check_ordering(extracted, tmp):
    found = cycles(extracted, tmp / "cycles")
    check(not found, "no ordering cycle with cloud-init and ifupdown", "\n".join(found))
    # The check must be able to see the cycle it guards against: with the default
    # dependencies the socket is ordered after sysinit.target, and cloud-init closes the loop.
    socket = (extracted / "lib/systemd/system/jitd.socket").read_text()
    with_defaults = socket.replace("DefaultDependencies=no", "DefaultDependencies=yes")
    check(bool(cycles(extracted, tmp / "control", with_defaults)),
          "the cycle check finds the cycle of a socket with default dependencies")


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} PATH/TO/jitd_VERSION_ARCH.deb")
    deb = sys.argv[1]
    if not Path(deb).is_file():
        sys.exit(f"check_package: {deb}: no such file")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        extracted, control_dir = tmp / "root", tmp / "control-files"
        subprocess.run(["dpkg-deb", "--extract", deb, extracted], check=True)
        subprocess.run(["dpkg-deb", "--control", deb, control_dir], check=True)
        check_contents(deb)
        check_control(deb, control_dir)
        check_maintainer_scripts(control_dir)
        check_man_pages(extracted)
        check_completion(extracted)
        check_unit_contract(extracted)
        check_units(extracted, tmp)
        check_ordering(extracted, tmp)
        check_lintian(deb)
    if failures:
        print(f"check_package: {len(failures)} check(s) failed:", file=sys.stderr)
        for failure in failures:
            print(f"  {failure}", file=sys.stderr)
        sys.exit(1)
    print(f"check_package: {deb}: all checks passed")


if __name__ == "__main__":
    main()

"""No shell: jitd and jitctl import no function that runs another program and carry no
"/bin/sh" (docs/security.md, "No shell"). Reads the built binaries; needs `nm` (binutils)."""
import os
import shutil
import subprocess
import unittest

BINARIES = {"jitd": os.environ.get("JITD_BIN"), "jitctl": os.environ.get("JITCTL_BIN")}

# Everything in glibc that starts another program or a copy of this one. fork too: neither
# binary needs a child process, and a fork in a root daemon is where an exec usually follows.
# (Shared libraries are not read: libcurl imports fork for NTLM's winbind helper, which jitctl
# never enables; libp11-kit, pulled in by TLS, imports execvp + fork.)
FORBIDDEN = {
    "system", "popen", "wordexp",
    "execl", "execlp", "execle", "execv", "execve", "execvp", "execvpe", "fexecve", "execveat",
    "posix_spawn", "posix_spawnp",
    "fork", "vfork", "_Fork", "clone", "clone3",
}


def undefined_symbols(path):
    """Names the binary imports from shared libraries, without the symbol version."""
    out = subprocess.run(["nm", "-D", "--undefined-only", path], check=True, capture_output=True,
                         text=True).stdout
    return {line.split()[-1].split("@")[0] for line in out.splitlines() if line.strip()}


class NoShell(unittest.TestCase):
    def setUp(self):
        if shutil.which("nm") is None:
            self.fail("nm not found (Debian package binutils): run scripts/install-deps.sh")

    def test_no_process_spawning_imports(self):
        for name, path in BINARIES.items():
            with self.subTest(binary=name):
                self.assertTrue(path and os.path.isfile(path), f"{name}: set {name.upper()}_BIN")
                imported = undefined_symbols(path)
                self.assertTrue(imported, f"{name}: nm found no imports; is it dynamically linked?")
                self.assertEqual(sorted(imported & FORBIDDEN), [], f"{name} imports these")

    def test_no_shell_path(self):
        for name, path in BINARIES.items():
            with self.subTest(binary=name):
                with open(path, "rb") as f:
                    self.assertFalse(b"/bin/sh" in f.read(), f"{name} contains \"/bin/sh\"")


if __name__ == "__main__":
    unittest.main()

"""Each binary links only what it uses (docs/ARCHITECTURE.md, "Each program
links what it uses").

`make print-linkage` prints, for every binary the build links (programs,
bench tools, unit tests), the objects and the pkg-config packages its
build.mk declares. For each built binary this test checks, on the binary
itself:

- `readelf -d`: its NEEDED libraries, toolchain runtimes aside, are exactly
  the declared packages' libraries (the link uses --as-needed, so a declared
  library nothing calls drops out and shows here as declared but not needed);
- `nm`: every object it is linked from is reached from its first object
  (its main or test object) through the symbols they call, so no module is
  linked that nothing uses (the way the reconciler once carried common/http
  and with it libmicrohttpd).
"""
import os
import re
import subprocess
import unittest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN_DIR = os.environ.get("BIN_DIR", os.path.join(TOP, "build", "bin"))
BUILD_DIR = os.environ.get("BUILD_DIR", os.path.dirname(BIN_DIR))

# Libraries the compiler and its runtimes bring whatever a build.mk says.
TOOLCHAIN = re.compile(r"^(libc|libm|libpthread|libdl|librt|ld-linux[-\w]*|libgcc_s|"
                       r"libstdc\+\+|libasan|libubsan|liblsan|libtsan)\.so")


def linkage():
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", TOP,
         "BUILD=" + os.path.relpath(BUILD_DIR, TOP), "print-linkage"],
        check=True, capture_output=True, text=True).stdout
    rows = []
    for line in out.splitlines():
        path, objs, pkgs = line.split("|")
        rows.append((os.path.join(TOP, path), objs.split(), pkgs.split()))
    return rows


def needed(binary):
    out = subprocess.run(["readelf", "-d", binary], check=True,
                         capture_output=True, text=True).stdout
    return {m for m in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)
            if not TOOLCHAIN.match(m)}


_sonames = {}


def soname(lib):
    """The SONAME the linker records for -l<lib>."""
    if lib not in _sonames:
        path = subprocess.run(["cc", f"-print-file-name=lib{lib}.so"], check=True,
                              capture_output=True, text=True).stdout.strip()
        out = subprocess.run(["readelf", "-d", path], check=True,
                             capture_output=True, text=True).stdout
        m = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", out)
        _sonames[lib] = m.group(1) if m else os.path.basename(path)
    return _sonames[lib]


def declared(pkgs):
    if not pkgs:
        return set()
    flags = subprocess.run(["pkg-config", "--libs"] + pkgs, check=True,
                           capture_output=True, text=True).stdout.split()
    return {soname(f[2:]) for f in flags if f.startswith("-l")}


_symbols = {}


def symbols(obj):
    """(defined, undefined) global symbols of one object file."""
    if obj in _symbols:
        return _symbols[obj]
    out = subprocess.run(["nm", obj], check=True, capture_output=True, text=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "TDBRCWVGSu":
            defined.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
    _symbols[obj] = defined, undefined
    return _symbols[obj]


def unreached(objs):
    """The objects nothing reaches from objs[0] through symbol references."""
    syms = {o: symbols(o) for o in objs}
    owner = {}
    for o in objs:
        for s in syms[o][0]:
            owner.setdefault(s, o)
    seen, todo = {objs[0]}, [objs[0]]
    while todo:
        for s in syms[todo.pop()][1]:
            o = owner.get(s)
            if o and o not in seen:
                seen.add(o)
                todo.append(o)
    return [o for o in objs if o not in seen]


class LinkageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rows = linkage()

    def built(self):
        missing = [r[0] for r in self.rows if not os.path.exists(r[0])]
        self.assertEqual(missing, [], f"not built (make all, BUILD={BUILD_DIR})")
        return self.rows

    def test_every_program_and_test_is_declared(self):
        names = {os.path.relpath(r[0], BUILD_DIR) for r in self.rows}
        for want in ("bin/mailer-real", "bin/mailer-spy", "bin/reconciler",
                     "tests/test_config"):
            self.assertIn(want, names)

    def test_plain_make_builds_every_program(self):
        """`make` with no goal builds all, as its header says (the first
        rule in the file is a program's link rule otherwise)."""
        out = subprocess.run(
            ["make", "-n", "--no-print-directory", "-C", TOP, "BUILD=build/never-built"],
            check=True, capture_output=True, text=True).stdout
        for prog in ("mailer-real", "mailer-spy", "reconciler"):
            self.assertIn(f"-o build/never-built/bin/{prog} ", out)

    def test_needed_libraries_are_the_declared_ones(self):
        for path, _objs, pkgs in self.built():
            with self.subTest(binary=os.path.relpath(path, TOP)):
                have, want = needed(path), declared(pkgs)
                self.assertEqual(
                    have, want,
                    f"{path}: needs but does not declare {sorted(have - want)}; "
                    f"declares ({' '.join(pkgs)}) but does not need {sorted(want - have)}")

    def test_every_linked_object_is_used(self):
        for path, objs, _pkgs in self.built():
            with self.subTest(binary=os.path.relpath(path, TOP)):
                objs = [os.path.join(TOP, o) for o in objs]
                idle = [os.path.relpath(o, BUILD_DIR) for o in unreached(objs)]
                self.assertEqual(idle, [], f"{path} links objects nothing in it calls")


if __name__ == "__main__":
    unittest.main()

#!/usr/bin/env python3
"""check_layer.py LAYER.zip ARCH SIZE_LIMIT - assert what a telkin layer zip holds.

Exactly one entry, extensions/telkin, a regular file of mode 0755, a statically linked ELF
executable for ARCH (x86_64 or arm64, as file(1) tells) of at most SIZE_LIMIT bytes.
Prints one line per check; exits 1 on the first failure.
"""
import os
import subprocess
import sys
import tempfile
import zipfile

FILE_ARCH = {"x86_64": "x86-64", "arm64": "ARM aarch64"}


def fail(msg):
    print("FAIL " + msg)
    sys.exit(1)


def ok(msg):
    print("ok   " + msg)


def main(argv):
    if len(argv) != 4 or argv[2] not in FILE_ARCH:
        sys.stderr.write("usage: check_layer.py LAYER.zip x86_64|arm64 SIZE_LIMIT\n")
        return 2
    path, arch, limit = argv[1], argv[2], int(argv[3])
    with zipfile.ZipFile(path) as z:
        if z.testzip() is not None:
            fail("%s: CRC error" % path)
        infos = z.infolist()
        names = [i.filename for i in infos]
        if names != ["extensions/telkin"]:
            fail("%s: entries are %r, want exactly ['extensions/telkin']" % (path, names))
        ok("%s: exactly one entry, extensions/telkin" % path)
        info = infos[0]
        mode = info.external_attr >> 16
        if info.create_system != 3 or mode != 0o100755:
            fail("%s: mode %o (system %d), want 100755 from Unix" % (path, mode, info.create_system))
        ok("%s: regular file, mode 0755" % path)
        data = z.read(info)

    if len(data) > limit:
        fail("%s: extensions/telkin is %d bytes, over %d" % (path, len(data), limit))
    ok("%s: extensions/telkin is %d bytes (bound %d), zip is %d bytes"
       % (path, len(data), limit, os.path.getsize(path)))

    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        desc = subprocess.run(["file", "-b", tmp.name], check=True,
                              capture_output=True, text=True).stdout.strip()
    want = FILE_ARCH[arch]
    if not desc.startswith("ELF 64-bit LSB") or want not in desc or "static-pie linked" not in desc:
        fail("%s: file(1) says %r, want a static %s ELF executable" % (path, desc, want))
    ok("%s: %s" % (path, desc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

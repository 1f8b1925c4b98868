#!/usr/bin/env python3
"""mkzip.py OUT.zip BINARY - write a Lambda layer zip holding exactly extensions/telkin.

The bytes depend on the binary's bytes alone: one entry, fixed timestamp (1980-01-01 00:00:00,
the earliest a zip can hold), Unix mode 0755 regular file, fixed compression level, no extra
fields, no comment. The zip is written to a temporary file beside OUT and renamed into place.
"""
import os
import sys
import zipfile

ENTRY = "extensions/telkin"
DATE_TIME = (1980, 1, 1, 0, 0, 0)
MODE = 0o100755  # S_IFREG | rwxr-xr-x


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: mkzip.py OUT.zip BINARY\n")
        return 2
    out, binary = argv[1], argv[2]
    with open(binary, "rb") as f:
        data = f.read()
    if not data:
        sys.stderr.write("mkzip.py: %s is empty\n" % binary)
        return 1

    info = zipfile.ZipInfo(ENTRY, date_time=DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # Unix, so that external_attr carries the mode
    info.external_attr = MODE << 16
    info.extra = b""
    info.comment = b""

    tmp = out + ".tmp"
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

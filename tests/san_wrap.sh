#!/bin/bash
# TELKIN_BIN_WRAPPER for make e2e-asan-test: TELKIN_BIN_WRAPPER="env ASAN_OPTIONS=.. UBSAN_OPTIONS=..
# tests/san_wrap.sh LOG", then the binary. telkin's stderr still goes to the simulator (which keeps
# it, and shows it when a test fails) and is also appended to LOG, which make scans for sanitizer
# reports afterwards (UBSan ignores log_path in gcc's combined ASan+UBSan runtime). exec keeps the
# pid: the simulator's SIGSTOP/SIGCONT/SIGKILL reach telkin itself.
log=$1
shift
exec "$@" 2> >(tee -a "$log" >&2)

#!/bin/sh
# TELKIN_BIN_WRAPPER for make valgrind-test: run the extension under valgrind memcheck. Any error
# makes the process exit 99; leaks are not errors (telkin allocates once and keeps its buffers until
# exit). The summary ("ERROR SUMMARY: N errors ...") goes to stderr, which the simulator keeps.
# exec: the simulator signals (SIGSTOP/SIGCONT/SIGKILL) the pid it spawned, which must be valgrind's.
exec valgrind --error-exitcode=99 --errors-for-leak-kinds=none --leak-check=summary \
  --track-fds=no --num-callers=30 "$@"

#!/bin/sh
# in-session.sh NICE COMMAND [ARG...]: run COMMAND in a session of its own
# whose autogroup has nice NICE. Linux shares the CPU between sessions
# (autogroups) before it shares it between processes, so a process's own
# nice counts only against its session's other processes; an autogroup's
# nice counts against every other session. A negative NICE needs root
# (without it the autogroup keeps nice 0).
nice=$1
shift
exec setsid -w sh -c 'echo "$0" > /proc/self/autogroup 2>/dev/null; exec "$@"' "$nice" "$@"

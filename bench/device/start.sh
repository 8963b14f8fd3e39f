#!/usr/bin/env bash
# start.sh NAME COMMAND...: run COMMAND in the background (it outlives this call while the machine
# stays warm), log to /tmp/x/logs/NAME.log ending in "EXIT <status>"; show its start.
source bench/device/env.sh
name="$1"; shift
setsid nohup bash -c "$*; echo EXIT \$?" > "$X/logs/$name.log" 2>&1 < /dev/null &
sleep "${WAIT:-40}"; tail -c 2000 "$X/logs/$name.log"; echo; uptime

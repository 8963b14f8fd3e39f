#!/usr/bin/env bash
# wait.sh SECONDS [FILE...]: wait until every job log ends in EXIT (or the FILEs exist), at most
# SECONDS, then bring back the logs, /tmp/x/res (results.tgz) and the boundary scores (one npz).
source bench/device/env.sh
end=$((SECONDS + $1)); shift
finished() {
  if [ $# -gt 0 ]; then for f in "$@"; do [ -e "$f" ] || return 1; done; return 0; fi
  for log in $X/logs/*.log; do tail -n1 "$log" | grep -q '^EXIT' || return 1; done
}
while [ $SECONDS -lt $end ] && ! finished "$@"; do sleep 10; done
cp $X/logs/*.log "$OUT/" 2>/dev/null
[ -d $LATENTSTUDIO_HOME/cache/boundary_scores ] && python3 bench/device/collect_scores.py $LATENTSTUDIO_HOME/cache/boundary_scores "$OUT"
tar czf "$OUT/results.tgz" -C $X/res .
ls -la "$OUT"; for log in $X/logs/*.log; do echo "== $log"; tail -c 1500 "$log"; echo; done; uptime

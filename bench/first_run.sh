#!/usr/bin/env bash
# A newcomer's first run, timed: clone SOURCE into a fresh folder, run `make serve`
# on a free port and time it to the first answer of POST /predict; then the
# serving venv's size. Usage: bench/first_run.sh SOURCE DEST [LOGFILE]
# (SOURCE: a path or URL git can clone; DEST must not exist). The server is
# stopped by its process group when the answer has come, or after FIRST_RUN_TIMEOUT seconds (900).
set -euo pipefail
source_repo=$1 dest=$2 log=${3:-$dest.log}
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
git clone --quiet "$source_repo" "$dest"
cd "$dest"
body='{"applications": [{"Education": "Graduate", "ApplicantIncome": 5720, "CoapplicantIncome": 0, "Property_Area": "Urban", "Credit_History": 1}]}'
start=$(date +%s.%N)
setsid make serve PORT="$port" >"$log" 2>&1 &
server=$!
trap 'kill -- -"$server" 2>/dev/null || true' EXIT
deadline=$((SECONDS + ${FIRST_RUN_TIMEOUT:-900}))
until curl -sf -X POST "http://127.0.0.1:$port/predict" -H 'Content-Type: application/json' -d "$body" >/dev/null 2>&1; do
    kill -0 "$server" 2>/dev/null || { echo "make serve ended before answering; see $log" >&2; exit 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "no answer in time; see $log" >&2; exit 1; }
    sleep 0.5
done
end=$(date +%s.%N)
venv_mb=$(du -sm .venv | cut -f1)
other_mb=$( (du -smc .venv-* 2>/dev/null || true) | tail -1 | cut -f1)
printf '{"seconds_to_first_answer": %.1f, "serving_venv_mb": %s, "other_venvs_mb": %s, "load_average": "%s"}\n' \
    "$(echo "$end - $start" | bc)" "$venv_mb" "${other_mb:-0}" "$(cut -d' ' -f1-3 /proc/loadavg)"

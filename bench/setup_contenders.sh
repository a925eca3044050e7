#!/usr/bin/env bash
# Install every contender of bench/run.py into its own virtualenv under bench/.work/venvs/
# (gitignored), at pinned versions. Safe to re-run: a venv whose pins are already installed is
# kept. Each venv gets a freeze.txt (pip freeze) that bench/run.py records in its JSON.
#
#   bash bench/setup_contenders.sh            # all contenders
#   bash bench/setup_contenders.sh plain singer-target-jsonl   # some of them
#
# A contender that fails to install is logged (bench/.work/venvs/<name>.install.log) and the
# script goes on with the others; bench/run.py then reports it as not installed, with the reason.
set -u
cd "$(dirname "$0")"
VENVS="$PWD/.work/venvs"
PYTHON="${PYTHON:-python3.11}"
mkdir -p "$VENVS"

# name | pinned requirements (PyPI)
declare -A PINS=(
  [plain]="asyncpg==0.30.0 orjson==3.10.18"
  [singer-tap-spreadsheets]="tap-spreadsheets==1.1.2"
  [singer-tap-postgres]="meltanolabs-tap-postgres==0.10.0"
  [singer-target-postgres]="meltanolabs-target-postgres==0.8.1"
  [singer-target-jsonl]="target-jsonl==0.1.4"
  [pyairbyte]="airbyte==0.71.3"
  # airbyte-source-file 0.6.0 (and 0.5.x) on PyPI requires smart-open[all]==<its own version>, which
  # does not exist, so a plain `pip install` cannot resolve it. It is installed with --no-deps and
  # its other requirements, as published, with smart-open[azure]==7.1.0 instead (its [all] extra conflicts with the gcsfs and google-cloud-storage pins; source_file imports azure.storage.blob) (see NO_DEPS below).
  [airbyte-source-file]="airbyte-source-file==0.6.0"
)
# Installed with --no-deps, then these requirements (the package's own, one fixed).
declare -A NO_DEPS=(
  [airbyte-source-file]="airbyte-cdk>=7,<8 beautifulsoup4==4.11.1 boto3==1.21.21 fastparquet>=2024.2.0,<2025.0.0 gcsfs==2022.7.1 genson==1.3.0 google-cloud-storage==2.5.0 html5lib==1.1 lxml>=5.0,<6.0 numpy<2 openpyxl==3.1.0 pandas==2.2.3 paramiko==2.11.0 pyarrow==14.0.2 pyxlsb==1.0.10 s3fs==2022.7.1 smart-open[azure]==7.1.0 xlrd==2.0.1"
)
ORDER=(plain singer-tap-spreadsheets singer-tap-postgres singer-target-postgres singer-target-jsonl pyairbyte airbyte-source-file)
[ "$#" -gt 0 ] && ORDER=("$@")

install() {
  local name="$1" pins="${PINS[$1]}"
  local venv="$VENVS/$name" log="$VENVS/$name.install.log"
  if [ -f "$venv/pins.txt" ] && [ "$(cat "$venv/pins.txt")" = "$pins" ]; then
    echo "$name: already installed ($pins)"
    return 0
  fi
  rm -rf "$venv"
  echo "$name: installing $pins (log: $log)"
  if "$PYTHON" -m venv "$venv" >"$log" 2>&1 \
    && "$venv/bin/pip" install --disable-pip-version-check -q -U pip >>"$log" 2>&1 \
    && if [ -n "${NO_DEPS[$name]+x}" ]; then
      "$venv/bin/pip" install --disable-pip-version-check --no-deps $pins >>"$log" 2>&1 \
        && "$venv/bin/pip" install --disable-pip-version-check ${NO_DEPS[$name]} >>"$log" 2>&1
    else
      "$venv/bin/pip" install --disable-pip-version-check $pins >>"$log" 2>&1
    fi; then
    "$venv/bin/pip" freeze >"$venv/freeze.txt"
    echo "$pins" >"$venv/pins.txt"
    echo "$name: ok"
  else
    echo "$name: FAILED, see $log"
    tail -5 "$log"
    return 1
  fi
}

status=0
pids=()
for name in "${ORDER[@]}"; do
  if [ -z "${PINS[$name]+x}" ]; then echo "unknown contender venv: $name"; status=1; continue; fi
  install "$name" &
  pids+=($!)
  # two at a time: a 2-core machine
  if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}" || status=1; pids=("${pids[@]:1}"); fi
done
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status

#!/usr/bin/env bash
# `make venv`: create .venv and install the pinned packages, printing a line per package as pip collects
# it and one per stage, with the elapsed time, instead of pip's ~40 silent seconds with --quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SECONDS=0

stage() { printf '  [%3d s] %s\n' "$SECONDS" "$*"; }

# pip's lines are condensed: "Collecting X" becomes one line, the notes around it are dropped, anything
# else (errors, build output) is shown as pip printed it.
condense() {
  local line name installing=0
  while IFS= read -r line; do
    case "$line" in
      "Collecting "*)
        name=${line#Collecting }; name=${name%% (*}
        stage "collected $name" ;;
      "Processing "*.whl*)  # a wheel from a local wheelhouse (find-links): its file name says name-version
        name=${line#Processing }; name=${name%% (*}; name=${name##*/}; name=${name%%-py*}; name=${name%%-cp*}
        stage "collected ${name/-/==}" ;;
      "Installing collected packages: "*)
        installing=$(tr ',' '\n' <<<"${line#*: }" | grep -c .)
        stage "installing $installing packages (unpacking them takes a little while) ..." ;;
      "Successfully installed "*) ;;
      "Requirement already satisfied"*|"  Downloading "*|"  Using cached "*|"  Obtaining "*|"WARNING: Location"*) ;;
      "  Preparing metadata"*|"  Installing build dependencies"*|"  Getting requirements"*|"  Attempting uninstall"*) ;;
      "    Found existing installation"*|"    Uninstalling "*|"      Successfully uninstalled"*) ;;
      "Downloading "*|"Using cached "*|"Looking in indexes"*|"Looking in links"*|"  Stored in directory"*|"  Created wheel"*) ;;
      "") ;;
      *) printf '%s\n' "$line" ;;
    esac
  done
}

if [ ! -x "$PY" ]; then
  stage "creating .venv with $(python3 --version)"
  python3 -m venv .venv
fi
echo "Installing Python packages into .venv (first time: a few minutes; one line per package) ..."
set -o pipefail
$PY -m pip install --upgrade --disable-pip-version-check --progress-bar off pip 2>&1 | condense
stage "pip is up to date"
$PY -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt 2>&1 | condense
stage "done: every package is installed"

# Sourced by the scripts that run Python suites (python-client.sh, gateway-tests.sh,
# agent-python.sh): `make_venv VENV` creates a virtual environment with $PYTHON (default
# python3) unless VENV/bin/python exists, installing Debian's python3-venv when the interpreter
# lacks the venv module. Messages go through the caller's `log`.
make_venv() {
  local venv=$1 python=${PYTHON:-python3}
  [ -x "$venv/bin/python" ] && return 0
  log "creating a venv in $venv"
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    log "$python -m venv failed; installing python3-venv"
    apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    "$python" -m venv "$venv"
  fi
}

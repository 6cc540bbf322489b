#!/usr/bin/env bash
# Install what svcorch, its demo stack and its tests need, idempotently:
#   - Debian packages for the servers and tools (root, or sudo, is needed only when one is missing)
#   - a virtualenv in .venv with svcorch installed in editable mode (+ test and demo extras)
set -euo pipefail
cd "$(dirname "$0")/.."

need_packages=()
command -v redis-server >/dev/null 2>&1 || need_packages+=(redis-server)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need_packages+=(mariadb-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_packages+=(rabbitmq-server)
command -v influxd >/dev/null 2>&1 || need_packages+=(influxdb)
command -v dot >/dev/null 2>&1 || need_packages+=(graphviz)
# `svcorch export compose` is checked with the compose CLI's own `config` (no daemon needed)
command -v docker-compose >/dev/null 2>&1 || need_packages+=(docker-compose)
# `svcorch web`'s page is tested in a real headless browser (selenium drives chromium)
command -v chromium >/dev/null 2>&1 || need_packages+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_packages+=(chromium-driver)

if [ "${#need_packages[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${need_packages[*]}" >&2
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo)
    else
        echo "setup: missing ${need_packages[*]}; run as root or install them with apt-get" >&2
        exit 2
    fi
    # the package scripts must not start system-wide daemons: svcorch runs private instances
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get update -qq
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${need_packages[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
extras=${SVCORCH_EXTRAS:-test,demo}
stamp=.venv/.svcorch-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e ".[$extras]"
    echo "$want" > "$stamp"
fi

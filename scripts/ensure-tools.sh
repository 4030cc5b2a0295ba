#!/usr/bin/env bash
# Installs the system tools Zester's tests drive for real (nats-server above all) when they are
# missing; with arguments (`bin[:package] ...`), only those. Runs before `npm test` and `npm run
# dev`; needs root and apt-get (Debian/Ubuntu) to install anything, otherwise it says what to
# install and fails.
set -euo pipefail

tools=("$@")
# jinja2, jmespath: Python's Jinja2 and JMESPath for Debian's /usr/bin/python3, the template
# conformance oracle (jmespath for Salt's json_query filter).
[ ${#tools[@]} -gt 0 ] || tools=(nats-server git tar gzip xz:xz-utils unzip crontab:cron openssl jinja2:python3-jinja2 jmespath:python3-jmespath)
missing=()
for tool in "${tools[@]}"; do
  bin=${tool%%:*}; pkg=${tool##*:}
  if [ "$bin" = jinja2 ] || [ "$bin" = jmespath ]; then
    /usr/bin/python3 -c "import $bin" >/dev/null 2>&1 || missing+=("$pkg")
    continue
  fi
  command -v "$bin" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "zester tests need: ${missing[*]} (install them with your package manager, then re-run)" >&2
  exit 1
fi
echo "installing test prerequisites: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

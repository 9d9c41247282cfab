#!/usr/bin/env bash
# Installs the Debian packages luaio needs, only those missing.
# Usage: tools/deps.sh [extra packages...]
set -euo pipefail
want=(build-essential cmake pkg-config liblua5.4-dev lua5.4 libuv1-dev lua-cjson lua-busted
      libssl-dev zlib1g-dev libreadline-dev openssl ca-certificates curl python3 "$@")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  # packages such as nginx start their system service on install: not here
  # (the tests start their own, in the foreground, by PID)
  policy=/usr/sbin/policy-rc.d
  added_policy=0
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null
    $SUDO chmod +x $policy
    added_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
  if [ $added_policy = 1 ]; then $SUDO rm -f $policy; fi
fi

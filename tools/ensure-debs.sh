#!/bin/sh
# Installs the Debian packages named on the command line that are missing: apt-get as root,
# through sudo otherwise; where neither works, prints the one command to run and fails.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "mrcnn: installing missing Debian packages:$missing"
if [ "$(id -u)" = 0 ]; then
    run=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    run="sudo"
else
    echo "mrcnn: cannot install packages without root; run: sudo apt-get install -y$missing" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $run apt-get install -y -q $missing >/dev/null 2>&1; then
    $run apt-get update -q >/dev/null 2>&1
    if ! $run apt-get install -y -q $missing; then
        echo "mrcnn: package install failed; run: sudo apt-get update && sudo apt-get install -y$missing" >&2
        exit 1
    fi
fi

#!/usr/bin/env bash
# Install the Debian packages the ImageJ/Fiji parts need (Java, ImageJ 1.x, Jython, Xvfb),
# only those that are missing. Needs root or password-less sudo; otherwise says what to run.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(default-jre-headless)
[ -f /usr/share/java/ij.jar ] || need+=(libij-java)
[ -f /usr/share/java/jython.jar ] || need+=(jython)
command -v xvfb-run >/dev/null 2>&1 || need+=(xvfb)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: Java, ImageJ 1.x, Jython and Xvfb are present"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "system packages missing: ${need[*]}" >&2
  echo "install them with: sudo apt-get install -y ${need[*]}  (ImageJ tests are skipped until then)" >&2
  exit 0
fi

echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}"

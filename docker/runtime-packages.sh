#!/usr/bin/env bash
# Prints, one per line, the Debian/Ubuntu packages that own the shared libraries the given
# binaries load (per ldd), so the Docker runtime stage can install exactly those by name from
# the same distribution release as the build stage. Fails when a library is missing or belongs
# to no package (it would be absent from the runtime image), except under /usr/local/cuda,
# which the CUDA runtime base image provides.
set -euo pipefail
if [[ $# -eq 0 ]]; then
  echo "usage: runtime-packages.sh BINARY..." >&2
  exit 2
fi
libs=$(ldd "$@" | awk '/=> not found/ {print "MISSING " $1; next} /=> \// {print $3}' | sort -u)
if grep -q '^MISSING ' <<<"$libs"; then
  echo "runtime-packages: unresolved libraries:" >&2
  grep '^MISSING ' <<<"$libs" >&2
  exit 1
fi
status=0
owners=()
for lib in $libs; do
  real=$(readlink -f "$lib")
  # dpkg knows the path the package shipped; with merged /usr that may be either form.
  owner=""
  for candidate in "$lib" "$real" "${lib#/usr}" "${real#/usr}" "/usr$lib" "/usr$real"; do
    owner=$(dpkg -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1 || true)
    [[ -n $owner ]] && break
  done
  if [[ -n $owner ]]; then
    owners+=("$owner")
  elif [[ $real == /usr/local/cuda* ]]; then
    echo "runtime-packages: $lib is CUDA's; the runtime image provides it" >&2
  else
    echo "runtime-packages: $lib belongs to no package" >&2
    status=1
  fi
done
printf '%s\n' "${owners[@]}" | sort -u
exit "$status"

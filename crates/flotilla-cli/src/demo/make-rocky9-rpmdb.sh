#!/usr/bin/env bash
# Rebuilds rocky9-rpmdb.sqlite, the demo's Rocky 9 rpm database, from rocky9-rpmdb.list.
# Needs rpmbuild and rpm (Debian: apt-get install rpm). Run it only when the list changes; the
# demo itself copies the committed database and needs no rpm tool to do so.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

spec="$work/demo.spec"
printf 'Name: demo-base\nVersion: 1\nRelease: 1\nSummary: s\nLicense: MIT\nBuildArch: noarch\n%%description\nd\n' >"$spec"
files="%files"
while read -r name _source full; do
  case "$name" in ''|'#'*) continue ;; esac
  epoch=""
  rest="$full"
  if [[ "$full" == *:* ]]; then epoch="${full%%:*}"; rest="${full#*:}"; fi
  version="${rest%-*}"
  release="${rest##*-}"
  printf '%%package -n %s\nVersion: %s\nRelease: %s\nSummary: s\n' "$name" "$version" "$release" >>"$spec"
  [ -n "$epoch" ] && printf 'Epoch: %s\n' "$epoch" >>"$spec"
  printf '%%description -n %s\nd\n' "$name" >>"$spec"
  files+=$'\n'"%files -n $name"
done <"$here/rocky9-rpmdb.list"
printf '%s\n' "$files" >>"$spec"

rpmbuild --quiet --define "_topdir $work/build" -bb "$spec" >/dev/null
root="$work/root"
rpm --root "$root" --dbpath /var/lib/rpm --initdb
find "$work/build/RPMS/noarch" -name '*.rpm' ! -name 'demo-base-*' -print0 |
  xargs -0 rpm --root "$root" --dbpath /var/lib/rpm -i --justdb --nodeps --noscripts --ignorearch
# One self-contained file: fold the write-ahead log in and drop the empty side files.
rpm --root "$root" --dbpath /var/lib/rpm -qa >/dev/null
install -m 0644 "$root/var/lib/rpm/rpmdb.sqlite" "$here/rocky9-rpmdb.sqlite"
echo "wrote $here/rocky9-rpmdb.sqlite: $(rpm --root "$root" --dbpath /var/lib/rpm -qa | wc -l) packages"

#!/usr/bin/env bash
# Copies the system PostgreSQL 15 server tree (binaries, libraries, share files,
# server headers) into DIR, owned by the user who runs this. PostgreSQL finds its
# share and lib directories relative to its binaries, so the copy is
# self-contained: a user who is not root builds, installs and tests the extension
# there, and the system's directories are never made writable (whoever can write
# pkglibdir can run code as the server). scripts/setup.sh calls this.
#   scripts/private-pg-tree.sh DIR
set -euo pipefail
tree=${1:?usage: private-pg-tree.sh DIR}
major=15
echo "setup: copying PostgreSQL $major into $tree (owned by $(id -un))"
mkdir -p "$tree/usr/lib/postgresql" "$tree/usr/share/postgresql" "$tree/usr/include"
cp -a "/usr/lib/postgresql/$major" "$tree/usr/lib/postgresql/"
cp -a "/usr/share/postgresql/$major" "$tree/usr/share/postgresql/"
cp -a /usr/include/postgresql "$tree/usr/include/"

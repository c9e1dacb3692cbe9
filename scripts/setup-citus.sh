#!/usr/bin/env bash
# Builds Citus from a release tarball and installs it into the PostgreSQL that
# scripts/pg-config.sh names (Citus is not in Debian's archive; users install
# Citus's own packages instead). Idempotent: skips when this Citus version,
# built from this very tarball, is already installed there.
#
#   CITUS_TARBALL=../shared/vendor/citus-13.2.2.tar.gz scripts/setup-citus.sh [MAJOR]
#
# MAJOR as for scripts/pg-config.sh (default 15; Citus 13.2 supports 15 to 17).
# Works as root (CI) or as a user with sudo for apt-get and write access to the
# PostgreSQL tree (the private copy of scripts/setup.sh).
#
# What it does:
#  - installs the Debian packages the build needs, only those missing:
#    liblz4-dev and libzstd-dev (Citus compresses with them), libkrb5-dev
#    (PostgreSQL's libpq-int.h includes gssapi.h on Debian). No libcurl: Citus
#    uses it only for its anonymous statistics, so we configure --without-libcurl.
#  - unpacks the tarball into a temporary directory (always deleted), and there,
#    only there, applies one local patch: PostgreSQL 15.20's
#    commands/dbcommands.h declares have_createdb_privilege() (back-patched),
#    which clashes with the static inline compat copy that Citus 13.2's
#    src/include/pg_version_compat.h defines for PostgreSQL < 16 ("static
#    declaration follows non-static declaration"). We rename the copy to
#    citus_compat_have_createdb_privilege, so Citus's one caller uses the
#    server's own function. Applied only when the server's header declares it.
#  - ./configure --without-libcurl, make -j2 install, then writes a stamp
#    (citus.billing-stamp next to citus.control) naming the version and the
#    tarball's sha256, which the next run compares.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup-citus: $*"; }
die() { echo "setup-citus: $*" >&2; exit 1; }
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

[ -n "${CITUS_TARBALL:-}" ] ||
    die "CITUS_TARBALL is not set: name the Citus release source tarball, e.g. CITUS_TARBALL=../shared/vendor/citus-13.2.2.tar.gz"
[ -f "$CITUS_TARBALL" ] || die "CITUS_TARBALL=$CITUS_TARBALL: no such file"
TARBALL=$(cd "$(dirname "$CITUS_TARBALL")" && pwd)/$(basename "$CITUS_TARBALL")

PG_CONFIG=${PG_CONFIG:-$(scripts/pg-config.sh "${1:-15}")}
[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG (run scripts/setup.sh first)"
PG_VERSION=$("$PG_CONFIG" --version)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
EXTDIR=$("$PG_CONFIG" --sharedir)/extension
INCLUDEDIR_SERVER=$("$PG_CONFIG" --includedir-server)
STAMP=$EXTDIR/citus.billing-stamp

# The release's version (configure's PACKAGE_VERSION), read without unpacking it all.
CITUS_VERSION=$(tar -xzOf "$TARBALL" --wildcards '*/configure' | sed -n "s/^PACKAGE_VERSION='\(.*\)'\$/\1/p") ||
    die "$TARBALL: cannot read it as a Citus source tarball"
[ -n "$CITUS_VERSION" ] || die "$TARBALL: no configure with a PACKAGE_VERSION in it (not a Citus release tarball?)"
SHA256=$(sha256sum "$TARBALL" | cut -d' ' -f1)
WANT_STAMP="citus $CITUS_VERSION sha256 $SHA256"

if [ -f "$PKGLIBDIR/citus.so" ] && [ -f "$EXTDIR/citus.control" ] &&
   [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT_STAMP" ]; then
    say "Citus $CITUS_VERSION ($(sed -n "s/^default_version *= *'\(.*\)'/\1/p" "$EXTDIR/citus.control")) is already installed into $PG_VERSION: skipping"
    exit 0
fi

# Build dependencies (Debian packages), only those missing.
need_pkgs=()
for pkg in build-essential liblz4-dev libzstd-dev libkrb5-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_pkgs+=("$pkg")
done
if [ ! -f "$INCLUDEDIR_SERVER/postgres.h" ]; then
    case $PG_CONFIG in
        /usr/lib/postgresql/*/bin/pg_config)
            major=${PG_CONFIG#/usr/lib/postgresql/}; need_pkgs+=("postgresql-server-dev-${major%%/*}") ;;
        *) die "no server headers under $INCLUDEDIR_SERVER" ;;
    esac
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
    say "installing ${need_pkgs[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

BUILD=$(mktemp -d /tmp/citus-build.XXXXXX)
trap 'rm -rf "$BUILD"' EXIT
trap 'exit 130' INT TERM
say "building Citus $CITUS_VERSION for $PG_VERSION ($PG_CONFIG) in $BUILD"
tar -xzf "$TARBALL" -C "$BUILD"
SRC=$(find "$BUILD" -mindepth 1 -maxdepth 1 -type d | head -n 1)
[ -f "$SRC/configure" ] || die "$TARBALL: no configure at the top of it"

# The local patch (see the top of this file).
COMPAT=$SRC/src/include/pg_version_compat.h
if grep -qs 'have_createdb_privilege' "$INCLUDEDIR_SERVER/commands/dbcommands.h" &&
   grep -q '^have_createdb_privilege(void)$' "$COMPAT"; then
    say "patching the build copy: $(basename "$COMPAT"): static inline have_createdb_privilege -> citus_compat_have_createdb_privilege (the server's headers declare it)"
    sed -i 's/^have_createdb_privilege(void)$/citus_compat_have_createdb_privilege(void)/' "$COMPAT"
    grep -q '^citus_compat_have_createdb_privilege(void)$' "$COMPAT" || die "the patch did not apply"
fi

# Logs stay quiet unless a step fails.
run_step() {
    local name=$1; shift
    say "$name"
    if ! (cd "$SRC" && "$@") >"$BUILD/$name.log" 2>&1; then
        tail -n 60 "$BUILD/$name.log" >&2
        die "$name failed (the last 60 lines of its output are above)"
    fi
}
start=$SECONDS
run_step configure ./configure --without-libcurl PG_CONFIG="$PG_CONFIG"
run_step make make -j"${CITUS_JOBS:-2}"
run_step install make install
echo "$WANT_STAMP" >"$STAMP"
say "installed Citus $CITUS_VERSION into $PKGLIBDIR and $EXTDIR in $((SECONDS - start)) s"
say "servers need shared_preload_libraries = 'citus' (scripts/with-citus.sh sets it)"

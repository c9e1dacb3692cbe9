#!/usr/bin/env bash
# Builds the Debian package of the extension for one PostgreSQL major:
#
#   scripts/package.sh MAJOR     (15, 16 or 18; `make package` builds all three)
#
# into target/packages/postgresql-MAJOR-billing_VERSION_amd64.deb, from the
# output of `cargo pgrx package` (an optimised build against that major's
# pg_config, see scripts/pg-config.sh). cargo pgrx lays its output out under the
# pg_config's own directories (for 16 and 18 the wheel's tree); the package puts
# the files where Debian's postgresql-MAJOR looks for them:
#   /usr/lib/postgresql/MAJOR/lib/billing.so
#   /usr/share/postgresql/MAJOR/extension/billing.control, billing--VERSION.sql
#     and every upgrade script billing--A--B.sql (sql/), never an older
#     release's install script (sql/releases/ is for the upgrade tests only)
#   /usr/share/doc/postgresql-MAJOR-billing/copyright
# with DEBIAN/control (Depends: postgresql-MAJOR and the shared libraries the
# library links, from dpkg-shlibdeps) and DEBIAN/md5sums. The library is stripped.
set -euo pipefail
cd "$(dirname "$0")/.."

MAJOR=${1:?usage: scripts/package.sh MAJOR}
MAINTAINER=${DEB_MAINTAINER:-billing maintainers <maintainers@users.noreply.r-seed-63ff7f1d.example>}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
NAME=postgresql-$MAJOR-billing
OUT=target/packages
PG_CONFIG=$(scripts/pg-config.sh "$MAJOR")
export PATH="$HOME/.cargo/bin:$PATH"

if [ "$MAJOR" = 15 ]; then features=(); else features=(--no-default-features --features "pg$MAJOR"); fi
# a separate output folder per major: cargo pgrx package names it after the major
pgrx_out=target/release/billing-pg$MAJOR
rm -rf "$pgrx_out"
cargo pgrx package "${features[@]}" --pg-config "$PG_CONFIG"

lib=$(find "$pgrx_out" -name billing.so -type f)
extdir=$(dirname "$(find "$pgrx_out" -name billing.control -type f)")
[ -f "$lib" ] && [ -d "$extdir" ] || { echo "package: cargo pgrx package left no billing.so or billing.control in $pgrx_out" >&2; exit 1; }

root=$(mktemp -d /tmp/billing-deb.XXXXXX)
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"
install -d "$root/DEBIAN" "$root/usr/lib/postgresql/$MAJOR/lib" \
    "$root/usr/share/postgresql/$MAJOR/extension" "$root/usr/share/doc/$NAME"
install -m 644 "$lib" "$root/usr/lib/postgresql/$MAJOR/lib/billing.so"
# Debian ships binaries stripped (policy 10.1); the exported symbols stay
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/lib/postgresql/$MAJOR/lib/billing.so"
# the control file, the install script pgrx generated and the upgrade scripts it copied from sql/
install -m 644 "$extdir/billing.control" "$extdir/billing--$VERSION.sql" "$extdir"/billing--*--*.sql \
    "$root/usr/share/postgresql/$MAJOR/extension/"

cat >"$root/usr/share/doc/$NAME/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: billing
Source: the billing PostgreSQL extension (this repository)

Files: *
Copyright: the billing authors
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in all
 copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
 SOFTWARE.
COPYRIGHT
chmod 644 "$root/usr/share/doc/$NAME/copyright"

# the shared libraries the library needs, as dpkg-shlibdeps finds them (libc6 and
# libgcc-s1 with their minimum versions); it wants a debian/control to read
shlib_dir=$(mktemp -d /tmp/billing-shlibdeps.XXXXXX)
mkdir "$shlib_dir/debian"
printf 'Source: billing\n\nPackage: %s\nArchitecture: amd64\n' "$NAME" >"$shlib_dir/debian/control"
shlibs=$(cd "$shlib_dir" && dpkg-shlibdeps -O "$root/usr/lib/postgresql/$MAJOR/lib/billing.so" | sed -n 's/^shlibs:Depends=//p')
rm -rf "$shlib_dir"
[ -n "$shlibs" ] || { echo "package: dpkg-shlibdeps found no shared library dependencies" >&2; exit 1; }

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $VERSION
Architecture: amd64
Maintainer: $MAINTAINER
Installed-Size: $installed_size
Depends: postgresql-$MAJOR, $shlibs
Section: database
Priority: optional
Description: credit billing inside PostgreSQL $MAJOR
 The billing extension adds, deducts, holds, settles, releases, refunds and
 expires a user's credits atomically in the caller's transaction, with one
 immutable ledger entry per change. Built with pgrx for PostgreSQL $MAJOR.
CONTROL
(cd "$root" && find usr -type f | sort | xargs md5sum) >"$root/DEBIAN/md5sums"
chmod 644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"

mkdir -p "$OUT"
deb="$OUT/${NAME}_${VERSION}_amd64.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "package: $deb"
dpkg-deb --contents "$deb"

#!/usr/bin/env bash
# Checks the Debian packages that `make package` built (target/packages):
#
#   scripts/package-test.sh [MAJOR...]     (default: 15 16 18)
#
# For each: the control fields (Package, Version, Architecture, Maintainer with
# an address, Description with a synopsis and a long text, Depends naming
# postgresql-MAJOR and the package of every shared library billing.so links),
# exactly the expected files (the library, stripped, for x86-64; the control file
# with this version and $libdir/billing; the current install script; every
# upgrade script of sql/, identical to it; the copyright; no older release's
# install script from sql/releases/), and md5sums that list and match every file.
#
# Then it installs the 15 package into the system with dpkg -i, creates the
# extension in a throwaway cluster of the system's PostgreSQL 15, runs the
# examples (scripts/examples.sh, each against its expected output) and a
# scenario, removes the package with dpkg -r and checks that no file of it is
# left. It does this as root when the build under test is the system's 15 (as
# in CI), unless BILLING_PACKAGE_INSTALL=no. The package replaces what `make
# install` put into the system's tree: the test saves those files first and puts
# them back at the end, pass or fail, so the tree is as it was before (`make
# test` runs this step last, after every suite that uses that build).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
majors=("$@"); [ ${#majors[@]} -gt 0 ] || majors=(15 16 18)
fail() { echo "package-test: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/billing-package-test.XXXXXX)
trap 'rm -rf "$work"' EXIT

for major in "${majors[@]}"; do
    name=postgresql-$major-billing
    deb=target/packages/${name}_${VERSION}_amd64.deb
    [ -f "$deb" ] || fail "$deb is missing (make package)"
    field() { dpkg-deb --field "$deb" "$1"; }
    [ "$(field Package)" = "$name" ] || fail "$deb: Package is '$(field Package)'"
    [ "$(field Version)" = "$VERSION" ] || fail "$deb: Version is '$(field Version)', Cargo.toml says $VERSION"
    [ "$(field Architecture)" = amd64 ] || fail "$deb: Architecture is '$(field Architecture)'"
    field Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//' | grep -qx "postgresql-$major" ||
        fail "$deb: Depends ('$(field Depends)') does not name postgresql-$major"
    field Maintainer | grep -q '<.*@.*>' || fail "$deb: Maintainer '$(field Maintainer)' has no address"
    [ "$(field Description | head -1)" != "" ] && [ "$(field Description | wc -l)" -ge 2 ] ||
        fail "$deb: Description needs a synopsis and a long description"

    ext=usr/share/postgresql/$major/extension
    expected=$( {
        echo "usr/lib/postgresql/$major/lib/billing.so"
        echo "$ext/billing.control"
        echo "$ext/billing--$VERSION.sql"
        for s in sql/billing--*--*.sql; do echo "$ext/${s#sql/}"; done
        echo "usr/share/doc/$name/copyright"
    } | sort)
    actual=$(dpkg-deb --fsys-tarfile "$deb" | tar -t | grep -v '/$' | sed 's|^\./||' | sort)
    [ "$actual" = "$expected" ] || {
        diff <(echo "$expected") <(echo "$actual") >&2 || true
        fail "$deb: files differ from the expected (< expected, > in the package)"
    }
    for old in sql/releases/billing--*.sql; do
        ! grep -qx "$ext/${old#sql/releases/}" <<<"$actual" || fail "$deb holds the old install script ${old#sql/releases/}"
    done

    dir=$work/$major
    dpkg-deb --raw-extract "$deb" "$dir"
    for s in sql/billing--*--*.sql; do
        cmp -s "$s" "$dir/$ext/${s#sql/}" || fail "$deb: ${s#sql/} differs from $s"
    done
    grep -qx "default_version = '$VERSION'" "$dir/$ext/billing.control" || fail "$deb: billing.control's default_version is not $VERSION"
    grep -q "CREATE  *FUNCTION" "$dir/$ext/billing--$VERSION.sql" || fail "$deb: billing--$VERSION.sql creates no function"
    grep -qx "module_pathname = '\$libdir/billing'" "$dir/$ext/billing.control" || fail "$deb: billing.control's module_pathname is not \$libdir/billing"
    so=$dir/usr/lib/postgresql/$major/lib/billing.so
    file -L "$so" | grep -q 'ELF 64-bit LSB shared object, x86-64' || fail "$deb: billing.so is not an x86-64 shared library"
    file -L "$so" | grep -q ', stripped' || fail "$deb: billing.so is not stripped"
    # every shared library billing.so needs comes from a package that Depends names
    depends=$(field Depends | tr ',' '\n' | sed 's/^ *//; s/ .*//')
    for needed in $(objdump -p "$so" | awk '$1 == "NEEDED" {print $2}'); do
        owner=$(dpkg -S "/lib/x86_64-linux-gnu/$needed" "/usr/lib/x86_64-linux-gnu/$needed" "/lib64/$needed" 2>/dev/null | head -1 | cut -d: -f1 || true)
        [ -n "$owner" ] || fail "$deb: no installed package holds $needed, which billing.so needs"
        grep -qx "$owner" <<<"$depends" || fail "$deb: billing.so needs $needed from $owner, which Depends ('$(field Depends)') does not name"
    done
    [ "$(wc -l <"$dir/DEBIAN/md5sums")" -eq "$(wc -l <<<"$actual")" ] || fail "$deb: md5sums does not list every file"
    (cd "$dir" && md5sum --check --quiet DEBIAN/md5sums) || fail "$deb: md5sums do not match the files"
    echo "package-test: $deb: metadata, $(wc -l <<<"$actual") files and md5sums as expected"
done

# --- dpkg -i / use / dpkg -r of the 15 package, on the system's PostgreSQL 15 ---
system_pg_config=/usr/lib/postgresql/15/bin/pg_config
[[ " ${majors[*]} " == *" 15 "* ]] || exit 0
install=${BILLING_PACKAGE_INSTALL:-}
if [ -z "$install" ]; then
    if [ "$(id -u)" -eq 0 ] && [ "$(scripts/pg-config.sh)" = "$system_pg_config" ]; then install=yes; else install=no; fi
fi
if [ "$install" != yes ]; then
    echo "package-test: NOT installing the 15 package: that needs root and the system's PostgreSQL 15 as the build under test (BILLING_PACKAGE_INSTALL=${BILLING_PACKAGE_INSTALL:-})"
    exit 0
fi
[ "$(id -u)" -eq 0 ] || fail "installing a package needs root"
deb=target/packages/postgresql-15-billing_${VERSION}_amd64.deb
libdir=$($system_pg_config --pkglibdir)
extdir=$($system_pg_config --sharedir)/extension
docdir=/usr/share/doc/postgresql-15-billing
leftovers() { ls -d "$libdir"/billing.so "$extdir"/billing.control "$extdir"/billing--*.sql "$docdir" 2>/dev/null || true; }
installed() { dpkg-query -W -f='${Status}' postgresql-15-billing 2>/dev/null | grep -q "install ok installed"; }

# What `make install` put there (the build the other suites tested) is kept
# aside and put back at the end, whatever happens in between.
saved=$work/system-tree
saved_files=()
restore() {
    if installed; then dpkg -r postgresql-15-billing >/dev/null || true; fi
    rm -rf $(leftovers)
    for f in "${saved_files[@]}"; do cp -a "$saved$f" "$f"; done
    [ ${#saved_files[@]} -eq 0 ] || echo "package-test: put back the ${#saved_files[@]} files make install had put into the system's tree"
    rm -rf "$work"
}
if installed; then dpkg -r postgresql-15-billing >/dev/null; fi
for f in "$libdir"/billing.so "$extdir"/billing.control "$extdir"/billing--*.sql; do
    [ -f "$f" ] || continue
    mkdir -p "$saved$(dirname "$f")" && cp -a "$f" "$saved$f" && saved_files+=("$f")
done
trap restore EXIT
rm -rf $(leftovers)

dpkg -i "$deb"
dpkg-query -W -f='${Status} ${Version}\n' postgresql-15-billing | grep -qx "install ok installed $VERSION" || fail "dpkg -i did not install $deb"
files=$(dpkg -L postgresql-15-billing)
for f in "$libdir/billing.so" "$extdir/billing.control" "$extdir/billing--$VERSION.sql" "$docdir/copyright"; do
    grep -qx "$f" <<<"$files" || fail "the installed package does not own $f"
done
for old in sql/releases/billing--*.sql; do
    [ ! -e "$extdir/${old#sql/releases/}" ] || fail "an older install script is in the system's tree: $extdir/${old#sql/releases/}"
done

PG_CONFIG=$system_pg_config scripts/with-cluster.sh bash -c '
    set -euo pipefail
    # the examples, each in a fresh database against its expected output
    scripts/examples.sh
    createdb scenario
    psql -X -q -v ON_ERROR_STOP=1 -At -d scenario <<SQL >"$BILLING_CLUSTER_DIR/scenario.out"
CREATE EXTENSION billing;
SELECT extversion FROM pg_extension WHERE extname = '"'billing'"';
SELECT count(*) FROM billing_add(user_id => '"'pkg'"', amount => 100, account_type => '"'RECHARGE_INC'"', source_type => '"'RECHARGE'"', source => '"'order-1'"');
SELECT count(*) FROM billing_deduct(user_id => '"'pkg'"', amount => 40, account_type => '"'CHAT_DEC'"', source_type => '"'CHAT'"', source => '"'chat-1'"');
SELECT billing_power('"'pkg'"');
SELECT count(*) FROM billing_verify();
BEGIN;
SET LOCAL billing.allow_drop = on;
DROP EXTENSION billing;
COMMIT;
SQL
    printf "%s\n" '"$VERSION"' 1 1 60 0 | diff - "$BILLING_CLUSTER_DIR/scenario.out" ||
        { echo "package-test: the scenario on the installed package gave the output above (> actual)" >&2; exit 1; }
'
echo "package-test: the installed 15 package creates the extension, passes the examples and the scenario"

dpkg -r postgresql-15-billing
! installed || fail "dpkg -r left the package installed"
for f in $files; do
    [ -d "$f" ] || [ ! -e "$f" ] || fail "dpkg -r left $f"
done
[ -z "$(leftovers)" ] || fail "files of the extension remain after dpkg -r: $(leftovers)"
echo "package-test: dpkg -r removed every file of the 15 package (library, control file, scripts, $docdir)"

#!/usr/bin/env bash
# Checks the Debian packages that `make package` built (target/packages):
#
#   scripts/package-test.sh [MAJOR...]     (default: 15 16 18)
#
# For each: the control fields (Package, Version, Architecture, Depends on
# postgresql-MAJOR, Maintainer, Description), exactly the expected files (the
# library, the control file, the current install script, every upgrade script
# of sql/, the copyright; no older release's install script), upgrade scripts
# identical to sql/, and md5sums that match every file.
#
# Then it installs the 15 package into the system with dpkg -i, creates the
# extension in a throwaway cluster of the system's PostgreSQL 15, runs the
# examples and a checked scenario, removes the package with dpkg -r and checks
# that no file of the extension is left. That replaces the system's extension
# files, so `make test` runs it last, and it runs only in CI (CI=true, as root,
# with the system's PostgreSQL 15 the build under test) or when asked with
# BILLING_PACKAGE_INSTALL=yes; never on a shared machine by default, where other
# checkouts may be using the system's extension files.
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
    [ -n "$(field Description)" ] || fail "$deb: no Description"

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
    file -L "$dir/usr/lib/postgresql/$major/lib/billing.so" | grep -q 'ELF 64-bit LSB shared object, x86-64' ||
        fail "$deb: billing.so is not an x86-64 shared library"
    [ "$(wc -l <"$dir/DEBIAN/md5sums")" -eq "$(wc -l <<<"$actual")" ] || fail "$deb: md5sums does not list every file"
    (cd "$dir" && md5sum --check --quiet DEBIAN/md5sums) || fail "$deb: md5sums do not match the files"
    echo "package-test: $deb: metadata, $(wc -l <<<"$actual") files and md5sums as expected"
done

# --- dpkg -i / use / dpkg -r of the 15 package, on the system's PostgreSQL 15 ---
system_pg_config=/usr/lib/postgresql/15/bin/pg_config
install=${BILLING_PACKAGE_INSTALL:-}
if [ -z "$install" ]; then
    if [ "${CI:-}" = true ] && [ "$(id -u)" -eq 0 ] && [ "$(scripts/pg-config.sh)" = "$system_pg_config" ]; then install=yes; else install=no; fi
fi
if [ "$install" != yes ]; then
    echo "package-test: NOT installing the 15 package into the system (CI does; elsewhere BILLING_PACKAGE_INSTALL=yes, as root)"
    exit 0
fi
[[ " ${majors[*]} " == *" 15 "* ]] || exit 0
[ "$(id -u)" -eq 0 ] || fail "installing a package needs root"
deb=target/packages/postgresql-15-billing_${VERSION}_amd64.deb
libdir=$($system_pg_config --pkglibdir)
extdir=$($system_pg_config --sharedir)/extension
leftovers() { ls "$libdir"/billing.so "$extdir"/billing.control "$extdir"/billing--*.sql 2>/dev/null || true; }

# `make install` put the build under test into the system tree; the package
# replaces it, and afterwards nothing of the extension may remain.
if dpkg-query -W -f='${Status}' postgresql-15-billing 2>/dev/null | grep -q "install ok installed"; then
    dpkg -r postgresql-15-billing >/dev/null
fi
rm -f $(leftovers)

dpkg -i "$deb"
dpkg-query -W -f='${Status} ${Version}\n' postgresql-15-billing | grep -qx "install ok installed $VERSION" || fail "dpkg -i did not install $deb"
files=$(dpkg -L postgresql-15-billing)
for f in "$libdir/billing.so" "$extdir/billing.control" "$extdir/billing--$VERSION.sql"; do
    grep -qx "$f" <<<"$files" || fail "the installed package does not own $f"
done

examples=$(ls examples/*.sql demo/*.sql 2>/dev/null || true)
PG_CONFIG=$system_pg_config scripts/with-cluster.sh bash -c '
    set -euo pipefail
    n=0
    for example in '"$(echo $examples)"'; do
        # each example in a database of its own; they show errors on purpose (make demo)
        n=$((n + 1)); createdb "example_$n"
        echo "package-test: running $example"
        psql -X -q -v ON_ERROR_STOP=0 -d "example_$n" -f "$example" >"$BILLING_CLUSTER_DIR/example_$n.out" 2>&1
        grep -q "could not access file\|could not load library" "$BILLING_CLUSTER_DIR/example_$n.out" &&
            { cat "$BILLING_CLUSTER_DIR/example_$n.out" >&2; exit 1; }
    done
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
echo "package-test: the installed 15 package creates the extension, runs the examples and the scenario"

dpkg -r postgresql-15-billing
dpkg-query -W -f='${Status}' postgresql-15-billing 2>/dev/null | grep -q "install ok installed" && fail "dpkg -r left the package installed"
for f in $files; do
    [ -d "$f" ] || [ ! -e "$f" ] || fail "dpkg -r left $f"
done
[ -z "$(leftovers)" ] || fail "files of the extension remain after dpkg -r: $(leftovers)"
echo "package-test: dpkg -r removed every file of the 15 package"

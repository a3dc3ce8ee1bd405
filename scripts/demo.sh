#!/bin/sh
# make demo: push a sample folder into an embedded store, edit it, push
# again, and restore the first version elsewhere. Runs in a temp dir.
set -eu
FERRY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=$(mktemp -d "${TMPDIR:-/tmp}/ferry-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "1. A sample folder: text, an executable, an empty dir, a symlink, a 20 MB file"
mkdir -p photos/2026 notes "empty dir"
printf 'Groceries:\n- bread\n- tea\n' > notes/list.txt
printf '#!/bin/sh\necho backup done\n' > notes/backup.sh && chmod +x notes/backup.sh
ln -s notes/list.txt shortcut
head -c 20000000 /dev/urandom > photos/2026/raw.bin
ls -lR . | sed -n '1,40p'

step "2. Make it a synced folder of an embedded store (store/), and push"
mkdir -p folder && mv photos notes "empty dir" shortcut folder/
run "$FERRY" init folder --remote "$work/store" --root demo
run "$FERRY" push folder -m "first version"

step "3. Edit: change a note, insert 100 bytes into the middle of the 20 MB file, delete a file"
printf -- '- milk\n' >> folder/notes/list.txt
python3 - folder/photos/2026/raw.bin <<'PY' 2>/dev/null || { head -c 10000000 folder/photos/2026/raw.bin > x; head -c 100 /dev/urandom >> x; tail -c +10000001 folder/photos/2026/raw.bin >> x; mv x folder/photos/2026/raw.bin; }
import sys
p = sys.argv[1]
b = open(p, 'rb').read()
open(p, 'wb').write(b[:10_000_000] + b'x' * 100 + b[10_000_000:])
PY
rm folder/notes/backup.sh
run "$FERRY" status folder

step "4. Push again: only the changed chunks travel"
run "$FERRY" push folder -m "second version"
run "$FERRY" log folder

step "5. Restore the first version elsewhere, and compare"
run "$FERRY" restore folder --version head~1 --to "$work/restored"
run "$FERRY" diff folder head~1 head
printf '$ cat restored/notes/list.txt\n'; cat "$work/restored/notes/list.txt"
test -x "$work/restored/notes/backup.sh" && echo "restored/notes/backup.sh is back, executable"
test "$(stat -c %s "$work/restored/photos/2026/raw.bin")" = 20000000 && echo "restored/photos/2026/raw.bin is the 20,000,000-byte original"

step "6. Verify the store: every version resolves, every chunk re-hashes"
run "$FERRY" check folder --read-data

printf '\ndemo done: the store (%s) holds both versions in %s\n' "$work/store" "$(du -sh "$work/store" | cut -f1)"

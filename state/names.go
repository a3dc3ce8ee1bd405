package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ferry-sync/ferry/cas"
	"golang.org/x/sys/unix"
)

// Names maps the names a directory has on this folder's disk to the names
// its versions give them, where the two differ:
//
//   - a name macOS writes in NFD is kept in versions in NFC (the server's
//     rule), and found again here under its NFD spelling;
//   - on a filesystem that folds case, a name that cannot be held beside
//     another ("readme" beside "README") is kept on disk under an alias
//     (a conflict copy's name), and versions keep its own name.
//
// Keys are "n" DIR \x00 DISKNAME, values the version's name. A folder
// with no mapped name costs a scan one lookup, not one per directory.
type Names struct{ kv *cas.KV }

// Names returns the folder's name map.
func (f *Folder) Names() *Names { return &Names{kv: f.kv} }

func nameKey(dir, disk string) []byte {
	return append(append(append([]byte{'n'}, dir...), 0), disk...)
}

// Any reports whether the folder has a mapped name at all.
func (n *Names) Any() (bool, error) {
	found := false
	err := n.kv.Scan([]byte{'n'}, func(k, v []byte) error {
		found = true
		return errStopScan
	})
	if errors.Is(err, errStopScan) {
		err = nil
	}
	return found, err
}

var errStopScan = errors.New("stop")

// Dir returns dir's mapped names: disk name to version name.
func (n *Names) Dir(dir string) (map[string]string, error) {
	p := nameKey(dir, "")
	var out map[string]string
	err := n.kv.Scan(p, func(k, v []byte) error {
		if out == nil {
			out = map[string]string{}
		}
		out[string(k[len(p):])] = string(v)
		return nil
	})
	return out, err
}

// PutName records that the entry the versions call version is disk here.
func (u *Update) PutName(dir, disk, version string) error {
	return u.b.Set(nameKey(dir, disk), []byte(version))
}

// DeleteName forgets a mapped name.
func (u *Update) DeleteName(dir, disk string) error { return u.b.Delete(nameKey(dir, disk)) }

// probeCaseFold reports whether the filesystem holding dir folds case: it
// makes a file with a lower-case name there and looks for it under the
// upper-case one.
func probeCaseFold(dir string) (bool, error) {
	f, err := os.CreateTemp(dir, "casefold-probe-")
	if err != nil {
		return false, fmt.Errorf("probe %s for case folding: %w", dir, err)
	}
	name := f.Name()
	f.Close()
	defer os.Remove(name)
	upper := filepath.Join(filepath.Dir(name), "CASEFOLD-PROBE-"+filepath.Base(name)[len("casefold-probe-"):])
	var a, b unix.Stat_t
	if err := unix.Lstat(name, &a); err != nil {
		return false, err
	}
	if err := unix.Lstat(upper, &b); err != nil {
		return false, nil
	}
	return a.Ino == b.Ino && a.Dev == b.Dev, nil
}

// folderID names the directory a folder is in (device and inode): a
// folder moved or copied elsewhere has another, and is probed again.
func folderID(dir string) string {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// probe records whether the folder's filesystem folds case, when it was
// not probed where the folder is now.
func (f *Folder) probe() error {
	id := folderID(f.Dir)
	if id != "" && id == f.Config.Probed {
		if f.Config.Path == f.Dir {
			return nil
		}
		f.Config.Path = f.Dir // moved: the same directory
		return f.SaveConfig()
	}
	if f.Config.Probed != "" && f.Config.Path != "" && f.Config.Path != f.Dir {
		// Another directory under another path: a copy. Two folders
		// with one device id would name their conflict copies alike
		// and read each other's versions as their own.
		f.CopiedFrom, f.CopiedFromPath = f.Config.Device, f.Config.Path
		f.Config.Device = NewDevice()
	}
	fold, err := probeCaseFold(stateDir(f.Dir))
	if err != nil {
		return err
	}
	f.Config.CaseFold, f.Config.Probed, f.Config.Path = fold, id, f.Dir
	return f.SaveConfig()
}

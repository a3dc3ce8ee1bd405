package scan

import (
	"cmp"
	"slices"
	"unicode/utf8"

	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
	"golang.org/x/text/unicode/norm"
)

// dirent is one name of a directory: as it is on disk, and as versions
// give it. twin is set when another disk name of the directory has the
// same version name (NFC and NFD spellings of one name): it is left out.
type dirent struct {
	disk, name string
	twin       string
}

// versionNames turns a directory's disk names into the names versions
// use, sorted by them: the folder's mapped names (aliases, NFD spellings
// seen before) first, then NFC for any name not in it (macOS writes NFD;
// the server takes only NFC, and the mapping lets the next pull find the
// file under its own spelling). Mappings of names gone from the disk are
// dropped.
func (s *scanner) versionNames(dir string, names []string) ([]dirent, error) {
	var mapped map[string]string
	if s.names {
		var err error
		if mapped, err = s.opts.Names.Dir(dir); err != nil {
			return nil, err
		}
	}
	ents := make([]dirent, len(names))
	for i, disk := range names {
		ents[i] = dirent{disk: disk, name: disk}
		if v, ok := mapped[disk]; ok {
			ents[i].name = v
			delete(mapped, disk)
		} else if utf8.ValidString(disk) && !norm.NFC.IsNormalString(disk) {
			ents[i].name = norm.NFC.String(disk)
			if err := s.record(func(u *state.Update) error { return u.PutName(dir, disk, ents[i].name) }); err != nil {
				return nil, err
			}
		}
	}
	for disk := range mapped {
		if err := s.record(func(u *state.Update) error { return u.DeleteName(dir, disk) }); err != nil {
			return nil, err
		}
	}
	// Sorted by version name; of two disk names with one version name,
	// the one spelt as the version spells it comes first and is kept.
	slices.SortFunc(ents, func(a, b dirent) int {
		if c := cmp.Compare(a.name, b.name); c != 0 {
			return c
		}
		return cmp.Compare(boolRank(a.disk != a.name), boolRank(b.disk != b.name))
	})
	for i := 1; i < len(ents); i++ {
		if ents[i].name == ents[i-1].name {
			ents[i].twin = ents[i-1].disk
		}
	}
	return ents, nil
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// notPortable warns when a name new to the folder is one Windows cannot
// hold (a namespace marked portable refuses it at the server).
func (s *scanner) notPortable(p, name string) {
	if err := index.PortableName(name); err != nil {
		s.warn("%q: %v: it syncs, but not to Windows", p, err)
	}
}

package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/ferry-sync/ferry/index"
	"github.com/ferry-sync/ferry/state"
)

// ErrNotFolderRoot: a folder argument names a directory that is not a
// folder's root (it may be inside one).
var ErrNotFolderRoot = errors.New("not a ferry folder's root")

// ErrOutsideFolder: a PATH argument lies outside the folder it is for.
var ErrOutsideFolder = errors.New("outside the folder")

// ErrNested: a folder or a store would be inside a folder, which would
// then sync it too.
var ErrNested = errors.New("a folder cannot hold another folder or a store")

// StoreOutsideFolders refuses a store directory inside a folder.
func StoreOutsideFolders(store string) error {
	if root, err := state.FindRoot(store); err == nil {
		return fmt.Errorf("the store %s is inside the folder %s: %w", store, root, ErrNested)
	}
	return nil
}

// IsFolder reports whether dir is the root of a ferry folder: it holds
// .ferry/. A command's first argument is its folder only then, so that
// an existing subdirectory is never mistaken for one.
func IsFolder(dir string) bool { return state.IsFolder(dir) }

// Located is the folder a command acts on, and its PATH arguments as
// paths of the folder: slash-separated, relative to its root, "" for the
// root itself.
type Located struct {
	Dir   string
	Paths []string
}

// Locate finds the folder that holds base (base itself or its nearest
// parent that is one, as git finds a repository) and turns each PATH,
// relative to base as a shell path is relative to the current directory,
// into a path of that folder. A PATH outside the folder is an error.
func Locate(base string, paths []string) (Located, error) {
	root, err := state.FindRoot(base)
	if err != nil {
		return Located{}, err
	}
	absBase, err := filepath.Abs(base)
	if err != nil {
		return Located{}, err
	}
	loc := Located{Dir: root, Paths: make([]string, 0, len(paths))}
	for _, p := range paths {
		rel, err := folderPath(root, absBase, p)
		if err != nil {
			return Located{}, err
		}
		loc.Paths = append(loc.Paths, rel)
	}
	return loc, nil
}

// folderPath is p, relative to base, as a path of the folder at root.
func folderPath(root, base, p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("an empty PATH: %w", index.ErrInvalidPath)
	}
	abs := p
	if !filepath.IsAbs(p) {
		abs = filepath.Join(base, p)
	}
	rel, err := filepath.Rel(root, filepath.Clean(abs))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s: %w %s", p, ErrOutsideFolder, root)
	}
	if rel == "." {
		return "", nil
	}
	rel = filepath.ToSlash(rel)
	if err := index.ValidPath(rel); err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return rel, nil
}

// FolderRoot checks that dir is a folder's root, and says where the
// folder is when dir is inside one.
func FolderRoot(dir string) error {
	if IsFolder(dir) {
		return nil
	}
	if root, err := state.FindRoot(dir); err == nil {
		return fmt.Errorf("%s: %w (it is inside the folder %s; name that, or run ferry there)", dir, ErrNotFolderRoot, root)
	}
	abs, _ := filepath.Abs(dir)
	return fmt.Errorf("%s: %w", abs, state.ErrNoFolder)
}

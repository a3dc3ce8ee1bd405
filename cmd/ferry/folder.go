package main

import (
	"github.com/ferry-sync/ferry/engine"
)

// The folder rule: -C DIR names the folder; otherwise a first argument is
// the folder only when it is a folder's root (it holds .ferry/), so that an
// existing subdirectory is never taken for one. Every other argument is a
// PATH relative to the current directory (or to the named folder), a
// version or a name, as the command says.

// folderArg splits a command's arguments by the folder rule. base is the
// directory the folder is found from, and PATHs are relative to.
func (g *globals) folderArg(a []string) (base string, rest []string) {
	if g.chdir != "" {
		return g.chdir, a
	}
	if len(a) > 0 && engine.IsFolder(a[0]) {
		return a[0], a[1:]
	}
	return ".", a
}

// folder is the folder of a command that takes [DIR] and nothing else.
// A DIR that is not a folder's root is refused: 'ferry push src' inside a
// folder would otherwise push the whole folder, not src.
func (g *globals) folder(a []string) (string, error) {
	base, rest := g.folderArg(a)
	if len(rest) > 0 {
		if err := engine.FolderRoot(rest[0]); err != nil {
			return "", err
		}
		return rest[0], nil
	}
	return base, nil
}

// located is the folder and the PATH arguments of a command that takes
// [DIR] [PATH...], PATHs made the folder's.
func (g *globals) located(a []string) (engine.Located, error) {
	base, rest := g.folderArg(a)
	return engine.Locate(base, rest)
}

// locatedPath is the folder and the one optional PATH ("" for none) of a
// command that takes [DIR] [PATH].
func (g *globals) locatedPath(a []string) (dir, path string, err error) {
	loc, err := g.located(a)
	if err != nil {
		return "", "", err
	}
	switch len(loc.Paths) {
	case 0:
		return loc.Dir, "", nil
	case 1:
		return loc.Dir, loc.Paths[0], nil
	}
	return "", "", usageError{errTooManyArgs}
}

package scan

import (
	"bufio"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// IgnoreFile is the name of the per-directory ignore file.
const IgnoreFile = ".ferryignore"

// maxIgnoreFile bounds how much of an ignore file is read.
const maxIgnoreFile = 1 << 20

// ignorer holds the patterns in force in one directory: its own
// .ferryignore's and every ancestor's. Deeper files come later in the list,
// so their patterns win, as in git.
type ignorer struct {
	patterns []gitignore.Pattern
	m        gitignore.Matcher
}

// enter returns the ignorer for directory rel (absolute path abs): i plus
// the patterns of abs/.ferryignore, if there is one. The ignorer of the
// parent is never changed.
func (i *ignorer) enter(abs, rel string) (*ignorer, error) {
	f, err := os.Open(filepath.Join(abs, IgnoreFile))
	if errors.Is(err, fs.ErrNotExist) {
		return i, nil
	}
	if err != nil {
		return i, err
	}
	defer f.Close()
	var domain []string
	if rel != "" {
		domain = strings.Split(rel, "/")
	}
	var added []gitignore.Pattern
	sc := bufio.NewScanner(&limitedReader{f, maxIgnoreFile})
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		added = append(added, gitignore.ParsePattern(line, domain))
	}
	if err := sc.Err(); err != nil {
		return i, err
	}
	if len(added) == 0 {
		return i, nil
	}
	var ps []gitignore.Pattern
	if i != nil {
		ps = append(ps, i.patterns...)
	}
	ps = append(ps, added...)
	return &ignorer{patterns: ps, m: gitignore.NewMatcher(ps)}, nil
}

// match reports whether the slash-separated path is ignored.
func (i *ignorer) match(path string, isDir bool) bool {
	if i == nil {
		return false
	}
	return i.m.Match(strings.Split(path, "/"), isDir)
}

type limitedReader struct {
	f *os.File
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("ignore file larger than 1 MiB")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}

package scan

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"golang.org/x/sys/unix"
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

// enter returns the ignorer for directory rel (open as dirfd): i plus the
// patterns of its .ferryignore, if there is one. The parent's ignorer is
// never changed. The file is read like any other: relative to its
// directory, without following a link or blocking on a FIFO, only if it is
// a regular file, and at most maxIgnoreFile bytes of it.
func (i *ignorer) enter(dirfd int, rel string) (*ignorer, error) {
	data, err := readIgnoreFile(dirfd)
	if errors.Is(err, fs.ErrNotExist) {
		return i, nil
	}
	if err != nil {
		return i, err
	}
	var domain []string
	if rel != "" {
		domain = strings.Split(rel, "/")
	}
	added, err := parseIgnore(data, domain)
	if err != nil {
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

// parseIgnore reads an ignore file's patterns (git's syntax: # comments,
// blank lines, CRLF endings) for the directory domain.
func parseIgnore(data []byte, domain []string) ([]gitignore.Pattern, error) {
	if len(data) > maxIgnoreFile {
		return nil, fmt.Errorf("%d bytes, more than %d", len(data), maxIgnoreFile)
	}
	var added []gitignore.Pattern
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxIgnoreFile+1)
	for sc.Scan() {
		line := strings.TrimSuffix(sc.Text(), "\r")
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		added = append(added, gitignore.ParsePattern(line, domain))
	}
	return added, sc.Err()
}

// readIgnoreFile reads dirfd's .ferryignore. One that is not a regular
// file (a link, a FIFO) or is larger than maxIgnoreFile is refused.
func readIgnoreFile(dirfd int) ([]byte, error) {
	fd, err := unix.Openat(dirfd, IgnoreFile, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ELOOP {
		return nil, errors.New("is a symlink: not followed, and its rules not applied")
	}
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), IgnoreFile)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("is not a regular file (%s): its rules are not applied", fi.Mode().Type())
	}
	if fi.Size() > maxIgnoreFile {
		return nil, fmt.Errorf("is %d bytes, more than the %d read: its rules are not applied", fi.Size(), maxIgnoreFile)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIgnoreFile+1))
	if err == nil && len(data) > maxIgnoreFile {
		err = fmt.Errorf("grew past %d bytes while read: its rules are not applied", maxIgnoreFile)
	}
	return data, err
}

// match reports whether the slash-separated path is ignored.
func (i *ignorer) match(path string, isDir bool) bool {
	if i == nil {
		return false
	}
	return i.m.Match(strings.Split(path, "/"), isDir)
}

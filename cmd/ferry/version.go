package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionInfo is what ferry was built from, from debug.ReadBuildInfo.
type versionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Time     string `json:"commit_time,omitempty"`
	Go       string `json:"go"`
}

// version is set at link time by make build (-X main.version=...); a
// plain go build or go install uses the module's version.
var version string

func readVersion() versionInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return versionInfo{Version: "(devel)"}
	}
	v := versionInfo{Version: bi.Main.Version, Go: bi.GoVersion}
	if version != "" {
		v.Version = version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// buildVersion is the one-line form, for --version and the server's
// hello.
func buildVersion() string {
	v := readVersion()
	s := v.Version
	if len(v.Commit) >= 12 {
		s += " " + v.Commit[:12]
	}
	return s + " " + v.Go
}

func newVersion(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit ferry was built from, and the Go version",
		Args:  args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			v := readVersion()
			return g.print(v, func(w io.Writer) {
				fmt.Fprintf(w, "ferry %s\n", v.Version)
				if v.Commit != "" {
					dirty := ""
					if v.Modified {
						dirty = " (modified)"
					}
					fmt.Fprintf(w, "commit %s%s %s\n", v.Commit, dirty, v.Time)
				}
				fmt.Fprintf(w, "built with %s\n", v.Go)
			})
		},
	}
}

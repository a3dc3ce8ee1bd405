package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestReadmeCommands: the README's command table names every command a
// user can see (and each admin and token subcommand), and every flag of
// the root command's, so the table cannot fall behind the code.
func TestReadmeCommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	root := newRoot(&globals{stdout: io.Discard, stderr: io.Discard})
	for _, c := range root.Commands() {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			continue
		}
		if !strings.Contains(readme, "`ferry "+c.Name()) {
			t.Errorf("the README's command table lacks `ferry %s`", c.Name())
		}
		if c.Name() != "admin" && c.Name() != "token" {
			continue
		}
		for _, sub := range c.Commands() {
			if !strings.Contains(readme, sub.Name()) {
				t.Errorf("the README lacks `ferry %s %s`", c.Name(), sub.Name())
			}
		}
	}
	for _, f := range []string{"json", "quiet", "verbose", "progress", "no-progress", "folder", "token-file", "fingerprint", "streams", "limit-upload", "limit-download"} {
		if root.PersistentFlags().Lookup(f) == nil {
			t.Errorf("no global flag --%s", f)
		} else if !strings.Contains(readme, "--"+f) {
			t.Errorf("the README does not mention --%s", f)
		}
	}
}

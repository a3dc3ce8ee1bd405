package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// flagsFromEnv gives every flag of c an environment twin, rclone's way:
// --max-conns-per-ip is FERRY_MAX_CONNS_PER_IP. A flag on the command line
// wins over its twin.
func flagsFromEnv(c *cobra.Command) error {
	var err error
	c.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed || f.Name == "help" || f.Name == "version" {
			return
		}
		name := envName(f.Name)
		v, ok := os.LookupEnv(name)
		if !ok {
			return
		}
		if serr := c.Flags().Set(f.Name, v); serr != nil {
			err = usageError{fmt.Errorf("%s=%q (--%s): %w", name, v, f.Name, serr)}
		}
	})
	return err
}

// envName is a flag's environment twin.
func envName(flag string) string {
	return "FERRY_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

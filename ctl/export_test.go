package ctl

import "github.com/spf13/cobra"

// RootCommand returns autonomyctl's command tree, for the tests of package
// ctl_test that check the commands hints and docs name.
func RootCommand() *cobra.Command { return (&invocation{cli: &CLI{}}).rootCmd() }

package ctl

import (
	"github.com/spf13/cobra"
)

func (in *invocation) completionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish",
		Short: "Print a shell completion script",
		Long: "Print a shell completion script. For example:\n\n" +
			"  autonomyctl completion bash | sudo tee /etc/bash_completion.d/autonomyctl\n" +
			"  autonomyctl completion zsh > \"${fpath[1]}/_autonomyctl\"",
		ValidArgs: []string{"bash", "zsh", "fish"},
		Args:      usageArgs(cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs)),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			switch args[0] {
			case "bash":
				return root.GenBashCompletionV2(in.cli.Stdout, true)
			case "zsh":
				return root.GenZshCompletion(in.cli.Stdout)
			default:
				return root.GenFishCompletion(in.cli.Stdout, true)
			}
		},
	}
}

package ctl

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is autonomyctl's version, set at link time:
//
//	-ldflags '-X github.com/autonomyops/orchestrator/ctl.Version=v1.2.3'
//
// When unset, the module version or VCS revision from the build info is used.
var Version = "dev"

type versionInfo struct {
	Version  string `json:"version"`
	Commit   string `json:"commit,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func buildVersion() versionInfo {
	v := versionInfo{Version: Version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
	}
	return v
}

// versionString is the version with the commit, for `autonomyctl version`.
// `--version` prints buildVersion().Version alone: the package's version, as
// `autonomy-orchestrator --version` prints it.
func versionString() string {
	v := buildVersion()
	s := v.Version
	if v.Commit != "" {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		if v.Modified {
			c += "-dirty"
		}
		s += " (" + c + ")"
	}
	return s
}

func (in *invocation) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print autonomyctl's version",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			v := buildVersion()
			return in.emit(v, func(w *tabw) {
				fmt.Fprintf(w, "autonomyctl %s (%s, %s)\n", versionString(), v.Go, v.Platform)
			})
		},
	}
}

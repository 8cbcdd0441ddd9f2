package ctl

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/autonomyops/orchestrator/walrepl"
	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// The CLI's own configuration: <ConfigDir>/config.yaml, e.g.
//
//	orchestrator:
//	  url: http://localhost:8888
//
// It is not the cluster's settings (those live in etcd: `autonomyctl
// settings`). Keys are dotted paths into the YAML; unknown keys already in
// the file are kept when another key is written.

// ConfigFileName is the CLI config file inside the config directory.
const ConfigFileName = "config.yaml"

// configKey describes one key `config set` accepts.
type configKey struct {
	help     string
	validate func(string) (string, error) // returns the value to store
}

var configKeys = map[string]configKey{
	"orchestrator.url": {
		help: "the orchestrator's API URL, or a comma-separated list of every node's URL",
		validate: func(v string) (string, error) {
			urls, err := parseEndpointList(v)
			if err != nil {
				return "", err
			}
			return strings.Join(urls, ","), nil
		},
	},
}

func knownKeys() []string {
	var ks []string
	for k := range configKeys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// cliConfig is the parsed config file as a generic tree.
type cliConfig struct {
	tree map[string]any
}

// loadConfig reads path; a missing file is an empty config.
func loadConfig(path string) (*cliConfig, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &cliConfig{tree: map[string]any{}}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the CLI config: %w", err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("%s is not valid YAML: %w", path, err)
	}
	if tree == nil {
		tree = map[string]any{}
	}
	return &cliConfig{tree: tree}, nil
}

func (c *cliConfig) get(key string) (string, bool) {
	var node any = c.tree
	for _, p := range strings.Split(key, ".") {
		m, ok := node.(map[string]any)
		if !ok {
			return "", false
		}
		if node, ok = m[p]; !ok {
			return "", false
		}
	}
	switch v := node.(type) {
	case string:
		return v, true
	case nil:
		return "", false
	case map[string]any:
		return "", false
	default:
		return fmt.Sprint(v), true
	}
}

func (c *cliConfig) set(key, value string) {
	parts := strings.Split(key, ".")
	m := c.tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
	m[parts[len(parts)-1]] = value
}

func (c *cliConfig) unset(key string) bool {
	parts := strings.Split(key, ".")
	m := c.tree
	for _, p := range parts[:len(parts)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return false
		}
		m = next
	}
	last := parts[len(parts)-1]
	if _, ok := m[last]; !ok {
		return false
	}
	delete(m, last)
	return true
}

// save writes the config atomically: the directory 0700, the file 0600 (it
// may one day hold credentials).
func (c *cliConfig) save(path string) error {
	b, err := yaml.Marshal(c.tree)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, ConfigFileName+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return walrepl.SyncDir(dir)
}

// configResult is what `config get|set|unset` print with -o json.
type configResult struct {
	File   string            `json:"file"`
	Key    string            `json:"key,omitempty"`
	Value  *string           `json:"value,omitempty"`
	Values map[string]string `json:"values,omitempty"`
	Action string            `json:"action,omitempty"` // set, unset
}

func (in *invocation) configCmd() *cobra.Command {
	cmd := groupCommand("config", "Show or change autonomyctl's own configuration (e.g. orchestrator.url)")
	cmd.Long = "Show or change autonomyctl's own configuration file (" + ConfigFileName + " in $XDG_CONFIG_HOME/autonomy or ~/.config/autonomy).\n" +
		"This is not the cluster's settings: those are `autonomyctl settings`.\n\nKeys:\n"
	for _, k := range knownKeys() {
		cmd.Long += fmt.Sprintf("  %-18s %s\n", k, configKeys[k].help)
	}

	set := &cobra.Command{
		Use:     "set KEY VALUE",
		Short:   "Set a key, e.g. config set orchestrator.url http://localhost:8888",
		Example: "  autonomyctl config set orchestrator.url http://localhost:8888\n  autonomyctl config set orchestrator.url http://node-a:8888,http://node-b:8888,http://node-c:8888",
		Args:    usageArgs(cobra.ExactArgs(2)),
		RunE: func(_ *cobra.Command, args []string) error {
			key, ok := configKeys[args[0]]
			if !ok {
				return usagef("unknown key %q (known: %s)", args[0], strings.Join(knownKeys(), ", "))
			}
			v, err := key.validate(args[1])
			if err != nil {
				return usagef("%s: %v", args[0], err)
			}
			path := in.cli.configPath()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			cfg.set(args[0], v)
			if err := cfg.save(path); err != nil {
				return fmt.Errorf("writing %s: %w", path, err)
			}
			res := configResult{File: path, Key: args[0], Value: &v, Action: "set"}
			return in.emit(res, func(w *tabw) {
				fmt.Fprintf(w, "%s = %s (written to %s)\n", args[0], v, path)
			})
		},
	}
	get := &cobra.Command{
		Use:   "get [KEY]",
		Short: "Print one key, or every known key",
		Args:  usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			path := in.cli.configPath()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				if _, ok := configKeys[args[0]]; !ok {
					return usagef("unknown key %q (known: %s)", args[0], strings.Join(knownKeys(), ", "))
				}
				v, ok := cfg.get(args[0])
				res := configResult{File: path, Key: args[0]}
				if ok {
					res.Value = &v
				}
				return in.emit(res, func(w *tabw) {
					if !ok {
						fmt.Fprintf(w, "%s is not set in %s\n", args[0], path)
						return
					}
					fmt.Fprintln(w, v)
				})
			}
			res := configResult{File: path, Values: map[string]string{}}
			for _, k := range knownKeys() {
				if v, ok := cfg.get(k); ok {
					res.Values[k] = v
				}
			}
			return in.emit(res, func(w *tabw) {
				fmt.Fprintf(w, "# %s\n", path)
				fmt.Fprintln(w, "KEY\tVALUE")
				for _, k := range knownKeys() {
					v, ok := res.Values[k]
					if !ok {
						v = "(not set)"
					}
					fmt.Fprintf(w, "%s\t%s\n", k, v)
				}
			})
		},
	}
	unset := &cobra.Command{
		Use:   "unset KEY",
		Short: "Remove a key",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			if _, ok := configKeys[args[0]]; !ok {
				return usagef("unknown key %q (known: %s)", args[0], strings.Join(knownKeys(), ", "))
			}
			path := in.cli.configPath()
			cfg, err := loadConfig(path)
			if err != nil {
				return err
			}
			removed := cfg.unset(args[0])
			if removed {
				if err := cfg.save(path); err != nil {
					return fmt.Errorf("writing %s: %w", path, err)
				}
			}
			return in.emit(configResult{File: path, Key: args[0], Action: "unset"}, func(w *tabw) {
				if removed {
					fmt.Fprintf(w, "%s removed from %s\n", args[0], path)
				} else {
					fmt.Fprintf(w, "%s was not set in %s\n", args[0], path)
				}
			})
		},
	}
	for _, c := range []*cobra.Command{set, get, unset} {
		c.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return knownKeys(), cobra.ShellCompDirectiveNoFileComp
			}
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
	}
	cmd.AddCommand(set, get, unset)
	return cmd
}

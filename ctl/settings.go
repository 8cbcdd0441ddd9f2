package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/autonomyops/orchestrator/api"
	"github.com/spf13/cobra"
)

// The settings group: the cluster's settings, stored in etcd and served by
// the leader at /v1/config/<key>, with a revision in every answer and
// compare-and-set through If-Match. Not the CLI's own configuration (that is
// `config`, e.g. orchestrator.url).

func (in *invocation) settingsCmd() *cobra.Command {
	cmd := groupCommand("settings", "Cluster settings stored in etcd (get, set, delete with compare-and-set)")
	cmd.Long = "Cluster settings, stored in etcd and served by the leader (GET/PUT/DELETE /v1/config/<key>). Every answer\n" +
		"carries the key's revision; --if-revision R makes a write apply only if the key is still at revision R\n" +
		"(0: only if it does not exist yet), else it fails with exit status 6. Writes need the admin role.\n\n" +
		"This is not autonomyctl's own configuration (`autonomyctl config set orchestrator.url URL`)."
	cmd.AddCommand(in.settingsGetCmd(), in.settingsSetCmd(), in.settingsDeleteCmd())
	return cmd
}

func (in *invocation) settingsGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get [KEY]",
		Short: "Print one setting with its revision, or every setting",
		Long: "Without KEY: every setting (GET /v1/config/). With KEY: that one (exit 4 if it does not exist).\n" +
			"-o json prints api.SettingsList or api.Setting.",
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			if len(args) == 0 {
				l, _, err := c.Settings(in.ctx)
				if err != nil {
					return err
				}
				return in.emit(l, func(w *tabw) {
					settingsTable(w, l.Settings)
					if len(l.Settings) == 0 {
						fmt.Fprintln(w, "(no setting)")
					}
				})
			}
			key, err := settingKey(args[0])
			if err != nil {
				return err
			}
			st, _, err := c.Setting(in.ctx, key)
			if err != nil {
				return err
			}
			return in.emit(st, func(w *tabw) { settingsTable(w, []api.Setting{*st}) })
		},
	}
}

func (in *invocation) settingsSetCmd() *cobra.Command {
	var ifRev string
	cmd := &cobra.Command{
		Use:   "set KEY VALUE [--if-revision R]",
		Short: "Write a setting; VALUE is JSON when it parses as JSON, else a string",
		Long: "PUT /v1/config/KEY with {\"value\": VALUE}. VALUE is taken as JSON when it is valid JSON (42, true,\n" +
			"{\"a\":1}, \"quoted\"), else as a string (so '\"42\"' stores the string \"42\"). --if-revision R applies the write\n" +
			"only if the key is at revision R (0: only if it does not exist); on a mismatch nothing is written and the\n" +
			"exit status is 6. -o json prints the answer (api.Setting).",
		Args: usageArgs(cobra.ExactArgs(2)),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := settingKey(args[0])
			if err != nil {
				return err
			}
			rev, err := parseIfRevision(cmd, ifRev)
			if err != nil {
				return err
			}
			value := settingValue(args[1])
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			st, _, err := c.PutSetting(in.ctx, key, value, rev)
			if err != nil {
				return in.settingsWriteError(key, err)
			}
			if in.jsonOutput() {
				return in.printJSON(st)
			}
			v := st.Value
			if len(v) == 0 {
				v = value
			}
			_, err = fmt.Fprintf(in.cli.Stdout, "%s = %s (revision %d)\n", st.Key, compactEvent(v), st.Revision)
			return err
		},
	}
	cmd.Flags().StringVar(&ifRev, "if-revision", "", "write only if the key is at this revision (0: only if it does not exist)")
	return cmd
}

func (in *invocation) settingsDeleteCmd() *cobra.Command {
	var ifRev string
	cmd := &cobra.Command{
		Use:   "delete KEY [--if-revision R]",
		Short: "Delete a setting",
		Long: "DELETE /v1/config/KEY. --if-revision R deletes only if the key is at revision R; on a mismatch nothing is\n" +
			"deleted and the exit status is 6. An absent key is exit status 4. -o json prints the answer (api.Setting).",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := settingKey(args[0])
			if err != nil {
				return err
			}
			rev, err := parseIfRevision(cmd, ifRev)
			if err != nil {
				return err
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			st, _, err := c.DeleteSetting(in.ctx, key, rev)
			if err != nil {
				return in.settingsWriteError(key, err)
			}
			if in.jsonOutput() {
				return in.printJSON(st)
			}
			_, err = fmt.Fprintf(in.cli.Stdout, "deleted %s (revision %d)\n", key, st.Revision)
			return err
		},
	}
	cmd.Flags().StringVar(&ifRev, "if-revision", "", "delete only if the key is at this revision")
	return cmd
}

// settingKey checks a key given on the command line.
func settingKey(s string) (string, error) {
	key := strings.Trim(s, "/")
	if key == "" {
		return "", usagef("KEY must not be empty")
	}
	if strings.Contains(key, "//") || strings.ContainsAny(key, " \t\n") {
		return "", usagef("KEY %q must not contain spaces or empty path segments", s)
	}
	return key, nil
}

// settingValue is VALUE as JSON when it is valid JSON, else as a JSON string.
func settingValue(s string) json.RawMessage {
	if t := strings.TrimSpace(s); t != "" && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	b, _ := json.Marshal(s)
	return b
}

func parseIfRevision(cmd *cobra.Command, v string) (*int64, error) {
	if !cmd.Flags().Changed("if-revision") {
		return nil, nil
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n < 0 {
		return nil, usagef("--if-revision %q: want a revision number (0: the key must not exist yet)", v)
	}
	return &n, nil
}

// settingsWriteError explains a refused compare-and-set.
func (in *invocation) settingsWriteError(key string, err error) error {
	var he *api.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		msg := he.Message
		if msg == "" {
			msg = he.Code
		}
		fmt.Fprintf(in.cli.Stderr, "settings: %s not written: %s\n", key, msg)
		fmt.Fprintf(in.cli.Stderr, "hint: the key changed since you read it: `autonomyctl settings get %s` shows its value and revision; pass that revision to --if-revision\n", key)
		return &errSilent{code: ExitConflict}
	}
	return err
}

func settingsTable(w *tabw, list []api.Setting) {
	fmt.Fprintln(w, "KEY\tREVISION\tVALUE")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%d\t%s\n", s.Key, s.Revision, dash(compactEvent(s.Value)))
	}
}

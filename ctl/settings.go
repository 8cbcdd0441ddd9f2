package ctl

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// The settings group: the cluster's settings, stored in etcd and served by
// the leader at /v1/config/<key>, with a revision in every answer and
// compare-and-set through If-Match. Not the CLI's own configuration (that is
// `config`, e.g. orchestrator.url).

func (in *invocation) settingsCmd() *cobra.Command {
	cmd := groupCommand("settings", "Cluster settings stored in etcd, applied live on every node (list, get, set, delete)")
	cmd.Long = "Cluster settings, stored in etcd and served by the leader (GET/PUT/DELETE /v1/config/<key>). Every node\n" +
		"watches them and applies a change within a second, with no restart. Only the keys that `settings list`\n" +
		"shows exist; a write of another key or of a value out of bounds is refused (exit status 5) and nothing\n" +
		"is written. Deleting a key returns every node to its default (its serve flag, or the built-in default).\n\n" +
		"Every answer carries the key's revision; --if-revision R makes a write apply only if the key is still at\n" +
		"revision R (0: only if it does not exist yet), else it fails with exit status 6. Writes need the admin role.\n\n" +
		"This is not autonomyctl's own configuration (`autonomyctl config set orchestrator.url URL`)."
	cmd.AddCommand(in.settingsListCmd(), in.settingsGetCmd(), in.settingsSetCmd(), in.settingsDeleteCmd())
	return cmd
}

func (in *invocation) settingsListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Every settings key: its value, default, source (etcd or default) and bounds",
		Long: "GET /v1/config/: every key of the settings schema as the leader resolves it. VALUE is in effect; DEFAULT\n" +
			"is what applies without a stored value (the leader's serve flag, or the built-in default); SOURCE is\n" +
			"etcd when a stored value applies, default otherwise. A stored value outside the bounds (written around\n" +
			"the API) is reported and not applied. Keys in etcd that are not settings are listed: they have no\n" +
			"effect. One node's own view: GET /v1/node/settings on that node. -o json prints wire.SettingsList.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(_ *cobra.Command, _ []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			l, _, err := c.Settings(in.ctx)
			if err != nil {
				return err
			}
			return in.emit(l, func(w *tabw) { settingsInfoTable(w, l) })
		},
	}
}

// settingsInfoTable prints the schema keys as resolved, then what etcd
// holds that has no effect.
func settingsInfoTable(w *tabw, l *wire.SettingsList) {
	fmt.Fprintln(w, "KEY\tVALUE\tDEFAULT\tSOURCE\tBOUNDS")
	var refused []string
	for _, s := range l.Known {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", s.Key, dash(compactEvent(s.Value)), dash(compactEvent(s.Default)), s.Source, s.Bounds)
		if s.Refused != "" {
			refused = append(refused, fmt.Sprintf("%s: etcd holds a value that is not applied (%s); the default applies", s.Key, s.Refused))
		}
	}
	if len(l.Known) == 0 {
		fmt.Fprintln(w, "(the server lists no settings schema: it predates live settings)")
	}
	for _, r := range refused {
		fmt.Fprintln(w, r)
	}
	for _, k := range l.Unknown {
		fmt.Fprintf(w, "%s: stored in etcd but not a setting; it has no effect (autonomyctl settings delete %s)\n", k, k)
	}
}

func (in *invocation) settingsGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get [KEY]",
		Short: "Print what etcd stores: one setting with its revision, or every stored one",
		Long: "Without KEY: every stored setting (GET /v1/config/). With KEY: that one (exit 4 if it is not stored:\n" +
			"the default applies; `settings list` shows it). -o json prints wire.SettingsList or wire.Setting.",
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
			return in.emit(st, func(w *tabw) { settingsTable(w, []wire.Setting{*st}) })
		},
	}
}

func (in *invocation) settingsSetCmd() *cobra.Command {
	var ifRev string
	cmd := &cobra.Command{
		Use:   "set KEY VALUE [--if-revision R]",
		Short: "Write a setting, applied live on every node; VALUE is JSON when it parses as JSON, else a string",
		Long: "PUT /v1/config/KEY with {\"value\": VALUE}. VALUE is taken as JSON when it is valid JSON (500, \"720h\"),\n" +
			"else as a string (720h stores \"720h\", debug stores \"debug\"). KEY must be a key of `settings list` and\n" +
			"VALUE within its bounds, else nothing is written and the exit status is 5. --if-revision R applies the\n" +
			"write only if the key is at revision R (0: only if it does not exist); on a mismatch nothing is written\n" +
			"and the exit status is 6. -o json prints the answer (wire.Setting).",
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
		Short: "Delete a setting: every node returns to its default",
		Long: "DELETE /v1/config/KEY: every node applies its default again (its serve flag, or the built-in default).\n" +
			"Any stored key can be deleted, also one that is not a setting. --if-revision R deletes only if the key is\n" +
			"at revision R; on a mismatch nothing is deleted and the exit status is 6. An absent key is exit status 4.\n" +
			"-o json prints the answer (wire.Setting).",
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

// settingsWriteError explains a refused write: a compare-and-set mismatch,
// or a key or value the schema refuses.
func (in *invocation) settingsWriteError(key string, err error) error {
	var he *client.HTTPError
	if errors.As(err, &he) && he.Status == http.StatusBadRequest && (he.Code == "unknown_setting" || he.Code == "bad_setting") {
		fmt.Fprintf(in.cli.Stderr, "settings: %s not written: %s\n", key, he.Message)
		printHints(in.cli.Stderr, hintSettingsList)
		return &errSilent{code: ExitHTTP}
	}
	if errors.As(err, &he) && he.Status == http.StatusConflict {
		msg := he.Message
		if msg == "" {
			msg = he.Code
		}
		fmt.Fprintf(in.cli.Stderr, "settings: %s not written: %s\n", key, msg)
		printHints(in.cli.Stderr, fmt.Sprintf(hintSettingsChanged, key))
		return &errSilent{code: ExitConflict}
	}
	return err
}

func settingsTable(w *tabw, list []wire.Setting) {
	fmt.Fprintln(w, "KEY\tREVISION\tVALUE")
	for _, s := range list {
		fmt.Fprintf(w, "%s\t%d\t%s\n", s.Key, s.Revision, dash(compactEvent(s.Value)))
	}
}

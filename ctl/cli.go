package ctl

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/spf13/cobra"
)

// CLI is autonomyctl. The zero value is not usable; New returns one wired to
// the process (os.Stdout, os.Getenv, ...). Tests build their own.
type CLI struct {
	Stdout io.Writer
	Stderr io.Writer
	// Stdin answers confirmation prompts (wal reset).
	Stdin io.Reader
	// StdinIsTerminal says whether prompts can be asked; nil means never.
	StdinIsTerminal func() bool
	// Getenv reads the environment (AUTONOMY_ORCHESTRATOR_URL, AUTONOMY_TOKEN,
	// AUTONOMY_CACERT, XDG_CONFIG_HOME, HOME, SUDO_USER, USER).
	Getenv func(string) string
	// ConfigDir holds config.yaml. "" means $XDG_CONFIG_HOME/autonomy, else
	// ~/.config/autonomy.
	ConfigDir string
	// HTTPClient, if set, is copied for every run (its Timeout is replaced
	// by --timeout). nil means a new client honouring --cacert.
	HTTPClient *http.Client
	// Now is the clock for backup names and --since; nil means time.Now.
	Now func() time.Time
}

// New returns the CLI of this process.
func New() *CLI {
	return &CLI{
		Stdout:          os.Stdout,
		Stderr:          os.Stderr,
		Stdin:           os.Stdin,
		StdinIsTerminal: func() bool { return isTerminal(os.Stdin) },
		Getenv:          os.Getenv,
	}
}

func (c *CLI) getenv(k string) string {
	if c.Getenv == nil {
		return ""
	}
	return c.Getenv(k)
}

func (c *CLI) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// configDir resolves the directory of the CLI config file.
func (c *CLI) configDir() string {
	if c.ConfigDir != "" {
		return c.ConfigDir
	}
	if x := c.getenv("XDG_CONFIG_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "autonomy")
	}
	home := c.getenv("HOME")
	if home == "" {
		home, _ = os.UserHomeDir()
	}
	return filepath.Join(home, ".config", "autonomy")
}

func (c *CLI) configPath() string { return filepath.Join(c.configDir(), ConfigFileName) }

// Output formats of -o.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// DefaultTimeout bounds one HTTP request unless --timeout says otherwise.
const DefaultTimeout = 5 * time.Second

type globalFlags struct {
	endpoints string
	output    string
	token     string
	cacert    string
	timeout   time.Duration
}

// invocation is one Run: the parsed global flags and what they resolve to.
type invocation struct {
	cli   *CLI
	ctx   context.Context
	flags globalFlags

	eps    endpointSet
	client *client.Client
}

// Run executes one command line (without the program name) and returns the
// exit status. It never calls os.Exit.
func (c *CLI) Run(ctx context.Context, args []string) int {
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	in := &invocation{cli: c, ctx: ctx}
	root := in.rootCmd()
	root.SetArgs(args)
	root.SetOut(c.Stdout)
	root.SetErr(c.Stderr)
	if c.Stdin != nil {
		root.SetIn(c.Stdin)
	}
	cmd, err := root.ExecuteContextC(ctx)
	if err != nil && ctx.Err() != nil {
		fmt.Fprintln(c.Stderr, "interrupted")
		return ExitInterrupted
	}
	if err != nil {
		in.report(cmd, err)
	}
	return exitCode(err)
}

func (in *invocation) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "autonomyctl",
		Short: "Operate an AutonomyOps HA orchestrator cluster",
		Long: "autonomyctl operates an AutonomyOps HA orchestrator cluster: status and leader discovery, HA status and\n" +
			"planned failover, WAL status, inspection, verification and reset, event logs (followed across leader\n" +
			"changes), the fleet summary, cluster settings, the audit log, an in-process demo, and its own configuration.\n\n" +
			"Endpoints: --endpoints, else " + EnvOrchestratorURL + " (comma-separated list allowed), else\n" +
			"`autonomyctl config set orchestrator.url URL`. With several endpoints autonomyctl finds the leader itself.",
		Version:       buildVersion().Version,
		Args:          groupArgs,
		RunE:          func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			switch in.flags.output {
			case outputTable, outputJSON:
			default:
				return usagef("-o/--output must be %s or %s, not %q", outputTable, outputJSON, in.flags.output)
			}
			if in.flags.timeout < 0 {
				return usagef("--timeout must not be negative")
			}
			return nil
		},
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	root.SetVersionTemplate("autonomyctl {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err} })

	pf := root.PersistentFlags()
	pf.StringVar(&in.flags.endpoints, "endpoints", "", "comma-separated node API URLs (overrides "+EnvOrchestratorURL+" and the config file)")
	pf.StringVarP(&in.flags.output, "output", "o", outputTable, "output format: table or json")
	pf.StringVar(&in.flags.token, "token", "", "bearer token (default $"+EnvToken+")")
	pf.StringVar(&in.flags.cacert, "cacert", "", "PEM file of the CA that signed the nodes' certificates (default $"+EnvCACert+")")
	pf.DurationVar(&in.flags.timeout, "timeout", DefaultTimeout, "timeout of each HTTP request (0: none)")
	_ = root.RegisterFlagCompletionFunc("output", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		return []string{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp
	})

	root.AddCommand(
		in.versionCmd(),
		in.configCmd(),
		in.statusCmd(),
		in.haCmd(),
		in.walCmd(),
		in.logsCmd(),
		in.fleetCmd(),
		in.settingsCmd(),
		in.auditCmd(),
		in.memberCmd(),
		in.snapshotCmd(),
		in.certsCmd(),
		in.demoCmd(),
		in.completionCmd(),
		in.genManCmd(),
	)
	return root
}

// groupCommand is a command that only holds subcommands: bare, it prints its
// help; with an unknown subcommand, it is a usage error.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  groupArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

func groupArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{errors.New(msg)}
}

// usageArgs turns an argument validator's error into a usage error.
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return &usageError{err}
		}
		return nil
	}
}

// apiClient resolves the endpoints and builds the client, once per run.
func (in *invocation) apiClient() (*client.Client, error) {
	if in.client != nil {
		return in.client, nil
	}
	eps, err := in.resolveEndpoints()
	if err != nil {
		return nil, err
	}
	hc, err := in.httpClient()
	if err != nil {
		return nil, err
	}
	token := in.flags.token
	if token == "" {
		token = in.cli.getenv(EnvToken)
	}
	c, err := client.New(eps.URLs, client.Options{HTTPClient: hc, Token: token, UserAgent: "autonomyctl/" + Version})
	if err != nil {
		return nil, err
	}
	in.eps, in.client = eps, c
	return c, nil
}

func (in *invocation) httpClient() (*http.Client, error) {
	var hc http.Client
	if in.cli.HTTPClient != nil {
		hc = *in.cli.HTTPClient
	}
	hc.Timeout = in.flags.timeout
	cacert := in.flags.cacert
	src := "--cacert"
	if cacert == "" {
		cacert, src = in.cli.getenv(EnvCACert), EnvCACert
	}
	if cacert == "" {
		return &hc, nil
	}
	pem, err := os.ReadFile(cacert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", src, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", src, cacert)
	}
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return nil, fmt.Errorf("%s: the injected HTTP client's transport cannot take a CA", src)
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	hc.Transport = tr
	return &hc, nil
}

// tabw is the table writer a command's table function writes to.
type tabw = tabwriter.Writer

// emit prints v as indented JSON with -o json, else calls table with a
// tabwriter on stdout.
func (in *invocation) emit(v any, table func(w *tabw)) error {
	if in.flags.output == outputJSON {
		return in.printJSON(v)
	}
	w := tabwriter.NewWriter(in.cli.Stdout, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}

func (in *invocation) printJSON(v any) error {
	enc := json.NewEncoder(in.cli.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (in *invocation) jsonOutput() bool { return in.flags.output == outputJSON }

// report prints a failed command's error, with hints, on stderr.
func (in *invocation) report(cmd *cobra.Command, err error) {
	var silent *errSilent
	if errors.As(err, &silent) {
		return
	}
	w := in.cli.Stderr
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Fprintf(w, "Error: %v\n", err)
		if cmd != nil {
			fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return
	}
	fmt.Fprintln(w, err)
	printHints(w, in.hints(err)...)
}

// dash prints "-" for a zero value in tables.
func dash[T comparable](v T) string {
	var zero T
	if v == zero {
		return "-"
	}
	return fmt.Sprint(v)
}

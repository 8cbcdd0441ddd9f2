package ctl

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/autonomyops/orchestrator/api/client"
	"github.com/autonomyops/orchestrator/api/wire"
	"github.com/spf13/cobra"
)

// `member list|add|remove`: replacing a dead appliance (docs/operations.md).

func (in *invocation) memberCmd() *cobra.Command {
	cmd := groupCommand("member", "List, add and remove cluster members (replacing an appliance)")
	cmd.AddCommand(in.memberListCmd(), in.memberAddCmd(), in.memberRemoveCmd())
	return cmd
}

func (in *invocation) memberListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "The cluster's members: etcd's list with each node's API and replication address",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			var mr wire.MembersResponse
			if _, err := c.Do(in.ctx, client.Request{Path: "/v1/members", Route: client.AnyNode}, &mr); err != nil {
				return err
			}
			return in.emit(mr, func(w *tabw) {
				fmt.Fprintln(w, "NAME\tID\tPEER_URLS\tAPI_URL\tREPL_ADDR\tSTARTED")
				for _, m := range mr.Members {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%v\n", dash(m.Name), m.ID, strings.Join(m.PeerURLs, ","), dash(m.APIURL), dash(m.ReplAddr), m.Started)
				}
			})
		},
	}
}

func (in *invocation) memberAddCmd() *cobra.Command {
	var peerURL string
	cmd := &cobra.Command{
		Use:   "add NAME --peer-url URL",
		Short: "Add a node (its WAL joins as a learner and counts once it holds every committed frame)",
		Long: "POST /v1/members on the leader. It prints the --initial-cluster value to start the new node with,\n" +
			"together with --initial-cluster-state existing.",
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			if peerURL == "" {
				return usagef("--peer-url is required, e.g. --peer-url https://10.0.0.4:2380")
			}
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			var ar wire.AddMemberResponse
			req := wire.AddMemberRequest{Name: args[0], PeerURL: peerURL}
			if _, err := c.Do(in.ctx, client.Request{Method: http.MethodPost, Path: "/v1/members", Route: client.LeaderOnly, Body: req}, &ar); err != nil {
				return err
			}
			return in.emit(ar, func(w *tabw) {
				fmt.Fprintf(w, "added %s (%s) at %s\n", ar.Member.Name, ar.Member.ID, peerURL)
				fmt.Fprintf(w, "start it with:\n  --name %s --initial-cluster %s --initial-cluster-state existing\n", ar.Member.Name, ar.InitialCluster)
			})
		},
	}
	cmd.Flags().StringVar(&peerURL, "peer-url", "", "the new node's etcd peer URL (its --etcd-peer-url)")
	return cmd
}

func (in *invocation) memberRemoveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Remove a node from the cluster (a dead appliance, before adding its replacement)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := in.apiClient()
			if err != nil {
				return err
			}
			var out map[string]string
			if _, err := c.Do(in.ctx, client.Request{Method: http.MethodDelete, Path: "/v1/members/" + args[0], Route: client.LeaderOnly}, &out); err != nil {
				return err
			}
			return in.emit(out, func(w *tabw) { fmt.Fprintf(w, "removed %s\n", args[0]) })
		},
	}
}

func (in *invocation) certsCmd() *cobra.Command {
	cmd := groupCommand("certs", "Create the cluster's TLS material")
	var o CertsOptions
	var nodes, hosts, nodeHosts string
	initCmd := &cobra.Command{
		Use:   "init --out DIR --nodes n1,n2,n3 [--hosts h1,h2] [--node-hosts 'n1=10.0.0.1;n2=10.0.0.2']",
		Short: "Create a cluster CA and one certificate per node (ECDSA P-256, for the API and mutual TLS)",
		Long: "Writes ca.crt, ca.key and <node>.crt/<node>.key into --out (keys 0600). Each node certificate\n" +
			"carries its name, localhost, 127.0.0.1, ::1, every --hosts entry and its own --node-hosts entries.\n" +
			"Keep ca.key off the appliances; copy ca.crt and each node's pair to that node.",
		Args: usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			if o.Out == "" || nodes == "" {
				return usagef("--out and --nodes are required")
			}
			o.Nodes = splitList(nodes)
			o.Hosts = splitList(hosts)
			nh, err := ParseNodeHosts(nodeHosts)
			if err != nil {
				return usagef("%v", err)
			}
			o.NodeHost = nh
			files, err := CertsInit(o)
			if err != nil {
				return err
			}
			return in.emit(map[string]any{"files": files}, func(w *tabw) {
				for _, f := range files {
					fmt.Fprintln(w, "wrote", f)
				}
			})
		},
	}
	initCmd.Flags().StringVar(&o.Out, "out", "", "directory to write into")
	initCmd.Flags().StringVar(&nodes, "nodes", "", "comma-separated node names")
	initCmd.Flags().StringVar(&hosts, "hosts", "", "comma-separated IPs or DNS names added to every node certificate")
	initCmd.Flags().StringVar(&nodeHosts, "node-hosts", "", "per-node IPs/names: 'n1=10.0.0.1;n2=10.0.0.2,n2.lan'")
	initCmd.Flags().DurationVar(&o.Validity, "validity", 0, "certificate lifetime (default 5 years)")
	initCmd.Flags().BoolVar(&o.Force, "force", false, "overwrite existing files")
	initCmd.Flags().StringVar(&o.CACert, "ca-cert", "", "sign with this existing CA certificate (adding a node) instead of creating a CA")
	initCmd.Flags().StringVar(&o.CAKey, "ca-key", "", "the key of --ca-cert")
	cmd.AddCommand(initCmd)
	return cmd
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

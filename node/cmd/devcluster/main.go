// Command devcluster runs a local cluster of autonomy-orchestrator processes
// on loopback in the foreground, for `make run`. Each node's log lines are
// prefixed with its name; Ctrl-C stops every node cleanly.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("bin", "bin/autonomy-orchestrator", "path to the autonomy-orchestrator binary")
	n := flag.Int("n", 3, "number of nodes (1 or 3)")
	dataRoot := flag.String("data", ".cache/run", "root of the nodes' data directories (kept between runs)")
	apiBase := flag.Int("api-port", 8888, "API port of the first node; the others follow")
	flag.Parse()
	if *n != 1 && *n != 3 {
		fmt.Fprintln(os.Stderr, "devcluster: -n must be 1 or 3")
		os.Exit(2)
	}
	type node struct {
		name                                string
		api, etcdClient, etcdPeer, repl, gs int
	}
	var nodes []node
	var initial []string
	for i := 0; i < *n; i++ {
		nd := node{name: fmt.Sprintf("n%d", i+1), api: *apiBase + i, etcdClient: 2379 + 10*i, etcdPeer: 2380 + 10*i,
			repl: 7400 + i, gs: 7946 + i}
		nodes = append(nodes, nd)
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", nd.name, nd.etcdPeer))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var wg sync.WaitGroup
	var out sync.Mutex
	var cmds []*exec.Cmd
	var endpoints []string
	for _, nd := range nodes {
		args := []string{"serve", "--name", nd.name, "--data-dir", filepath.Join(*dataRoot, nd.name),
			"--listen", fmt.Sprintf("127.0.0.1:%d", nd.api),
			"--etcd-client-url", fmt.Sprintf("http://127.0.0.1:%d", nd.etcdClient),
			"--etcd-peer-url", fmt.Sprintf("http://127.0.0.1:%d", nd.etcdPeer),
			"--repl-addr", fmt.Sprintf("127.0.0.1:%d", nd.repl),
			"--gossip-addr", fmt.Sprintf("127.0.0.1:%d", nd.gs),
			"--log-format", "text"}
		if *n > 1 {
			args = append(args, "--initial-cluster", strings.Join(initial, ","))
		}
		cmd := exec.Command(*bin, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C reaches us, we forward SIGTERM
		pr, pw := io.Pipe()
		cmd.Stdout, cmd.Stderr = pw, pw
		if err := cmd.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "devcluster: starting %s: %v (run `make build` first)\n", nd.name, err)
			os.Exit(1)
		}
		cmds = append(cmds, cmd)
		endpoints = append(endpoints, fmt.Sprintf("http://127.0.0.1:%d", nd.api))
		wg.Add(1)
		go func(name string, r io.Reader) {
			defer wg.Done()
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				out.Lock()
				fmt.Printf("%-3s| %s\n", name, sc.Text())
				out.Unlock()
			}
		}(nd.name, pr)
		go func(cmd *exec.Cmd, pw *io.PipeWriter, name string) {
			err := cmd.Wait()
			pw.Close()
			if ctx.Err() == nil {
				out.Lock()
				fmt.Printf("%-3s| exited: %v\n", name, err)
				out.Unlock()
			}
		}(cmd, pw, nd.name)
	}
	out.Lock()
	fmt.Printf("\ndevcluster: %d node(s) starting; data in %s\n", *n, *dataRoot)
	for i, e := range endpoints {
		fmt.Printf("  %s  %s\n", nodes[i].name, e)
	}
	fmt.Printf("try:  bin/autonomyctl ha status --endpoints %s\n", strings.Join(endpoints, ","))
	fmt.Printf("      curl -s -XPOST %s/v1/telemetry/events -d '{\"kind\":\"info\",\"agent\":\"a1\"}' -L\n", endpoints[0])
	fmt.Printf("Ctrl-C stops all nodes.\n\n")
	out.Unlock()

	<-ctx.Done()
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		for _, c := range cmds {
			c.Process.Kill()
		}
	}
	fmt.Println("devcluster: all nodes stopped")
}

package ctl_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/autonomyops/orchestrator/ctl"
)

// DESIGN §8: --endpoints > AUTONOMY_ORCHESTRATOR_URL > config file > error.
func TestEndpointResolution_precedence(t *testing.T) {
	flagNode := newFakeNode(t, "from-flag", nil)
	envNode := newFakeNode(t, "from-env", nil)
	cfgNode := newFakeNode(t, "from-config", nil)

	for _, c := range []struct {
		name                 string
		flag, env, config    bool
		wantNode, wantSource string
	}{
		{"all three", true, true, true, "from-flag", "--endpoints"},
		{"env and config", false, true, true, "from-env", ctl.EnvOrchestratorURL},
		{"config only", false, false, true, "from-config", "config file "},
		{"flag only", true, false, false, "from-flag", "--endpoints"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc := newTestCLI(t)
			if c.config {
				if code, _, _ := tc.run(t, "config", "set", "orchestrator.url", cfgNode.URL()); code != 0 {
					t.Fatalf("config set: exit %d", code)
				}
			}
			if c.env {
				tc.env[ctl.EnvOrchestratorURL] = envNode.URL()
			}
			args := []string{"status", "-o", "json"}
			if c.flag {
				args = append(args, "--endpoints", flagNode.URL())
			}
			code, out, _ := tc.run(t, args...)
			if code != ctl.ExitOK {
				t.Fatalf("exit %d", code)
			}
			var res struct {
				Source string `json:"source"`
				Leader string `json:"leader"`
				Nodes  []struct {
					Health struct {
						Node string `json:"node"`
					} `json:"health"`
				} `json:"nodes"`
			}
			if err := jsonUnmarshal(out, &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Nodes) != 1 || res.Nodes[0].Health.Node != c.wantNode || !strings.HasPrefix(res.Source, c.wantSource) {
				t.Fatalf("answered by %+v from %q, want %s from %s", res.Nodes, res.Source, c.wantNode, c.wantSource)
			}
		})
	}
}

func TestEndpointResolution_noneConfigured(t *testing.T) {
	tc := newTestCLI(t)
	for _, args := range [][]string{{"status"}, {"ha", "status"}, {"wal", "status"}, {"wal", "inspect"}} {
		code, out, errOut := tc.run(t, args...)
		if code != ctl.ExitUnreachable {
			t.Fatalf("%v: exit %d, want %d", args, code, ctl.ExitUnreachable)
		}
		if out != "" {
			t.Fatalf("stdout: %q", out)
		}
		mustContain(t, "stderr", errOut, "no orchestrator endpoint configured", "AUTONOMY_ORCHESTRATOR_URL",
			"autonomyctl config set orchestrator.url http://localhost:8888", "--endpoints",
			filepath.Join(tc.ConfigDir, "config.yaml"))
	}
}

func TestEndpointResolution_envListAndBadValues(t *testing.T) {
	leader := newFakeNode(t, "node-a", nil)
	follower := newFakeNode(t, "node-b", leader)
	tc := newTestCLI(t)
	// A comma-separated list, with spaces and a scheme-less entry.
	tc.env[ctl.EnvOrchestratorURL] = " " + follower.URL() + " , " + strings.TrimPrefix(leader.URL(), "http://")
	code, out, _ := tc.run(t, "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "table", out, follower.URL(), leader.URL(), "leader: "+leader.URL())

	tc.env[ctl.EnvOrchestratorURL] = "ftp://x"
	code, _, errOut := tc.run(t, "status")
	if code != ctl.ExitUsage {
		t.Fatalf("bad env: exit %d", code)
	}
	mustContain(t, "stderr", errOut, ctl.EnvOrchestratorURL)
	if code, _, _ := tc.run(t, "status", "--endpoints", ","); code != ctl.ExitUsage {
		t.Fatalf("empty --endpoints list: exit %d", code)
	}
}

func TestConfig_setGetUnset(t *testing.T) {
	tc := newTestCLI(t)
	tc.ConfigDir = filepath.Join(t.TempDir(), "nested", "autonomy")
	path := filepath.Join(tc.ConfigDir, "config.yaml")

	code, out, _ := tc.run(t, "config", "set", "orchestrator.url", "http://localhost:8888/")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stdout", out, "orchestrator.url = http://localhost:8888", path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "orchestrator:\n  url: http://localhost:8888\n" {
		t.Fatalf("config file:\n%s", b)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode %v, want 0600", st.Mode().Perm())
	}
	if st, _ := os.Stat(tc.ConfigDir); st.Mode().Perm() != 0o700 {
		t.Fatalf("config dir mode %v, want 0700", st.Mode().Perm())
	}

	code, out, _ = tc.run(t, "config", "get", "orchestrator.url")
	if code != 0 || out != "http://localhost:8888\n" {
		t.Fatalf("config get: exit %d, %q", code, out)
	}
	code, out, _ = tc.run(t, "config", "get", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var all struct {
		File   string            `json:"file"`
		Values map[string]string `json:"values"`
	}
	decodeJSON(t, out, &all)
	if all.File != path || all.Values["orchestrator.url"] != "http://localhost:8888" {
		t.Fatalf("json: %+v", all)
	}

	// Unknown keys already in the file survive a set.
	if err := os.WriteFile(path, []byte("orchestrator:\n  url: http://a:8888\nfuture:\n  key: kept\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := tc.run(t, "config", "set", "orchestrator.url", "http://a:8888,http://b:8888"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, _ = os.ReadFile(path)
	mustContain(t, "config file", string(b), "future:", "key: kept", "url: http://a:8888,http://b:8888")

	if code, _, _ := tc.run(t, "config", "unset", "orchestrator.url"); code != 0 {
		t.Fatalf("unset: exit %d", code)
	}
	code, out, _ = tc.run(t, "config", "get", "orchestrator.url", "-o", "json")
	if code != 0 || strings.Contains(out, `"value"`) {
		t.Fatalf("after unset: exit %d %s", code, out)
	}

	for _, args := range [][]string{
		{"config", "set", "no.such.key", "x"},
		{"config", "set", "orchestrator.url", "ftp://x"},
		{"config", "set", "orchestrator.url"},
		{"config", "get", "nope"},
	} {
		if code, _, _ := tc.run(t, args...); code != ctl.ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ctl.ExitUsage)
		}
	}
}

func TestConfig_defaultDirFromEnvironment(t *testing.T) {
	xdg := t.TempDir()
	tc := newTestCLI(t)
	tc.ConfigDir = ""
	tc.env["XDG_CONFIG_HOME"] = xdg
	if code, _, _ := tc.run(t, "config", "set", "orchestrator.url", "http://x:8888"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(xdg, "autonomy", "config.yaml")); err != nil {
		t.Fatalf("$XDG_CONFIG_HOME/autonomy/config.yaml: %v", err)
	}

	home := t.TempDir()
	tc.env = map[string]string{"HOME": home}
	if code, _, _ := tc.run(t, "config", "set", "orchestrator.url", "http://y:8888"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(filepath.Join(home, ".config", "autonomy", "config.yaml")); err != nil {
		t.Fatalf("~/.config/autonomy/config.yaml: %v", err)
	}
}

func TestConfig_malformedFile(t *testing.T) {
	tc := newTestCLI(t)
	path := filepath.Join(tc.ConfigDir, "config.yaml")
	if err := os.WriteFile(path, []byte("orchestrator: [unclosed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := tc.run(t, "status")
	if code != ctl.ExitError {
		t.Fatalf("exit %d", code)
	}
	mustContain(t, "stderr", errOut, path, "not valid YAML")
}

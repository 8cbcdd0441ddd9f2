package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// workspace is the run's scratch directory: raw-disk files, etcd members'
// and nodes' data dirs, process logs, built binaries. Everything the run
// writes lives below root, on one filesystem.
type workspace struct {
	root   string
	fsName string
	device string
	modDir string
}

// Filesystem magic numbers (statfs f_type) where fsync costs nothing.
const (
	tmpfsMagic = 0x01021994
	ramfsMagic = 0x858458f6
)

var fsNames = map[int64]string{
	0xEF53: "ext4", 0x58465342: "xfs", 0x9123683E: "btrfs", 0x794c7630: "overlayfs",
	0x2FC12FC1: "zfs", tmpfsMagic: "tmpfs", ramfsMagic: "ramfs",
}

func fsType(dir string) (int64, string, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, "", err
	}
	t := int64(st.Type)
	name, ok := fsNames[t]
	if !ok {
		name = fmt.Sprintf("0x%x", t)
	}
	return t, name, nil
}

func inMemory(t int64) bool { return t == tmpfsMagic || t == ramfsMagic }

// newWorkspace creates the scratch directory under parent, or under the temp
// dir, or, when that is in memory, under the module's .cache/ (gitignored).
// It refuses a parent in memory: the raw-disk and durability figures would
// be meaningless.
func newWorkspace(parent string) (*workspace, error) {
	modDir, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	if parent == "" {
		parent = os.TempDir()
		if t, _, err := fsType(parent); err != nil || inMemory(t) {
			parent = filepath.Join(modDir, ".cache")
		}
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, err
	}
	t, name, err := fsType(parent)
	if err != nil {
		return nil, fmt.Errorf("statfs %s: %w", parent, err)
	}
	if inMemory(t) {
		return nil, fmt.Errorf("%s is on %s, where fdatasync is free; pass -dir on a real disk", parent, name)
	}
	root, err := os.MkdirTemp(parent, "autonomy-bench-*")
	if err != nil {
		return nil, err
	}
	return &workspace{root: root, fsName: name, device: deviceOf(root), modDir: modDir}, nil
}

// deviceOf names the mount source of dir from /proc/self/mountinfo, for the
// report (the longest mount point that prefixes dir).
func deviceOf(dir string) string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "?"
	}
	best, dev := "", "?"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		mp := f[4]
		i := 6
		for i < len(f) && f[i] != "-" {
			i++
		}
		if i+2 >= len(f) {
			continue
		}
		if (dir == mp || strings.HasPrefix(dir, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(best) {
			best, dev = mp, f[i+2]
		}
	}
	return dev
}

func (w *workspace) path(elem ...string) string {
	return filepath.Join(append([]string{w.root}, elem...)...)
}

func (w *workspace) remove() error { return os.RemoveAll(w.root) }

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the module: run from the repository")
	}
	return filepath.Dir(mod), nil
}

// goBuild builds pkg (relative to the module root) into the workspace.
func goBuild(ctx context.Context, w *workspace, pkg, name string) (string, error) {
	return goBuildIn(ctx, w, w.modDir, pkg, name)
}

// goBuildIn builds pkg of the module in dir (a nested module such as
// test/bench/natsmember) into the workspace.
func goBuildIn(ctx context.Context, w *workspace, dir, pkg, name string) (string, error) {
	out := w.path("bin", name)
	// The flags of `make build`, so the etcd packages it compiled are reused.
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// orchestratorBinary returns -bin, or bin/autonomy-orchestrator (what `make
// build` wrote), or a fresh build.
func orchestratorBinary(ctx context.Context, flagBin string, w *workspace) (string, error) {
	if flagBin != "" {
		return flagBin, nil
	}
	p := filepath.Join(w.modDir, "bin", "autonomy-orchestrator")
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		logf("using %s (built %s; `make bench` rebuilds it)", p, st.ModTime().Format("2006-01-02 15:04:05"))
		return p, nil
	}
	logf("building autonomy-orchestrator")
	return goBuild(ctx, w, "./node/cmd/autonomy-orchestrator", "autonomy-orchestrator")
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// The listeners are held until all n are chosen so none repeats.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// loadAvg returns the first three fields of /proc/loadavg.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

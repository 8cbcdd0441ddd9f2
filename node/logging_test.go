package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestJournalStream_matchesStderrDeviceAndInode(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{{"", false}, {fmt.Sprintf("%d:%d", st.Dev, st.Ino), true}, {fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false}} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := JournalStream(f); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: %v, want %v", tc.env, got, tc.want)
		}
	}
}

func TestLogFormat_millisecondsDurationsAndJournalPriorities(t *testing.T) {
	var buf bytes.Buffer
	cfg := DefaultConfig()
	cfg.LogLevel = "debug"
	log := newLogger(&buf, cfg, true)
	log.WithField("took", 1500*time.Microsecond).Error("E")
	log.WithField("wait_ms", 2*time.Second).Warn("W")
	log.Info("I")
	log.Debug("D")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	ts := regexp.MustCompile(`"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"`)
	for i, want := range []string{"<3>{", "<4>{", "<6>{", "<7>{"} {
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: %q, want the prefix %s", i, lines[i], want)
		}
		if !ts.MatchString(lines[i]) {
			t.Errorf("line %d: %q has no RFC 3339 millisecond UTC time", i, lines[i])
		}
	}
	if !strings.Contains(lines[0], `"took_ms":1.5`) || strings.Contains(lines[0], `"took":`) {
		t.Errorf("a duration must be logged in milliseconds as <key>_ms: %s", lines[0])
	}
	if !strings.Contains(lines[1], `"wait_ms":2000`) {
		t.Errorf("a _ms key keeps its name: %s", lines[1])
	}

	buf.Reset()
	newLogger(&buf, cfg, false).Error("plain")
	if !strings.HasPrefix(buf.String(), "{") {
		t.Errorf("without the journal no prefix: %q", buf.String())
	}
}

func TestErrorWriter_prefixesEveryLine(t *testing.T) {
	var buf bytes.Buffer
	fmt.Fprintln(errorWriter{w: &buf, journal: true}, "a\nb")
	if buf.String() != "<3>a\n<3>b\n" {
		t.Errorf("%q", buf.String())
	}
}

func TestParseLogLevel_refusesVerbose(t *testing.T) {
	if _, err := ParseLogLevel("verbose"); err == nil || err.Error() != `--log-level="verbose" is not a log level; use one of debug, info, warn, error` {
		t.Errorf("%v", err)
	}
	for _, l := range []string{"debug", "info", "warn", "error"} {
		if lv, err := ParseLogLevel(l); err != nil || lv.String() != strings.Replace(l, "warn", "warning", 1) {
			t.Errorf("%s: %v %v", l, lv, err)
		}
	}
	if journalPriority(logrus.ErrorLevel) != 3 || journalPriority(logrus.WarnLevel) != 4 {
		t.Error("priorities")
	}
}

package node

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/autonomyops/orchestrator/settings"
	"github.com/sirupsen/logrus"
)

// TimestampFormat is RFC 3339 with milliseconds, in UTC.
const TimestampFormat = "2006-01-02T15:04:05.000Z07:00"

// ParseLogLevel accepts the levels of --log-level and log/level.
func ParseLogLevel(s string) (logrus.Level, error) {
	for _, l := range settings.LogLevels {
		if s == l {
			return logrus.ParseLevel(s)
		}
	}
	return 0, fmt.Errorf("--log-level=%q is not a log level; use one of %s", s, strings.Join(settings.LogLevels, ", "))
}

// journalPriority is the syslog priority journald records for a level
// (sd-daemon(3) "<N>" prefixes): `journalctl -p err` shows error and worse.
func journalPriority(l logrus.Level) int {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return 2 // crit
	case logrus.ErrorLevel:
		return 3 // err
	case logrus.WarnLevel:
		return 4 // warning
	case logrus.InfoLevel:
		return 6 // info
	}
	return 7 // debug
}

// JournalStream reports whether f is the journal's stream for this process:
// systemd sets JOURNAL_STREAM to the "device:inode" of the stream it
// connected to stdout/stderr (systemd.exec(5)). A redirected stderr does not
// match, and gets no priority prefixes.
func JournalStream(f *os.File) bool {
	want := os.Getenv("JOURNAL_STREAM")
	if want == "" || f == nil {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return want == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// logFormatter wraps the JSON or text formatter: timestamps in UTC,
// durations as <key>_ms in milliseconds, and, when writing to the journal,
// the sd-daemon priority prefix that journald turns into PRIORITY=.
type logFormatter struct {
	inner   logrus.Formatter
	journal bool
}

func (f *logFormatter) Format(e *logrus.Entry) ([]byte, error) {
	cp := *e
	cp.Time = e.Time.UTC()
	copied := false
	for k, v := range e.Data {
		d, ok := v.(time.Duration)
		if !ok {
			continue
		}
		if !copied { // the entry's own map may be shared: never write to it
			cp.Data = make(logrus.Fields, len(e.Data))
			for k2, v2 := range e.Data {
				cp.Data[k2] = v2
			}
			copied = true
		}
		delete(cp.Data, k)
		cp.Data[durationKey(k)] = float64(d.Microseconds()) / 1000
	}
	b, err := f.inner.Format(&cp)
	if err != nil || !f.journal {
		return b, err
	}
	return journalPrefix(journalPriority(e.Level), b), nil
}

// durationKey names a duration field in milliseconds: took → took_ms.
func durationKey(k string) string {
	if strings.HasSuffix(k, "_ms") {
		return k
	}
	return k + "_ms"
}

// journalPrefix puts "<prio>" before every line of b.
func journalPrefix(prio int, b []byte) []byte {
	p := []byte(fmt.Sprintf("<%d>", prio))
	lines := bytes.SplitAfter(b, []byte("\n"))
	var out bytes.Buffer
	for _, l := range lines {
		if len(l) == 0 {
			continue
		}
		out.Write(p)
		out.Write(l)
	}
	return out.Bytes()
}

// errorWriter writes plain lines (the fail-hard message, command-line
// errors) to stderr at error priority when stderr is the journal.
type errorWriter struct {
	w       io.Writer
	journal bool
}

func (e errorWriter) Write(b []byte) (int, error) {
	if !e.journal {
		return e.w.Write(b)
	}
	if _, err := e.w.Write(journalPrefix(3, b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// newLogger builds the daemon's logger on w: JSON (or text) lines with RFC
// 3339 millisecond timestamps, at cfg.LogLevel (validated by the caller).
func newLogger(w io.Writer, cfg Config, journal bool) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(w)
	var inner logrus.Formatter = &logrus.JSONFormatter{TimestampFormat: TimestampFormat}
	if cfg.LogFormat == "text" {
		inner = &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: TimestampFormat}
	}
	log.SetFormatter(&logFormatter{inner: inner, journal: journal})
	if lvl, err := ParseLogLevel(cfg.LogLevel); err == nil {
		log.SetLevel(lvl)
	}
	return log
}

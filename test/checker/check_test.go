package checker

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/autonomyops/orchestrator/api/wire"
)

// The checker must catch each kind of violation it claims to: these feed it
// hand-made histories with one planted bug each. No Docker needed: they run
// in `make test`.
func TestCheck_plantedBugs(t *testing.T) {
	ts := time.Unix(1700000000, 0).UTC()
	es := func(seq, epoch uint64, leader string) wire.Frame {
		b, _ := json.Marshal(map[string]any{"leader": leader, "epoch": epoch})
		return wire.Frame{Seq: seq, Epoch: epoch, TS: ts, Type: "epoch_start", Event: b}
	}
	ev := func(seq, epoch uint64, id string) wire.Frame {
		return wire.Frame{Seq: seq, Epoch: epoch, TS: ts, Type: "event", Event: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
	}
	base := func() []wire.Frame {
		return []wire.Frame{es(1, 5, "n1"), ev(2, 5, "a"), ev(3, 5, "b"), es(4, 9, "n2"), ev(5, 9, "c")}
	}
	history := func() []Event {
		return []Event{
			{ID: "a", Outcome: OK, Seq: 2, AckedBy: "n1", FirstTry: true},
			{ID: "b", Outcome: OK, Seq: 3, AckedBy: "n1", FirstTry: true},
			{ID: "c", Outcome: OK, Seq: 5, AckedBy: "n2", FirstTry: true},
			{ID: "u", Outcome: Unknown},
			{ID: "f", Outcome: Failed},
		}
	}
	cases := []struct {
		name  string
		edit  func(logs map[string][]wire.Frame, h []Event) []Event
		check func(r CheckResult) bool
		want  string
	}{
		{"clean", func(l map[string][]wire.Frame, h []Event) []Event { return h },
			func(r CheckResult) bool { return r.OK() && r.Acked == 3 }, ""},
		{"lost on the leader", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = l[n][:4] // c's frame gone everywhere
			}
			return h
		}, func(r CheckResult) bool { return r.Lost == 1 }, "is missing"},
		{"missing on one node", func(l map[string][]wire.Frame, h []Event) []Event {
			l["n3"][2] = ev(3, 5, "zz")
			return append(h, Event{ID: "zz", Outcome: Unknown})
		}, func(r CheckResult) bool { return r.Missing == 1 && r.Lost == 0 && r.Divergent == 1 }, "differ at Seq=3"},
		{"acked at another Seq", func(l map[string][]wire.Frame, h []Event) []Event {
			h[0].Seq = 3
			return h
		}, func(r CheckResult) bool { return r.Lost == 1 }, "answered Seq=3"},
		{"duplicate", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(6, 9, "a"))
			}
			return h
		}, func(r CheckResult) bool { return r.Duplicated == 1 }, "present 2 times"},
		{"unknown twice", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(6, 9, "u"), ev(7, 9, "u"))
			}
			return h
		}, func(r CheckResult) bool { return r.Duplicated == 1 }, "unknown event u is present 2 times"},
		{"failed event written", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(6, 9, "f"))
			}
			return h
		}, func(r CheckResult) bool { return r.Phantom == 3 }, "refused before any write"},
		{"two leaders in one epoch", func(l map[string][]wire.Frame, h []Event) []Event {
			l["n3"][3] = es(4, 9, "n3")
			return h
		}, func(r CheckResult) bool { return r.EpochDup == 1 }, "two epoch-start frames"},
		{"ack by a node that did not lead the epoch", func(l map[string][]wire.Frame, h []Event) []Event {
			h[2].AckedBy = "n1"
			return h
		}, func(r CheckResult) bool { return !r.OK() }, "led by n2"},
		{"epoch goes back", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(6, 5, "late"))
			}
			return append(h, Event{ID: "late", Outcome: Unknown})
		}, func(r CheckResult) bool { return !r.OK() }, "must not decrease"},
		{"Seq gap", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(8, 9, "gap"))
			}
			return append(h, Event{ID: "gap", Outcome: Unknown})
		}, func(r CheckResult) bool { return !r.OK() }, "Seq=8 follows Seq=5"},
		{"epoch without its barrier", func(l map[string][]wire.Frame, h []Event) []Event {
			for n := range l {
				l[n] = append(l[n], ev(6, 12, "nob"))
			}
			return append(h, Event{ID: "nob", Outcome: Unknown})
		}, func(r CheckResult) bool { return !r.OK() }, "not its epoch-start frame"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := map[string][]wire.Frame{"n1": base(), "n2": base(), "n3": base()}
			h := tc.edit(logs, history())
			r := Check(logs, h, "n2")
			if !tc.check(r) {
				t.Fatalf("unexpected result %+v", r)
			}
			if tc.want != "" && !strings.Contains(strings.Join(r.Errors, "\n"), tc.want) {
				t.Fatalf("errors do not mention %q:\n%s", tc.want, strings.Join(r.Errors, "\n"))
			}
		})
	}
}

// The porcupine check must accept a linearizable ingest history and catch
// each planted violation: an event appended after one that was first sent
// only once it had been acknowledged, an acknowledgement at a Seq the log
// does not hold, and a refused event that was written.
func TestCheckLinearizable_plantedBugs(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ev := func(seq uint64, id string) wire.Frame {
		return wire.Frame{Seq: seq, Epoch: 5, Type: "event", Event: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
	}
	log := []wire.Frame{{Seq: 1, Epoch: 5, Type: "epoch_start"}, ev(2, "a"), ev(3, "b"), ev(4, "u"), ev(5, "c")}
	history := func() []Event {
		return []Event{
			{ID: "a", Outcome: OK, Seq: 2, FirstSent: at(0), AckAt: at(10)},
			{ID: "b", Outcome: OK, Seq: 3, FirstSent: at(5), AckAt: at(30)}, // concurrent with a
			{ID: "u", Outcome: Unknown, FirstSent: at(12)},                  // timed out; in the log
			{ID: "x", Outcome: Unknown, FirstSent: at(13)},                  // timed out; nowhere
			{ID: "f", Outcome: Failed, FirstSent: at(14), AckAt: at(15)},
			{ID: "c", Outcome: OK, Seq: 5, FirstSent: at(40), AckAt: at(50)},
		}
	}
	if res, why := CheckLinearizable(history(), log, 10*time.Second); res != porcupine.Ok {
		t.Fatalf("clean history: %s %s", res, why)
	}
	cases := map[string]func(h []Event, l []wire.Frame) ([]Event, []wire.Frame){
		// c was first sent after b was acknowledged, yet sits before b.
		"real-time order": func(h []Event, l []wire.Frame) ([]Event, []wire.Frame) {
			l[2], l[4] = ev(3, "c"), ev(5, "b")
			h[1].Seq, h[5].Seq = 5, 3
			return h, l
		},
		"acknowledged, then replaced": func(h []Event, l []wire.Frame) ([]Event, []wire.Frame) {
			l[4] = ev(5, "other")
			return h, l
		},
		"refused, yet written": func(h []Event, l []wire.Frame) ([]Event, []wire.Frame) {
			return h, append(l, ev(6, "f"))
		},
	}
	for name, plant := range cases {
		h, l := plant(history(), append([]wire.Frame(nil), log...))
		if res, why := CheckLinearizable(h, l, 10*time.Second); res != porcupine.Illegal {
			t.Errorf("%s: porcupine says %s, want Illegal", name, res)
		} else {
			t.Logf("%s: %s", name, why)
		}
	}
}

// TestCheckWith_partial: with a partial history and cut logs (what the
// multi-process tests and the walrepl harness know), a trimmed base, a
// lagging node and ids no event names pass; a divergence, a lost
// acknowledged event and two leaders in an epoch are still caught.
func TestCheckWith_partial(t *testing.T) {
	ts := time.Unix(1700000000, 0).UTC()
	es := func(seq, epoch uint64, leader string) wire.Frame {
		b, _ := json.Marshal(map[string]any{"leader": leader, "epoch": epoch})
		return wire.Frame{Seq: seq, Epoch: epoch, TS: ts, Type: "epoch_start", Event: b}
	}
	ev := func(seq, epoch uint64, id string) wire.Frame {
		return wire.Frame{Seq: seq, Epoch: epoch, TS: ts, Type: "event", Event: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id))}
	}
	logs := func() map[string][]wire.Frame {
		return map[string][]wire.Frame{
			"n1": {ev(3, 5, "b"), es(4, 9, "n2"), ev(5, 9, "c"), ev(6, 9, "x")}, // trimmed below Seq 3
			"n2": {es(1, 5, "n1"), ev(2, 5, "a"), ev(3, 5, "b"), es(4, 9, "n2"), ev(5, 9, "c"), ev(6, 9, "x")},
			"n3": {es(1, 5, "n1"), ev(2, 5, "a"), ev(3, 5, "b"), es(4, 9, "n2"), ev(5, 9, "c")}, // lags
		}
	}
	acked := []Event{{ID: "a", Outcome: OK, Seq: 2}, {ID: "b", Outcome: OK, Seq: 3}, {ID: "c", Outcome: OK, Seq: 5}}
	opts := Options{Ref: "n2", Partial: true}
	if r := CheckWith(logs(), acked, opts); !r.OK() {
		t.Fatalf("clean partial history: %s", strings.Join(r.Errors, "\n"))
	}
	if r := CheckWith(logs(), acked, Options{Ref: "n2"}); r.OK() {
		t.Fatal("without Partial, the trimmed log, the lagging node and the unlisted id x must be reported")
	}
	for name, plant := range map[string]func(l map[string][]wire.Frame){
		"divergent":         func(l map[string][]wire.Frame) { l["n1"][2] = ev(5, 9, "other") },
		"lost":              func(l map[string][]wire.Frame) { l["n3"] = l["n3"][:4] },
		"two epoch leaders": func(l map[string][]wire.Frame) { l["n3"][3] = es(4, 9, "n3") },
	} {
		l := logs()
		plant(l)
		if r := CheckWith(l, acked, opts); r.OK() {
			t.Errorf("%s: not caught", name)
		}
	}
	// A caller's own ids: the whole payload.
	raw := map[string][]wire.Frame{"n1": {es(1, 5, "n1"), {Seq: 2, Epoch: 5, TS: ts, Type: "event", Event: json.RawMessage(`{"n":0}`)}}}
	r := CheckWith(raw, []Event{{ID: `{"n":0}`, Outcome: OK, Seq: 2}}, Options{Partial: true, ID: func(b []byte) string { return string(b) }})
	if !r.OK() || r.Acked != 1 {
		t.Fatalf("payload ids: %+v", r)
	}
}

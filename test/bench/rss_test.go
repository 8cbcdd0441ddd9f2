package main

import "testing"

// The flatness figure compares the largest node's peak at the end with its
// peak at the first sample holding half of the events.
func TestRSSTrace_flatness(t *testing.T) {
	tr := &rssTrace{Samples: []rssSample{
		{LastSeq: 0, HWMMiB: map[string]float64{"n1": 40, "n2": 38}},
		{LastSeq: 400, HWMMiB: map[string]float64{"n1": 90, "n2": 80}},
		{LastSeq: 600, HWMMiB: map[string]float64{"n1": 95, "n2": 100}},
		{LastSeq: 1000, HWMMiB: map[string]float64{"n1": 99, "n2": 104}},
	}}
	tr.summarize()
	if tr.HalfSeq != 600 || tr.PeakHalfMiB != 100 || tr.LastSeq != 1000 || tr.PeakEndMiB != 104 {
		t.Fatalf("summary %+v", tr)
	}
	r := &results{Meta: meta{RSSTrace: tr}}
	r.addRSSFlatness()
	if len(r.Ratios) != 1 || r.Ratios[0].Key != "rss_flatness" || r.Ratios[0].Value != 1.04 || !r.Ratios[0].Pass {
		t.Fatalf("ratios %+v", r.Ratios)
	}
	tr.Samples[3].HWMMiB["n1"] = 200 // grew with the WAL
	tr.summarize()
	r.Ratios = nil
	r.addRSSFlatness()
	if r.Ratios[0].Value != 2 || r.Ratios[0].Pass {
		t.Fatalf("a node that doubled: %+v", r.Ratios[0])
	}
	r.Ratios = nil
	(&results{}).addRSSFlatness() // no trace: no target
}

package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"
)

const recordSize = 256

// measureRawDisk measures what the disk under the scratch dir allows one
// writer appending 256-byte records to a growing file: write+fdatasync per
// record, then 256 records (one 64 KiB write) per fdatasync. The file grows
// like a WAL does, so each fdatasync also commits the new size.
func measureRawDisk(ctx context.Context, ws *workspace, d time.Duration, res *results) error {
	dir := ws.path("raw")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logf("raw disk: write+fdatasync of %d-byte records for %s", recordSize, d)
	single, syncs, err := appendLoop(ctx, dir+"/single", 1, d)
	if err != nil {
		return err
	}
	logf("raw disk: %d records per fdatasync for %s", 256, d)
	group, gsyncs, err := appendLoop(ctx, dir+"/group", 256, d)
	if err != nil {
		return err
	}
	res.RawFsync = rawFsync{SingleRPS: round(single, 1), Group256RPS: round(group, 1), FdatasyncP50Ms: ms(percentile(syncs, 0.5))}
	res.Meta.Raw = &rawMeta{FdatasyncP99Ms: ms(percentile(syncs, 0.99)), Group256FdatasyncP50Ms: ms(percentile(gsyncs, 0.5)),
		Seconds: d.Seconds()}
	logf("raw disk: single %.0f records/s (fdatasync p50 %.2f ms, p99 %.2f ms); group256 %.0f records/s (fdatasync p50 %.2f ms)",
		single, ms(percentile(syncs, 0.5)), ms(percentile(syncs, 0.99)), group, ms(percentile(gsyncs, 0.5)))
	return nil
}

// appendLoop appends batches of perSync records, each batch one write and
// one fdatasync, for d after a short warm-up; it returns records/s and the
// sorted fdatasync durations.
func appendLoop(ctx context.Context, path string, perSync int, d time.Duration) (float64, []time.Duration, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	buf := make([]byte, recordSize*perSync)
	for i := range buf {
		buf[i] = 'a' + byte(i%26)
	}
	fd := int(f.Fd())
	var syncs []time.Duration
	warm := time.Now().Add(300 * time.Millisecond)
	var start, end time.Time
	n := 0
	for {
		now := time.Now()
		if start.IsZero() && !now.Before(warm) {
			start, end = now, now.Add(d)
		}
		if !start.IsZero() && !now.Before(end) {
			break
		}
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		if _, err := f.Write(buf); err != nil {
			return 0, nil, fmt.Errorf("write %s: %w", path, err)
		}
		s := time.Now()
		if err := syscall.Fdatasync(fd); err != nil {
			return 0, nil, fmt.Errorf("fdatasync %s: %w", path, err)
		}
		if !start.IsZero() {
			syncs = append(syncs, time.Since(s))
			n++
		}
	}
	slices.Sort(syncs)
	return float64(n*perSync) / time.Since(start).Seconds(), syncs, nil
}

package ctl

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (in *invocation) walVerifyCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "verify --data-dir DIR",
		Short: "Run a start's WAL recovery checks read-only on a stopped node's data directory",
		Long: "Run exactly the checks a node runs at start (DESIGN §4: BAD_FIRST_SEQ, SEQ_GAP, SAFESEQ_GT_MAXSEQ,\n" +
			"COMMITTED_FRAME_CORRUPT, WAL_CORRUPT_INVALID_JSON, the steady-state rules, and across the WAL's segment\n" +
			"files SEGMENT_MISSING and SEGMENT_CHAIN, ...) without changing anything.\n\n" +
			"Exits 0 when the WAL is sound, also when the only damage is a torn tail above safe_seq (the next start\n" +
			"truncates it; it is reported). Otherwise prints the recovery message and exits 65, the node's own\n" +
			"fail-hard status. -o json prints ok, cause, error, first_seq, last_seq, safe_seq, end_offset, torn_tail,\n" +
			"torn_bytes, segments, repairs and more.",
		Example: "  sudo autonomyctl wal verify --data-dir /var/lib/autonomy\n  autonomyctl wal verify --data-dir ./data -o json | jq .cause",
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			c, err := checkWAL(dataDir)
			if err != nil {
				return err
			}
			if err := in.emit(c, func(w *tabw) {
				if !c.OK {
					return // the message goes to stderr
				}
				fmt.Fprintf(w, "%s: %s\n", c.Dir, c.state())
				if c.WALExists {
					fmt.Fprintf(w, "  first_seq %d, last_seq %d (epoch %d), safe_seq %d, %d frames\n",
						c.FirstSeq, c.LastSeq, c.LastEpoch, c.SafeSeq, c.Frames)
					fmt.Fprintf(w, "  end_offset %d of %d bytes\n", c.EndOffset, c.FileSize)
				}
				if c.TornTail {
					fmt.Fprintf(w, "  torn tail: %d bytes at offset %d, above safe_seq %d: an unfinished write that was never acknowledged.\n"+
						"  Repairable: the next start truncates it and logs WAL_TORN_TAIL_TRUNCATED at WARN. No action needed.\n",
						c.TornBytes, c.TornOffset, c.SafeSeq)
				}
			}); err != nil {
				return err
			}
			return in.walCheckFailure(c)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the stopped node's data directory (required), e.g. /var/lib/autonomy")
	_ = cmd.MarkFlagDirname("data-dir")
	return cmd
}

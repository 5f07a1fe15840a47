package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/internal/extract"
)

func init() {
	var workers int
	var quiet bool
	var cacheMiB int64
	register(&command{
		name: "extract", args: "[-j N] [-q] IMG DIR [PATH]",
		summary: "Extract an image (or PATH inside it) into DIR, like unsquashfs -d DIR.\n" +
			"As root it restores owners, device nodes and trusted/security xattrs;\n" +
			"modes, times, user xattrs, hard links, fifos, sockets and holes always.",
		setup: func(fs *flag.FlagSet) {
			fs.IntVar(&workers, "j", 0, "files written at once (default 2×CPUs)")
			fs.BoolVar(&quiet, "q", false, "no progress bar")
			fs.Int64Var(&cacheMiB, "cache", 0, "block cache size in MiB (default 32)")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) < 2 || len(args) > 3 {
				return usageErr("want IMG DIR [PATH]")
			}
			r, err := sqfs.Open(args[0], &sqfs.Options{CacheBytes: cacheMiB << 20})
			if err != nil {
				return err
			}
			defer r.Close()
			opts := extract.Options{
				Workers: workers,
				Owners:  os.Geteuid() == 0,
				Warn:    func(err error) { fmt.Fprintf(os.Stderr, "livefs extract: warning: %v\n", err) },
			}
			if len(args) == 3 {
				opts.Path = cleanImagePath(args[2])
			}
			start := time.Now()
			if !quiet && isTerminal(os.Stderr) {
				opts.Progress = func(done, total int64) { progressBar(done, total, start) }
			}
			st, err := extract.Extract(r, args[1], opts)
			if opts.Progress != nil {
				fmt.Fprintln(os.Stderr)
			}
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(os.Stderr, "%d files, %d dirs, %d symlinks, %d hard links, %d special; %.1f MB in %.2fs\n",
					st.Files, st.Dirs, st.Symlinks, st.Links, st.Specials, float64(st.Bytes)/1e6, time.Since(start).Seconds())
			}
			return nil
		},
	})
}

func progressBar(done, total int64, start time.Time) {
	const width = 40
	frac := 1.0
	if total > 0 {
		frac = float64(done) / float64(total)
	}
	n := int(frac * width)
	bar := make([]byte, width)
	for i := range bar {
		if i < n {
			bar[i] = '#'
		} else {
			bar[i] = '.'
		}
	}
	rate := float64(done) / 1e6 / max(time.Since(start).Seconds(), 1e-3)
	fmt.Fprintf(os.Stderr, "\r[%s] %3.0f%% %8.1f MB/s", bar, frac*100, rate)
}

package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/livefs/livefs/bench"
	"github.com/livefs/livefs/fs/sqfs"
)

func init() {
	var asJSON, noRef bool
	var maxMiB int64
	register(&command{
		name: "bench", args: "[--json] [--no-reference] IMG",
		summary: "Measure decompression of an image's data blocks (MB/s decompressed, one core and\n" +
			"all cores), a full tree read through the reader, and the codec's reference tool\n" +
			"(xz, zstd, gzip, lz4) decompressing the same blocks.",
		setup: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print JSON")
			fs.BoolVar(&noRef, "no-reference", false, "do not run the reference tool")
			fs.Int64Var(&maxMiB, "max", 1024, "measure at most this many MiB of compressed blocks")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usageErr("want one image")
			}
			return runBench(args[0], asJSON, noRef, maxMiB<<20)
		},
	})
}

func runBench(img string, asJSON, noRef bool, maxBytes int64) error {
	r, err := sqfs.Open(img, nil)
	if err != nil {
		return err
	}
	defer r.Close()
	blocks, err := bench.LoadBlocks(r, maxBytes)
	if err != nil {
		return err
	}
	var results []bench.Result
	one, err := bench.Decode(r, blocks, 1)
	if err != nil {
		return err
	}
	results = append(results, one)
	if n := bench.CPUs(); n > 1 {
		all, err := bench.Decode(r, blocks, n)
		if err != nil {
			return err
		}
		results = append(results, all)
	}
	var ref bench.Result
	haveRef := false
	if !noRef {
		if ref, haveRef, err = bench.Reference(r, blocks, one.Bytes, os.TempDir()); err != nil {
			return err
		}
		if haveRef {
			ref.Note = fmt.Sprintf("livefs 1 core / reference = %.2f", one.MBps()/ref.MBps())
			results = append(results, ref)
		}
	}
	tree, err := bench.ReadTree(img, bench.CPUs(), 0)
	if err != nil {
		return err
	}
	results = append(results, tree)

	sb := r.Superblock()
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{
			"image": img, "compressor": sb.Compressor.String(), "block_size": sb.BlockSize,
			"blocks": len(blocks.Compressed), "compressed_bytes": blocks.RawBytes, "results": results,
		})
	}
	fmt.Fprintf(stdout, "%s: %s, %d KiB blocks, %d compressed blocks, %.1f MB -> %.1f MB\n\n",
		img, sb.Compressor, sb.BlockSize>>10, len(blocks.Compressed), float64(blocks.RawBytes)/1e6, float64(one.Bytes)/1e6)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\tMB/s\tseconds\t\t")
	for _, res := range results {
		fmt.Fprintf(tw, "%s\t%.1f\t%.3f\t%s\t\n", res.Phase, res.MBps(), res.Elapsed.Seconds(), res.Note)
	}
	return tw.Flush()
}

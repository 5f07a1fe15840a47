package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/livefs/livefs/fs/sqfs"
)

func init() {
	var asJSON bool
	register(&command{
		name: "info", args: "[--json] IMG",
		summary: "Print an image's superblock: compressor and options, block size, counts, flags.",
		setup:   func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usageErr("want one image")
			}
			r, err := sqfs.Open(args[0], nil)
			if err != nil {
				return err
			}
			defer r.Close()
			return printInfo(stdout, r, asJSON)
		},
	})
	var long, recursive bool
	register(&command{
		name: "ls", args: "[-l] [-R] IMG [PATH]",
		summary: "List a directory (or one entry) of an image.",
		setup: func(fs *flag.FlagSet) {
			fs.BoolVar(&long, "l", false, "long format: mode, owner, size, time")
			fs.BoolVar(&recursive, "R", false, "list subdirectories recursively")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usageErr("want IMG [PATH]")
			}
			r, err := sqfs.Open(args[0], nil)
			if err != nil {
				return err
			}
			defer r.Close()
			p := "."
			if len(args) == 2 {
				p = cleanImagePath(args[1])
			}
			return list(stdout, r, p, long, recursive)
		},
	})
	register(&command{
		name: "cat", args: "IMG PATH",
		summary: "Write a file of an image to standard output.",
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 2 {
				return usageErr("want IMG PATH")
			}
			r, err := sqfs.Open(args[0], nil)
			if err != nil {
				return err
			}
			defer r.Close()
			f, err := r.Open(cleanImagePath(args[1]))
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(stdout, f)
			return err
		},
	})
}

// cleanImagePath turns a user's path ("/usr/bin", "usr/bin/") into an io/fs path.
func cleanImagePath(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

type infoJSON struct {
	Image             string                 `json:"image"`
	Compressor        string                 `json:"compressor"`
	CompressorOptions map[string]any         `json:"compressor_options,omitempty"`
	BlockSize         uint32                 `json:"block_size"`
	Version           string                 `json:"version"`
	Created           time.Time              `json:"created"`
	BytesUsed         uint64                 `json:"bytes_used"`
	Inodes            uint32                 `json:"inodes"`
	Fragments         uint32                 `json:"fragments"`
	IDs               uint16                 `json:"ids"`
	Flags             []string               `json:"flags"`
	Exportable        bool                   `json:"export_table"`
	Xattrs            bool                   `json:"xattr_table"`
	Tables            map[string]interface{} `json:"tables"`
}

func printInfo(w io.Writer, r *sqfs.Reader, asJSON bool) error {
	sb := r.Superblock()
	o := r.CompressorOptions()
	opts := map[string]any{}
	if o.Present {
		switch sb.Compressor {
		case sqfs.Gzip:
			opts["level"], opts["window_bits"], opts["strategies"] = o.GzipLevel, o.GzipWindowBits, o.GzipStrategies
		case sqfs.XZ:
			opts["dict_size"], opts["filters"] = o.XZDictSize, o.XZFilterNames()
		case sqfs.LZ4:
			opts["version"], opts["high_compression"] = o.LZ4Version, o.LZ4Flags&1 != 0
		case sqfs.Zstd:
			opts["level"] = o.ZstdLevel
		case sqfs.LZO:
			opts["algorithm"], opts["level"] = o.LZOAlgorithm, o.LZOLevel
		}
	}
	flags := sb.Flags.Names()
	if flags == nil {
		flags = []string{}
	}
	tables := map[string]any{
		"inode": sb.InodeTable, "directory": sb.DirectoryTable, "id": sb.IDTable,
		"fragment": table(sb.FragmentTable), "export": table(sb.ExportTable), "xattr_id": table(sb.XattrIDTable),
	}
	info := infoJSON{
		Image: r.Name(), Compressor: sb.Compressor.String(), CompressorOptions: opts,
		BlockSize: sb.BlockSize, Version: fmt.Sprintf("%d.%d", sb.VersionMajor, sb.VersionMinor),
		Created: sb.ModTime, BytesUsed: sb.BytesUsed, Inodes: sb.InodeCount, Fragments: sb.FragmentCount,
		IDs: sb.IDCount, Flags: flags, Exportable: sb.HasExportTable(), Xattrs: sb.HasXattrs(), Tables: tables,
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "image:\t%s\n", info.Image)
	fmt.Fprintf(tw, "version:\t%s\n", info.Version)
	fmt.Fprintf(tw, "compressor:\t%s\n", info.Compressor)
	if o.Present {
		fmt.Fprintf(tw, "compressor options:\t%s\n", formatOpts(opts))
	}
	fmt.Fprintf(tw, "block size:\t%d\n", info.BlockSize)
	fmt.Fprintf(tw, "created:\t%s\n", info.Created.Format(time.RFC3339))
	fmt.Fprintf(tw, "bytes used:\t%d\n", info.BytesUsed)
	fmt.Fprintf(tw, "inodes:\t%d\n", info.Inodes)
	fmt.Fprintf(tw, "fragments:\t%d\n", info.Fragments)
	fmt.Fprintf(tw, "ids:\t%d\n", info.IDs)
	fmt.Fprintf(tw, "export table:\t%v\n", info.Exportable)
	fmt.Fprintf(tw, "xattr table:\t%v\n", info.Xattrs)
	fmt.Fprintf(tw, "flags:\t%s\n", strings.Join(flags, " "))
	return tw.Flush()
}

func table(start uint64) any {
	if start == ^uint64(0) {
		return nil
	}
	return start
}

func formatOpts(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, " ")
}

func list(w io.Writer, r *sqfs.Reader, p string, long, recursive bool) error {
	fi, err := r.Lstat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() == false {
		return printEntry(w, p, fi.Sys().(*sqfs.Inode), long)
	}
	if fi, err = r.Stat(p); err != nil {
		return err
	}
	if !recursive {
		ents, err := r.ReadDir(p)
		if err != nil {
			return err
		}
		for _, e := range ents {
			info, err := e.Info()
			if err != nil {
				return err
			}
			if err := printEntry(w, e.Name(), info.Sys().(*sqfs.Inode), long); err != nil {
				return err
			}
		}
		return nil
	}
	return r.WalkFrom(p, func(q string, ino *sqfs.Inode, err error) error {
		if err != nil {
			return err
		}
		if q == p {
			return nil
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(q, p), "/")
		if p == "." {
			rel = q
		}
		return printEntry(w, rel, ino, long)
	})
}

func printEntry(w io.Writer, name string, ino *sqfs.Inode, long bool) error {
	if !long {
		_, err := fmt.Fprintln(w, name)
		return err
	}
	size := fmt.Sprint(ino.Size)
	if ino.Type == sqfs.TypeBlockDev || ino.Type == sqfs.TypeCharDev {
		size = fmt.Sprintf("%d,%d", ino.Major(), ino.Minor())
	}
	if ino.Type == sqfs.TypeSymlink {
		name += " -> " + ino.Target
	}
	_, err := fmt.Fprintf(w, "%s %d/%d %10s %s %s\n", modeString(ino), ino.UID, ino.GID, size,
		ino.ModTime().UTC().Format("2006-01-02 15:04"), name)
	return err
}

// modeString renders a mode as ls -l does (drwxr-xr-x, with s/S/t/T).
func modeString(ino *sqfs.Inode) string {
	t := map[sqfs.InodeType]byte{sqfs.TypeDir: 'd', sqfs.TypeFile: '-', sqfs.TypeSymlink: 'l',
		sqfs.TypeBlockDev: 'b', sqfs.TypeCharDev: 'c', sqfs.TypeFifo: 'p', sqfs.TypeSocket: 's'}[ino.Type]
	b := []byte{t}
	perm := ino.Perm
	for i, c := range "rwxrwxrwx" {
		if perm&(1<<(8-i)) != 0 {
			b = append(b, byte(c))
		} else {
			b = append(b, '-')
		}
	}
	special := func(pos int, bit uint16, set, unset byte) {
		if perm&bit != 0 {
			if b[pos] == 'x' {
				b[pos] = set
			} else {
				b[pos] = unset
			}
		}
	}
	special(3, 0o4000, 's', 'S')
	special(6, 0o2000, 's', 'S')
	special(9, 0o1000, 't', 'T')
	return string(b)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

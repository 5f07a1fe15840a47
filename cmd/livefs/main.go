// Command livefs inspects, extracts and benchmarks squashfs bundles.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strings"

	"github.com/livefs/livefs/initramfs"
	"github.com/livefs/livefs/initramfs/liveinit"
)

// command is one subcommand: its flags are defined by setup, run gets the
// positional arguments.
type command struct {
	name, args, summary string
	run                 func(fs *flag.FlagSet, args []string) error
	setup               func(fs *flag.FlagSet)
}

var commands []*command

func register(c *command) { commands = append(commands, c) }

// errUsage marks an error caused by bad arguments: the command's usage follows it.
var errUsage = errors.New("usage")

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func main() {
	// The same binary is the live system's /init and /shutdown, and
	// mount(8)'s helper for fuse.livefs.
	switch filepath.Base(os.Args[0]) {
	case initramfs.InitPath:
		liveinit.Main()
	case initramfs.ShutdownPath:
		if err := liveinit.Shutdown(os.Args[1:]); err != nil {
			fmt.Fprintf(os.Stderr, "livefs shutdown: %v\n", err)
		}
		os.Exit(1)
	case mountHelperName:
		os.Exit(mountHelper(os.Args[1:], os.Stdout, os.Stderr))
	}
	// LIVEFS_CPUPROFILE=file writes a CPU profile of the command, for tuning.
	if p := os.Getenv("LIVEFS_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil {
			pprof.StartCPUProfile(f)
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

var stdout io.Writer = os.Stdout

func run(args []string, out, errOut io.Writer) int {
	stdout = out
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				fs := newFlagSet(c, out)
				fs.Usage()
				return 0
			}
		}
		mainUsage(out)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(errOut, "livefs: unknown command %q\n", args[0])
		mainUsage(errOut)
		return 2
	}
	fs := newFlagSet(c, errOut)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := c.run(fs, fs.Args()); err != nil {
		if os.Getenv(daemonReadyEnv) != "" {
			return 1 // a --daemon child: the parent prints the error
		}
		fmt.Fprintf(errOut, "livefs %s: %v\n", c.name, err)
		if errors.Is(err, errUsage) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}

func find(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func newFlagSet(c *command, w io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("livefs "+c.name, flag.ContinueOnError)
	fs.SetOutput(w)
	if c.setup != nil {
		c.setup(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(w, "usage: livefs %s %s\n\n%s\n", c.name, c.args, c.summary)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(w, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func mainUsage(w io.Writer) {
	fmt.Fprintln(w, "livefs: squashfs bundles, served and inspected.\n\nusage: livefs COMMAND [flags] ARGS\n\ncommands:")
	sorted := append([]*command(nil), commands...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		first, _, _ := strings.Cut(c.summary, "\n")
		fmt.Fprintf(w, "  %-14s %s\n", c.name, first)
	}
	fmt.Fprintln(w, "\nRun 'livefs help COMMAND' or 'livefs COMMAND -h' for details.")
}

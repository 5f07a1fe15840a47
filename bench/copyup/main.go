// Command copyup times the three calls of a write to each of a list of
// existing files (open, write, close: in a union the open copies a
// bundle's file up) and prints the mean microseconds of each and the
// whole run's milliseconds.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	mode := flag.String("mode", "append", "append (O_APPEND) or rewrite (O_TRUNC)")
	flag.Parse()
	flags := map[string]int{"append": unix.O_APPEND, "rewrite": unix.O_TRUNC}[*mode]
	if flags == 0 || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: copyup [-mode append|rewrite] LIST (one path per line)")
		os.Exit(2)
	}
	list, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "copyup:", err)
		os.Exit(1)
	}
	var paths []string
	for sc := bufio.NewScanner(bytes.NewReader(list)); sc.Scan(); {
		paths = append(paths, sc.Text())
	}
	if len(paths) == 0 {
		fmt.Fprintf(os.Stderr, "copyup: %s lists no files\n", flag.Arg(0))
		os.Exit(1)
	}
	line := []byte("written by copyup\n")
	var open, write, close time.Duration
	start := time.Now()
	for _, p := range paths {
		t0 := time.Now()
		fd, err := unix.Open(p, unix.O_WRONLY|flags|unix.O_CLOEXEC, 0)
		t1 := time.Now()
		if err != nil {
			fmt.Fprintf(os.Stderr, "copyup: open %s: %v\n", p, err)
			os.Exit(1)
		}
		_, werr := unix.Write(fd, line)
		t2 := time.Now()
		cerr := unix.Close(fd)
		t3 := time.Now()
		if werr != nil || cerr != nil {
			fmt.Fprintf(os.Stderr, "copyup: %s: write %v, close %v\n", p, werr, cerr)
			os.Exit(1)
		}
		open, write, close = open+t1.Sub(t0), write+t2.Sub(t1), close+t3.Sub(t2)
	}
	total := time.Since(start)
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(len(paths)) / 1000 }
	fmt.Printf("%.1f %.1f %.1f %.0f\n", us(open), us(write), us(close), float64(total.Microseconds())/1000)
}

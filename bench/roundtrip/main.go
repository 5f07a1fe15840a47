// Command roundtrip times FUSE round trips: it asks the file system for an
// extended attribute the file does not have, which the kernel never caches,
// so every call is one request to the server and one reply.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	n := flag.Int("n", 20000, "calls")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: roundtrip [-n CALLS] FILE")
		os.Exit(2)
	}
	path := flag.Arg(0)
	buf := make([]byte, 64)
	if _, err := unix.Lgetxattr(path, "user.livefs-roundtrip", buf); err != unix.ENODATA {
		fmt.Fprintf(os.Stderr, "roundtrip: %s: getxattr: %v, want ENODATA\n", path, err)
		os.Exit(1)
	}
	start := time.Now()
	for range *n {
		unix.Lgetxattr(path, "user.livefs-roundtrip", buf)
	}
	fmt.Printf("%.1f\n", float64(time.Since(start).Nanoseconds())/float64(*n)/1000)
}

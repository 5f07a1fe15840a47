package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/livefs/livefs/internal/sqfstest"
)

// Self-verifying file versions: a header naming the file, its generation,
// the body's length and its hash, so that a torn or mixed-up file shows.
func versionContent(name string, gen, size int) []byte {
	body := make([]byte, size)
	rand.New(rand.NewSource(int64(gen)*7919 + int64(len(name))*31 + int64(name[len(name)-1]))).Read(body)
	sum := sha256.Sum256(body)
	return append([]byte(fmt.Sprintf("LIVEFS %s %d %d %s\n", name, gen, size, hex.EncodeToString(sum[:]))), body...)
}

// parseVersion checks a version and returns its generation and the bytes
// after it (appended records).
func parseVersion(name string, b []byte) (gen int, rest []byte, ok bool) {
	nl := strings.IndexByte(string(b[:min(len(b), 200)]), '\n')
	if nl < 0 {
		return 0, nil, false
	}
	f := strings.Fields(string(b[:nl]))
	if len(f) != 5 || f[0] != "LIVEFS" || f[1] != name {
		return 0, nil, false
	}
	gen, err1 := strconv.Atoi(f[2])
	size, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || len(b) < nl+1+size {
		return 0, nil, false
	}
	body := b[nl+1 : nl+1+size]
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != f[4] {
		return 0, nil, false
	}
	return gen, b[nl+1+size:], true
}

func appendRecord(name string, seq int) string { return fmt.Sprintf("REC %s %06d END\n", name, seq) }

// observe describes what a name holds, in the terms the storm records:
// "absent", "gen N", "gen N records K", "gen N mode M", or "TORN ...".
func observe(root, name string) string {
	p := filepath.Join(root, name)
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return "absent"
	}
	if err != nil {
		return "TORN " + err.Error()
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "TORN " + err.Error()
	}
	gen, rest, ok := parseVersion(name, b)
	if !ok {
		return fmt.Sprintf("TORN content (%d bytes)", len(b))
	}
	switch name[0] {
	case 'a':
		k := 0
		for len(rest) > 0 {
			r := appendRecord(name, k+1)
			if !strings.HasPrefix(string(rest), r) {
				return fmt.Sprintf("TORN record %d: %q", k+1, rest[:min(len(rest), 40)])
			}
			rest, k = rest[len(r):], k+1
		}
		return fmt.Sprintf("gen %d records %d", gen, k)
	case 'm':
		return fmt.Sprintf("gen %d mode %o", gen, fi.Mode().Perm())
	}
	if len(rest) > 0 {
		return fmt.Sprintf("TORN %d extra bytes", len(rest))
	}
	return fmt.Sprintf("gen %d", gen)
}

// stormName is one file of the storm: what it held when the last
// operation on it completed, and what it may hold if one was in flight.
type stormName struct {
	name                string
	committed, inflight string
	gen, records, mode  int
}

// stormOnce runs operations on names (one goroutine's share, so that each
// name sees one operation at a time) until the first error.
func stormOnce(root string, names []*stormName, rng *rand.Rand, ops *int) {
	modes := []int{0o600, 0o640, 0o604, 0o644}
	for {
		n := names[rng.Intn(len(names))]
		var next string
		var do func() error
		switch n.name[0] {
		case 'r', 'd':
			if n.name[0] == 'd' && n.committed != "absent" {
				next = "absent"
				do = func() error { return os.Remove(filepath.Join(root, n.name)) }
				break
			}
			gen := n.gen + 1
			next = fmt.Sprintf("gen %d", gen)
			do = func() error {
				// Atomic replace: a complete, synced temporary renamed over the name.
				tmp := filepath.Join(root, n.name+".tmp")
				f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
				if err != nil {
					return err
				}
				data := versionContent(n.name, gen, 1<<10+rng.Intn(1<<20))
				for len(data) > 0 {
					k, err := f.Write(data[:min(len(data), 128<<10)])
					if err != nil {
						f.Close()
						return err
					}
					data = data[k:]
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				if err := os.Rename(tmp, filepath.Join(root, n.name)); err != nil {
					return err
				}
				n.gen = gen
				return nil
			}
		case 'a':
			next = fmt.Sprintf("gen %d records %d", n.gen, n.records+1)
			do = func() error {
				// The first append copies the whole lower file up.
				f, err := os.OpenFile(filepath.Join(root, n.name), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return err
				}
				if _, err := f.WriteString(appendRecord(n.name, n.records+1)); err != nil {
					f.Close()
					return err
				}
				if err := f.Sync(); err != nil {
					f.Close()
					return err
				}
				if err := f.Close(); err != nil {
					return err
				}
				n.records++
				return nil
			}
		case 'm':
			mode := modes[rng.Intn(len(modes))]
			next = fmt.Sprintf("gen %d mode %o", n.gen, mode)
			do = func() error { return os.Chmod(filepath.Join(root, n.name), os.FileMode(mode)) } // copy-up by metadata
		}
		n.inflight = next
		if err := do(); err != nil {
			return
		}
		n.committed = next
		*ops++
	}
}

// TestCrashDuringWrites kills the server (SIGKILL) in the middle of a
// storm of atomic replaces, appends, chmods (copy-ups of 1 MiB lower
// files) and deletes on a persistent changes directory, remounts, and
// checks every name: no torn file, and each holds what its last completed
// (synced) operation left, or what the one in flight would have.
func TestCrashDuringWrites(t *testing.T) {
	sqfstest.RequireRoot(t)
	bin := livefsBinary(t)
	for _, format := range []string{"aufs", "overlay"} {
		t.Run(format, func(t *testing.T) {
			base := t.TempDir()
			lower, changes, work, mnt := filepath.Join(base, "lower"), filepath.Join(base, "changes"), filepath.Join(base, "work"), filepath.Join(base, "mnt")
			for _, d := range []string{lower, mnt, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			var names []*stormName
			for _, spec := range []struct {
				prefix string
				count  int
			}{{"r", 8}, {"a", 4}, {"m", 4}, {"d", 4}} {
				for i := 0; i < spec.count; i++ {
					n := &stormName{name: fmt.Sprintf("%s%02d", spec.prefix, i)}
					if err := os.WriteFile(filepath.Join(lower, n.name), versionContent(n.name, 0, 1<<20+i*4096), 0o644); err != nil {
						t.Fatal(err)
					}
					n.committed = observe(lower, n.name)
					n.inflight = n.committed
					names = append(names, n)
				}
			}
			args := []string{"mount", "--changes", changes, "--whiteout", format}
			if format == "overlay" {
				args = append(args, "--workdir", work)
			} else {
				work = filepath.Join(changes, ".wh..wh.livefs")
			}
			args = append(args, lower, mnt)
			serve := func() *exec.Cmd {
				t.Helper()
				cmd := exec.Command(bin, args...)
				cmd.Stderr = os.Stderr
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				for deadline := time.Now().Add(10 * time.Second); !isMounted(t, mnt); time.Sleep(5 * time.Millisecond) {
					if time.Now().After(deadline) {
						cmd.Process.Kill()
						cmd.Wait()
						t.Fatal("server did not mount within 10 s")
					}
				}
				return cmd
			}
			rng := rand.New(rand.NewSource(1))
			const iterations = 8
			totalOps := 0
			for it := 0; it <= iterations; it++ {
				cmd := serve()
				// Check what the last kill left.
				for _, n := range names {
					got := observe(mnt, n.name)
					if got != n.committed && got != n.inflight {
						t.Errorf("iteration %d: %s holds %q; want %q (last completed) or %q (in flight)", it, n.name, got, n.committed, n.inflight)
					}
					n.committed, n.inflight = got, got
					// Carry on from what is there (the operation in flight may have landed).
					if n.name[0] == 'a' {
						fmt.Sscanf(got, "gen %d records %d", &n.gen, &n.records)
					} else {
						fmt.Sscanf(got, "gen %d", &n.gen)
					}
				}
				if stale, _ := filepath.Glob(filepath.Join(work, "copyup.*")); len(stale) > 0 {
					t.Errorf("iteration %d: unfinished copy-ups left in the work directory: %v", it, stale)
				}
				if t.Failed() || it == iterations {
					cmd.Process.Signal(syscall.SIGTERM)
					cmd.Wait()
					break
				}
				var wg sync.WaitGroup
				ops := make([]int, 4)
				for g := range ops {
					var share []*stormName
					for i, n := range names {
						if i%len(ops) == g {
							share = append(share, n)
						}
					}
					wg.Add(1)
					go func(g int, share []*stormName) {
						defer wg.Done()
						stormOnce(mnt, share, rand.New(rand.NewSource(int64(it*10+g))), &ops[g])
					}(g, share)
				}
				time.Sleep(time.Duration(50+rng.Intn(400)) * time.Millisecond)
				cmd.Process.Kill()
				cmd.Wait()
				wg.Wait()
				inflight := 0
				for _, n := range names {
					if n.inflight != n.committed {
						inflight++
					}
				}
				sum := 0
				for _, k := range ops {
					sum += k
				}
				totalOps += sum
				t.Logf("iteration %d: %d operations completed, %d in flight at the kill", it, sum, inflight)
				if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
					t.Fatalf("umount after the kill: %v %s", err, out)
				}
			}
			if totalOps == 0 {
				t.Error("the storm completed no operation before the kills")
			}
		})
	}
}

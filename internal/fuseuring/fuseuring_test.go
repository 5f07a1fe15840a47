package fuseuring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/fuseuring"
	"github.com/livefs/livefs/internal/sqfstest"
)

// requireRings turns on the kernel's switch, or skips where rings cannot
// exist.
func requireRings(t *testing.T) {
	t.Helper()
	sqfstest.RequireRoot(t)
	on, exists := fuseuring.KernelSwitch()
	if !exists {
		sqfstest.Missing(t, "this kernel has no FUSE over io_uring (Linux 6.14 with CONFIG_FUSE_IO_URING)")
	}
	if !on {
		if err := fuseuring.EnableKernelSwitch(); err != nil {
			t.Fatal(err)
		}
	}
}

type root struct{ fs.Inode }

var _ = (fs.NodeOnAdder)((*root)(nil))

func content(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("file %d\n", i)), 1000*(i%7)+1) }

func (r *root) OnAdd(ctx context.Context) {
	dir := r.NewPersistentInode(ctx, &fs.Inode{}, fs.StableAttr{Mode: syscall.S_IFDIR})
	r.AddChild("d", dir, false)
	for i := range 300 {
		f := r.NewPersistentInode(ctx, &fs.MemRegularFile{Data: content(i), Attr: fuse.Attr{Mode: 0o644}}, fs.StableAttr{})
		dir.AddChild(fmt.Sprint(i), f, false)
	}
}

// mount serves the test tree with rings, and returns the mount point and
// the rings (nil, with Start's error, when Start failed).
func mount(t *testing.T) (string, *fuseuring.Rings, error) {
	t.Helper()
	mnt := t.TempDir()
	opts := &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, ExtraCapabilities: fuseuring.Capability, MaxWrite: 1 << 20}}
	raw := fs.NewNodeFS(&root{}, opts)
	server, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		t.Fatal(err)
	}
	rings, startErr := fuseuring.Start(server, raw, &opts.MountOptions)
	served := make(chan struct{})
	go func() {
		server.Serve()
		if rings != nil {
			rings.Close()
		}
		close(served)
	}()
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
			abort(t, mnt)
		}
		select {
		case <-served:
		case <-time.After(20 * time.Second):
			t.Errorf("the server and its rings did not stop within 20 s of the unmount")
		}
	})
	done := make(chan error, 1)
	go func() { done <- server.WaitMount() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		abort(t, mnt)
		t.Fatalf("the mount did not answer within 20 s (Start: %v)", startErr)
	}
	return mnt, rings, startErr
}

// abort ends a hung FUSE connection through the fusectl file system.
func abort(t *testing.T, mnt string) {
	if dev, ok := sqfstest.MountDevice(t, mnt); ok {
		_, minor, _ := strings.Cut(dev, ":")
		unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "") // where no one has
		os.WriteFile("/sys/fs/fuse/connections/"+minor+"/abort", []byte("1"), 0)
	}
}

// onCPU runs f on a thread bound to cpu.
func onCPU(cpu int, f func()) error {
	errc := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the bound thread ends with the goroutine
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- err
			return
		}
		f()
		errc <- nil
	}()
	return <-errc
}

func TestRingsServeEachCPU(t *testing.T) {
	requireRings(t)
	mnt, rings, err := mount(t)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	var online unix.CPUSet
	if err := unix.SchedGetaffinity(0, &online); err != nil {
		t.Fatal(err)
	}
	next := 0
	for cpu := range 1024 {
		if !online.IsSet(cpu) {
			continue
		}
		before := rings.Served()[cpu]
		var got []byte
		var readErr error
		if err := onCPU(cpu, func() { got, readErr = os.ReadFile(filepath.Join(mnt, "d", fmt.Sprint(next))) }); err != nil {
			t.Fatal(err)
		}
		if readErr != nil || !bytes.Equal(got, content(next)) {
			t.Errorf("cpu %d: d/%d: %d bytes, %v; want %d bytes", cpu, next, len(got), readErr, len(content(next)))
		}
		if after := rings.Served()[cpu]; after == before {
			t.Errorf("cpu %d: a read from this CPU was not served by its queue (served %v)", cpu, rings.Served())
		}
		next++
	}
	// Everything else, from wherever the scheduler runs it.
	entries, err := os.ReadDir(filepath.Join(mnt, "d"))
	if err != nil || len(entries) != 300 {
		t.Fatalf("listing: %d entries, %v; want 300", len(entries), err)
	}
	for i := range 300 {
		got, err := os.ReadFile(filepath.Join(mnt, "d", fmt.Sprint(i)))
		if err != nil || !bytes.Equal(got, content(i)) {
			t.Errorf("d/%d: %d bytes, %v; want %d bytes", i, len(got), err, len(content(i)))
		}
	}
}

// A queue that cannot be set up must leave the mount working over
// /dev/fuse, not held back waiting for rings that never come.
func TestFailedSetupFallsBackToDevice(t *testing.T) {
	requireRings(t)
	setupErr := errors.New("no memory for this queue")
	fuseuring.FailSetup(func(qid int) error {
		if qid == 0 {
			return setupErr
		}
		return nil
	})
	defer fuseuring.FailSetup(nil)
	mnt, rings, err := mount(t)
	if rings != nil || !errors.Is(err, setupErr) {
		t.Fatalf("Start: rings %v, error %v; want none and %v", rings, err, setupErr)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "d", "5"))
	if err != nil || !bytes.Equal(got, content(5)) {
		t.Errorf("d/5 over /dev/fuse: %d bytes, %v", len(got), err)
	}
}

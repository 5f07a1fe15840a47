package fuseuring_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
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

type root struct {
	fs.Inode
	stuck *stuck
}

var _ = (fs.NodeOnAdder)((*root)(nil))

func content(i int) []byte { return bytes.Repeat([]byte(fmt.Sprintf("file %d\n", i)), 1000*(i%7)+1) }

// stuck is a file whose reads wait until the kernel interrupts them.
type stuck struct {
	fs.Inode
	reading chan struct{} // a read has begun
}

var (
	_ = (fs.NodeOpener)((*stuck)(nil))
	_ = (fs.NodeReader)((*stuck)(nil))
)

func (s *stuck) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (s *stuck) Read(ctx context.Context, f fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	select {
	case s.reading <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return nil, syscall.EINTR
}

func (r *root) OnAdd(ctx context.Context) {
	r.AddChild("stuck", r.NewPersistentInode(ctx, r.stuck, fs.StableAttr{}), false)
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
	mnt, _, rings, err := mountTree(t)
	return mnt, rings, err
}

// mountTree is mount that also returns the tree.
func mountTree(t *testing.T) (string, *root, *fuseuring.Rings, error) {
	t.Helper()
	mnt := t.TempDir()
	opts := &fs.Options{MountOptions: fuse.MountOptions{DirectMount: true, ExtraCapabilities: fuseuring.Capability, MaxWrite: 1 << 20}}
	tree := &root{stuck: &stuck{reading: make(chan struct{}, 1)}}
	raw := fs.NewNodeFS(tree, opts)
	server, err := fuse.NewServer(raw, mnt, &opts.MountOptions)
	if err != nil {
		t.Fatal(err)
	}
	rings, startErr := fuseuring.Start(server, raw, &opts.MountOptions)
	served := make(chan struct{})
	go func() {
		if startErr == nil {
			rings.ServeDevice() // as union.Mount does
		} else {
			server.Serve()
		}
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
	return mnt, tree, rings, startErr
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

// A signal to a caller waiting for a request served on a ring must reach
// that request: the kernel sends the INTERRUPT over /dev/fuse, and the
// caller cannot go until the server answers.
func TestInterruptReachesQueuedRequest(t *testing.T) {
	requireRings(t)
	mnt, tree, _, err := mountTree(t)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	cat := exec.Command("cat", filepath.Join(mnt, "stuck"))
	if err := cat.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cat.Wait() }()
	select {
	case <-tree.stuck.reading:
	case err := <-exited:
		t.Fatalf("cat ended before its read reached the server: %v", err)
	case <-time.After(20 * time.Second):
		cat.Process.Kill()
		t.Fatal("the read did not reach the server within 20 s")
	}
	cat.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		abort(t, mnt)
		t.Fatal("cat still waits for its read 20 s after SIGTERM: the INTERRUPT did not reach the request")
	}
}

// A queue thread that commits as a SCHED_IDLE thread and is kept waiting
// (on a busy CPU) gets its normal policy back from the housekeeping
// thread, so the requests of other callers on its CPU do not starve.
func TestCommitWindowIsEnded(t *testing.T) {
	requireRings(t)
	if runtime.NumCPU() < 2 {
		t.Skip("needs two CPUs: a caller must come from another CPU's queue")
	}
	ended := make(chan bool, 100)
	checked := make(chan struct{}) // windows after the checks do not count
	fuseuring.SetWindowHook(func() {
		// Stand for a CPU too busy to run the thread: wait to be given
		// the normal policy back.
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(time.Millisecond) {
			if policy, err := unix.SchedGetAttr(0, 0); err == nil && policy.Policy == unix.SCHED_NORMAL {
				ended <- true
				return
			}
			select {
			case <-checked:
				return
			default:
			}
		}
		ended <- false
	})
	defer fuseuring.SetWindowHook(nil)
	defer close(checked)
	mnt, rings, err := mount(t)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	for wait := time.Now(); !rings.Yielding(); time.Sleep(time.Millisecond) {
		if time.Since(wait) > 5*time.Second { // ServeDevice turns it on
			t.Fatal("the queues do not yield their commits although this process may leave SCHED_IDLE")
		}
	}
	read := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // one caller (thread) throughout
		defer runtime.UnlockOSThread()
		var set unix.CPUSet
		for _, cpu := range []int{1, 0, 1} { // each move makes the queue it comes to yield
			set.Zero()
			set.Set(cpu)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				read <- err
				return
			}
			if _, err := os.ReadFile(filepath.Join(mnt, "d", "1")); err != nil {
				read <- err
				return
			}
		}
		read <- nil
	}()
	if err := <-read; err != nil {
		t.Fatal(err)
	}
	if len(ended) == 0 {
		t.Fatal("no commit window began although the caller moved between CPUs")
	}
	for len(ended) > 0 {
		if !<-ended {
			t.Fatal("a commit window was not ended within 10 s")
		}
	}
}

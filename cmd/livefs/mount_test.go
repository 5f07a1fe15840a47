package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/livefs/livefs/internal/sqfstest"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// livefsBinary builds the command once for tests that need a process.
func livefsBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "livefs-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "livefs")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &exec.ExitError{}
			t.Logf("go build: %s", out)
		}
	})
	if binErr != nil {
		t.Fatalf("building livefs: %v", binErr)
	}
	return binPath
}

func runBin(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(livefsBinary(t), args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestMountDaemon mounts in the background, reads through the mount and
// unmounts with livefs umount, after which the server is gone.
func TestMountDaemon(t *testing.T) {
	sqfstest.RequireRoot(t)
	img := testImage(t)
	mnt := t.TempDir()
	// Let other users reach the mount point (TempDir's parent is 0700).
	if err := os.Chmod(filepath.Dir(mnt), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, code := runBin(t, "mount", "--daemon", "--ro", "-o", "allow_other", img, mnt); code != 0 {
		t.Fatalf("mount --daemon: exit %d: %s", code, out)
	}
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", "-l", mnt).Run()
		}
	}()
	got, err := os.ReadFile(filepath.Join(mnt, "etc/hostname"))
	if err != nil || string(got) != "livefs\n" {
		t.Errorf("etc/hostname: %q, %v", got, err)
	}
	mounts, _ := os.ReadFile("/proc/mounts")
	var line string
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, " "+mnt+" ") {
			line = l
		}
	}
	fields := strings.Fields(line)
	if len(fields) < 4 || fields[2] != "fuse.livefs" {
		t.Fatalf("mount line %q: want type fuse.livefs", line)
	}
	opts := map[string]bool{}
	for _, o := range strings.Split(fields[3], ",") {
		opts[o] = true
	}
	for _, want := range []string{"ro", "default_permissions", "allow_other"} {
		if !opts[want] {
			t.Errorf("mount options %q lack %s", fields[3], want)
		}
	}
	if opts["nosuid"] || opts["nodev"] {
		t.Errorf("root mount options %q should honour setuid and devices", fields[3])
	}
	// Other users are subject to the modes: a 0600 root file is closed to them.
	if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", filepath.Join(mnt, "etc/secret")).CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("nobody reading a 0600 root file: %v %s; want permission denied", err, out)
	}
	if out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "cat", filepath.Join(mnt, "etc/hostname")).CombinedOutput(); err != nil {
		t.Errorf("nobody reading a 0644 file: %v %s", err, out)
	}
	if out, code := runBin(t, "umount", mnt); code != 0 {
		t.Fatalf("umount: exit %d: %s", code, out)
	}
	mounted = false
	if _, err := os.Stat(filepath.Join(mnt, "etc/hostname")); err == nil {
		t.Error("still mounted after livefs umount")
	}
}

// TestMountErrors: a bad branch fails the mount with a message naming it,
// in the foreground and with --daemon.
func TestMountErrors(t *testing.T) {
	sqfstest.RequireRoot(t)
	bad := filepath.Join(t.TempDir(), "bad.sb")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not squashfs ", 20)), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"mount", bad, t.TempDir()},
		{"mount", "--daemon", bad, t.TempDir()},
		{"mount", "--daemon", "/no/such.sb", t.TempDir()},
	} {
		out, code := runBin(t, args...)
		if code != 1 || !strings.Contains(out, args[len(args)-2]) {
			t.Errorf("%v: exit %d, output %q; want 1 and a message naming %s", args, code, out, args[len(args)-2])
		}
	}
}

// TestMountAsOrdinaryUser mounts and unmounts as an unprivileged user,
// which goes through fusermount3.
func TestMountAsOrdinaryUser(t *testing.T) {
	sqfstest.RequireRoot(t)
	sqfstest.RequireTool(t, "fusermount3")
	sqfstest.RequireTool(t, "setpriv")
	// Distributions ship /dev/fuse as 0666; some containers make it 0600,
	// which leaves FUSE to root. Open it up for the test's duration.
	if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", 0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
	}
	bin := livefsBinary(t)
	if err := os.Chmod(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(testImage(t))
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "user.sb")
	mnt := filepath.Join(dir, "mnt")
	if err := os.WriteFile(img, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	asNobody := func(args ...string) (string, error) {
		out, err := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups"}, args...)...).CombinedOutput()
		return string(out), err
	}
	if out, err := asNobody(bin, "mount", "--daemon", img, mnt); err != nil {
		t.Fatalf("mount as nobody: %v: %s", err, out)
	}
	defer exec.Command("umount", "-l", mnt).Run()
	if out, err := asNobody("cat", filepath.Join(mnt, "etc/hostname")); err != nil || out != "livefs\n" {
		t.Errorf("reading as nobody: %q, %v", out, err)
	}
	if out, err := asNobody(bin, "umount", mnt); err != nil {
		t.Errorf("umount as nobody: %v: %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(mnt, "etc")); err == nil {
		t.Error("still mounted after umount")
	}
}

// TestMountChanges: without --changes, writes go to RAM and vanish at
// unmount; with --changes they persist, and a second server on the same
// changes directory is refused.
func TestMountChanges(t *testing.T) {
	sqfstest.RequireRoot(t)
	img := testImage(t)
	mnt := t.TempDir()
	write := func() {
		t.Helper()
		if err := os.WriteFile(filepath.Join(mnt, "etc/hostname"), []byte("changed\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	read := func() string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(mnt, "etc/hostname"))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	umount := func() {
		t.Helper()
		if out, code := runBin(t, "umount", mnt); code != 0 {
			t.Fatalf("umount: %s", out)
		}
	}
	// RAM.
	if out, code := runBin(t, "mount", "--daemon", img, mnt); code != 0 {
		t.Fatalf("mount: %s", out)
	}
	write()
	if got := read(); got != "changed\n" {
		t.Errorf("after write: %q", got)
	}
	umount()
	if out, code := runBin(t, "mount", "--daemon", img, mnt); code != 0 {
		t.Fatalf("mount: %s", out)
	}
	if got := read(); got != "livefs\n" {
		t.Errorf("RAM changes survived a remount: %q", got)
	}
	umount()
	// Persistent.
	changes := filepath.Join(t.TempDir(), "changes")
	if out, code := runBin(t, "mount", "--daemon", "--changes", changes, img, mnt); code != 0 {
		t.Fatalf("mount: %s", out)
	}
	write()
	other := t.TempDir()
	if out, code := runBin(t, "mount", "--daemon", "--changes", changes, img, other); code != 1 || !strings.Contains(out, "in use") {
		t.Errorf("second server on one changes directory: exit %d, %q", code, out)
	}
	umount()
	if out, code := runBin(t, "mount", "--daemon", "--changes", changes, img, mnt); code != 0 {
		t.Fatalf("mount: %s", out)
	}
	if got := read(); got != "changed\n" {
		t.Errorf("persistent change lost over a remount: %q", got)
	}
	umount()
}

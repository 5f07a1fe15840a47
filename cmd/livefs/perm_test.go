package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/sqfstest"
)

// TestMain lets the test binary run one file operation as another user
// (see runAs): it prints the outcome as "ok" or the errno's name.
func TestMain(m *testing.M) {
	if op := os.Getenv("LIVEFS_PERM_OP"); op != "" {
		fmt.Print(errName(permOp(op, os.Getenv("LIVEFS_PERM_PATH"), os.Getenv("LIVEFS_PERM_PATH2"))))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func permOp(op, p, p2 string) error {
	switch op {
	case "read":
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.ReadAll(f)
		return err
	case "write":
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteString("x")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return err
	case "create":
		return os.WriteFile(p, []byte("mine\n"), 0o644)
	case "mkdir":
		return os.Mkdir(p, 0o755)
	case "chmod":
		return os.Chmod(p, 0o666)
	case "chown":
		return os.Chown(p, os.Getuid(), os.Getgid())
	case "unlink":
		return os.Remove(p)
	case "rename":
		return os.Rename(p, p2)
	case "truncate":
		return os.Truncate(p, 0)
	case "setxattr":
		return unix.Setxattr(p, "user.livefs-test", []byte("v"), 0)
	case "utimes":
		return unix.UtimesNano(p, []unix.Timespec{{Sec: 1}, {Sec: 1}})
	}
	return fmt.Errorf("unknown op %q", op)
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return err.Error()
}

// TestAllowOtherPermissions: on a writable mount with allow_other, an
// unprivileged user gets what the modes allow and is refused the rest,
// with the errno the kernel's overlayfs gives over the same lower.
func TestAllowOtherPermissions(t *testing.T) {
	sqfstest.RequireRoot(t)
	const nobody = 65534
	base := t.TempDir()
	if err := os.Chmod(base, 0o755); err != nil { // reachable by nobody
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(base), 0o755); err != nil {
		t.Fatal(err)
	}
	lower := filepath.Join(base, "lower")
	for p, mode := range map[string]os.FileMode{
		"etc/secret": 0o600, "etc/public": 0o644, "ro/x": 0o644, "open/rootfile": 0o644, "sticky/rootfile": 0o644,
	} {
		writeFile(t, filepath.Join(lower, p), "root's\n", mode)
	}
	for d, mode := range map[string]os.FileMode{".": 0o755, "etc": 0o755, "ro": 0o755, "open": 0o777, "sticky": 0o777 | os.ModeSticky} {
		if err := os.Chmod(filepath.Join(lower, d), mode); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary, where nobody can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(base, "perm.test")
	if err := os.WriteFile(prog, data, 0o755); err != nil {
		t.Fatal(err)
	}
	mounts := map[string]string{"livefs": filepath.Join(base, "livefs"), "overlayfs": filepath.Join(base, "overlayfs")}
	for _, d := range []string{mounts["livefs"], mounts["overlayfs"], filepath.Join(base, "upper"), filepath.Join(base, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, code := runBin(t, "mount", "--daemon", "-o", "allow_other", lower, mounts["livefs"]); code != 0 {
		t.Fatalf("mount: exit %d: %s", code, out)
	}
	umountAtEnd(t, mounts["livefs"])
	sqfstest.Run(t, "mount", "-t", "overlay", "overlay", mounts["overlayfs"], "-o",
		fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, base, base))
	umountAtEnd(t, mounts["overlayfs"])

	runAs := func(root, op, p, p2 string) string {
		t.Helper()
		cmd := exec.Command(prog, "-test.run=^$")
		cmd.Env = append(os.Environ(), "LIVEFS_PERM_OP="+op, "LIVEFS_PERM_PATH="+filepath.Join(root, p), "LIVEFS_PERM_PATH2="+filepath.Join(root, p2))
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s %s as nobody: %v %s", op, p, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tc := range []struct {
		op, path, path2, want string
	}{
		{"read", "etc/secret", "", "EACCES"},
		{"read", "etc/public", "", "ok"},
		{"write", "etc/public", "", "EACCES"},
		{"truncate", "etc/public", "", "EACCES"},
		{"create", "ro/new", "", "EACCES"},
		{"mkdir", "ro/newdir", "", "EACCES"},
		{"unlink", "ro/x", "", "EACCES"},
		{"rename", "ro/x", "open/x", "EACCES"},
		{"chmod", "etc/public", "", "EPERM"},
		{"chown", "etc/public", "", "EPERM"},
		{"utimes", "etc/public", "", "EPERM"},
		{"setxattr", "etc/public", "", "EACCES"}, // user.* xattrs need write permission
		{"unlink", "sticky/rootfile", "", "EPERM"},
		{"create", "open/mine", "", "ok"},
		{"write", "open/mine", "", "ok"},
		{"chmod", "open/mine", "", "ok"},
		{"create", "sticky/mine", "", "ok"},
		{"unlink", "sticky/mine", "", "ok"},
		{"unlink", "open/rootfile", "", "ok"},
	} {
		name := tc.op + " " + tc.path
		kernel := runAs(mounts["overlayfs"], tc.op, tc.path, tc.path2)
		got := runAs(mounts["livefs"], tc.op, tc.path, tc.path2)
		if got != tc.want || kernel != tc.want {
			t.Errorf("%s as nobody: livefs %s, overlayfs %s; want %s", name, got, kernel, tc.want)
		}
	}
	// What nobody made belongs to nobody, on both.
	for fs, mnt := range mounts {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(mnt, "open/mine"), &st); err != nil || st.Uid != nobody || st.Gid != nobody {
			t.Errorf("%s open/mine: owner %d:%d, %v; want %d:%d", fs, st.Uid, st.Gid, err, nobody, nobody)
		}
	}
}

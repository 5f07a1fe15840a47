package main

import (
	"encoding/binary"
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
	case "trunc-open": // then the mode: an open with O_TRUNC drops setuid and setgid bits
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
		if err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		// Asking for the mode alone: a stale one in the kernel's cache shows.
		var st unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, p, 0, unix.STATX_MODE, &st); err != nil {
			return err
		}
		return fmt.Errorf("mode %o", st.Mode&0o7777)
	case "setxattr":
		return unix.Setxattr(p, "user.livefs-test", []byte("v"), 0)
	case "acl-noexec": // an ACL of owner, group and others alone, as a mode of 0644
		return unix.Setxattr(p, "system.posix_acl_access", minimalACL(6, 4, 4), 0)
	case "acl-exec": // and as 0755
		return unix.Setxattr(p, "system.posix_acl_access", minimalACL(7, 5, 5), 0)
	case "utimes":
		return unix.UtimesNano(p, []unix.Timespec{{Sec: 1}, {Sec: 1}})
	case "touch":
		return unix.UtimesNano(p, []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}})
	case "access-w":
		return unix.Access(p, unix.W_OK)
	case "access-r":
		return unix.Access(p, unix.R_OK)
	case "stat":
		var st unix.Stat_t
		return unix.Stat(p, &st)
	case "readdir":
		_, err := os.ReadDir(p)
		return err
	case "chdir":
		return unix.Chdir(p)
	case "exec":
		return exec.Command(p).Run()
	}
	return fmt.Errorf("unknown op %q", op)
}

// minimalACL is a system.posix_acl_access value of the owner, group and
// other entries with those permissions.
func minimalACL(owner, group, other uint16) []byte {
	v := binary.LittleEndian.AppendUint32(nil, 2)
	for _, e := range []struct{ tag, perm uint16 }{{0x01, owner}, {0x04, group}, {0x20, other}} {
		v = binary.LittleEndian.AppendUint16(v, e.tag)
		v = binary.LittleEndian.AppendUint16(v, e.perm)
		v = binary.LittleEndian.AppendUint32(v, 0xffffffff)
	}
	return v
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

// TestPermissions: a writable mount gives a caller what the modes allow
// and refuses the rest, with the errno the kernel's overlayfs gives over
// the same lower. With allow_other the kernel checks (default_permissions):
// nobody works on root's files. Without it, livefs checks: root without
// capabilities (the only caller the kernel lets in besides root with them)
// works on another user's files, which puts it in the same place.
func TestPermissions(t *testing.T) {
	sqfstest.RequireRoot(t)
	sqfstest.RequireTool(t, "setpriv")
	const nobody = 65534
	for _, setup := range []struct {
		name    string
		options []string // livefs mount's
		owner   int      // of the lower tree
		// who runs the operations: nobody, or root without capabilities
		nobody bool
	}{
		{name: "allow_other", options: []string{"-o", "allow_other"}, owner: 0, nobody: true},
		{name: "owner only", owner: 1000},
		{name: "owner only with default_permissions", options: []string{"-o", "default_permissions"}, owner: 1000},
	} {
		t.Run(setup.name, func(t *testing.T) {
			base := t.TempDir()
			for _, d := range []string{base, filepath.Dir(base)} { // reachable by nobody
				if err := os.Chmod(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			lower := filepath.Join(base, "lower")
			for p, mode := range map[string]os.FileMode{
				"etc/secret": 0o600, "etc/public": 0o644, "ro/x": 0o644, "open/rootfile": 0o644, "sticky/rootfile": 0o644,
				"closed/inside": 0o644, "bin/run": 0o755, "bin/norun": 0o744,
			} {
				writeFile(t, filepath.Join(lower, p), "#!/bin/sh\nexit 0\n", mode)
			}
			for d, mode := range map[string]os.FileMode{
				".": 0o755, "etc": 0o755, "ro": 0o755, "open": 0o777, "sticky": 0o777 | os.ModeSticky, "closed": 0o700, "bin": 0o755,
			} {
				if err := os.Chmod(filepath.Join(lower, d), mode); err != nil {
					t.Fatal(err)
				}
			}
			if err := filepath.Walk(lower, func(p string, _ os.FileInfo, err error) error {
				if err != nil {
					return err
				}
				return os.Lchown(p, setup.owner, setup.owner)
			}); err != nil {
				t.Fatal(err)
			}
			for p, mode := range map[string]os.FileMode{"open/setuid": 0o777 | os.ModeSetuid, "open/setgid": 0o777 | os.ModeSetgid} {
				writeFile(t, filepath.Join(lower, p), "#!/bin/sh\nexit 0\n", mode) // after the chown, which would clear the bits
				if err := errors.Join(os.Lchown(filepath.Join(lower, p), setup.owner, setup.owner), os.Chmod(filepath.Join(lower, p), mode)); err != nil {
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
			args := append(append([]string{"mount", "--daemon"}, setup.options...), lower, mounts["livefs"])
			if out, code := runBin(t, args...); code != 0 {
				t.Fatalf("mount: exit %d: %s", code, out)
			}
			umountAtEnd(t, mounts["livefs"])
			sqfstest.Run(t, "mount", "-t", "overlay", "overlay", mounts["overlayfs"], "-o",
				fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, base, base))
			umountAtEnd(t, mounts["overlayfs"])

			who, uid := "root without capabilities", 0
			if setup.nobody {
				who, uid = "nobody", nobody
			}
			run := func(root, op, p, p2 string) string {
				t.Helper()
				cmd := exec.Command("setpriv", "--bounding-set=-all", "--inh-caps=-all", prog, "-test.run=^$")
				cmd.Env = append(os.Environ(), "LIVEFS_PERM_OP="+op, "LIVEFS_PERM_PATH="+filepath.Join(root, p), "LIVEFS_PERM_PATH2="+filepath.Join(root, p2))
				if setup.nobody {
					cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
				}
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("%s %s as %s: %v %s", op, p, who, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			for i, tc := range []struct {
				op, path, path2, want string
			}{
				{"read", "etc/secret", "", "EACCES"},
				{"read", "etc/public", "", "ok"},
				{"write", "etc/public", "", "EACCES"},
				{"truncate", "etc/public", "", "EACCES"},
				{"access-w", "etc/public", "", "EACCES"},
				{"access-r", "etc/public", "", "ok"},
				{"create", "ro/new", "", "EACCES"},
				{"mkdir", "ro/newdir", "", "EACCES"},
				{"unlink", "ro/x", "", "EACCES"},
				{"rename", "ro/x", "open/x", "EACCES"},
				{"chmod", "etc/public", "", "EPERM"},
				{"chown", "etc/public", "", "EPERM"},
				{"utimes", "etc/public", "", "EPERM"},
				{"touch", "etc/public", "", "EACCES"},
				{"setxattr", "etc/public", "", "EACCES"}, // user.* xattrs need write permission
				{"unlink", "sticky/rootfile", "", "EPERM"},
				{"rename", "sticky/rootfile", "open/moved", "EPERM"},
				{"stat", "closed/inside", "", "EACCES"},
				{"readdir", "closed", "", "EACCES"},
				{"chdir", "closed", "", "EACCES"},
				{"exec", "bin/run", "", "ok"},
				{"exec", "bin/norun", "", "EACCES"},
				{"create", "open/mine", "", "ok"},
				{"write", "open/mine", "", "ok"},
				{"chmod", "open/mine", "", "ok"},
				{"chown", "open/mine", "", "ok"},
				{"setxattr", "sticky", "", "EPERM"}, // user.* xattrs of a sticky directory are its owner's
				{"touch", "open/mine", "", "ok"},
				{"create", "sticky/mine", "", "ok"},
				{"unlink", "sticky/mine", "", "ok"},
				{"unlink", "open/rootfile", "", "ok"},
				{"mkdir", "open/sub", "", "ok"},
				{"rename", "open/sub", "open/sub2", "ok"},
				{"readdir", "open", "", "ok"},
				{"trunc-open", "open/setuid", "", "mode 777"},
				{"trunc-open", "open/setgid", "", "mode 777"},
				// Names the kernel has cached in a directory stop working
				// once its search permission is taken away, by ACL or mode.
				{"mkdir", "open/gate", "", "ok"},
				{"create", "open/gate/f", "", "ok"},
				{"stat", "open/gate/f", "", "ok"},
				{"acl-noexec", "open/gate", "", "ok"},
				{"stat", "open/gate/f", "", "EACCES"},
				{"acl-exec", "open/gate", "", "ok"},
				{"stat", "open/gate/f", "", "ok"},
				{"chmod", "open/gate", "", "ok"},
				{"stat", "open/gate/f", "", "EACCES"},
			} {
				name := fmt.Sprintf("#%d %s %s", i, tc.op, tc.path)
				kernel := run(mounts["overlayfs"], tc.op, tc.path, tc.path2)
				got := run(mounts["livefs"], tc.op, tc.path, tc.path2)
				if got != tc.want || kernel != tc.want {
					t.Errorf("%s as %s: livefs %s, overlayfs %s; want %s", name, who, got, kernel, tc.want)
				}
			}
			// What the caller made belongs to the caller, on both.
			for fs, mnt := range mounts {
				var st unix.Stat_t
				if err := unix.Stat(filepath.Join(mnt, "open/mine"), &st); err != nil || st.Uid != uint32(uid) || st.Gid != uint32(uid) {
					t.Errorf("%s open/mine: owner %d:%d, %v; want %d:%d", fs, st.Uid, st.Gid, err, uid, uid)
				}
			}
		})
	}
}

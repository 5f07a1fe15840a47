package liveinit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/livefs/livefs/initramfs"
	"golang.org/x/sys/unix"
)

// serverFileSystems are the server's world's own /proc (it reaches xattrs
// through /proc/self/fd), /sys (the CPUs to make io_uring queues for, the
// fuse module's switch) and /dev (/dev/fuse, and /dev/null for go-fuse's
// splice), which stay with it after the pivot and go at shutdown.
var serverFileSystems = []struct {
	dir, fstype string
	flags       uintptr
}{
	{"proc", "proc", unix.MS_NOSUID | unix.MS_NOEXEC},
	{"sys", "sysfs", unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV},
	{"dev", "devtmpfs", unix.MS_NOSUID | unix.MS_NOEXEC},
}

// startServer starts livefs as a root storage daemon chrooted into
// /memory, serving the bundles and the changes at /memory/union, and
// returns once the mount is live.
func startServer(b *boot) error {
	for _, d := range []string{"bin", unionDir} {
		if err := os.MkdirAll(filepath.Join(memoryDir, d), 0o755); err != nil {
			return err
		}
	}
	for _, m := range serverFileSystems {
		dir := filepath.Join(memoryDir, m.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, dir, m.fstype, m.flags, ""); err != nil {
			return fmt.Errorf("mount %s for the server: %w", m.fstype, err)
		}
	}
	// The server's binary lives in RAM, never on the tree it serves: the
	// initramfs's /init, bound into the server's world without a copy.
	bin := filepath.Join(memoryDir, serverBin)
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/"+initramfs.InitPath, bin, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /init into the server's world: %w", err)
	}
	args := []string{serverName, "mount", "-o", "allow_other", "--changes", b.changes, "--log", console}
	for _, bundle := range b.bundles {
		args = append(args, strings.TrimPrefix(bundle, memoryDir))
	}
	args = append(args, "/"+unionDir)
	b.debugf("server: %s", strings.Join(args, " "))

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cons, err := os.OpenFile(console, os.O_WRONLY, 0)
	if err != nil {
		cons = nil
	}
	cmd := &exec.Cmd{
		Path:       "/" + serverBin, // inside the chroot
		Args:       args,
		Env:        []string{readyEnv + "=3", "PATH=/bin"},
		Dir:        "/",
		ExtraFiles: []*os.File{pw},
		Stdout:     cons,
		Stderr:     cons,
		SysProcAttr: &unix.SysProcAttr{
			Chroot: memoryDir,
			Setsid: true,
		},
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	pw.Close()
	if cons != nil {
		cons.Close()
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(pr).ReadString('\n')
		ready <- strings.TrimSpace(line)
	}()
	select {
	case line := <-ready:
		if line != "ok" {
			cmd.Wait()
			if line == "" {
				line = "it exited before the mount was ready"
			}
			return fmt.Errorf("livefs server: %s", line)
		}
	case <-time.After(serverReady):
		return fmt.Errorf("livefs server: no mount after %v", serverReady)
	}
	// Not waited for: it serves until the shutdown stops it.
	pid := strconv.Itoa(cmd.Process.Pid)
	cmd.Process.Release()
	return os.WriteFile(filepath.Join(memoryDir, serverPID), []byte(pid+"\n"), 0o644)
}

// applyRootcopy copies livefs/rootcopy over the union (into the changes
// layer, as Slax does), then lets go of the medium if it is no longer
// needed (livefs.toram with changes in RAM).
func applyRootcopy(b *boot) error {
	src := filepath.Join(b.tree, "rootcopy")
	if st, err := os.Stat(src); err == nil && st.IsDir() {
		if err := copyTree(src, filepath.Join(memoryDir, unionDir)); err != nil {
			return err
		}
		b.note = append(b.note, "copied "+strings.TrimPrefix(src, filepath.Join(memoryDir, mediumDir))+" over the root")
	}
	if b.params.ToRAM && !strings.HasPrefix(b.changes, "/"+mediumDir+"/") {
		if err := unix.Unmount(filepath.Join(memoryDir, mediumDir), 0); err != nil {
			return fmt.Errorf("livefs.toram: releasing %s: %w", b.medium, err)
		}
		b.note = append(b.note, "bundles copied to RAM (livefs.toram): "+b.medium+" may be removed")
	}
	return nil
}

// copyTree copies src over dst recursively, keeping modes, owners, times
// and symbolic links; existing directories are merged, files replaced.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat data", path)
		}
		switch {
		case rel == "." && d.IsDir():
			// dst itself (the union's root) keeps its own metadata.
			return os.MkdirAll(dst, 0o755)
		case d.IsDir():
			if err := os.Mkdir(to, info.Mode().Perm()); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			os.Remove(to)
			if err := os.Symlink(target, to); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			if err := copyFile(path, to); err != nil {
				return err
			}
		default:
			os.Remove(to)
			if err := unix.Mknod(to, st.Mode, int(st.Rdev)); err != nil {
				return fmt.Errorf("mknod %s: %w", to, err)
			}
		}
		if err := unix.Lchown(to, int(st.Uid), int(st.Gid)); err != nil {
			return fmt.Errorf("chown %s: %w", to, err)
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			if err := unix.Chmod(to, st.Mode&0o7777); err != nil {
				return fmt.Errorf("chmod %s: %w", to, err)
			}
		}
		ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, to, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// copyFile copies a regular file's content and mode.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	os.Remove(dst)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

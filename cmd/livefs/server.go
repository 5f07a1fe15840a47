package main

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// A mounted server records its pid under the device number of its mount,
// so that an unmount (livefs umount, or umount(8) through the
// umount.fuse.livefs helper) can wait for it to exit: the kernel answers
// umount(2) before the server has noticed, and until it exits it holds
// files on its branches and changes directory.

func serverRecordDir() string {
	if os.Geteuid() == 0 {
		return "/run/livefs"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "livefs")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("livefs-%d", os.Geteuid()))
}

func serverRecordPath(dev uint64) string {
	return filepath.Join(serverRecordDir(), fmt.Sprintf("mount-%d:%d.pid", unix.Major(dev), unix.Minor(dev)))
}

// recordServer writes this process's pid for the mount at mountpoint and
// returns the function that removes the record. Failing to record only
// costs the unmount its wait, so it is logged, not fatal.
func recordServer(mountpoint string, logger *log.Logger) func() {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		logger.Printf("livefs: recording the server of %s: %v", mountpoint, err)
		return func() {}
	}
	p := serverRecordPath(st.Dev)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		logger.Printf("livefs: recording the server of %s: %v", mountpoint, err)
		return func() {}
	}
	tmp := fmt.Sprintf("%s.%d.tmp", p, os.Getpid())
	pid := strconv.Itoa(os.Getpid())
	if err := os.WriteFile(tmp, []byte(pid+"\n"), 0o644); err == nil {
		err = os.Rename(tmp, p)
	}
	return func() {
		// Only our own record: a later mount may have reused the device number.
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == pid {
			os.Remove(p)
		}
	}
}

// serverProcess is the server of a mount, held by a pidfd so that a reused
// pid cannot be mistaken for it; fd is -1 when it is unknown.
type serverProcess struct {
	pid, fd int
}

// findServer looks up the recorded server of the mount at mountpoint.
func findServer(mountpoint string) serverProcess {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return serverProcess{fd: -1}
	}
	b, err := os.ReadFile(serverRecordPath(st.Dev))
	if err != nil {
		return serverProcess{fd: -1}
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return serverProcess{fd: -1}
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return serverProcess{pid: pid, fd: -1}
	}
	return serverProcess{pid: pid, fd: fd}
}

// wait reports whether the server exited within timeout (true when there
// is no server to wait for).
func (s serverProcess) wait(timeout time.Duration) bool {
	if s.fd < 0 {
		return true
	}
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		fds := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}

func (s serverProcess) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
	}
}

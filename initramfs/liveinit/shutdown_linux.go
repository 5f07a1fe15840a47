package liveinit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	killGrace   = 3 * time.Second
	serverGrace = 15 * time.Second
)

// Shutdown is /run/initramfs/shutdown: systemd-shutdown executes it as
// PID 1 after moving back into /run/initramfs (argument: poweroff, reboot,
// halt or kexec), and other inits may execute it directly from the
// union. It stops every process but root storage daemons, asks the livefs
// server to flush and exit, releases the boot medium and then powers off
// or reboots. It returns only on failure to do the last.
func Shutdown(args []string) error {
	verb := "poweroff"
	if len(args) > 0 {
		verb = args[0]
	}
	say := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "livefs shutdown: "+format+"\n", a...) }
	// Leave the union for the old root, which is all in RAM.
	if _, err := os.Stat(filepath.Join(memoryDir, serverPID)); err != nil {
		if err := os.Chdir("/" + oldRootDir); err != nil {
			return fmt.Errorf("no %s: was the system booted by the livefs init? %w", "/"+oldRootDir, err)
		}
		if err := unix.Chroot("."); err != nil {
			return err
		}
		os.Chdir("/")
	}
	if os.Getpid() == 1 {
		stopProcesses(say)
	}
	unix.Sync()
	if err := stopServer(); err != nil {
		say("%v", err)
	}
	unix.Sync()
	for _, m := range serverFileSystems {
		unix.Unmount(filepath.Join(memoryDir, m.dir), unix.MNT_DETACH)
	}
	medium := filepath.Join(memoryDir, mediumDir)
	if err := unix.Unmount(medium, 0); err == nil {
		say("boot medium unmounted cleanly")
	} else if !errors.Is(err, unix.EINVAL) { // EINVAL: not mounted (toram)
		rerr := unix.Mount("", medium, "", unix.MS_REMOUNT|unix.MS_RDONLY, "")
		say("boot medium busy (%v); remounted read-only: %v", err, errOrOK(rerr))
		unix.Unmount(medium, unix.MNT_DETACH)
	}
	unix.Sync()
	cmd := map[string]int{
		"poweroff": unix.LINUX_REBOOT_CMD_POWER_OFF,
		"halt":     unix.LINUX_REBOOT_CMD_HALT,
		"reboot":   unix.LINUX_REBOOT_CMD_RESTART,
		"kexec":    unix.LINUX_REBOOT_CMD_KEXEC,
	}[verb]
	if cmd == 0 {
		cmd = unix.LINUX_REBOOT_CMD_POWER_OFF
	}
	say("%s", verb)
	return unix.Reboot(cmd)
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// stopServer asks the livefs server to flush its changes layer and exit
// (SIGUSR1; it ignores the signals a shutdown's kill-all sends) and waits
// for it, bounded.
func stopServer() error {
	data, err := os.ReadFile(filepath.Join(memoryDir, serverPID))
	if err != nil {
		return fmt.Errorf("no server to stop: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", serverPID, err)
	}
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		return fmt.Errorf("stopping the livefs server (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(serverGrace)
	for time.Now().Before(deadline) {
		reapAll()
		if unix.Kill(pid, 0) != nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("the livefs server (pid %d) did not exit within %v", pid, serverGrace)
}

// stopProcesses sends TERM, then KILL, to every process but this one,
// kernel threads and root storage daemons (argv[0] starting with '@').
func stopProcesses(say func(string, ...any)) {
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGKILL} {
		pids := otherProcesses()
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			unix.Kill(pid, sig)
		}
		deadline := time.Now().Add(killGrace)
		for time.Now().Before(deadline) && len(otherProcesses()) > 0 {
			reapAll()
			time.Sleep(20 * time.Millisecond)
		}
	}
	if left := otherProcesses(); len(left) > 0 {
		say("processes still running: %v", left)
	}
}

// procDir is a mounted /proc: the system's when systemd-shutdown brought
// it along, else the server's own in /memory.
func procDir() string {
	if _, err := os.Stat("/proc/self"); err == nil {
		return "/proc"
	}
	return filepath.Join(memoryDir, "proc")
}

func otherProcesses() []int {
	proc := procDir()
	entries, _ := os.ReadDir(proc)
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == 1 {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil || len(cmdline) == 0 || cmdline[0] == '@' {
			continue // kernel thread, gone, or a root storage daemon
		}
		if st, err := os.ReadFile(filepath.Join(proc, e.Name(), "stat")); err == nil {
			if i := bytes.LastIndexByte(st, ')'); i > 0 && i+2 < len(st) && st[i+2] == 'Z' {
				reapAll()
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}

// reapAll collects exited children (as PID 1, every orphan is ours).
func reapAll() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

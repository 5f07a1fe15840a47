package liveinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Where things live once the init has moved into its tmpfs. /memory is the
// server's whole world (it is chrooted there): the medium, the changes, the
// bundles copied to RAM and the union's mount point. pivot_root changes the
// root only of processes whose root is the old root, so the server keeps
// working through its own paths after the pivot and never needs a path
// inside the tree it serves.
const (
	memoryDir   = "/memory"
	mediumDir   = "data"  // under memoryDir: the boot medium
	unionDir    = "union" // under memoryDir: the served root
	ramChanges  = "changes"
	toramDir    = "toram"
	serverBin   = "bin/livefs"
	serverPID   = "livefs.pid"
	serverName  = "@livefs" // systemd's mark of a root storage daemon
	oldRootDir  = "run/initramfs"
	console     = "/dev/console"
	readyEnv    = "LIVEFS_DAEMON_READY_FD"
	serverReady = 60 * time.Second
)

// boot is the state the init's steps share.
type boot struct {
	params  Params
	start   time.Time
	out     io.Writer
	medium  string // the device the medium is on
	fsType  string
	tree    string // the livefs tree, absolute in the init's view
	bundles []string
	changes string // changes directory, as the server sees it ("" = none)
	modules *modules
	note    []string
}

// step is one stage of the boot, run in order.
type step struct {
	name string
	run  func(*boot) error
}

var steps = []step{
	{"mount /proc, /sys and /dev", mountKernelFS},
	{"read the boot line", readParams},
	{"leave the initramfs", leaveRootfs},
	{"load kernel modules", loadModules},
	{"find the boot medium", findMedium},
	{"choose the changes layer", chooseChanges},
	{"choose the bundles", chooseBundles},
	{"start the livefs server", startServer},
	{"copy rootcopy", applyRootcopy},
	{"switch to the union", pivotIntoUnion},
}

// Main runs the init. It never returns: it executes the real init, or on
// failure reports and drops to a rescue shell or waits.
func Main() {
	b := &boot{start: time.Now(), out: os.Stderr, params: Params{Wait: DefaultWait, Init: "/sbin/init"}}
	for _, s := range steps {
		t := time.Now()
		if err := b.runStep(s); err != nil {
			b.fail(s.name, err)
		}
		b.debugf("%s: %v", s.name, time.Since(t).Round(time.Millisecond))
	}
	b.fail("exec init", errors.New("the last step returned"))
}

// runStep runs one step; a panic is a failure like any other, since PID 1
// exiting would panic the kernel with nothing said.
func (b *boot) runStep(s step) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
		}
	}()
	return s.run(b)
}

func (b *boot) printf(format string, args ...any) {
	fmt.Fprintf(b.out, "livefs: "+format+"\n", args...)
}

func (b *boot) debugf(format string, args ...any) {
	if b.params.Debug {
		b.printf(format, args...)
	}
}

// fail reports a failed step and never returns: PID 1 must not exit.
func (b *boot) fail(stepName string, err error) {
	b.printf("boot failed: %s: %v", stepName, err)
	for _, shell := range []string{"/bin/sh", "/bin/busybox"} {
		if _, serr := os.Stat(shell); serr == nil {
			b.printf("starting a rescue shell (%s); the boot does not continue when it exits", shell)
			args := []string{shell}
			if strings.HasSuffix(shell, "busybox") {
				args = append(args, "sh")
			}
			cmd := exec.Command(shell, args[1:]...)
			cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
			cmd.Run()
			break
		}
	}
	b.printf("no rescue shell in the initramfs: waiting (add --shell to 'livefs initramfs build' for one)")
	for {
		var ws unix.WaitStatus
		unix.Wait4(-1, &ws, 0, nil)
		time.Sleep(time.Minute)
	}
}

func mountKernelFS(b *boot) error {
	for _, m := range []struct{ src, dir, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
	} {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		flags := uintptr(unix.MS_NOSUID | unix.MS_NOEXEC)
		if m.dir == "/dev" {
			flags = unix.MS_NOSUID // as every init mounts it
		}
		if err := unix.Mount(m.src, m.dir, m.fstype, flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.dir, err)
		}
	}
	// Without /dev/console in the archive the kernel gives init no
	// standard streams; take the console now.
	if _, err := unix.FcntlInt(2, unix.F_GETFD, 0); err != nil {
		if fd, err := unix.Open(console, unix.O_RDWR, 0); err == nil {
			for i := 0; i < 3; i++ {
				unix.Dup2(fd, i)
			}
		}
	}
	return nil
}

func readParams(b *boot) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	p, err := ParseParams(string(cmdline))
	if err != nil {
		return err
	}
	b.params = p
	return nil
}

// leaveRootfs makes the root a bind mount of the initramfs instead of the
// initramfs (rootfs) itself, which pivot_root refuses to move since it has
// no parent mount. switch_root copies the files into a tmpfs for that;
// a bind mount does the same without copying or doubling their RAM.
// /memory, the server's world, is a tmpfs of its own.
func leaveRootfs(b *boot) error {
	const newRoot = "/newroot"
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("/", newRoot, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the initramfs: %w", err)
	}
	for _, dir := range []string{"/proc", "/sys", "/dev"} {
		if err := unix.Mount(dir, newRoot+dir, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s: %w", dir, err)
		}
	}
	if err := os.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move the bind mount to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	if err := os.MkdirAll(memoryDir, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", memoryDir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on %s: %w", memoryDir, err)
	}
	return nil
}

// pivotIntoUnion makes the union the root, with the old root at
// /run/initramfs for the shutdown, and executes the real init.
func pivotIntoUnion(b *boot) error {
	union := filepath.Join(memoryDir, unionDir)
	init := filepath.Join(union, b.params.Init)
	if _, err := os.Stat(init); err != nil {
		return fmt.Errorf("no %s in the union of %s: %w", b.params.Init, strings.Join(b.bundles, ", "), err)
	}
	// The initramfs's modules stay in RAM until shutdown otherwise; the
	// system loads its own from here on.
	os.RemoveAll("/lib/modules")
	// /run is a tmpfs on every modern system; mounting it here keeps the
	// old root's mount point out of the changes layer.
	run := filepath.Join(union, "run")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", run, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mount tmpfs on /run: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(union, oldRootDir), 0o700); err != nil {
		return err
	}
	for _, dir := range []string{"/proc", "/sys", "/dev"} {
		target := filepath.Join(union, dir)
		if err := os.MkdirAll(target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(dir, target, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move %s into the union: %w", dir, err)
		}
	}
	if err := os.Chdir(union); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", oldRootDir); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := os.Chdir("/"); err != nil {
		return err
	}
	b.printf("root is the union of %d bundles (%s); changes %s; starting %s %.2f s after the kernel started",
		len(b.bundles), b.medium, b.changesWhere(), b.params.Init, uptime())
	for _, n := range b.note {
		b.printf("%s", n)
	}
	argv := append([]string{b.params.Init}, b.params.InitArgs...)
	return unix.Exec(b.params.Init, argv, os.Environ())
}

func (b *boot) changesWhere() string {
	if b.changes == "/"+ramChanges {
		return "in RAM"
	}
	return "kept in " + strings.TrimPrefix(b.changes, "/"+mediumDir+"/") + " on " + b.medium
}

// uptime is the time since the kernel started, in seconds.
func uptime() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) != nil {
		return 0
	}
	return float64(ts.Sec) + float64(ts.Nsec)/1e9
}

// Command livedemo boots the demo live system: Debian's kernel in QEMU
// with the livefs initramfs, its root served by livefs from two bundles on
// an ext4 medium. On a terminal it gives a shell on the serial console;
// otherwise it boots twice with persistent changes (write, then check) and
// prints what the guest saw. Run by scripts/demo.sh.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/term"

	"github.com/livefs/livefs/internal/livetest"
)

func main() {
	dir := flag.String("dir", "/tmp/livefs-demo", "work directory (kernel cache, initramfs, disk)")
	interactive := flag.Bool("shell", term.IsTerminal(0), "give a shell on the live system's console")
	flag.Parse()
	if err := run(*dir, *interactive); err != nil {
		fmt.Fprintln(os.Stderr, "livedemo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("== "+format+"\n", args...) }

func run(dir string, interactive bool) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	step("Debian's kernel package (apt-get download, dpkg -x)")
	k, err := livetest.DebianKernel(dir)
	if err != nil {
		return err
	}
	fmt.Println("kernel", k.Version)
	livefs := filepath.Join(dir, "livefs")
	step("building a static livefs")
	if err := livetest.BuildLivefs(".", livefs); err != nil {
		return err
	}
	initrd := filepath.Join(dir, "initrd.img")
	step("livefs initramfs build")
	cmd := exec.Command(livefs, "initramfs", "build", "-o", initrd, "--kernel", k.Version, "--modules-dir", k.ModulesDir, "--shell", "/bin/busybox")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return err
	}
	medium := filepath.Join(dir, "medium")
	os.RemoveAll(medium)
	step("the medium: livefs/modules/01-core.sb (busybox), 02-extra.sb, livefs/rootcopy; ext4 image via mkfs.ext4 -d")
	if err := livetest.MakeMedium(medium, "/bin/busybox"); err != nil {
		return err
	}
	disk := filepath.Join(dir, "disk.img")
	if err := livetest.MakeDisk(medium, disk); err != nil {
		return err
	}
	boot := func(args string) (*livetest.Result, error) {
		m := &livetest.Machine{Kernel: k, Initrd: initrd, Disk: disk, Console: os.Stdout,
			Cmdline: "console=ttyS0 panic=-1 quiet livefs.changes=persistent " + args}
		if interactive {
			m.Stdin = os.Stdin
			m.Timeout = 24 * time.Hour
		}
		step("qemu-system-x86_64 -accel %s -append %q", livetest.Accel(k), m.Cmdline)
		return m.Boot()
	}
	if interactive {
		_, err := boot("test.do=shell")
		return err
	}
	first, err := boot("test.do=write")
	if err != nil {
		return err
	}
	second, err := boot("test.do=check")
	if err != nil {
		return err
	}
	step("what the guest saw")
	fmt.Printf("root file system: %s; overlay/aufs/squashfs in /proc/filesystems: %q\n", first.Values["root"], first.Values["kernel-fs"])
	fmt.Printf("kernel start to /sbin/init: %s s and %s s (QEMU %s)\n", first.Values["uptime"], second.Values["uptime"], livetest.Accel(k))
	fmt.Printf("a file written in the first boot, after a reboot: %s\n", second.Values["data"])
	if second.Values["data"] != "intact" {
		return fmt.Errorf("persistent changes were not kept")
	}
	return nil
}

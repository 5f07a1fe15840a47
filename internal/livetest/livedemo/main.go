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
	"regexp"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/livefs/livefs/internal/livetest"
)

func main() {
	dir := flag.String("dir", "/tmp/livefs-demo", "work directory (kernel cache, initramfs, disk)")
	interactive := flag.Bool("shell", term.IsTerminal(0), "give a shell on the live system's console")
	boots := flag.Int("time", 0, "instead: boot N times and print a table of boot times (bench/boot.sh)")
	flag.Parse()
	if *boots > 0 {
		*interactive = false
	}
	if err := run(*dir, *interactive, *boots); err != nil {
		fmt.Fprintln(os.Stderr, "livedemo:", err)
		os.Exit(1)
	}
}

func step(format string, args ...any) { fmt.Printf("== "+format+"\n", args...) }

func run(dir string, interactive bool, timeBoots int) error {
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
	if timeBoots > 0 {
		return timeBoot(k, initrd, disk, timeBoots)
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

// timeBoot boots n times (RAM changes) and prints, per boot, the kernel's
// time to start /init and the init's time to /sbin/init, with the init's
// steps (livefs.debug).
func timeBoot(k *livetest.Kernel, initrd, disk string, n int) error {
	runInit := regexp.MustCompile(`\[ *([0-9.]+)\] Run /init as init process`)
	started := regexp.MustCompile(`starting /sbin/init ([0-9.]+) s after the kernel started`)
	stepTime := regexp.MustCompile(`^livefs: ([a-z /,]+): ([0-9.]+m?s)$`)
	fmt.Printf("| boot | kernel to /init (s) | kernel to /sbin/init (s) | init's steps |\n|---|---|---|---|\n")
	for i := 1; i <= n; i++ {
		m := &livetest.Machine{Kernel: k, Initrd: initrd, Disk: disk, Cmdline: "console=ttyS0 panic=-1 livefs.debug test.do=none"}
		res, err := m.Boot()
		if err != nil {
			return err
		}
		var kinit, sinit string
		if g := runInit.FindStringSubmatch(res.Console); g != nil {
			kinit = g[1]
		}
		if g := started.FindStringSubmatch(res.Console); g != nil {
			sinit = g[1]
		}
		var steps []string
		for _, line := range strings.Split(res.Console, "\n") {
			if g := stepTime.FindStringSubmatch(strings.TrimSpace(line)); g != nil {
				steps = append(steps, g[1]+" "+g[2])
			}
		}
		fmt.Printf("| %d | %s | %s | %s |\n", i, kinit, sinit, strings.Join(steps, "; "))
	}
	fmt.Printf("\nQEMU %s, 1 vCPU, 512 MiB; kernel %s\n", livetest.Accel(k), k.Version)
	return nil
}

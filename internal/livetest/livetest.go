// Package livetest builds a live system for livefs and boots it in QEMU:
// Debian's kernel package, an initramfs from `livefs initramfs build`, a
// busybox userland in bundles and an ext4 medium built without loop
// mounts. The live-boot tests and the demo share it.
package livetest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Version    string // 6.1.0-56-amd64
	Image      string // vmlinuz
	ModulesDir string
}

// DebianKernel fetches Debian's current kernel package (apt-get download,
// dpkg -x; no kernel build) into cacheDir, once.
func DebianKernel(cacheDir string) (*Kernel, error) {
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64: %w", err)
	}
	var pkg string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
			break
		}
	}
	if pkg == "" {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64 names no kernel package:\n%s", out)
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(cacheDir, pkg)
	k := &Kernel{Version: version, Image: filepath.Join(dir, "boot", "vmlinuz-"+version),
		ModulesDir: filepath.Join(dir, "lib", "modules", version)}
	if _, err := os.Stat(k.Image); err == nil {
		return k, nil
	}
	dl, err := os.MkdirTemp(cacheDir, ".download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dl)
	cmd := exec.Command("apt-get", "download", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %v\n%s", pkg, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(debs))
	}
	unpack := filepath.Join(dl, "root")
	if out, err := exec.Command("dpkg", "-x", debs[0], unpack).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg -x %s: %v\n%s", debs[0], err, out)
	}
	os.RemoveAll(dir)
	if err := os.Rename(unpack, dir); err != nil {
		return nil, err
	}
	return k, nil
}

// BuildLivefs builds a static livefs binary (the initramfs has no C
// library) from the module at root.
func BuildLivefs(root, out string) error {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(gobin, "build", "-ldflags=-s -w", "-o", out, "./cmd/livefs") // stripped: a smaller initramfs unpacks faster
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, b)
	}
	return nil
}

// GuestInit is /sbin/init of the test system: it reports what it sees as
// "T: key=value" lines on the console, does what test.do= on the boot
// line asks, and shuts down through the livefs shutdown.
const GuestInit = `#!/bin/sh
export PATH=/bin:/sbin
t() { echo "T: $1=$2"; }
t uptime "$(cut -d' ' -f1 /proc/uptime)"
t pid "$$"
t root "$(awk '$2=="/"{t=$3} END{print t}' /proc/mounts)"
t kernel-fs "$(grep -E 'overlay|aufs|squashfs' /proc/filesystems | awk '{print $NF}' | tr '\n' ' ')"
t core "$(cat /etc/core.txt)"
t extra "$(cat /etc/extra.txt 2>/dev/null || echo absent)"
t optional "$(cat /etc/optional.txt 2>/dev/null || echo absent)"
t removed "$([ -e /etc/removed.txt ] && echo present || echo absent)"
t rootcopy "$(cat /etc/rootcopy.txt 2>/dev/null || echo absent)"
t setuid "$(stat -c %a /bin/setuid-probe)"
t medium "$(grep -q ' /run/initramfs/memory/data ' /proc/mounts && echo mounted || echo unmounted)"
rm -f /tmp/w1 /tmp/w2 /tmp/w3
echo w > /tmp/w1 && mv /tmp/w1 /tmp/w2 && ln /tmp/w2 /tmp/w3 && rm /tmp/w2 && t write "$(cat /tmp/w3)"
for a in $(cat /proc/cmdline); do case $a in test.do=*) do=${a#test.do=};; esac; done
case $do in
write)
  dd if=/dev/urandom of=/root/data bs=64k count=64 2>/dev/null
  md5sum /root/data > /root/data.md5
  t data "written"
  ;;
check)
  if [ ! -f /root/data ]; then t data missing
  elif md5sum -c /root/data.md5 >/dev/null 2>&1; then t data intact
  else t data corrupt; fi
  ;;
shell)
  echo "A shell on the live system (root is livefs over FUSE). Leave it to power off."
  setsid cttyhack sh
  ;;
esac
t done yes
exec /run/initramfs/shutdown poweroff
`

// MakeMedium writes the tree of a boot medium into dir: livefs/modules
// with 01-core.sb (busybox, GuestInit) and 02-extra.sb (adds
// /etc/extra.txt, whites out /etc/removed.txt), livefs/optional with
// 03-optional.sb (adds /etc/optional.txt), and livefs/rootcopy.
func MakeMedium(dir, busybox string) error {
	core := filepath.Join(dir, ".build", "core")
	extra := filepath.Join(dir, ".build", "extra")
	optional := filepath.Join(dir, ".build", "optional")
	defer os.RemoveAll(filepath.Join(dir, ".build"))
	for _, d := range []string{"bin", "sbin", "etc", "proc", "sys", "dev", "run", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(core, d), 0o755); err != nil {
			return err
		}
	}
	syscall.Chmod(filepath.Join(core, "tmp"), 0o1777)
	os.Chmod(filepath.Join(core, "root"), 0o700)
	data, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(core, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w", busybox, err)
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" {
			os.Symlink("busybox", filepath.Join(core, "bin", applet))
		}
	}
	files := map[string]struct {
		content string
		mode    os.FileMode
	}{
		filepath.Join(core, "sbin", "init"):                             {GuestInit, 0o755},
		filepath.Join(core, "etc", "core.txt"):                          {"core\n", 0o644},
		filepath.Join(core, "etc", "removed.txt"):                       {"whited out by 02-extra\n", 0o644},
		filepath.Join(core, "bin", "setuid-probe"):                      {"", 0o755},
		filepath.Join(extra, "etc", "extra.txt"):                        {"extra\n", 0o644},
		filepath.Join(extra, "etc", ".wh.removed.txt"):                  {"", 0o644},
		filepath.Join(optional, "etc", "optional.txt"):                  {"optional\n", 0o644},
		filepath.Join(dir, "livefs", "rootcopy", "etc", "rootcopy.txt"): {"rootcopy\n", 0o644},
	}
	for name, f := range files {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(name, []byte(f.content), f.mode); err != nil {
			return err
		}
	}
	if err := syscall.Chmod(filepath.Join(core, "bin", "setuid-probe"), 0o4755); err != nil { // os.Chmod wants os.ModeSetuid
		return err
	}
	modules := filepath.Join(dir, "livefs", "modules")
	optionalDir := filepath.Join(dir, "livefs", "optional")
	for _, d := range []string{modules, optionalDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, b := range []struct{ src, dst, comp string }{
		{core, filepath.Join(modules, "01-core.sb"), "xz"},
		{extra, filepath.Join(modules, "02-extra.sb"), "gzip"},
		{optional, filepath.Join(optionalDir, "03-optional.sb"), "zstd"},
	} {
		out, err := exec.Command("mksquashfs", b.src, b.dst, "-comp", b.comp,
			"-all-root", "-noappend", "-quiet", "-no-progress").CombinedOutput()
		if err != nil {
			return fmt.Errorf("mksquashfs %s: %v\n%s", b.dst, err, out)
		}
	}
	return nil
}

// MakeDisk makes an ext4 image of the medium tree with mkfs.ext4 -d (no
// loop mount).
func MakeDisk(medium, image string) error {
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-L", "LIVEFS", "-d", medium, image, "64M").CombinedOutput()
	if err != nil {
		return fmt.Errorf("mkfs.ext4 -d %s: %v\n%s", medium, err, out)
	}
	return nil
}

// MakeFATDisk makes a FAT32 image of the medium tree with mkfs.vfat and
// mtools (no loop mount). FAT holds no owners, modes or symlinks: the
// bundles carry those, and persistent changes cannot live there.
func MakeFATDisk(medium, image string) error {
	if err := os.WriteFile(image, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(image, 64<<20); err != nil {
		return err
	}
	if out, err := exec.Command("mkfs.vfat", "-F", "32", "-n", "LIVEFAT", image).CombinedOutput(); err != nil {
		return fmt.Errorf("mkfs.vfat: %v\n%s", err, out)
	}
	cmd := exec.Command("mcopy", "-s", "-i", image, filepath.Join(medium, "livefs"), "::/")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("mcopy: %v\n%s", err, out)
	}
	return nil
}

// Machine is one QEMU boot.
type Machine struct {
	Kernel  *Kernel
	Initrd  string
	Disk    string // "" for none
	Cmdline string
	// Console, if set, receives the serial console as it comes.
	Console io.Writer
	// Stdin, if set, is the serial console's input (an interactive demo).
	Stdin   io.Reader
	Timeout time.Duration
	// Until, if set, ends the boot (killing QEMU) when it returns true for
	// a line of console output.
	Until func(line string) bool
}

// Result is what a boot printed.
type Result struct {
	Console string
	Values  map[string]string // T: key=value lines of GuestInit
	Elapsed time.Duration
}

var (
	accelOnce sync.Once
	accel     string
)

// Accel picks QEMU's accelerator: KVM when /dev/kvm exists and a probe
// boot shows kernel output within seconds (KVM can hang on nested hosts),
// else TCG. LIVEFS_QEMU_ACCEL=tcg|kvm overrides.
func Accel(k *Kernel) string {
	accelOnce.Do(func() {
		accel = os.Getenv("LIVEFS_QEMU_ACCEL")
		if accel != "" {
			return
		}
		accel = "tcg"
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err == nil {
			f.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(k, "kvm", "", "", "console=ttyS0 panic=-1")...)
			var out bytes.Buffer
			cmd.Stdout = &out
			cmd.Run()
			if strings.Contains(out.String(), "Linux version") {
				accel = "kvm"
			}
		}
	})
	return accel
}

func qemuArgs(k *Kernel, accel, initrd, disk, cmdline string) []string {
	args := []string{"-nodefaults", "-no-user-config", "-machine", "pc", "-accel", accel,
		"-m", "512", "-smp", "1", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", k.Image, "-append", cmdline}
	if initrd != "" {
		args = append(args, "-initrd", initrd)
	}
	if disk != "" {
		args = append(args, "-drive", "file="+disk+",if=virtio,format=raw")
	}
	return args
}

// Boot runs the machine until it powers off, Until matches or the
// timeout passes (an error).
func (m *Machine) Boot() (*Result, error) {
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", qemuArgs(m.Kernel, Accel(m.Kernel), m.Initrd, m.Disk, m.Cmdline)...)
	if m.Stdin != nil {
		cmd.Stdin = m.Stdin
	}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	res := &Result{Values: map[string]string{}}
	var console strings.Builder
	stopped := false
	r := bufio.NewReader(pipe)
	for {
		line, err := r.ReadString('\n')
		console.WriteString(line)
		if m.Console != nil {
			io.WriteString(m.Console, line)
		}
		clean := strings.TrimRight(line, "\r\n")
		if kv, ok := strings.CutPrefix(clean, "T: "); ok {
			if k, v, ok := strings.Cut(kv, "="); ok {
				res.Values[k] = v
			}
		}
		if m.Until != nil && m.Until(clean) {
			stopped = true
			cmd.Process.Kill()
			break
		}
		if err != nil {
			break
		}
	}
	werr := cmd.Wait()
	res.Elapsed = time.Since(start)
	res.Console = console.String()
	switch {
	case stopped:
		return res, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("no power-off within %v", timeout)
	case werr != nil:
		return res, fmt.Errorf("qemu: %v: %s", werr, stderr.String())
	}
	return res, nil
}

package initramfs_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/livefs/livefs/internal/livetest"
	"github.com/livefs/livefs/internal/sqfstest"
)

// liveSystem is a built live system: kernel, initramfs, medium.
type liveSystem struct {
	kernel *livetest.Kernel
	initrd string // with a rescue shell
	bare   string // without one: failures wait
	disk   string
	fat    string // the same medium on FAT32
	dir    string
}

func buildLiveSystem(t *testing.T) *liveSystem {
	t.Helper()
	sqfstest.RequireRoot(t)
	for _, tool := range []string{"qemu-system-x86_64", "mksquashfs", "mkfs.ext4", "mkfs.vfat", "mcopy", "apt-get", "apt-cache", "dpkg"} {
		sqfstest.RequireTool(t, tool)
	}
	busybox := staticBusybox(t)
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cache = filepath.Join(cache, "livefs-test")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	k, err := livetest.DebianKernel(cache)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &liveSystem{kernel: k, dir: dir, initrd: filepath.Join(dir, "initrd.img"),
		bare: filepath.Join(dir, "initrd-bare.img"), disk: filepath.Join(dir, "disk.img"), fat: filepath.Join(dir, "fat.img")}
	livefs := filepath.Join(dir, "livefs")
	if err := livetest.BuildLivefs("..", livefs); err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		out  string
		args []string
	}{{s.initrd, []string{"--shell", busybox}}, {s.bare, nil}} {
		args := append([]string{"initramfs", "build", "-o", b.out, "--kernel", k.Version, "--modules-dir", k.ModulesDir}, b.args...)
		out, err := exec.Command(livefs, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("livefs %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("%s", out)
	}
	medium := filepath.Join(dir, "medium")
	if err := livetest.MakeMedium(medium, busybox); err != nil {
		t.Fatal(err)
	}
	if err := livetest.MakeDisk(medium, s.disk); err != nil {
		t.Fatal(err)
	}
	if err := livetest.MakeFATDisk(medium, s.fat); err != nil {
		t.Fatal(err)
	}
	return s
}

// staticBusybox finds a statically linked busybox (Debian's
// busybox-static) for the guest's userland.
func staticBusybox(t *testing.T) string {
	t.Helper()
	p := sqfstest.RequireTool(t, "busybox")
	out, err := exec.Command("file", "-L", p).Output()
	if err != nil || !strings.Contains(string(out), "statically linked") {
		sqfstest.RequireTool(t, "busybox-static (a statically linked "+p+")")
	}
	return p
}

func (s *liveSystem) boot(t *testing.T, disk, cmdline string) *livetest.Result {
	t.Helper()
	m := &livetest.Machine{Kernel: s.kernel, Initrd: s.initrd, Disk: disk,
		Cmdline: "console=ttyS0 panic=-1 " + cmdline}
	res, err := m.Boot()
	if err != nil {
		t.Fatalf("boot %q: %v\nconsole:\n%s", cmdline, err, res.Console)
	}
	if res.Values["done"] != "yes" {
		t.Fatalf("boot %q: the guest's init did not finish\nconsole:\n%s", cmdline, res.Console)
	}
	return res
}

// TestLiveBoot boots Debian's kernel in QEMU with the livefs initramfs
// and a medium of bundles, through the scenarios a live system meets.
// The scenarios share one disk and run in order.
func TestLiveBoot(t *testing.T) {
	s := buildLiveSystem(t)
	common := map[string]string{
		"root":      "fuse.livefs",
		"kernel-fs": "", // no overlay, aufs or squashfs: only FUSE is used
		"core":      "core",
		"removed":   "absent",
		"rootcopy":  "rootcopy",
		"setuid":    "4755",
		"write":     "w",
		"pid":       "1",
		"optional":  "absent", // livefs/optional is loaded only when asked
	}
	scenarios := []struct {
		name, cmdline string
		want          map[string]string
		fat           bool   // boot from the FAT32 copy of the medium
		console       string // a line the console must show
	}{
		{"ram changes: write", "test.do=write", map[string]string{"data": "written", "extra": "extra", "medium": "mounted"}, false, ""},
		{"ram changes: gone after reboot", "test.do=check", map[string]string{"data": "missing"}, false, ""},
		{"persistent changes: write", "livefs.changes=persistent test.do=write", map[string]string{"data": "written"}, false, ""},
		{"persistent changes: kept", "livefs.changes=persistent test.do=check", map[string]string{"data": "intact"}, false, ""},
		{"persistent changes: clean", "livefs.changes=persistent livefs.clean test.do=check", map[string]string{"data": "missing"}, false, ""},
		{"toram and noload", "livefs.toram livefs.noload=extra test.do=check", map[string]string{"extra": "absent", "medium": "unmounted", "removed": "present"}, false, ""},
		{"by label, with an optional bundle", "livefs.from=LABEL=LIVEFS livefs.load=optional test.do=check",
			map[string]string{"extra": "extra", "optional": "optional"}, false, "livefs: root is the union of 3 bundles"},
		{"FAT medium: changes fall back to RAM", "livefs.from=LABEL=LIVEFAT livefs.changes=persistent test.do=check",
			map[string]string{"extra": "extra", "data": "missing"}, true,
			"livefs: changes are in RAM: /dev/vda (vfat) cannot hold a changes layer"},
	}
	var uptimes []float64
	for _, sc := range scenarios {
		if !t.Run(sc.name, func(t *testing.T) {
			disk := s.disk
			if sc.fat {
				disk = s.fat
			}
			res := s.boot(t, disk, sc.cmdline)
			if sc.console != "" && !strings.Contains(res.Console, sc.console) {
				t.Errorf("console lacks %q", sc.console)
			}
			want := map[string]string{}
			for k, v := range common {
				want[k] = v
			}
			for k, v := range sc.want {
				want[k] = v
			}
			for k, v := range want {
				if got := res.Values[k]; got != v {
					t.Errorf("%s: got %q, want %q", k, got, v)
				}
			}
			// A clean shutdown leaves the medium's journal clean: the
			// next boot replays nothing.
			if strings.Contains(res.Console, "recovery complete") {
				t.Errorf("the medium's journal was replayed: the previous shutdown was not clean")
			}
			if !strings.Contains(res.Console, "boot medium unmounted cleanly") && !strings.Contains(sc.cmdline, "toram") {
				t.Errorf("shutdown did not unmount the medium cleanly")
			}
			if u, err := strconv.ParseFloat(res.Values["uptime"], 64); err == nil {
				uptimes = append(uptimes, u)
			}
			if t.Failed() {
				t.Logf("console:\n%s", res.Console)
			}
		}) {
			break // later scenarios build on the earlier ones
		}
	}
	if len(uptimes) > 0 {
		t.Logf("kernel start to /sbin/init (s, TCG unless KVM works): %v", uptimes)
	}
	t.Run("no medium", s.testNoMedium)
}

// testNoMedium: without the medium the init says what it looked for and
// where, then waits (no rescue shell in this initramfs) instead of letting
// the kernel panic.
func (s *liveSystem) testNoMedium(t *testing.T) {

	waiting := regexp.MustCompile(`livefs: no rescue shell in the initramfs: waiting`)
	m := &livetest.Machine{Kernel: s.kernel, Initrd: s.bare, Cmdline: "console=ttyS0 panic=-1 livefs.wait=2",
		Until: waiting.MatchString}
	res, err := m.Boot()
	if err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, res.Console)
	}
	for _, want := range []string{"boot failed: find the boot medium: no boot medium: looked for any block device holding /livefs/modules for 2s"} {
		if !strings.Contains(res.Console, want) {
			t.Errorf("console lacks %q:\n%s", want, res.Console)
		}
	}
	if strings.Contains(res.Console, "Kernel panic") {
		t.Errorf("kernel panic:\n%s", res.Console)
	}
}

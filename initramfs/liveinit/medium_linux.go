package liveinit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// findMedium waits (bounded) for a block device holding the livefs tree
// and mounts it read-only at /memory/data.
func findMedium(b *boot) error {
	spec := ParseFrom(b.params.From)
	mnt := filepath.Join(memoryDir, mediumDir)
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	deadline := time.Now().Add(b.params.Wait)
	seen := map[string]string{} // device: what was found there
	for {
		// Drivers for devices that appeared since (a USB stick behind a
		// hub that was just probed).
		b.modules.loadForDevices(b)
		for _, dev := range blockDevices() {
			if _, done := seen[dev]; done {
				continue
			}
			found, what := tryMedium(dev, spec, mnt, b.modules)
			seen[dev] = what
			if found {
				b.medium, b.fsType, b.tree = dev, what, filepath.Join(mnt, spec.Dir)
				b.debugf("medium: %s (%s)", dev, what)
				return nil
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
		// A device that had no file system yet may have been half-probed
		// by the kernel; look again at those.
		for dev, what := range seen {
			if what == "no device node" {
				delete(seen, dev)
			}
		}
	}
	var saw []string
	for dev, what := range seen {
		saw = append(saw, dev+" ("+what+")")
	}
	sort.Strings(saw)
	if len(saw) == 0 {
		saw = []string{"no block devices at all (is the disk driver in the initramfs?)"}
	}
	return fmt.Errorf("no boot medium: looked for %s for %v; found %s", spec, b.params.Wait, strings.Join(saw, ", "))
}

// tryMedium mounts dev read-only and checks for the livefs tree; it leaves
// it mounted when the tree is there. what describes the device.
func tryMedium(dev string, spec MediumSpec, mnt string, mods *modules) (found bool, what string) {
	if spec.Device != "" && spec.Device != dev {
		return false, "not " + spec.Device
	}
	f, err := os.Open(dev)
	if err != nil {
		return false, "no device node"
	}
	id, ok := Identify(f)
	f.Close()
	switch {
	case spec.Label != "" && (!ok || id.Label != spec.Label):
		return false, fmt.Sprintf("label %q", id.Label)
	case spec.UUID != "" && (!ok || !strings.EqualFold(id.UUID, spec.UUID)):
		return false, "UUID " + id.UUID
	}
	// The file system's module is loaded when a device has it (or, for
	// one the probe does not know, every file system module).
	if ok {
		mods.loadFileSystem(id.Type)
	} else {
		mods.loadFileSystem("")
	}
	types := blockFSTypes()
	if ok && slices.Contains(types, id.Type) {
		types = []string{id.Type}
	}
	for _, t := range types {
		if unix.Mount(dev, mnt, t, unix.MS_RDONLY|unix.MS_NOATIME, "") != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(mnt, spec.Dir, "modules")); err == nil && st.IsDir() {
			return true, t
		}
		unix.Unmount(mnt, 0)
		return false, t + ", no " + spec.Dir + "/modules"
	}
	return false, "no file system livefs can mount"
}

// blockDevices lists /dev names of the block devices the kernel knows,
// whole disks and partitions, leaving out RAM and loop devices.
func blockDevices() []string {
	entries, _ := os.ReadDir("/sys/class/block")
	var devs []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "zram") {
			continue
		}
		devs = append(devs, "/dev/"+n)
	}
	sort.Strings(devs)
	return devs
}

// blockFSTypes lists the kernel's file systems that live on devices.
func blockFSTypes() []string {
	data, _ := os.ReadFile("/proc/filesystems")
	var types []string
	for _, line := range strings.Split(string(data), "\n") {
		if line == "" || strings.HasPrefix(line, "nodev") {
			continue
		}
		t := strings.TrimSpace(line)
		if t == "fuseblk" {
			continue
		}
		types = append(types, t)
	}
	return types
}

// chooseChanges decides where writes go: RAM, or the medium when asked and
// the medium can hold POSIX files.
func chooseChanges(b *boot) error {
	ram := func(why string) error {
		if why != "" {
			b.note = append(b.note, "changes are in RAM: "+why)
		}
		if err := os.MkdirAll(filepath.Join(memoryDir, ramChanges), 0o755); err != nil {
			return err
		}
		b.changes = "/" + ramChanges
		return nil
	}
	if b.params.Changes == "" {
		return ram("")
	}
	mnt := filepath.Join(memoryDir, mediumDir)
	rel := b.params.Changes
	if rel == "persistent" {
		rel = filepath.Join(strings.TrimPrefix(b.tree, mnt), "changes")
	}
	if err := unix.Mount("", mnt, "", unix.MS_REMOUNT|unix.MS_NOATIME, ""); err != nil {
		return ram(fmt.Sprintf("%s (%s) cannot be written: %v", b.medium, b.fsType, err))
	}
	dir := filepath.Join(mnt, rel)
	if b.params.Clean {
		if err := wipe(dir); err != nil {
			return fmt.Errorf("livefs.clean: %w", err)
		}
		b.note = append(b.note, "persistent changes wiped (livefs.clean)")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return ram(fmt.Sprintf("cannot make %s on %s: %v", rel, b.medium, err))
	}
	if err := checkPOSIX(dir); err != nil {
		return ram(fmt.Sprintf("%s (%s) cannot hold a changes layer: %v", b.medium, b.fsType, err))
	}
	b.changes = filepath.Join("/", mediumDir, rel)
	return nil
}

// wipe empties dir, keeping dir itself.
func wipe(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// checkPOSIX tries what a changes layer needs: owners, modes, symlinks,
// hard links. FAT fails it.
func checkPOSIX(dir string) error {
	probe := filepath.Join(dir, ".livefs-probe")
	defer os.Remove(probe)
	defer os.Remove(probe + ".link")
	defer os.Remove(probe + ".hard")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return err
	}
	if err := unix.Chmod(probe, 0o4751); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Stat(probe, &st); err != nil || st.Mode&0o7777 != 0o4751 {
		return errors.New("modes are not kept")
	}
	if err := os.Lchown(probe, 1, 2); err != nil {
		return fmt.Errorf("owners are not kept: %w", err)
	}
	if err := os.Symlink("x", probe+".link"); err != nil {
		return fmt.Errorf("no symbolic links: %w", err)
	}
	if err := os.Link(probe, probe+".hard"); err != nil {
		return fmt.Errorf("no hard links: %w", err)
	}
	return nil
}

// chooseBundles lists the bundles in name order: modules/*.sb without the
// noload ones, plus optional/*.sb matching load; toram copies them to RAM.
func chooseBundles(b *boot) error {
	list := func(dir string, keep func(string) bool) ([]string, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return nil, err
		}
		var out []string
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".sb") && !e.IsDir() && keep(e.Name()) {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
		return out, nil
	}
	matchAny := func(patterns []string, name string) bool {
		for _, p := range patterns {
			if MatchBundle(p, name) {
				return true
			}
		}
		return false
	}
	bundles, err := list(filepath.Join(b.tree, "modules"), func(n string) bool { return !matchAny(b.params.NoLoad, n) })
	if err != nil {
		return err
	}
	if len(b.params.Load) > 0 {
		extra, err := list(filepath.Join(b.tree, "optional"), func(n string) bool { return matchAny(b.params.Load, n) })
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		bundles = append(bundles, extra...)
	}
	// Name order across both directories: 01-core.sb below 02-xorg.sb.
	sort.Slice(bundles, func(i, j int) bool { return filepath.Base(bundles[i]) < filepath.Base(bundles[j]) })
	if len(bundles) == 0 {
		return fmt.Errorf("no bundles (*.sb) in %s/modules on %s", strings.TrimPrefix(b.tree, filepath.Join(memoryDir, mediumDir)), b.medium)
	}
	if b.params.ToRAM {
		dst := filepath.Join(memoryDir, toramDir)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		for i, src := range bundles {
			to := filepath.Join(dst, filepath.Base(src))
			if err := copyFile(src, to); err != nil {
				return fmt.Errorf("livefs.toram: %w", err)
			}
			bundles[i] = to
		}
	}
	b.bundles = bundles
	return nil
}

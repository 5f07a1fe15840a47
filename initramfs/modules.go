package initramfs

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// DefaultModules are the drivers a live medium may need: FUSE, the usual
// disk, USB and CD controllers, and the file systems a medium is formatted
// with. Names missing from a kernel (built in, or not configured) are
// skipped; names asked for with Options.Modules must exist.
var DefaultModules = []string{
	"fuse",
	"virtio_pci", "virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix", "sd_mod", "sr_mod",
	"xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas", "mmc_block", "sdhci_pci",
	"ext4", "vfat", "isofs", "nls_cp437", "nls_iso8859_1", "nls_utf8", "nls_ascii",
}

// moduleFile is one loadable module found in a modules directory.
type moduleFile struct {
	name    string   // normalised: dashes as underscores
	path    string   // relative to the modules directory
	depends []string // modules it links against (modinfo depends=)
	softPre []string // names or aliases to load first (modinfo softdep=pre:)
	aliases []string
}

// moduleIndex is everything a modules directory offers.
type moduleIndex struct {
	dir     string
	byName  map[string]*moduleFile
	byAlias map[string][]*moduleFile
	builtin map[string]bool
}

func normaliseModule(name string) string { return strings.ReplaceAll(name, "-", "_") }

// ModuleName is a module's name from its file name, with dashes as
// underscores: ext4.ko.xz is ext4; ok is false for a file that is not a
// module.
func ModuleName(path string) (name string, ok bool) {
	base := filepath.Base(path)
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(base, ext) {
			return normaliseModule(strings.TrimSuffix(base, ext)), true
		}
	}
	return "", false
}

// indexModules reads the modinfo of every module under dir (the
// modules.dep a distribution generates at install time is not part of
// its kernel package, so dependencies come from the modules themselves).
func indexModules(dir string) (*moduleIndex, error) {
	idx := &moduleIndex{dir: dir, byName: map[string]*moduleFile{}, byAlias: map[string][]*moduleFile{}, builtin: map[string]bool{}}
	if _, err := os.Stat(filepath.Join(dir, "kernel")); err != nil {
		return nil, fmt.Errorf("modules directory %s: %w", dir, err)
	}
	if f, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if name, ok := ModuleName(strings.TrimSpace(s.Text())); ok {
				idx.builtin[name] = true
			}
		}
		f.Close()
	}
	var paths []string
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if _, ok := ModuleName(path); ok && !d.IsDir() {
			paths = append(paths, path)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Thousands of modules: read their modinfo on every core.
	mods := make([]*moduleFile, len(paths))
	errs := make([]error, len(paths))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < len(paths); i = int(next.Add(1) - 1) {
				mods[i], errs[i] = readModinfo(dir, paths[i])
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, m := range mods {
		idx.byName[m.name] = m
		for _, a := range m.aliases {
			idx.byAlias[a] = append(idx.byAlias[a], m)
		}
	}
	return idx, nil
}

func readModinfo(dir, path string) (*moduleFile, error) {
	image, err := readModule(path)
	if err != nil {
		return nil, err
	}
	m, err := parseModinfo(image)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m.name, _ = ModuleName(path)
	m.path, _ = filepath.Rel(dir, path)
	return m, nil
}

// readModule returns a module's ELF image, decompressed.
func readModule(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(path, ".xz"):
		if r, err = xz.NewReader(f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case strings.HasSuffix(path, ".gz"):
		if r, err = gzip.NewReader(f); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case strings.HasSuffix(path, ".zst"):
		d, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		defer d.Close()
		r = d
	}
	image, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return image, nil
}

// parseModinfo reads the .modinfo section: NUL-separated key=value pairs.
func parseModinfo(image []byte) (*moduleFile, error) {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return nil, fmt.Errorf("not a kernel module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("not a kernel module: no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	m := &moduleFile{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		key, value, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch key {
		case "depends":
			for _, d := range strings.Split(value, ",") {
				if d != "" {
					m.depends = append(m.depends, normaliseModule(d))
				}
			}
		case "softdep":
			// "pre: a b post: c": only what must come first matters here.
			pre := false
			for _, w := range strings.Fields(value) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						m.softPre = append(m.softPre, w)
					}
				}
			}
		case "alias":
			m.aliases = append(m.aliases, value)
		}
	}
	return m, nil
}

// resolve returns the modules providing name: the module of that name, or
// every module with that alias (crypto-crc32c has a generic and a CPU
// specific one; the kernel picks whichever loads).
func (idx *moduleIndex) resolve(name string) []*moduleFile {
	if m := idx.byName[normaliseModule(name)]; m != nil {
		return []*moduleFile{m}
	}
	return idx.byAlias[name]
}

// closure returns the modules to ship for the given names with everything
// they depend on, dependencies first. Names in required must exist (as a
// module or built in); the others are skipped when absent.
func (idx *moduleIndex) closure(required, optional []string) ([]*moduleFile, error) {
	var order []*moduleFile
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(m *moduleFile, chain []string) error
	visit = func(m *moduleFile, chain []string) error {
		switch state[m.name] {
		case 1:
			return fmt.Errorf("module dependency cycle: %s", strings.Join(append(chain, m.name), " -> "))
		case 2:
			return nil
		}
		state[m.name] = 1
		chain = append(chain, m.name)
		for _, d := range m.depends {
			dm := idx.byName[d]
			if dm == nil {
				if idx.builtin[d] {
					continue
				}
				return fmt.Errorf("module %s needs %s, which is not in %s", m.name, d, idx.dir)
			}
			if err := visit(dm, chain); err != nil {
				return err
			}
		}
		// Soft dependencies are best effort: the kernel asks for them by
		// alias at run time, and no modprobe exists to answer.
		for _, s := range m.softPre {
			for _, sm := range idx.resolve(s) {
				if state[sm.name] == 0 {
					if err := visit(sm, chain); err != nil {
						return err
					}
				}
			}
		}
		state[m.name] = 2
		order = append(order, m)
		return nil
	}
	for _, name := range required {
		name = normaliseModule(name)
		ms := idx.resolve(name)
		if len(ms) == 0 {
			if idx.builtin[name] {
				continue
			}
			return nil, fmt.Errorf("module %s: not found in %s", name, idx.dir)
		}
		for _, m := range ms {
			if err := visit(m, nil); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range optional {
		for _, m := range idx.resolve(normaliseModule(name)) {
			if err := visit(m, nil); err != nil {
				return nil, err
			}
		}
	}
	return order, nil
}

// depLines renders modules.dep, modules.softdep and modules.alias for the
// shipped modules, in the formats depmod writes, so the init (or any
// modprobe) can read them.
func depLines(mods []*moduleFile, idx *moduleIndex) (dep, softdep, alias string) {
	shipped := map[string]*moduleFile{}
	for _, m := range mods {
		shipped[m.name] = m
	}
	var d, s, a strings.Builder
	// Each line lists every module the first needs, transitively, nearest
	// last to first as depmod does: loading them right to left works.
	for _, m := range mods {
		var all []string
		seen := map[string]bool{}
		var walk func(*moduleFile)
		walk = func(x *moduleFile) {
			for _, dn := range x.depends {
				if dm := shipped[dn]; dm != nil && !seen[dn] {
					seen[dn] = true
					all = append(all, dm.path)
					walk(dm)
				}
			}
		}
		walk(m)
		fmt.Fprintf(&d, "%s:", m.path)
		for _, p := range all {
			fmt.Fprintf(&d, " %s", p)
		}
		d.WriteString("\n")
		var pre []string
		for _, sn := range m.softPre {
			for _, sm := range idx.resolve(sn) {
				if shipped[sm.name] != nil && !slices.Contains(pre, sm.name) {
					pre = append(pre, sm.name)
				}
			}
		}
		if len(pre) > 0 {
			sort.Strings(pre)
			fmt.Fprintf(&s, "softdep %s pre: %s\n", m.name, strings.Join(pre, " "))
		}
		for _, al := range m.aliases {
			fmt.Fprintf(&a, "alias %s %s\n", al, m.name)
		}
	}
	return d.String(), s.String(), a.String()
}

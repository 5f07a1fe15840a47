package liveinit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/livefs/livefs/initramfs"
	"golang.org/x/sys/unix"
)

// modules loads the kernel modules the initramfs ships (modules.dep,
// modules.softdep and modules.alias as depmod writes them): file systems
// and FUSE always, drivers only for the devices present, as udev would.
type modules struct {
	dir     string
	deps    map[string][]string // module path: its dependencies' paths
	byName  map[string]string   // module name: path
	softPre map[string][]string // module name: names to load first
	aliases []moduleAlias
	seen    map[string]bool // modaliases already matched
	debugf  func(string, ...any)

	mu    sync.Mutex
	state map[string]*loadState // by module path
}

// loadState is one module's load, which several loaders may wait for.
type loadState struct {
	done chan struct{}
	err  error
}

type moduleAlias struct{ pattern, name string }

// moduleName is ext4 for kernel/fs/ext4/ext4.ko, named as the builder
// named it in modules.dep.
func moduleName(p string) string {
	name, _ := initramfs.ModuleName(p)
	return name
}

func openModules(dir string) (*modules, error) {
	m := &modules{dir: dir, deps: map[string][]string{}, byName: map[string]string{},
		softPre: map[string][]string{}, state: map[string]*loadState{}, seen: map[string]bool{}}
	err := eachLine(filepath.Join(dir, "modules.dep"), func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		m.deps[mod] = strings.Fields(deps)
		m.byName[moduleName(mod)] = mod
	})
	if err != nil {
		return nil, err
	}
	eachLine(filepath.Join(dir, "modules.softdep"), func(line string) {
		f := strings.Fields(line)
		if len(f) >= 3 && f[0] == "softdep" && f[2] == "pre:" {
			m.softPre[f[1]] = f[3:]
		}
	})
	eachLine(filepath.Join(dir, "modules.alias"), func(line string) {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "alias" {
			m.aliases = append(m.aliases, moduleAlias{f[1], f[2]})
		}
	})
	return m, nil
}

func eachLine(name string, fn func(string)) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fn(s.Text())
	}
	return s.Err()
}

// load loads a module after its soft and hard dependencies, each once;
// it is safe for concurrent use (modules.dep, written by the builder, has
// no cycles).
func (m *modules) load(name string) error {
	p, ok := m.byName[name]
	if !ok {
		return fmt.Errorf("module %s is not in the initramfs", name)
	}
	m.mu.Lock()
	if st, ok := m.state[p]; ok {
		m.mu.Unlock()
		<-st.done
		return st.err
	}
	st := &loadState{done: make(chan struct{})}
	m.state[p] = st
	m.mu.Unlock()
	defer close(st.done)
	for _, pre := range m.softPre[name] {
		m.load(pre) // best effort: a CPU-specific variant may not load
	}
	deps := m.deps[p]
	for i := len(deps) - 1; i >= 0; i-- { // depmod lists the deepest last
		if err := m.load(moduleName(deps[i])); err != nil {
			st.err = fmt.Errorf("%s needs %s: %w", name, moduleName(deps[i]), err)
			return st.err
		}
	}
	t := time.Now()
	st.err = finitModule(filepath.Join(m.dir, p))
	if m.debugf != nil {
		m.debugf("module %s: %v (%v)", name, time.Since(t).Round(time.Millisecond), errOrOK(st.err))
	}
	return st.err
}

// loadAll loads the named modules concurrently: drivers probing their
// devices wait on hardware more than on the CPU.
func (m *modules) loadAll(names []string, b *boot) {
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.load(name); err != nil && b != nil {
				b.printf("module %s: %v", name, err)
			}
		}()
	}
	wg.Wait()
}

func finitModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return err
	}
	return nil
}

// loadForDevices loads the drivers whose aliases match a device's
// modalias, for devices not seen before.
func (m *modules) loadForDevices(b *boot) {
	if m == nil {
		return
	}
	m.loadAll(m.forDevices(), b)
}

// forDevices returns the drivers whose aliases match the modalias of a
// device not seen before.
func (m *modules) forDevices() []string {
	var names []string
	for _, alias := range deviceAliases() {
		if m.seen[alias] {
			continue
		}
		m.seen[alias] = true
		for _, a := range m.aliases {
			if ok, _ := path.Match(a.pattern, alias); ok && !slices.Contains(names, a.name) {
				names = append(names, a.name)
			}
		}
	}
	return names
}

// deviceAliases lists the modalias of every device the kernel knows.
func deviceAliases() []string {
	var out []string
	buses, _ := os.ReadDir("/sys/bus")
	for _, bus := range buses {
		devs, _ := os.ReadDir(filepath.Join("/sys/bus", bus.Name(), "devices"))
		for _, d := range devs {
			data, err := os.ReadFile(filepath.Join("/sys/bus", bus.Name(), "devices", d.Name(), "modalias"))
			if err == nil && len(data) > 1 {
				out = append(out, strings.TrimSpace(string(data)))
			}
		}
	}
	return out
}

// fileSystemModules are the modules of each file system Identify knows;
// FAT also needs the code pages and character sets it mounts with.
var fileSystemModules = map[string][]string{
	"ext4":    {"ext4"},
	"vfat":    {"vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1", "nls_utf8"},
	"iso9660": {"isofs"},
}

// loadFileSystem loads the modules of a file system type, or of every
// file system in the initramfs for "".
func (m *modules) loadFileSystem(fsType string) {
	if m == nil {
		return
	}
	names := fileSystemModules[fsType]
	if fsType == "" {
		for p := range m.deps {
			if strings.HasPrefix(p, "kernel/fs/") {
				names = append(names, moduleName(p))
			}
		}
	}
	var present []string
	for _, n := range names {
		if _, ok := m.byName[n]; ok {
			present = append(present, n)
		}
	}
	m.loadAll(present, nil)
}

// loadModules loads FUSE and the drivers of the devices present;
// findMedium loads drivers for devices that come later and the medium's
// file system.
func loadModules(b *boot) error {
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return err
	}
	release := unix.ByteSliceToString(uts.Release[:])
	m, err := openModules(filepath.Join("/lib/modules", release))
	if errors.Is(err, os.ErrNotExist) {
		b.debugf("no modules for kernel %s in the initramfs", release)
	} else if err != nil {
		return err
	} else {
		b.modules = m
		m.debugf = b.debugf
		names := m.forDevices()
		if _, ok := m.byName["fuse"]; ok {
			names = append(names, "fuse")
		}
		m.loadAll(names, b)
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("no /dev/fuse (is fuse in the initramfs for kernel %s, or built in?): %w", release, err)
	}
	return nil
}

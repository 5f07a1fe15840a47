// Package initramfs builds the initramfs that boots a live system from
// livefs bundles: a compressed newc cpio holding the livefs binary as
// /init (and /shutdown), and the kernel modules the init loads itself.
// The init is package liveinit.
package initramfs

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"
)

// Options say what goes into an initramfs.
type Options struct {
	// KernelVersion is the release the modules are for (uname -r).
	KernelVersion string
	// ModulesDir is the kernel's modules directory; default
	// /lib/modules/KernelVersion.
	ModulesDir string
	// Modules are loaded in addition to DefaultModules; each must exist.
	Modules []string
	// Binary is the livefs executable to ship; it must be statically
	// linked (CGO_ENABLED=0), as nothing else is in the initramfs.
	Binary string
	// Compression is gzip, lz4 (the legacy frame format the kernel reads),
	// zstd, none, or "" for the fastest the kernel's configuration says it
	// can unpack (lz4 unpacks in a third of gzip's time; gzip when the
	// configuration is not found).
	Compression string
	// Shell, if set, is a static busybox shipped as /bin/busybox with
	// /bin/sh: the init's rescue shell when the boot fails.
	Shell string
}

// Report says what Build wrote.
type Report struct {
	Modules     []string // in load order
	Bytes       int64    // compressed size
	Compression string
}

// Layout of the initramfs, shared with the init.
const (
	InitPath     = "init"
	ShutdownPath = "shutdown"
)

// Build writes the initramfs to w.
func Build(w io.Writer, o Options) (*Report, error) {
	if o.KernelVersion == "" {
		return nil, errors.New("no kernel version given")
	}
	if o.ModulesDir == "" {
		o.ModulesDir = filepath.Join("/lib/modules", o.KernelVersion)
	}
	binary, err := os.ReadFile(o.Binary)
	if err != nil {
		return nil, err
	}
	if err := checkStatic(o.Binary, binary); err != nil {
		return nil, err
	}
	idx, err := indexModules(o.ModulesDir)
	if err != nil {
		return nil, err
	}
	mods, err := idx.closure(o.Modules, DefaultModules)
	if err != nil {
		return nil, err
	}
	if len(mods) == 0 && !idx.builtin["fuse"] {
		return nil, fmt.Errorf("%s: no fuse module and fuse is not built in", o.ModulesDir)
	}

	if o.Compression == "" {
		o.Compression = fastestCompression(o.ModulesDir, o.KernelVersion)
	}
	cw := &countingWriter{w: w}
	zw, err := compressor(cw, o.Compression)
	if err != nil {
		return nil, err
	}
	a := &archive{w: cpio.Newc.Writer(zw), dirs: map[string]bool{}}
	a.dir("dev", 0o755)
	a.add(cpio.CharDev("dev/console", 0o600, 5, 1))
	a.add(cpio.CharDev("dev/null", 0o666, 1, 3))
	for _, d := range []string{"proc", "sys", "run", "tmp"} {
		a.dir(d, 0o755)
	}
	a.file(InitPath, binary, 0o755)
	// The shutdown program is the same binary; a relative link keeps
	// working once this root is moved to /run/initramfs.
	a.add(cpio.Symlink(ShutdownPath, InitPath))
	if o.Shell != "" {
		busybox, err := os.ReadFile(o.Shell)
		if err != nil {
			return nil, err
		}
		if err := checkStatic(o.Shell, busybox); err != nil {
			return nil, err
		}
		a.file("bin/busybox", busybox, 0o755)
		a.add(cpio.Symlink("bin/sh", "busybox"))
	}

	modRoot := path.Join("lib/modules", o.KernelVersion)
	report := &Report{Compression: o.Compression}
	for _, m := range mods {
		image, err := readModule(filepath.Join(o.ModulesDir, m.path))
		if err != nil {
			return nil, err
		}
		// Shipped uncompressed: the archive is compressed as a whole, and
		// finit_module then loads the file as it is.
		m.path = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m.path, ".xz"), ".zst"), ".gz")
		a.file(path.Join(modRoot, m.path), image, 0o644)
		report.Modules = append(report.Modules, m.name)
	}
	dep, softdep, alias := depLines(mods, idx)
	a.file(path.Join(modRoot, "modules.dep"), []byte(dep), 0o644)
	a.file(path.Join(modRoot, "modules.softdep"), []byte(softdep), 0o644)
	a.file(path.Join(modRoot, "modules.alias"), []byte(alias), 0o644)
	if a.err == nil {
		a.err = cpio.WriteTrailer(a.w)
	}
	if a.err != nil {
		return nil, a.err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	report.Bytes = cw.n
	return report, nil
}

// compressor wraps w in the named compression.
func compressor(w io.Writer, name string) (io.WriteCloser, error) {
	switch name {
	case "gzip":
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case "zstd":
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	case "lz4":
		zw := lz4.NewWriter(w)
		if err := zw.Apply(lz4.LegacyOption(true), lz4.CompressionLevelOption(lz4.Level9)); err != nil {
			return nil, err
		}
		return zw, nil
	case "none":
		return nopCloser{w}, nil
	}
	return nil, fmt.Errorf("unknown compression %q (want gzip, lz4, zstd or none)", name)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// fastestCompression picks the compression the kernel unpacks fastest
// among those its configuration (CONFIG_RD_*) enables, looking for the
// config beside the modules (an unpacked kernel package) or in /boot.
func fastestCompression(modulesDir, version string) string {
	for _, p := range []string{
		filepath.Join(modulesDir, "..", "..", "..", "boot", "config-"+version),
		filepath.Join(modulesDir, "build", ".config"),
		filepath.Join("/boot", "config-"+version),
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		config := string(data)
		for _, c := range []struct{ option, name string }{{"CONFIG_RD_LZ4=y", "lz4"}, {"CONFIG_RD_ZSTD=y", "zstd"}} {
			if strings.Contains(config, "\n"+c.option+"\n") {
				return c.name
			}
		}
		break
	}
	return "gzip"
}

// checkStatic refuses a dynamically linked binary: the initramfs has no
// loader or libraries for it.
func checkStatic(name string, image []byte) error {
	f, err := elf.NewFile(bytes.NewReader(image))
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", name, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build livefs with CGO_ENABLED=0 for the initramfs", name)
		}
	}
	return nil
}

// archive writes records, creating parent directories first as the
// kernel's unpacker needs them.
type archive struct {
	w    cpio.RecordWriter
	dirs map[string]bool
	ino  uint64
	err  error
}

func (a *archive) add(r cpio.Record) {
	if a.err != nil {
		return
	}
	if parent := path.Dir(r.Name); parent != "." && !a.dirs[parent] {
		a.dir(parent, 0o755)
	}
	a.ino++
	r.Ino = a.ino
	r.NLink = 1
	a.err = a.w.WriteRecord(r)
}

func (a *archive) dir(name string, mode uint64) {
	if a.dirs[name] {
		return
	}
	a.dirs[name] = true
	a.add(cpio.Directory(name, mode))
}

func (a *archive) file(name string, data []byte, mode uint64) {
	a.add(cpio.StaticRecord(data, cpio.Info{Name: name, Mode: cpio.S_IFREG | mode}))
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

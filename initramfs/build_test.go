package initramfs

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"

	"github.com/livefs/livefs/internal/sqfstest"
)

// fakeModule describes a module for makeModules.
type fakeModule struct {
	path    string // under kernel/, with its extension (.ko, .ko.xz, ...)
	modinfo []string
}

// makeModules writes a modules directory of real ELF objects (compiled
// with a .modinfo section) with the given modinfo, compressed by extension.
func makeModules(t *testing.T, mods []fakeModule, builtin ...string) string {
	t.Helper()
	cc := sqfstest.RequireTool(t, "gcc")
	dir := t.TempDir()
	for _, m := range mods {
		src := filepath.Join(t.TempDir(), "m.c")
		var lit strings.Builder
		for _, kv := range m.modinfo {
			lit.WriteString(kv + `\0`)
		}
		code := fmt.Sprintf("static const char modinfo[] __attribute__((section(\".modinfo\"), used)) = \"%s\";\n", lit.String())
		if err := os.WriteFile(src, []byte(code), 0o644); err != nil {
			t.Fatal(err)
		}
		obj := filepath.Join(t.TempDir(), "m.o")
		sqfstest.Run(t, cc, "-c", "-o", obj, src)
		image, err := os.ReadFile(obj)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		var w io.WriteCloser
		switch filepath.Ext(m.path) {
		case ".xz":
			w, err = xz.NewWriter(&buf)
		case ".gz":
			w = gzip.NewWriter(&buf)
		case ".zst":
			w, err = zstd.NewWriter(&buf)
		}
		if err != nil {
			t.Fatal(err)
		}
		if w != nil {
			w.Write(image)
			w.Close()
			image = buf.Bytes()
		}
		p := filepath.Join(dir, "kernel", m.path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, image, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var b strings.Builder
	for _, name := range builtin {
		fmt.Fprintf(&b, "kernel/builtin/%s.ko\n", name)
	}
	os.MkdirAll(filepath.Join(dir, "kernel"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// staticBinary is a static ELF executable to ship as /init.
func staticBinary(t *testing.T) string {
	t.Helper()
	cc := sqfstest.RequireTool(t, "gcc")
	dir := t.TempDir()
	src := filepath.Join(dir, "init.c")
	os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644)
	static := filepath.Join(dir, "static")
	sqfstest.Run(t, cc, "-static", "-o", static, src)
	return static
}

// readArchive returns the records of a compressed newc cpio by name.
func readArchive(t *testing.T, data []byte, compression string) map[string]cpio.Record {
	t.Helper()
	var zr io.Reader
	var err error
	switch compression {
	case "gzip":
		zr, err = gzip.NewReader(bytes.NewReader(data))
	case "zstd":
		zr, err = zstd.NewReader(bytes.NewReader(data))
	case "lz4":
		zr = lz4.NewReader(bytes.NewReader(data))
	case "none":
		zr = bytes.NewReader(data)
	}
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	for _, r := range recs {
		out[r.Name] = r
	}
	return out
}

func TestBuild(t *testing.T) {
	mods := []fakeModule{
		{"fs/fuse/fuse.ko", []string{"depends="}},
		{"fs/ext4/ext4.ko.xz", []string{"depends=jbd2,crc16", "softdep=pre: crypto-crc32c"}},
		{"fs/jbd2/jbd2.ko.gz", []string{"depends=", "softdep=pre: crypto-crc32c"}},
		{"lib/crc16.ko.zst", []string{"depends="}},
		{"crypto/crc32c_generic.ko", []string{"depends=", "alias=crypto-crc32c", "alias=crc32c"}},
		{"arch/crc32c-intel.ko", []string{"depends=", "alias=crypto-crc32c"}},
		{"drivers/virtio_blk.ko", []string{"depends=virtio", "alias=virtio:d00000002v*"}},
		{"drivers/virtio.ko", []string{"depends="}},
		{"drivers/unused.ko", []string{"depends="}},
	}
	dir := makeModules(t, mods, "vfat")
	var out bytes.Buffer
	report, err := Build(&out, Options{KernelVersion: "9.9-test", ModulesDir: dir, Modules: []string{"virtio_blk"}, Binary: staticBinary(t)})
	if err != nil {
		t.Fatal(err)
	}
	// Dependencies before dependents; unused modules left out; the CPU
	// variant of a soft dependency shipped beside the generic one.
	got := report.Modules
	if len(got) != 8 || slices.Contains(got, "unused") {
		t.Errorf("modules %v: want the 8 needed ones", got)
	}
	before := func(a, b string) {
		t.Helper()
		i, j := slices.Index(got, a), slices.Index(got, b)
		if i < 0 || j < 0 || i > j {
			t.Errorf("modules %v: want %s before %s", got, a, b)
		}
	}
	before("jbd2", "ext4")
	before("crc16", "ext4")
	before("crc32c_generic", "jbd2")
	before("crc32c_intel", "jbd2")
	before("virtio", "virtio_blk")

	if report.Compression != "gzip" {
		t.Errorf("compression %q without a kernel config: want gzip", report.Compression)
	}
	recs := readArchive(t, out.Bytes(), "gzip")
	root := "lib/modules/9.9-test/"
	for _, name := range []string{"init", "shutdown", "dev/console", root + "kernel/fs/ext4/ext4.ko", root + "kernel/lib/crc16.ko", root + "modules.dep", root + "modules.alias", root + "modules.softdep"} {
		if _, ok := recs[name]; !ok {
			t.Errorf("archive lacks %s", name)
		}
	}
	// Compressed modules are shipped decompressed, as ELF.
	if r, ok := recs[root+"kernel/fs/ext4/ext4.ko"]; ok {
		head := make([]byte, 4)
		r.ReadAt(head, 0)
		if string(head) != "\x7fELF" {
			t.Errorf("ext4.ko is not a plain ELF file: %q", head)
		}
	}
	content := func(name string) string {
		r := recs[root+name]
		if r.ReaderAt == nil {
			return ""
		}
		b, _ := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		return string(b)
	}
	if dep := content("modules.dep"); !strings.Contains(dep, "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/lib/crc16.ko\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	if soft := content("modules.softdep"); !strings.Contains(soft, "softdep ext4 pre: crc32c_generic crc32c_intel\n") {
		t.Errorf("modules.softdep:\n%s", soft)
	}
	if alias := content("modules.alias"); !strings.Contains(alias, "alias virtio:d00000002v* virtio_blk\n") {
		t.Errorf("modules.alias:\n%s", alias)
	}
	if r := recs["shutdown"]; r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Errorf("shutdown is not a symlink to init")
	}
}

func TestBuildCompressions(t *testing.T) {
	dir := makeModules(t, []fakeModule{{"fs/fuse/fuse.ko", []string{"depends="}}})
	static := staticBinary(t)
	for _, c := range []string{"gzip", "zstd", "lz4", "none"} {
		var out bytes.Buffer
		if _, err := Build(&out, Options{KernelVersion: "9.9", ModulesDir: dir, Binary: static, Compression: c}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if _, ok := readArchive(t, out.Bytes(), c)["lib/modules/9.9/kernel/fs/fuse/fuse.ko"]; !ok {
			t.Errorf("%s: archive lacks fuse.ko", c)
		}
	}
	if _, err := Build(io.Discard, Options{KernelVersion: "9.9", ModulesDir: dir, Binary: static, Compression: "bzip3"}); err == nil || !strings.Contains(err.Error(), `unknown compression "bzip3"`) {
		t.Errorf("unknown compression: got %v", err)
	}
	// The kernel's config beside its modules picks the fastest unpacker.
	for _, tt := range []struct{ config, want string }{
		{"CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n", "zstd"},
		{"CONFIG_RD_GZIP=y\nCONFIG_RD_LZ4=y\nCONFIG_RD_ZSTD=y\n", "lz4"},
		{"CONFIG_RD_GZIP=y\n# CONFIG_RD_LZ4 is not set\n", "gzip"},
	} {
		root := t.TempDir()
		mods := filepath.Join(root, "lib", "modules", "9.9")
		os.MkdirAll(mods, 0o755)
		os.MkdirAll(filepath.Join(root, "boot"), 0o755)
		os.WriteFile(filepath.Join(root, "boot", "config-9.9"), []byte("\n"+tt.config), 0o644)
		if got := fastestCompression(mods, "9.9"); got != tt.want {
			t.Errorf("config %q: got %s, want %s", tt.config, got, tt.want)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	static := staticBinary(t)
	good := makeModules(t, []fakeModule{{"fs/fuse/fuse.ko", []string{"depends="}}}, "vfat")
	tests := []struct {
		name    string
		o       Options
		mods    []fakeModule
		wantErr string
	}{
		{"required module missing", Options{Modules: []string{"nosuch"}}, nil, "module nosuch: not found in"},
		{"dependency missing", Options{}, []fakeModule{{"fs/fuse/fuse.ko", []string{"depends=nosuch"}}}, "module fuse needs nosuch, which is not in"},
		{"cycle", Options{}, []fakeModule{{"fs/fuse/fuse.ko", []string{"depends=a"}}, {"a.ko", []string{"depends=fuse"}}}, "module dependency cycle: fuse -> a -> fuse"},
		{"no fuse", Options{}, []fakeModule{{"a.ko", []string{"depends="}}}, "no fuse module and fuse is not built in"},
		{"not a module", Options{}, nil, "not a kernel module"},
		{"dynamic binary", Options{Binary: "/bin/true"}, nil, "is dynamically linked; build livefs with CGO_ENABLED=0"},
		{"no version", Options{KernelVersion: "-"}, nil, "no kernel version given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.o
			o.ModulesDir = good
			if tt.mods != nil {
				o.ModulesDir = makeModules(t, tt.mods)
			}
			if tt.name == "not a module" {
				o.ModulesDir = makeModules(t, []fakeModule{{"fs/fuse/fuse.ko", []string{"depends="}}})
				os.WriteFile(filepath.Join(o.ModulesDir, "kernel", "junk.ko"), []byte("junk"), 0o644)
			}
			if o.Binary == "" {
				o.Binary = static
			}
			switch o.KernelVersion {
			case "":
				o.KernelVersion = "9.9-test"
			case "-":
				o.KernelVersion = ""
			}
			_, err := Build(io.Discard, o)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Build: got error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
	if _, err := Build(io.Discard, Options{KernelVersion: "9.9", ModulesDir: filepath.Join(good, "nosuch"), Binary: static}); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing modules dir: got %v", err)
	}
}

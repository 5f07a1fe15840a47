package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/livefs/livefs/initramfs"
)

func init() {
	var out, kernel, modulesDir, modules, binary, shell, compression string
	register(&command{
		name: "initramfs", args: "build -o FILE --kernel VERSION [--modules-dir DIR] [--modules LIST] [--binary PATH] [--shell BUSYBOX] [--compress gzip|lz4|zstd|none]",
		summary: "Build the initramfs that boots a live system from livefs bundles.\n" +
			"It holds this binary (static) as /init and /shutdown and the kernel modules the init loads:\n" +
			"FUSE, disk, USB and CD drivers, ext4, FAT and ISO 9660, with their dependencies.",
		setup: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "o", "", "the initramfs file to write (gzip-compressed newc cpio)")
			fs.StringVar(&kernel, "kernel", "", "kernel release the modules are for (uname -r)")
			fs.StringVar(&modulesDir, "modules-dir", "", "the kernel's modules directory (default /lib/modules/VERSION)")
			fs.StringVar(&modules, "modules", "", "comma-separated modules to add to the default set")
			fs.StringVar(&binary, "binary", "", "the livefs binary to ship (default: this one; must be static)")
			fs.StringVar(&shell, "shell", "", "a static busybox to ship as the rescue shell")
			fs.StringVar(&compression, "compress", "", "gzip, lz4, zstd or none (default: the fastest to unpack that the kernel's config enables, else gzip)")
		},
		run: func(fs *flag.FlagSet, args []string) error {
			if len(args) == 0 || args[0] != "build" {
				return usageErr("want the word build")
			}
			// Flags may follow the word build.
			if err := fs.Parse(args[1:]); err != nil {
				return usageErr("%v", err)
			}
			if fs.NArg() != 0 {
				return usageErr("unexpected %q", fs.Arg(0))
			}
			if out == "" || kernel == "" {
				return usageErr("-o and --kernel are required")
			}
			if binary == "" {
				self, err := os.Executable()
				if err != nil {
					return err
				}
				binary = self
			}
			o := initramfs.Options{KernelVersion: kernel, ModulesDir: modulesDir, Binary: binary, Shell: shell, Compression: compression}
			for _, m := range strings.Split(modules, ",") {
				if m = strings.TrimSpace(m); m != "" {
					o.Modules = append(o.Modules, m)
				}
			}
			tmp, err := os.CreateTemp(filepath.Dir(out), ".initramfs-*")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			report, err := initramfs.Build(tmp, o)
			if err == nil {
				err = tmp.Close()
			} else {
				tmp.Close()
			}
			if err != nil {
				return err
			}
			if err := os.Rename(tmp.Name(), out); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%s: %d bytes (%s), %d modules: %s\n", out, report.Bytes, report.Compression, len(report.Modules), strings.Join(report.Modules, " "))
			return nil
		},
	})
}

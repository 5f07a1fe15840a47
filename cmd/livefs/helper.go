package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The livefs binary is also mount(8)'s helper for the type fuse.livefs,
// called as /sbin/mount.fuse.livefs, with overlayfs's option syntax:
//
//	mount -t fuse.livefs livefs /mnt -o lowerdir=/top:/bottom.sb,upperdir=/u,workdir=/w
//
// mount(8) runs "mount.fuse.livefs SOURCE TARGET [-s] [-f] [-n] [-v]
// [-o OPTIONS] [-t TYPE] [-N NAMESPACE]" (util-linux libmount, exec_helper
// in context_mount.c), also with -f (fake: do nothing).
//
// There is no umount.fuse.livefs: umount(8) finds a FUSE mount's type
// with statfs, which says only "fuse", and so runs no livefs helper for an
// absolute path. A plain umount therefore returns before the server has
// exited (it does within milliseconds); livefs umount waits for it.

const mountHelperName = "mount.fuse.livefs"

// Exit statuses mount(8) documents for itself and its helpers.
const (
	exitUsage = 1  // incorrect invocation
	exitMount = 32 // mount failure
)

// helperRequest is what mount(8) asks the helper for.
type helperRequest struct {
	source, mountpoint string
	lower              []string // highest first, as overlayfs's lowerdir
	upper, work        string
	readOnly           bool
	allowOther         bool
	noSuid, noDev      bool
	noExec             bool
	serverOptions      []string // passed to the server: nopassthrough, nouring, default_permissions
	cacheMiB           int64
	logFile            string
	fake, verbose      bool
	ignored            []string // accepted options without effect here
}

// parseMountHelperArgs reads a mount helper command line.
func parseMountHelperArgs(args []string) (*helperRequest, error) {
	r := &helperRequest{}
	var positional, optionArgs []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-s", a == "-n": // sloppy; no mtab: nothing to do
		case a == "-f":
			r.fake = true
		case a == "-v":
			r.verbose = true
		case a == "-r":
			optionArgs = append(optionArgs, "ro")
		case a == "-w":
			optionArgs = append(optionArgs, "rw")
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 == len(args) {
				return nil, fmt.Errorf("%s needs an argument", a)
			}
			i++
			switch a {
			case "-o":
				optionArgs = append(optionArgs, args[i])
			case "-N":
				return nil, fmt.Errorf("-N %s: mounting in another mount namespace is not supported", args[i])
			}
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			optionArgs = append(optionArgs, a[2:])
		case strings.HasPrefix(a, "-") && len(a) > 1:
			return nil, fmt.Errorf("unknown flag %s", a)
		default:
			positional = append(positional, a)
		}
	}
	if len(positional) != 2 {
		return nil, fmt.Errorf("want SOURCE and MOUNTPOINT, got %d arguments %q", len(positional), positional)
	}
	r.source, r.mountpoint = positional[0], positional[1]
	for _, o := range splitEscaped(strings.Join(optionArgs, ","), ',') {
		key, val, _ := strings.Cut(o, "=")
		switch key {
		case "":
		case "lowerdir":
			r.lower = nil
			for _, l := range splitEscaped(val, ':') {
				if l == "" {
					return nil, fmt.Errorf("lowerdir=%s: empty layer (data-only layers, '::', are not supported)", val)
				}
				r.lower = append(r.lower, unescape(l))
			}
		case "upperdir":
			r.upper = unescape(val)
		case "workdir":
			r.work = unescape(val)
		case "ro":
			r.readOnly = true
		case "rw":
			r.readOnly = false
		case "allow_other":
			r.allowOther = true
		case "nosuid", "suid":
			r.noSuid = key == "nosuid"
		case "nodev", "dev":
			r.noDev = key == "nodev"
		case "noexec", "exec":
			r.noExec = key == "noexec"
		case "nopassthrough", "nouring", "default_permissions":
			r.serverOptions = append(r.serverOptions, key)
		case "cache":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("cache=%s: want a size in MiB", val)
			}
			r.cacheMiB = n
		case "log":
			r.logFile = val
		default:
			// defaults, noauto, nofail, _netdev, x-*, overlayfs tunables
			// (index, xino, redirect_dir...) and whatever else fstab holds.
			r.ignored = append(r.ignored, o)
		}
	}
	switch {
	case len(r.lower) == 0:
		return nil, errors.New("missing lowerdir= (the layers, highest first, separated by ':')")
	case r.upper != "" && r.work == "":
		return nil, fmt.Errorf("upperdir=%s needs workdir= (an empty directory on the same file system)", r.upper)
	case r.upper == "" && r.work != "":
		r.ignored = append(r.ignored, "workdir="+r.work) // as overlayfs: useless without upperdir
		r.work = ""
	}
	return r, nil
}

// splitEscaped splits s at each sep not escaped by a backslash, keeping
// the escapes (overlayfs's syntax: "\:" and "\," are literal).
func splitEscaped(s string, sep byte) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// unescape removes the backslash before every escaped character.
func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// mountArgs turns the request into a livefs mount command line: branches
// bottom first; an upper directory is the writable changes layer in
// overlayfs's format, or, with ro, just the top branch.
func (r *helperRequest) mountArgs() []string {
	args := []string{"mount", "--daemon", "--fsname", r.source}
	var o []string
	if r.allowOther {
		o = append(o, "allow_other")
	}
	if r.noSuid {
		o = append(o, "nosuid")
	}
	if r.noDev {
		o = append(o, "nodev")
	}
	if r.noExec {
		o = append(o, "noexec")
	}
	o = append(o, r.serverOptions...)
	if len(o) > 0 {
		args = append(args, "-o", strings.Join(o, ","))
	}
	if r.cacheMiB > 0 {
		args = append(args, "--cache", strconv.FormatInt(r.cacheMiB, 10))
	}
	if r.logFile != "" {
		args = append(args, "--log", r.logFile)
	}
	writable := r.upper != "" && !r.readOnly
	if writable {
		args = append(args, "--changes", r.upper, "--workdir", r.work, "--whiteout", "overlay")
	} else {
		args = append(args, "--ro")
	}
	for i := len(r.lower) - 1; i >= 0; i-- {
		args = append(args, r.lower[i])
	}
	if r.upper != "" && !writable {
		args = append(args, r.upper)
	}
	return append(args, r.mountpoint)
}

// check verifies what overlayfs verifies before mounting, with messages
// that name the option: the directories must exist (livefs would create
// a missing changes directory; a typo in fstab should not do that).
func (r *helperRequest) check() error {
	for _, d := range []struct{ opt, path string }{{"upperdir", r.upper}, {"workdir", r.work}} {
		if d.path == "" {
			continue
		}
		if fi, err := os.Stat(d.path); err != nil {
			return fmt.Errorf("%s=%s: %w", d.opt, d.path, err)
		} else if !fi.IsDir() {
			return fmt.Errorf("%s=%s: not a directory", d.opt, d.path)
		}
	}
	for _, l := range r.lower {
		if _, err := os.Stat(l); err != nil {
			return fmt.Errorf("lowerdir: %w", err)
		}
	}
	return nil
}

// mountHelper is main for mount.fuse.livefs: it returns once the mount
// is live (or failed), with mount(8)'s exit statuses.
func mountHelper(args []string, out, errOut io.Writer) int {
	r, err := parseMountHelperArgs(args)
	if err != nil {
		fmt.Fprintf(errOut, "%s: %v\nusage: %s SOURCE MOUNTPOINT -o lowerdir=DIR[:DIR...][,upperdir=DIR,workdir=DIR][,OPTIONS]\n", mountHelperName, err, mountHelperName)
		return exitUsage
	}
	if err := r.check(); err != nil {
		fmt.Fprintf(errOut, "%s: %s: %v\n", mountHelperName, r.mountpoint, err)
		return exitMount
	}
	if r.verbose && len(r.ignored) > 0 {
		fmt.Fprintf(out, "%s: ignoring options %s\n", mountHelperName, strings.Join(r.ignored, ","))
	}
	if r.fake {
		return 0
	}
	if err := startDaemon(r.mountArgs()); err != nil {
		fmt.Fprintf(errOut, "%s: mounting %s: %v\n", mountHelperName, r.mountpoint, err)
		return exitMount
	}
	if r.verbose {
		fmt.Fprintf(out, "%s: %s mounted on %s\n", mountHelperName, r.source, r.mountpoint)
	}
	return 0
}

func init() {
	var prefix string
	var symlink, remove bool
	register(&command{
		name: "install-helper", args: "[--prefix DIR] [--symlink | --remove]",
		summary: "Install livefs as mount(8)'s helper for the type fuse.livefs: PREFIX/sbin/mount.fuse.livefs,\n" +
			"a copy of this binary, so that it works at boot whatever happens to this file (--symlink links instead).\n" +
			"Then: mount -t fuse.livefs livefs MNT -o lowerdir=TOP:BOTTOM[,upperdir=U,workdir=W], or in /etc/fstab:\n" +
			"  livefs /mnt fuse.livefs lowerdir=/l1:/l2.sb,upperdir=/u,workdir=/w 0 0",
		setup: func(fs *flag.FlagSet) {
			fs.StringVar(&prefix, "prefix", "/", "root under which sbin/ receives the helpers")
			fs.BoolVar(&symlink, "symlink", false, "make mount.fuse.livefs a symbolic link to this binary instead of a copy")
			fs.BoolVar(&remove, "remove", false, "remove the helpers instead")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 0 {
				return usageErr("no arguments expected")
			}
			return installHelper(prefix, symlink, remove)
		},
	})
}

func installHelper(prefix string, symlink, remove bool) error {
	sbin := filepath.Join(prefix, "sbin")
	mountPath := filepath.Join(sbin, mountHelperName)
	if remove {
		if err := os.Remove(mountPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(sbin, 0o755); err != nil {
		return err
	}
	// Build it under a temporary name and rename it into place, so that a
	// mount running meanwhile finds the old helper or the new one.
	tmp := mountPath + ".livefs-new"
	os.Remove(tmp)
	if symlink {
		err = os.Symlink(self, tmp)
	} else {
		err = copyExecutable(self, tmp)
	}
	if err == nil {
		err = os.Rename(tmp, mountPath)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("installing %s: %w", mountPath, err)
	}
	fmt.Fprintf(stdout, "installed %s\n", mountPath)
	return nil
}

func copyExecutable(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

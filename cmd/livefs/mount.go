package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/fs/union"
)

// daemonReadyFD is the descriptor on which a --daemon child reports
// whether the mount worked ("ok" or an error message).
const daemonReadyEnv = "LIVEFS_DAEMON_READY_FD"

func init() {
	var daemon, debug, readOnly bool
	var options, logFile, changesDir, whiteout string
	var cacheMiB int64
	register(&command{
		name: "mount", args: "[--daemon] [--ro | --changes DIR] [-o OPTS] BRANCH... MOUNTPOINT",
		summary: "Serve branches (squashfs images or directories) as one union at MOUNTPOINT.\n" +
			"The last branch is on top: livefs mount modules/*.sb /mnt. A name in a higher branch hides\n" +
			"the same name below; directories merge unless opaque; aufs (.wh.*) and overlayfs (0/0 char\n" +
			"device, trusted.overlay.opaque / user.overlay.opaque) whiteouts are honoured.\n" +
			"Writes go to --changes DIR (kept), else to a private RAM area dropped at unmount; --ro refuses them.\n" +
			"Runs in the foreground until SIGINT/SIGTERM or unmount; --daemon returns once the mount is live.",
		setup: func(fs *flag.FlagSet) {
			fs.BoolVar(&daemon, "daemon", false, "serve in the background; exit status says whether the mount worked")
			fs.StringVar(&options, "o", "", "comma-separated mount options: allow_other, nosuid, nodev, nopassthrough")
			fs.Int64Var(&cacheMiB, "cache", 0, "block cache per image in MiB (default 32)")
			fs.BoolVar(&debug, "debug", false, "log every FUSE request")
			fs.BoolVar(&readOnly, "ro", false, "read-only union: no changes layer")
			fs.StringVar(&changesDir, "changes", "", "persistent changes directory (created if missing)")
			fs.StringVar(&whiteout, "whiteout", "aufs", "whiteout format written to the changes layer: aufs or overlay")
			fs.StringVar(&logFile, "log", "", "append messages (damaged files, FUSE debug) to this file (default: standard error; none with --daemon)")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) < 2 {
				return usageErr("want at least one BRANCH and a MOUNTPOINT")
			}
			mo := union.MountOptions{Debug: debug}
			for _, o := range strings.Split(options, ",") {
				switch o {
				case "":
				case "allow_other":
					mo.AllowOther = true
				case "nosuid":
					mo.NoSuid = true
				case "nodev":
					mo.NoDev = true
				case "nopassthrough":
					mo.NoPassthrough = true
				case "ro":
					readOnly = true
				case "rw", "suid", "dev", "default_permissions":
				default:
					return usageErr("unknown mount option %q", o)
				}
			}
			if daemon && os.Getenv(daemonReadyEnv) == "" {
				return startDaemon()
			}
			if readOnly && changesDir != "" {
				return usageErr("--ro and --changes exclude each other")
			}
			format, err := cow.ParseFormat(whiteout)
			if err != nil {
				return usageErr("%v", err)
			}
			logger, err := openLog(logFile)
			if err != nil {
				return err
			}
			var changes *cow.Changes
			switch {
			case readOnly:
			case changesDir != "":
				work := ""
				if format == cow.Overlay {
					work = filepath.Join(filepath.Dir(filepath.Clean(changesDir)), "."+filepath.Base(changesDir)+".livefs-work")
				}
				changes, err = cow.Open(changesDir, work, format)
			default:
				changes, err = cow.OpenRAM(format)
			}
			if err != nil {
				readyReporter()(err)
				return err
			}
			return serve(args[:len(args)-1], args[len(args)-1], mo, cacheMiB<<20, logger, changes)
		},
	})
	register(&command{
		name: "umount", args: "MOUNTPOINT",
		summary: "Unmount a livefs mount (the server then exits).",
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usageErr("want one MOUNTPOINT")
			}
			return unmount(args[0])
		},
	})
}

// openBranches opens each branch: a directory or a squashfs image. The
// block cache budget is shared: each image gets its part of it.
func openBranches(paths []string, cacheBytes int64) ([]union.Layer, error) {
	if cacheBytes <= 0 {
		cacheBytes = sqfs.DefaultCacheBytes
	}
	perImage := max(cacheBytes/int64(len(paths)), 4<<20)
	var layers []union.Layer
	for _, p := range paths {
		l, err := union.OpenBranch(p, &sqfs.Options{CacheBytes: perImage, MetaCacheBytes: max(perImage/4, 1<<20)})
		if err != nil {
			for _, l := range layers {
				l.Close()
			}
			return nil, err
		}
		layers = append(layers, l)
	}
	return layers, nil
}

// openLog returns the logger for the server's messages.
func openLog(path string) (*log.Logger, error) {
	if path == "" {
		return log.New(os.Stderr, "", log.LstdFlags), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return log.New(f, "", log.LstdFlags), nil
}

func serve(branches []string, mountpoint string, mo union.MountOptions, cacheBytes int64, logger *log.Logger, changes *cow.Changes) (err error) {
	ready := readyReporter()
	defer func() {
		if err != nil {
			ready(err)
		}
	}()
	layers, err := openBranches(branches, cacheBytes)
	if err != nil {
		if changes != nil {
			changes.Close()
		}
		return err
	}
	// Keep the heap near what the caches need: the Go collector would
	// otherwise let it grow to twice the live data.
	debug.SetMemoryLimit(max(cacheBytes, sqfs.DefaultCacheBytes)*5/4 + 48<<20)
	u := union.New(layers, union.Options{Logger: logger, Changes: changes})
	mo.Logger = logger
	defer u.Close()
	mo.FsName = "livefs"
	server, err := union.Mount(mountpoint, u, mo)
	if err != nil {
		return fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	ready(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		server.Unmount()
	}()
	server.Wait()
	return nil
}

// readyReporter returns how to tell a waiting --daemon parent the outcome;
// outside daemon mode it does nothing.
func readyReporter() func(error) {
	fdStr := os.Getenv(daemonReadyEnv)
	if fdStr == "" {
		return func(error) {}
	}
	var fd int
	fmt.Sscan(fdStr, &fd)
	f := os.NewFile(uintptr(fd), "ready")
	done := false
	return func(err error) {
		if done {
			return
		}
		done = true
		if err != nil {
			fmt.Fprintln(f, err)
		} else {
			fmt.Fprintln(f, "ok")
		}
		f.Close()
	}
}

// startDaemon re-executes livefs in a new session with the same arguments
// and waits until the child reports that the mount is live or failed.
func startDaemon() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), daemonReadyEnv+"=3")
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	// The child reports failure through the pipe; its own output goes to
	// --log or nowhere, so that it does not hold the caller's terminal.
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pw.Close()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	pr.Close()
	line = strings.TrimSpace(line)
	if line == "ok" {
		cmd.Process.Release()
		return nil
	}
	cmd.Wait()
	if line == "" {
		line = "server exited before the mount was ready"
	}
	return errors.New(line)
}

func unmount(mountpoint string) error {
	if os.Geteuid() == 0 {
		if err := syscall.Unmount(mountpoint, 0); err == nil {
			return nil
		} else if !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("unmount %s: %w", mountpoint, err)
		}
	}
	out, err := exec.Command("fusermount3", "-u", mountpoint).CombinedOutput()
	if err != nil {
		return fmt.Errorf("fusermount3 -u %s: %v: %s", mountpoint, err, strings.TrimSpace(string(out)))
	}
	return nil
}

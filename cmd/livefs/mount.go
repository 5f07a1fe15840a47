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
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/fs/cow"
	"github.com/livefs/livefs/fs/sqfs"
	"github.com/livefs/livefs/fs/union"
	"github.com/livefs/livefs/internal/fuseuring"
)

// daemonReadyFD is the descriptor on which a --daemon child reports
// whether the mount worked ("ok" or an error message).
const daemonReadyEnv = "LIVEFS_DAEMON_READY_FD"

func init() {
	var daemon, debug, readOnly bool
	var options, logFile, changesDir, workDir, whiteout, fsName string
	var cacheMiB int64
	register(&command{
		name: "mount", args: "[--daemon] [--ro | --changes DIR [--workdir DIR]] [-o OPTS] BRANCH... MOUNTPOINT",
		summary: "Serve branches (squashfs images or directories) as one union at MOUNTPOINT.\n" +
			"The last branch is on top: livefs mount modules/*.sb /mnt. A name in a higher branch hides\n" +
			"the same name below; directories merge unless opaque; aufs (.wh.*) and overlayfs (0/0 char\n" +
			"device, trusted.overlay.opaque / user.overlay.opaque) whiteouts are honoured.\n" +
			"Writes go to --changes DIR (kept), else to a private RAM area dropped at unmount; --ro refuses them.\n" +
			"Runs in the foreground until SIGINT/SIGTERM or unmount; --daemon returns once the mount is live.",
		setup: func(fs *flag.FlagSet) {
			fs.BoolVar(&daemon, "daemon", false, "serve in the background; exit status says whether the mount worked")
			fs.StringVar(&options, "o", "", "comma-separated mount options: allow_other, default_permissions, nosuid, nodev, noexec, nopassthrough, nouring, ro, rw")
			fs.Int64Var(&cacheMiB, "cache", 0, "block cache per image in MiB (default 32)")
			fs.BoolVar(&debug, "debug", false, "log every FUSE request")
			fs.BoolVar(&readOnly, "ro", false, "read-only union: no changes layer")
			fs.StringVar(&changesDir, "changes", "", "persistent changes directory (created if missing)")
			fs.StringVar(&whiteout, "whiteout", "aufs", "whiteout format written to the changes layer: aufs or overlay")
			fs.StringVar(&workDir, "workdir", "", "work directory of --changes, on its file system (default: .wh..wh.livefs inside it for aufs, the sibling .DIR.livefs-work for overlay)")
			fs.StringVar(&fsName, "fsname", "livefs", "source name shown in /proc/mounts")
			fs.StringVar(&logFile, "log", "", "append messages (damaged files, FUSE debug) to this file (default: standard error; none with --daemon)")
		},
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) < 2 {
				return usageErr("want at least one BRANCH and a MOUNTPOINT")
			}
			mo := union.MountOptions{Debug: debug, FsName: fsName}
			var noExec bool
			for _, o := range strings.Split(options, ",") {
				switch o {
				case "":
				case "allow_other":
					mo.AllowOther = true
				case "nosuid":
					mo.NoSuid = true
				case "nodev":
					mo.NoDev = true
				case "noexec":
					noExec = true
				case "nopassthrough":
					mo.NoPassthrough = true
				case "nouring":
					mo.NoURing = true
				case "ro":
					readOnly = true
				case "default_permissions":
					mo.KernelPermissions = true
				case "rw", "suid", "dev", "exec":
				default:
					return usageErr("unknown mount option %q", o)
				}
			}
			if daemon && os.Getenv(daemonReadyEnv) == "" {
				return startDaemon(os.Args[1:])
			}
			if readOnly && changesDir != "" {
				return usageErr("--ro and --changes exclude each other")
			}
			if workDir != "" && changesDir == "" {
				return usageErr("--workdir needs --changes")
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
				work := workDir
				if work == "" && format == cow.Overlay {
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
			return serve(args[:len(args)-1], args[len(args)-1], mo, noExec, cacheMiB<<20, logger, changes)
		},
	})
	register(&command{
		name: "umount", args: "MOUNTPOINT",
		summary: "Unmount a livefs mount (the server then exits).",
		run: func(_ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usageErr("want one MOUNTPOINT")
			}
			return unmount(args[0], 0)
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

func serve(branches []string, mountpoint string, mo union.MountOptions, noExec bool, cacheBytes int64, logger *log.Logger, changes *cow.Changes) (err error) {
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
	if !mo.NoURing && os.Geteuid() == 0 {
		// Root turns on the kernel's FUSE-over-io_uring switch (off by
		// default): it only lets servers that ask for rings use them.
		if on, exists := fuseuring.KernelSwitch(); exists && !on {
			if err := fuseuring.EnableKernelSwitch(); err != nil {
				logger.Printf("livefs: cannot enable FUSE over io_uring: %v", err)
			}
		}
	}
	if mo.FsName == "" {
		mo.FsName = "livefs"
	}
	server, err := union.Mount(mountpoint, u, mo)
	if err != nil {
		u.Close()
		return fmt.Errorf("mounting at %s: %w", mountpoint, err)
	}
	if u.URing() && os.Getenv("GOMAXPROCS") == "" {
		// A queue thread waits in the kernel between requests. With
		// spare Ps the scheduler keeps its P for it instead of handing the
		// P to another thread at each wait and taking it back at each
		// request, which costs wake-ups on other CPUs.
		runtime.GOMAXPROCS(2 * runtime.NumCPU())
	}
	if noExec {
		if err := remountNoExec(mountpoint, mo, changes == nil); err != nil {
			server.Unmount()
			server.Wait()
			u.Close()
			return err
		}
	}
	if strings.HasPrefix(os.Args[0], "@") {
		ready(nil)
		serveRoot(changes, logger)
	}
	forget := recordServer(mountpoint, logger)
	ready(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sigs
		server.Unmount()
	}()
	server.Wait()
	// Release every file held on the branches and the changes layer first
	// (it also flushes and unlocks the changes layer): whoever unmounted
	// may unmount those file systems next, and waits for this exit.
	closeErr := u.Close()
	forget()
	return closeErr
}

// remountNoExec adds noexec to a live mount (the FUSE mount itself takes
// only suid and dev), keeping its other per-mount flags.
func remountNoExec(mountpoint string, mo union.MountOptions, readOnly bool) error {
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | unix.MS_NOEXEC)
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if mo.NoSuid || os.Geteuid() != 0 {
		flags |= unix.MS_NOSUID
	}
	if mo.NoDev || os.Geteuid() != 0 {
		flags |= unix.MS_NODEV
	}
	if err := unix.Mount("", mountpoint, "", flags, ""); err != nil {
		return fmt.Errorf("noexec: remounting %s: %w", mountpoint, err)
	}
	return nil
}

// serveRoot runs a server started as a root storage daemon (argv[0]
// starting with '@', systemd's convention): it serves the running
// system's root, which cannot be unmounted. The signals a shutdown sends
// to every process are ignored; SIGUSR1, from the live system's shutdown,
// flushes the changes layer and ends the server.
func serveRoot(changes *cow.Changes, logger *log.Logger) {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGUSR1)
	<-stop
	if changes != nil {
		if err := changes.Sync(); err != nil {
			logger.Printf("shutdown: %v", err)
		}
	}
	// Exiting closes every descriptor on the medium and the FUSE device at
	// once; a union Close could wait behind a request in flight.
	os.Exit(0)
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

// startDaemon re-executes livefs in a new session with args (a mount
// command line) and waits until the child reports that the mount is live
// or failed.
func startDaemon(args []string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, args...)
	cmd.Args[0] = "livefs" // not the helper's name, which would dispatch to the helper again
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

// serverExitTimeout bounds how long an unmount waits for the server to
// release its files and exit.
const serverExitTimeout = 10 * time.Second

// unmount unmounts a livefs mount (flags as umount2's) and waits (at most
// serverExitTimeout) until its server has exited, so that the file
// systems under its branches and changes directory can be unmounted right
// after. A lazy unmount (MNT_DETACH) of a busy mount leaves the server
// running until the last user goes: it is not waited for.
func unmount(mountpoint string, flags int) error {
	lazy := flags&unix.MNT_DETACH != 0
	srv := findServer(mountpoint)
	defer srv.close()

	var err error = syscall.EPERM
	if os.Geteuid() == 0 {
		err = unix.Unmount(mountpoint, flags)
		if err != nil && !errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("unmount %s: %w", mountpoint, err)
		}
	}
	if err != nil { // not root, or root without the right in this namespace
		args := []string{"-u", mountpoint}
		if lazy {
			args = []string{"-u", "-z", mountpoint}
		}
		if out, err := exec.Command("fusermount3", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("fusermount3 -u %s: %v: %s", mountpoint, err, strings.TrimSpace(string(out)))
		}
	}
	if !lazy && !srv.wait(serverExitTimeout) {
		fmt.Fprintf(os.Stderr, "livefs: %s is unmounted, but its server (pid %d) has not exited after %v; the files it holds stay busy\n", mountpoint, srv.pid, serverExitTimeout)
	}
	return nil
}

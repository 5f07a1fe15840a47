package union

import (
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/livefs/livefs/internal/fuseuring"
)

// MountOptions configure the FUSE mount.
type MountOptions struct {
	// AllowOther lets other users use the mount; the kernel then checks
	// permissions (default_permissions). A writable union without it is
	// checked by livefs itself, which saves a round trip after every change
	// to a directory (see perm.go), unless KernelPermissions is set.
	AllowOther        bool
	KernelPermissions bool
	// NoSuid and NoDev add nosuid and nodev; by default a root mount honours
	// setuid bits and device nodes as the kernel's squashfs does.
	NoSuid, NoDev bool
	// FsName is shown as the mount's source in /proc/mounts.
	FsName string
	// CacheTimeout is how long the kernel may cache names and attributes;
	// the branches cannot change behind its back (runtime branch changes
	// invalidate explicitly). Default one hour.
	CacheTimeout time.Duration
	// NoPassthrough serves reads and writes of files in the changes layer
	// through the server even where the kernel could do them directly
	// (FUSE passthrough: Linux 6.9, CAP_SYS_ADMIN).
	NoPassthrough bool
	// NoURing keeps every request on /dev/fuse even where the kernel
	// grants FUSE over io_uring (per-CPU queues; Linux 6.14 with the fuse
	// module's enable_uring on).
	NoURing bool
	// Debug logs every FUSE request to Logger.
	Debug  bool
	Logger *log.Logger
}

// Server is a mounted union's FUSE server.
type Server struct {
	*fuse.Server
	done chan struct{} // closed when serving has ended
}

// Wait blocks until the union is unmounted and the server has stopped.
func (s *Server) Wait() { <-s.done }

// Mount serves u at mountpoint and returns the running server. Call
// server.Wait to block until it is unmounted.
func Mount(mountpoint string, u *Union, o MountOptions) (*Server, error) {
	timeout := o.CacheTimeout
	if timeout == 0 {
		timeout = time.Hour
	}
	var options []string
	// A read-only union answers no OPEN (see Open), so only the kernel
	// can check opens there.
	if u.upper == nil || o.AllowOther || o.KernelPermissions {
		options = append(options, "default_permissions")
	} else {
		u.checkPerms.Store(true)
	}
	if u.upper == nil {
		options = append(options, "ro")
	}
	// fusermount3 refuses suid and dev for ordinary users (and imposes
	// nosuid,nodev on them); only root asks for them.
	if !o.NoSuid && os.Geteuid() == 0 {
		options = append(options, "suid")
	}
	if !o.NoDev && os.Geteuid() == 0 {
		options = append(options, "dev")
	}
	refs := u.rootRefs()
	root := &node{u: u, refs: refs, id: u.inoOf(refs[0])}
	rootIno := root.id
	name := o.FsName
	if name == "" {
		name = "livefs"
	}
	fsOpts := &fs.Options{
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		RootStableAttr:  &fs.StableAttr{Ino: rootIno},
		NullPermissions: true, // mode 0000 stays 0000
		MountOptions: fuse.MountOptions{
			AllowOther:   o.AllowOther,
			Options:      options,
			FsName:       name,
			Name:         "livefs",
			MaxReadAhead: 1 << 20,
			MaxWrite:     1 << 20,
			DirectMount:  true,
			Debug:        o.Debug,
			Logger:       o.Logger,
			// EnableLocks stays off: the kernel then keeps flock, POSIX and
			// OFD locks itself, which is right for one mount (with it, go-fuse
			// would forward them to handlers livefs does not have).
			// Directories are listed without OPENDIR round trips.
			ExtraCapabilities: fuse.CAP_NO_OPENDIR_SUPPORT,
		},
	}
	if u.upper != nil {
		// OPEN carries O_TRUNC, and no SETATTR follows (see openWritable).
		fsOpts.MountOptions.ExtraCapabilities |= fuse.CAP_ATOMIC_O_TRUNC
	}
	var ringErr error
	if !o.NoURing {
		ringErr = fuseuring.Usable()
		if ringErr == nil {
			fsOpts.MountOptions.ExtraCapabilities |= fuseuring.Capability
		} else if on, _ := fuseuring.KernelSwitch(); !on {
			ringErr = fuseuring.ErrNotGranted // nothing lost: it would not grant them
		}
	}
	raw := newNamespaceFS(newNoOpendirFS(fs.NewNodeFS(root, fsOpts)), &u.ns)
	server, err := fuse.NewServer(raw, mountpoint, &fsOpts.MountOptions)
	if err != nil {
		return nil, err
	}
	var rings *fuseuring.Rings
	if !o.NoURing && ringErr == nil {
		// Before anything touches the mount: the kernel holds requests
		// back until the rings it granted are registered.
		rings, ringErr = fuseuring.Start(server, raw, &fsOpts.MountOptions)
	}
	s := &Server{Server: server, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if ringErr == nil && rings != nil {
			// The rings serve every request but FORGET and INTERRUPT.
			rings.ServeDevice()
			raw.OnUnmount()
		} else {
			server.Serve()
		}
		if rings != nil {
			rings.Close()
		}
	}()
	switch {
	case o.NoURing, errors.Is(ringErr, fuseuring.ErrNotGranted):
	case ringErr == nil:
		u.uring.Store(true)
	case errors.Is(ringErr, fuseuring.ErrStuck):
		server.Unmount()
		return nil, ringErr
	default:
		u.logOnce("io_uring", fmt.Errorf("serving over /dev/fuse only: %w", ringErr))
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return nil, err
	}
	if u.upper != nil && !o.NoPassthrough {
		u.passthrough.Store(passthroughWorks(server, u.changes.WorkFD()))
	}
	return s, nil
}

// URing reports whether Mount serves the union's requests through per-CPU
// io_uring queues rather than /dev/fuse.
func (u *Union) URing() bool { return u.uring.Load() }

// passthroughWorks tries to register a file on the changes layer's file
// system as a passthrough backing file. That fails for an ordinary user
// (EPERM), on kernels before 6.9, and where the changes layer is itself too
// deeply stacked; reads and writes then go through the server.
func passthroughWorks(server *fuse.Server, workFD int) bool {
	fd, err := unix.Openat(workFD, ".", unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		name := fmt.Sprintf("passthrough-probe.%d", os.Getpid())
		if fd, err = unix.Openat(workFD, name, unix.O_CREAT|unix.O_RDWR|unix.O_CLOEXEC, 0o600); err != nil {
			return false
		}
		unix.Unlinkat(workFD, name, 0)
	}
	defer unix.Close(fd)
	id, errno := server.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		return false
	}
	server.UnregisterBackingFd(id)
	return true
}
